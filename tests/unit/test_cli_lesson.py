"""CLI `lesson list|create|export|import|open`: lessons for a personal studio or a class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli import assert_one_error_line
from tl_core import cli
from tl_core.classroom.lessons import list_lessons, load_lesson

DATASET = "0123456789ab"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert cli.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_create_from_a_builtin_then_open_and_close(capsys: pytest.CaptureFixture[str]) -> None:
    created = _json(capsys, "lesson", "create", "unfreeze-depth", "--dataset", DATASET)

    assert created["lesson_id"] == "unfreeze-depth"
    assert created["arms"] == ["depth 0 (head only)", "depth 1", "depth 2", "depth 4", "depth 8"]
    assert _json(capsys, "lesson", "open", "unfreeze-depth")["is_open"] is True
    assert _json(capsys, "lesson", "open", "unfreeze-depth", "--close")["is_open"] is False
    assert [row["lesson_id"] for row in _json(capsys, "lesson", "list")] == ["unfreeze-depth"]


def test_export_to_a_file_and_import_it_bound_to_another_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _json(capsys, "lesson", "create", "data-size", "--dataset", DATASET)
    out = tmp_path / "lesson.json"

    assert cli.main(["lesson", "export", "data-size", "--out", str(out)]) == 0
    imported = _json(capsys, "lesson", "import", str(out), "--dataset", "abcdefabcdef")

    assert json.loads(out.read_text())["title"] == "How much data do you need"
    assert imported["lesson_id"] == "data-size-2"
    assert load_lesson("data-size-2").settings["dataset_id"] == "abcdefabcdef"


def test_list_without_lessons_says_how_to_make_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lesson", "list"]) == 0

    assert "lesson create fe-vs-ft" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lesson", "open", "nope"], "There is no lesson 'nope'"),
        (["lesson", "open", "../etc"], "lowercase letters"),
        (["lesson", "import", "missing.json"], "Cannot read the lesson file"),
        (["lesson", "create", "fe-vs-ft", "--dataset", "xyz"], "dataset_id"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2

    assert message in assert_one_error_line(capsys.readouterr().err)
    assert list_lessons() == []
