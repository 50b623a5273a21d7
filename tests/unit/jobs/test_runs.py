"""Run directories: generated ids only, atomic JSON, metrics read while being written."""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from pathlib import Path

import pytest

from tl_core.errors import JobError
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    append_jsonl,
    new_run_id,
    read_json,
    read_metrics,
    read_shown_status,
    read_status,
    run_path,
    runs_dir,
    write_json_atomic,
    write_status,
)


def test_run_ids_are_utc_time_and_six_random_hex_digits() -> None:
    ids = {new_run_id() for _ in range(20)}

    assert len(ids) == 20
    for run_id in ids:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id)
        stamp = calendar.timegm(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
        assert abs(stamp - time.time()) < 120


def test_run_path_places_a_generated_id_under_the_runs_folder(tl_home: Path) -> None:
    run_id = new_run_id()

    path = run_path(run_id)

    assert path == tl_home.resolve() / "runs" / run_id
    assert runs_dir() == tl_home.resolve() / "runs"


@pytest.mark.parametrize(
    "run_id",
    [
        "../x",
        "",
        "..",
        "20261123-131500-a1b2c3/../../x",
        "20261123-131500-A1B2C3",
        "20261123-131500-a1b2c",
        "/etc/passwd",
        "20261123-131500-a1b2c3\n",
        None,
    ],
)
def test_run_path_refuses_anything_but_a_generated_id(run_id: object) -> None:
    with pytest.raises(JobError, match="Expected a run id like '20261123-131500-a1b2c3'"):
        run_path(run_id)  # type: ignore[arg-type]


def test_read_metrics_splits_epoch_lines_from_the_latest_batch_line(tmp_path: Path) -> None:
    metrics = RunFiles(tmp_path).metrics
    append_jsonl(metrics, {"type": "batch", "epoch": 1, "batch": 1})
    append_jsonl(metrics, {"epoch": 1, "loss": 0.9})
    append_jsonl(metrics, {"type": "batch", "epoch": 2, "batch": 3})

    epochs, last_batch = read_metrics(tmp_path)

    assert epochs == [{"epoch": 1, "loss": 0.9}]
    assert last_batch == {"type": "batch", "epoch": 2, "batch": 3}


def test_read_metrics_ignores_a_half_written_last_line(tmp_path: Path) -> None:
    metrics = RunFiles(tmp_path).metrics
    append_jsonl(metrics, {"epoch": 1, "loss": 0.9})
    with metrics.open("a") as fh:
        fh.write('{"epoch": 2, "lo')

    epochs, last_batch = read_metrics(tmp_path)

    assert epochs == [{"epoch": 1, "loss": 0.9}]
    assert last_batch is None


def test_read_metrics_of_a_run_without_metrics_is_empty(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == ([], None)


def test_write_json_atomic_writes_readable_json_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "doc.json"

    write_json_atomic(path, {"path": tmp_path, "n": 1})
    write_json_atomic(path, {"n": 2, "name": "café"})

    assert json.loads(path.read_text()) == {"n": 2, "name": "café"}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_a_write_that_fails_before_the_rename_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "status.json"
    write_json_atomic(path, {"state": "running"})

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_json_atomic(path, {"state": "completed", "pad": "x" * 10_000})

    assert json.loads(path.read_text()) == {"state": "running"}


def test_read_json_returns_the_default_for_missing_or_invalid_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')

    assert read_json(tmp_path / "missing.json", {}) == {}
    assert read_json(broken) is None


def test_status_round_trips_and_ignores_keys_it_does_not_know(tmp_path: Path) -> None:
    status = RunStatus(state="running", pid=123, epoch=2, total_epochs=5, phase="head")

    write_status(tmp_path, status)
    doc = json.loads(RunFiles(tmp_path).status.read_text())
    RunFiles(tmp_path).status.write_text(json.dumps(doc | {"from_the_future": 1}))

    assert read_status(tmp_path) == status
    assert read_status(tmp_path / "elsewhere") is None


def test_a_damaged_status_file_is_shown_as_a_run_that_was_running(tmp_path: Path) -> None:
    RunFiles(tmp_path).status.write_text('{"state": "runn')

    assert read_status(tmp_path) is None
    assert read_shown_status(tmp_path).state == "running"
    assert read_shown_status(tmp_path / "elsewhere") is None


def test_status_with_changes_refreshes_updated_at() -> None:
    status = RunStatus(state="queued", updated_at=0.0)

    changed = status.with_changes(state="running")

    assert (changed.state, status.state) == ("running", "queued")
    assert changed.updated_at > 0.0


def test_run_files_name_the_documented_layout(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)

    names = [
        files.config,
        files.status,
        files.metrics,
        files.drift,
        files.drift_history,
        files.model,
        files.checkpoints,
        files.tensorboard,
        files.log,
        files.stop_flag,
    ]

    assert [p.relative_to(tmp_path).as_posix() for p in names] == [
        "run.json",
        "status.json",
        "metrics.jsonl",
        "drift.json",
        "drift_history.jsonl",
        "model.keras",
        "checkpoints",
        "tensorboard",
        "log.txt",
        "STOP",
    ]
