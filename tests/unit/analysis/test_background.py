"""Background analyses: one process per analysis and model, results and errors kept on disk.

The commands here are ``inspect-data`` (no TensorFlow, so a process costs only a Python
start); the TensorFlow commands go through the same runner.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import class_folders, make_zip
from tests.unit.engine_helpers import tiny_config
from tl_core.analysis import background as analysis
from tl_core.analysis.background import (
    Analysis,
    analysis_folder,
    forget_analysis,
    request_analysis,
    result_path,
)
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import share_run
from tl_core.errors import AccessDenied, JobError
from tl_core.jobs import processes
from tl_core.jobs.runs import prepare_run


@pytest.fixture(autouse=True)
def tl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TL_HOME", str(home))
    return home


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "home" / "runs" / "20261123-100000-abcdef"
    root.mkdir(parents=True)
    (root / "model.keras").write_bytes(b"not loaded by these tests")
    return root


@pytest.fixture
def pets_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "pets.zip", class_folders({"cat": 3, "dog": 2}))


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The command lines started, while still starting them for real."""
    calls: list[list[str]] = []
    real = processes.spawn_detached

    def counting(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        calls.append(list(argv))
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "spawn_detached", counting)
    yield calls


def settle(request: Callable[[], Analysis], timeout: float = 60.0) -> Analysis:
    deadline = time.monotonic() + timeout
    while (state := request()).state == "running":
        assert time.monotonic() < deadline, "the analysis did not finish"
        time.sleep(0.1)
    return state


def test_an_analysis_runs_once_in_the_background_and_its_result_is_kept(
    run_dir: Path, pets_zip: Path, spawned: list[list[str]]
) -> None:
    args = ["inspect-data", str(pets_zip)]

    first = request_analysis(run_dir, args)
    again = request_analysis(run_dir, args)  # another session asking meanwhile
    done = settle(lambda: request_analysis(run_dir, args))

    assert first.state == again.state == "running"
    assert first.started_at is not None
    assert done.state == "ready"
    assert done.result["classes"] == {"cat": 3, "dog": 2}
    assert len(spawned) == 1
    assert json.loads(result_path(run_dir, args).read_text()) == done.result
    assert not list(run_dir.glob("analysis/*.pid"))
    # Later requests read the file: no process.
    assert request_analysis(run_dir, args).result == done.result
    assert len(spawned) == 1


def test_bad_input_fails_with_the_commands_error_line_and_is_not_a_bug(
    run_dir: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.zip"
    notes.write_text("not a zip")
    args = ["inspect-data", str(notes)]

    failed = settle(lambda: request_analysis(run_dir, args))

    assert failed.state == "failed"
    assert not failed.internal
    assert "zip" in failed.error.lower() and not failed.error.startswith("error:")
    assert failed.log is not None and failed.log.is_file()


def test_forgetting_a_failure_runs_the_analysis_again(
    run_dir: Path, tmp_path: Path, spawned: list[list[str]]
) -> None:
    archive = tmp_path / "late.zip"
    archive.write_text("not yet a zip")
    args = ["inspect-data", str(archive)]
    assert settle(lambda: request_analysis(run_dir, args)).state == "failed"
    assert request_analysis(run_dir, args).state == "failed"  # kept: no new process
    assert len(spawned) == 1

    make_zip(archive, class_folders({"cat": 2, "dog": 2}))
    forget_analysis(run_dir, args)

    assert settle(lambda: request_analysis(run_dir, args)).state == "ready"
    assert len(spawned) == 2


def test_a_process_that_died_without_a_result_reads_as_an_internal_failure(
    run_dir: Path,
) -> None:
    args = ["evaluate", str(run_dir)]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    marker = result_path(run_dir, args).with_suffix(".pid")
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"pid": int(dead.stdout), "start_time": 1, "started_at": 0}))

    state = request_analysis(run_dir, args, start=False)

    assert state.state == "failed" and state.internal
    assert "ended without a result" in state.error
    assert not marker.exists()


def test_a_marker_without_a_pid_is_a_start_in_progress_until_its_grace_ends(
    run_dir: Path,
) -> None:
    args = ["evaluate", str(run_dir)]
    marker = result_path(run_dir, args).with_suffix(".pid")
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"pid": None, "started_at": time.time()}))
    assert request_analysis(run_dir, args).state == "running"

    marker.write_text(json.dumps({"pid": None, "started_at": time.time() - 3600}))
    assert request_analysis(run_dir, args, start=False).state == "failed"


def test_not_starting_an_unknown_analysis_says_so(run_dir: Path) -> None:
    state = request_analysis(run_dir, ["evaluate", str(run_dir)], start=False)

    assert state.state == "failed"
    assert "not been started" in state.error
    assert not (run_dir / "analysis").exists()


def test_a_new_model_file_gets_fresh_analyses(run_dir: Path) -> None:
    args = ["evaluate", str(run_dir)]
    before = result_path(run_dir, args)

    (run_dir / "model.keras").write_bytes(b"a resumed run wrote a new model")

    assert result_path(run_dir, args) != before
    assert result_path(run_dir, args).name.startswith("evaluate-")
    assert result_path(run_dir, [*args, "--refresh"]) != result_path(run_dir, args)


def test_an_empty_command_is_refused(run_dir: Path) -> None:
    with pytest.raises(JobError, match="needs a command"):
        request_analysis(run_dir, [])


