"""The teacher's class settings: read, changed, refused (`tl_core.classroom.settings`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tl_core.classroom.identity import Identity
from tl_core.classroom.settings import ClassSettings, read_class_settings, update_class_settings
from tl_core.errors import AccessDenied, ConfigError

TEACHER = Identity.teacher()


def settings_file(home: Path) -> Path:
    return home / "class" / "settings.json"


def test_a_new_class_gets_the_defaults() -> None:
    assert read_class_settings() == ClassSettings(
        max_active_runs=2, max_upload_mb=200, paused=False
    )


def test_the_teachers_changes_are_kept_and_read_back(tl_home: Path) -> None:
    changed = update_class_settings(TEACHER, max_active_runs=3, paused=True)

    assert changed == ClassSettings(max_active_runs=3, max_upload_mb=200, paused=True)
    assert read_class_settings() == changed
    assert json.loads(settings_file(tl_home).read_text())["max_active_runs"] == 3
    assert update_class_settings(TEACHER, paused=False) == ClassSettings(max_active_runs=3)


def test_the_operator_may_change_the_settings() -> None:
    assert update_class_settings(None, max_upload_mb=50).max_upload_mb == 50


def test_a_student_cannot_change_the_settings_and_nothing_is_written(tl_home: Path) -> None:
    with pytest.raises(AccessDenied, match="Only the teacher can change the class settings"):
        update_class_settings(Identity.student("Ada"), paused=True)

    assert not settings_file(tl_home).exists()
    assert read_class_settings().paused is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_active_runs": 0}, "between 1 and 50"),
        ({"max_upload_mb": 20_000}, "between 1 and 10000"),
        ({"quota": 3}, r"Unknown class settings \['quota'\]"),
    ],
)
def test_unknown_names_and_values_out_of_range_are_refused_and_nothing_changes(
    changes: dict[str, int], message: str
) -> None:
    update_class_settings(TEACHER, max_active_runs=4)

    with pytest.raises(ConfigError, match=message):
        update_class_settings(TEACHER, **changes)

    assert read_class_settings() == ClassSettings(max_active_runs=4)


def test_a_damaged_or_mistyped_file_reads_as_the_defaults(tl_home: Path) -> None:
    settings_file(tl_home).parent.mkdir(parents=True, exist_ok=True)
    settings_file(tl_home).write_text("{not json")
    assert read_class_settings() == ClassSettings()

    settings_file(tl_home).write_text(json.dumps({"max_active_runs": "9", "paused": True}))
    assert read_class_settings() == ClassSettings(paused=True)

    settings_file(tl_home).write_text(json.dumps({"max_active_runs": 999}))
    assert read_class_settings() == ClassSettings()
