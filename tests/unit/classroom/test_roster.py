"""Joining, signing in and staying signed in (`tl_core.classroom.roster`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tl_core.classroom import roster
from tl_core.classroom.identity import ClassConfig, Identity, hash_password, load_class_config
from tl_core.classroom.roster import (
    identity_from_oidc,
    identity_from_token,
    join_class,
    list_students,
    release_name,
    sign_in_teacher,
)
from tl_core.errors import AccessDenied, ConfigError

CODE = "MAPLE-7"


@pytest.fixture
def config() -> ClassConfig:
    loaded = load_class_config({"code": CODE, "teacher_password": "pw"}, environ={})
    assert loaded is not None
    return loaded


@pytest.fixture(autouse=True)
def no_delay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(roster, "SIGNIN_DELAY_S", 0.0)


def test_a_student_joins_and_their_token_names_them(config: ClassConfig) -> None:
    signed = join_class("Ada", CODE.lower(), config)

    assert signed.identity == Identity.student("Ada")
    assert identity_from_token(signed.token, config) == Identity.student("Ada")
    assert [student.name for student in list_students()] == ["Ada"]


def test_a_wrong_code_waits_then_refuses_and_records_nobody(
    config: ClassConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(roster, "SIGNIN_DELAY_S", 0.25)
    monkeypatch.setattr(roster.time, "sleep", slept.append)

    with pytest.raises(AccessDenied, match="class code"):
        join_class("Ada", "OAK", config)

    assert slept == [0.25]
    assert list_students() == []


def test_a_taken_name_is_refused_to_others_but_not_to_its_holder(config: ClassConfig) -> None:
    first = join_class("Ada", CODE, config)

    with pytest.raises(AccessDenied, match="already taken"):
        join_class("ADA", CODE, config)
    again = join_class("ada", CODE, config, token=first.token)

    assert again.identity.name == "Ada"
    assert len(list_students()) == 1


def test_a_bad_name_is_refused_before_anything_is_stored(config: ClassConfig) -> None:
    with pytest.raises(ConfigError):
        join_class("<b>x</b>", CODE, config)

    assert list_students() == []


def test_the_teacher_signs_in_with_the_password(
    config: ClassConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(roster.time, "sleep", slept.append)

    with pytest.raises(AccessDenied, match="teacher password"):
        sign_in_teacher("PW", config)
    signed = sign_in_teacher("pw", config)

    assert slept == [roster.SIGNIN_DELAY_S]
    assert identity_from_token(signed.token, config) == Identity.teacher()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "x" + token,
        lambda token: token.replace(".", ""),
        lambda token: "",
    ],
)
def test_a_forged_or_damaged_token_names_nobody(
    config: ClassConfig, tamper: Callable[[str], str]
) -> None:
    token = join_class("Ada", CODE, config).token

    assert identity_from_token(tamper(token), config) is None


def test_a_token_claiming_the_teacher_role_needs_the_signature(config: ClassConfig) -> None:
    body, signature = join_class("Ada", CODE, config).token.split(".")
    doc = json.loads(roster.from_urlsafe_b64(body))
    doc["r"] = "teacher"
    forged = roster.urlsafe_b64(json.dumps(doc).encode()) + "." + signature

    assert identity_from_token(forged, config) is None


def test_a_new_class_code_or_password_signs_everyone_out(config: ClassConfig) -> None:
    token = join_class("Ada", CODE, config).token
    new_code = ClassConfig("BIRCH-2", config.password_hash)
    new_password = ClassConfig(CODE, hash_password("other"))

    assert identity_from_token(token, new_code) is None
    assert identity_from_token(token, new_password) is None


def test_an_expired_token_names_nobody(
    config: ClassConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = join_class("Ada", CODE, config).token
    later = time.time() + (roster.TOKEN_DAYS + 1) * 86400
    monkeypatch.setattr(roster.time, "time", lambda: later)

    assert identity_from_token(token, config) is None


def test_only_the_teacher_releases_a_name_and_its_token_stops_working(
    config: ClassConfig,
) -> None:
    token = join_class("Ada", CODE, config).token
    join_class("Grace", CODE, config)

    with pytest.raises(AccessDenied):
        release_name(Identity.student("Grace"), "Ada")
    release_name(Identity.teacher(), "ada")

    assert identity_from_token(token, config) is None
    assert join_class("Ada", CODE, config).identity.name == "Ada"


def test_the_secret_is_kept_private_and_reused(config: ClassConfig, tmp_path: Path) -> None:
    token = join_class("Ada", CODE, config).token
    secret = tmp_path / "home" / "class" / "secret.key"

    assert secret.stat().st_mode & 0o077 == 0
    assert identity_from_token(token, config) is not None


def test_a_school_account_is_a_student_unless_listed_as_teacher() -> None:
    config = ClassConfig("A", hash_password("b"), "oidc", ("head@school.org",))

    student = identity_from_oidc({"is_logged_in": True, "email": "ada@school.org"}, config)
    teacher = identity_from_oidc({"is_logged_in": True, "email": "Head@School.org"}, config)

    assert student == Identity("ada@school.org", "student")
    assert teacher == Identity.teacher()
    assert identity_from_oidc({"is_logged_in": False}, config) is None