def test_analyses_beyond_the_free_slots_wait_their_turn(
    run_dir: Path, pets_zip: Path, tl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(analysis.SLOTS_ENV, "1")
    locks = tl_home / "locks"
    locks.mkdir(parents=True)
    args = ["inspect-data", str(pets_zip)]
    with (locks / "analysis-0.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another analysis holds the only slot
        request_analysis(run_dir, args)
        deadline = time.monotonic() + 30
        while not (waiting := request_analysis(run_dir, args)).waiting:
            assert time.monotonic() < deadline, "the analysis never said it waits"
            time.sleep(0.1)
        assert waiting.state == "running"
    # The slot is free again: the analysis goes ahead.
    done = settle(lambda: request_analysis(run_dir, args))
    assert done.state == "ready" and not done.waiting
    assert not list(run_dir.glob("analysis/*.waiting"))


@pytest.mark.parametrize(
    ("value", "slots"), [("", None), ("3", 3), ("0", "error"), ("two", "error")]
)
def test_the_number_of_slots_comes_from_the_environment(
    value: str, slots: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(analysis.SLOTS_ENV, value)
    if slots == "error":
        with pytest.raises(JobError, match="TL_ANALYSIS_SLOTS"):
            analysis.analysis_slots()
    elif slots is None:
        assert 1 <= analysis.analysis_slots() <= 4
    else:
        assert analysis.analysis_slots() == slots


def test_the_runner_writes_the_result_and_removes_its_marker(
    run_dir: Path, pets_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = run_dir / "analysis"
    folder.mkdir()
    (folder / "k.pid").write_text("{}")

    assert analysis.main([str(folder), "k", "inspect-data", str(pets_zip)]) == 0

    assert json.loads((folder / "k.json").read_text())["num_images"] == 5
    assert not (folder / "k.pid").exists()
    assert capsys.readouterr().out == ""  # the document went to the file, not stdout


# --- class mode: whose runs a student may analyse and export -------------------------------

ADA, GRACE = Identity.student("Ada"), Identity.student("Grace")


@pytest.fixture
def graces_run(run_dir: Path) -> Path:
    """`run_dir`, submitted by Grace in class mode."""
    prepare_run(run_dir, tiny_config("0123456789ab"), run_id=run_dir.name, owner="Grace")
    return run_dir


def _export_args(run_dir: Path) -> list[str]:
    return ["export", str(run_dir), "--format", "keras", "--out", str(run_dir / "export/m.keras")]


def test_a_student_cannot_analyse_another_students_run_and_nothing_is_written(
    graces_run: Path, pets_zip: Path, spawned: list[list[str]]
) -> None:
    for args in (["inspect-data", str(pets_zip)], _export_args(graces_run)):
        for start in (True, False):
            with pytest.raises(AccessDenied, match=r"belongs to Grace, so you cannot"):
                request_analysis(graces_run, args, start=start, actor=ADA)

    assert spawned == []
    assert not analysis_folder(graces_run).exists()


def test_a_student_analyses_a_shared_run_but_cannot_export_it(
    graces_run: Path, pets_zip: Path, spawned: list[list[str]]
) -> None:
    share_run(Identity.teacher(), graces_run.name)
    args = ["inspect-data", str(pets_zip)]

    done = settle(lambda: request_analysis(graces_run, args, actor=ADA))

    assert done.state == "ready"
    assert done.result["num_images"] == 5
    with pytest.raises(AccessDenied, match="so you cannot export it"):
        request_analysis(graces_run, _export_args(graces_run), actor=ADA)
    assert len(spawned) == 1


def test_the_owner_the_teacher_and_the_operator_may_analyse_and_export(
    graces_run: Path, pets_zip: Path
) -> None:
    args = ["inspect-data", str(pets_zip)]

    done = settle(lambda: request_analysis(graces_run, args, actor=GRACE))

    assert done.state == "ready"
    for actor in (Identity.teacher(), None):
        assert request_analysis(graces_run, args, actor=actor).result == done.result
    for actor in (GRACE, Identity.teacher(), None):
        not_started = request_analysis(
            graces_run, _export_args(graces_run), start=False, actor=actor
        )
        assert not_started.error == "This analysis has not been started."


def test_a_running_analysis_records_who_asked_for_it(
    graces_run: Path, pets_zip: Path, tl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(analysis.SLOTS_ENV, "1")
    locks = tl_home / "locks"
    locks.mkdir(parents=True)
    args = ["inspect-data", str(pets_zip)]
    with (locks / "analysis-0.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # keeps the analysis waiting, so its marker stays

        started = request_analysis(graces_run, args, actor=GRACE)
        (marker,) = analysis_folder(graces_run).glob("*.pid")
        asked_again = request_analysis(graces_run, args, actor=Identity.teacher())

        assert started.requested_by == "Grace"
        assert json.loads(marker.read_text())["requested_by"] == "Grace"
        assert asked_again.state == "running" and asked_again.requested_by == "Grace"
    assert settle(lambda: request_analysis(graces_run, args)).state == "ready"


def test_the_operators_analysis_records_no_requester(run_dir: Path, pets_zip: Path) -> None:
    args = ["inspect-data", str(pets_zip)]

    started = request_analysis(run_dir, args)

    assert started.requested_by is None
    assert settle(lambda: request_analysis(run_dir, args)).state == "ready"
    assert not (run_dir.parents[1] / "class").exists(), "single-user mode writes no class records"
