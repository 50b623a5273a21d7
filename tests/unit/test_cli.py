"""The CLI contract: exit codes 0/2/1, one JSON document on stdout, one ``error:`` line."""

from __future__ import annotations

import getpass
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPORT_JSON_KEYS, class_folders, make_zip
from tl_core import cli
from tl_core.classroom import roster
from tl_core.classroom.identity import check_password, load_class_config
from tl_core.classroom.roster import join_class
from tl_core.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pets_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "pets.zip", class_folders({"cat": 3, "dog": 2}))


@pytest.fixture
def not_a_zip(tmp_path: Path) -> Path:
    path = tmp_path / "notes.zip"
    path.write_text("these are my notes, not a zip\n")
    return path


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tl_core", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def assert_one_error_line(stderr: str) -> str:
    assert stderr.startswith("error: ")
    assert stderr.endswith("\n")
    assert stderr.count("\n") == 1, f"expected one line, got: {stderr!r}"
    assert "Traceback" not in stderr
    return stderr


# --- through a real process (few: each costs a Python start) --------------------------


def test_inspect_data_json_prints_one_json_document_and_exits_0(
    pets_zip: Path, tl_home: Path
) -> None:
    result = run_cli("inspect-data", str(pets_zip), "--json", home=tl_home)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)  # the whole of stdout is one document
    assert doc["classes"] == {"cat": 3, "dog": 2}
    assert doc["num_images"] == 5
    assert doc["split"] is None
    assert (tl_home / "datasets" / doc["dataset_id"] / "report.json").is_file()


def test_inspect_data_of_a_bad_archive_exits_2_with_one_error_line(
    not_a_zip: Path, tl_home: Path
) -> None:
    result = run_cli("inspect-data", str(not_a_zip), "--json", home=tl_home)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "'notes.zip' cannot be opened as a zip archive" in assert_one_error_line(result.stderr)


def test_a_missing_argument_exits_2_with_one_error_line(tl_home: Path) -> None:
    result = run_cli("inspect-data", home=tl_home)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "archive" in assert_one_error_line(result.stderr)


def test_an_internal_failure_exits_1_without_a_traceback(pets_zip: Path, tmp_path: Path) -> None:
    home = tmp_path / "home-is-a-file"
    home.write_text("")  # the workspace cannot be created: an unexpected OSError

    result = run_cli("inspect-data", str(pets_zip), "--json", home=home)

    assert result.returncode == 1
    assert result.stdout == ""
    message = assert_one_error_line(result.stderr)
    assert message.startswith("error: internal failure (FileExistsError")
    assert "TL_DEBUG=1" in message


# --- in process ------------------------------------------------------------------------


def test_json_output_is_the_report_document(
    pets_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["inspect-data", str(pets_zip), "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    assert err == ""
    assert set(json.loads(out)) == REPORT_JSON_KEYS


def test_human_output_lists_classes_warnings_skipped_files_and_the_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = class_folders({"cat": 3, "dog": 2}, prefix="train/") | class_folders(
        {"cat": 1, "dog": 1}, prefix="val/"
    )
    entries |= {"train/cat/notes.txt": b"hi", "__MACOSX/._x": b""}
    path = make_zip(tmp_path / "pets.zip", entries)

    code = cli.main(["inspect-data", str(path)])

    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    lines = out.splitlines()
    assert lines[0] == "pets.zip: 7 images in 2 classes"
    assert "  cat: 4" in lines
    assert "  dog: 3" in lines
    assert "split: train 5, val 2" in lines
    assert any(line.startswith("skipped train/cat/notes.txt: not an image") for line in lines)
    assert "ignored 1 hidden or OS metadata files" in lines
    assert any(line.startswith("warning: Tiny dataset") for line in lines)
    assert lines[-1].startswith("dataset id: ")


@pytest.mark.parametrize(
    "argv",
    [[], ["inspect-data"], ["inspect-data", "a.zip", "--colour"], ["no-such-command"]],
    ids=["nothing", "no archive", "unknown option", "unknown command"],
)
def test_usage_errors_exit_2_with_one_error_line_pointing_to_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(argv)

    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert out == ""
    assert "--help" in assert_one_error_line(err)
    assert "usage:" not in err


def test_help_exits_0_and_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])

    assert caught.value.code == 0
    assert "inspect-data" in capsys.readouterr().out


