"""Identities, names, passwords and the class configuration (`tl_core.classroom.identity`)."""

from __future__ import annotations

import pytest

from tl_core.classroom.identity import (
    TEACHER_NAME,
    Identity,
    check_password,
    hash_password,
    load_class_config,
    normalize_name,
)
from tl_core.errors import ConfigError


def test_names_are_tidied_to_single_spaces_in_nfc() -> None:
    assert normalize_name("  Zoe\u0301   Martin ") == "Zo\u00e9 Martin"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("x" * 41, "at most 40"),
        ("<script>", "letters, digits"),
        ("Ada/../etc", "letters, digits"),
        ("teacher", "kept for the teacher"),
    ],
)
def test_unusable_names_are_refused_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        normalize_name(raw)


def test_a_student_acts_only_for_themselves_and_the_teacher_for_everyone() -> None:
    ada = Identity.student("Ada")

    assert ada.may_act_for("ada")
    assert not ada.may_act_for("Grace")
    assert not ada.may_act_for(None)
    assert Identity.teacher().may_act_for("Grace")
    assert Identity.teacher().may_act_for(None)
    assert Identity.teacher().name == TEACHER_NAME


def test_a_password_hash_is_salted_and_checks_only_the_right_password() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")

    assert first != second
    assert "s3cret" not in first
    assert check_password("s3cret", first)
    assert check_password("s3cret", second)
    assert not check_password("s3cret ", first)
    assert not check_password("s3cret", "scrypt$bad")
    assert not check_password("s3cret", "md5$1$2$3$4$5")


def test_no_code_and_no_password_means_single_user_mode() -> None:
    assert load_class_config(None, environ={}) is None
    assert load_class_config({}, environ={"TL_HOME": "/x"}) is None


def test_the_environment_configures_a_class_and_keeps_only_a_hash() -> None:
    config = load_class_config(None, environ={"TL_CLASS_CODE": "ABC", "TL_TEACHER_PASSWORD": "pw"})

    assert config is not None
    assert config.code_matches(" abc ")
    assert not config.code_matches("abd")
    assert "pw" not in repr(config)
    assert check_password("pw", config.password_hash)


def test_the_secrets_section_configures_a_class_with_a_stored_hash() -> None:
    stored = hash_password("pw")

    config = load_class_config({"code": "ABC", "teacher_password_hash": stored}, environ={})

    assert config is not None and config.password_hash == stored


def test_the_environment_wins_over_the_secrets_section() -> None:
    config = load_class_config(
        {"code": "FROM-SECRETS", "teacher_password": "pw"}, environ={"TL_CLASS_CODE": "ENV"}
    )

    assert config is not None and config.code == "ENV"


@pytest.mark.parametrize("environ", [{"TL_CLASS_CODE": "ABC"}, {"TL_TEACHER_PASSWORD": "pw"}])
def test_half_a_class_configuration_is_refused_naming_the_missing_half(
    environ: dict[str, str],
) -> None:
    missing = "TL_TEACHER_PASSWORD" if "TL_CLASS_CODE" in environ else "TL_CLASS_CODE"

    with pytest.raises(ConfigError, match=missing):
        load_class_config(None, environ=environ)


def test_an_unknown_sign_in_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="auth"):
        load_class_config({"code": "A", "teacher_password": "b", "auth": "ldap"}, environ={})