def test_a_missing_archive_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["inspect-data", str(tmp_path / "gone.zip"), "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert out == ""
    assert "'gone.zip'" in assert_one_error_line(err)


def make_ingest_raise(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def raising(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("tl_core.data.ingest_archive", raising)


@pytest.mark.parametrize(
    ("error", "code", "stderr"),
    [
        (
            DataError("first line\n  second line.\nWhat to do."),
            cli.EXIT_BAD_INPUT,
            "error: first line second line. What to do.\n",
        ),
        (
            RuntimeError("boom"),
            cli.EXIT_INTERNAL,
            "error: internal failure (RuntimeError: boom). This is a bug in tl_core, not in "
            "your input; set TL_DEBUG=1 to see the traceback and report it.\n",
        ),
        (KeyboardInterrupt(), cli.EXIT_INTERNAL, "error: interrupted by the user.\n"),
    ],
    ids=["multi-line TLError", "unexpected exception", "interrupted"],
)
def test_a_failure_becomes_its_exit_code_and_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
    stderr: str,
) -> None:
    make_ingest_raise(monkeypatch, error)

    assert cli.main(["inspect-data", "x.zip", "--json"]) == code

    assert capsys.readouterr() == ("", stderr)


def test_tl_debug_adds_the_traceback_to_an_internal_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ingest_raise(monkeypatch, RuntimeError("boom"))
    monkeypatch.setenv("TL_DEBUG", "1")

    code = cli.main(["inspect-data", "x.zip"])

    err = capsys.readouterr().err
    assert code == cli.EXIT_INTERNAL
    assert err.startswith("error: internal failure (RuntimeError: boom)")
    assert "Traceback" in err


# --- class mode: the teacher password's hash and the roster -------------------------------


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_class_hash_password_prints_the_hash_of_one_line_of_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret pass\nignored second line\n"))

    code = cli.main(["class", "hash-password"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    assert err == ""
    assert out.count("\n") == 1
    assert check_password("s3cret pass", out.strip())
    assert "s3cret" not in out


def test_the_printed_hash_signs_the_teacher_in_from_the_secrets_section(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert cli.main(["class", "hash-password", "--json"]) == cli.EXIT_OK
    stored = json.loads(capsys.readouterr().out)["teacher_password_hash"]

    config = load_class_config({"code": "ABC123", "teacher_password_hash": stored}, environ={})

    assert config is not None
    assert check_password("s3cret", config.password_hash)
    assert not check_password("guess", config.password_hash)


def test_at_a_terminal_the_password_is_typed_twice_without_echo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal())
    typed = iter(["s3cret", "s3cret", "s3cret", "s3cert"])
    prompts: list[str] = []

    def no_echo(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr(getpass, "getpass", no_echo)

    assert cli.main(["class", "hash-password"]) == cli.EXIT_OK
    assert check_password("s3cret", capsys.readouterr().out.strip())
    assert prompts == ["Teacher password: ", "Type it again: "]

    assert cli.main(["class", "hash-password"]) == cli.EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert "The two passwords differ" in assert_one_error_line(err)


def test_an_empty_password_exits_2_with_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))

    code = cli.main(["class", "hash-password"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert out == ""
    assert "Expected a teacher password" in assert_one_error_line(err)


def test_class_without_a_subcommand_exits_2_pointing_to_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["class"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert out == ""
    assert "python -m tl_core class --help" in assert_one_error_line(err)


def test_class_students_lists_the_roster_in_joining_order(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(roster, "SIGNIN_DELAY_S", 0.0)
    config = load_class_config({"code": "ABC123", "teacher_password": "s3cret"}, environ={})
    assert config is not None
    for name in ("Ada", "Grace"):
        join_class(name, "abc123", config)

    assert cli.main(["class", "students", "--json"]) == cli.EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["Ada", "Grace"]
    assert all(isinstance(row["joined_at"], float) for row in rows)

    assert cli.main(["class", "students"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (joined ")[0] for line in lines] == ["Ada", "Grace"]


def test_class_students_of_an_empty_class_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["class", "students"]) == cli.EXIT_OK
    assert capsys.readouterr().out == "No student has joined the class yet.\n"
    assert cli.main(["class", "students", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == []
