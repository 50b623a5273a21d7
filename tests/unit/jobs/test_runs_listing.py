"""Listing runs from their folders alone: what the Runs page shows after a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tl_core.config import RunConfig
from tl_core.errors import JobError
from tl_core.jobs.runs import (
    MetricsFollower,
    RunFiles,
    RunStatus,
    RunSummary,
    append_jsonl,
    best_epoch,
    list_runs,
    prepare_run,
    read_json,
    run_path,
    runs_dir,
    summarize_run,
    write_json_atomic,
    write_status,
)


def _run(run_id: str, *, created: float, blocks: list[bool] | None = None) -> Path:
    """A run folder as `prepare_run` leaves it, plus the worker's block plan when given."""
    root = run_path(run_id)
    prepare_run(root, RunConfig(dataset_id="0123456789ab", epochs=4), run_id=run_id)
    doc = read_json(RunFiles(root).config) | {"created": created, "image_size": 96}
    if blocks is not None:
        doc["blocks"] = [{"name": f"b{i}", "trainable": t} for i, t in enumerate(blocks)]
    write_json_atomic(RunFiles(root).config, doc)
    return root


def test_runs_are_listed_newest_first_from_their_folders(tl_home: Path) -> None:
    _run("20261120-090000-aaaaaa", created=100.0)
    _run("20261123-090000-bbbbbb", created=300.0)
    _run("20261121-090000-cccccc", created=200.0)

    assert [run.run_id for run in list_runs()] == [
        "20261123-090000-bbbbbb",
        "20261121-090000-cccccc",
        "20261120-090000-aaaaaa",
    ]


def test_folders_that_are_not_runs_are_left_out(tl_home: Path) -> None:
    _run("20261120-090000-aaaaaa", created=100.0)
    (runs_dir() / "notes").mkdir()
    (runs_dir() / "20261121-090000-dddddd").mkdir()  # being created: no run.json yet
    (runs_dir() / "README.txt").write_text("hi")

    assert [run.run_id for run in list_runs()] == ["20261120-090000-aaaaaa"]


def test_a_summary_holds_the_best_epoch_the_freeze_plan_and_the_times(tl_home: Path) -> None:
    root = _run("20261120-090000-aaaaaa", created=100.0, blocks=[False, False, True, True])
    write_status(
        root,
        RunStatus(
            state="completed",
            epoch=3,
            total_epochs=4,
            phase="train",
            created_at=100.0,
            started_at=110.0,
            finished_at=185.0,
            note="retried at batch size 16 after running out of memory",
        ),
    )
    for epoch, accuracy in enumerate((0.5, 0.75, 0.75), start=1):
        append_jsonl(RunFiles(root).metrics, {"type": "batch", "epoch": epoch, "batch": 1})
        append_jsonl(RunFiles(root).metrics, {"epoch": epoch, "val_accuracy": accuracy})

    summary = summarize_run("20261120-090000-aaaaaa")

    assert summary.state == "completed"
    assert (summary.best_val_accuracy, summary.best_epoch) == (0.75, 2)
    assert summary.freeze_summary == "2/4 blocks trainable"
    assert (summary.epochs_done, summary.total_epochs) == (3, 4)
    assert summary.duration() == 75.0
    assert summary.backbone == "mobilenet_v2"
    assert (summary.weights, summary.image_size) == ("imagenet", 96)
    assert summary.created_at == 100.0
    assert summary.note == "retried at batch size 16 after running out of memory"


def test_a_queued_run_has_no_results_yet(tl_home: Path) -> None:
    _run("20261120-090000-aaaaaa", created=100.0)

    summary = summarize_run("20261120-090000-aaaaaa")

    assert summary.state == "queued"
    assert summary.best_val_accuracy is None
    assert summary.freeze_summary == ""
    assert summary.duration() is None


def test_a_running_run_lasts_until_now() -> None:
    summary = RunSummary("20261120-090000-aaaaaa", "running", 0.0, started_at=50.0)

    assert summary.duration(now=80.0) == 30.0


@pytest.mark.parametrize("run_id", ["../etc", "20261120-090000-aaaaaa"])
def test_a_malformed_or_unknown_run_id_is_refused(tl_home: Path, run_id: str) -> None:
    with pytest.raises(JobError, match="run"):
        summarize_run(run_id)


def test_best_epoch_skips_lines_without_validation_accuracy() -> None:
    lines = [{"epoch": 1}, {"epoch": 2, "val_accuracy": 0.4}, {"epoch": 3, "val_accuracy": None}]

    assert best_epoch(lines) == {"epoch": 2, "val_accuracy": 0.4}
    assert best_epoch([{"epoch": 1}]) is None


def test_a_follower_reads_each_line_once_as_the_file_grows(tmp_path: Path) -> None:
    follower = MetricsFollower(tmp_path)
    metrics = RunFiles(tmp_path).metrics
    assert follower.read() == ([], None)

    append_jsonl(metrics, {"type": "batch", "epoch": 1, "batch": 1})
    append_jsonl(metrics, {"epoch": 1, "val_accuracy": 0.5})
    assert follower.read() == (
        [{"epoch": 1, "val_accuracy": 0.5}],
        {"type": "batch", "epoch": 1, "batch": 1},
    )

    append_jsonl(metrics, {"type": "batch", "epoch": 2, "batch": 1})
    epochs, last_batch = follower.read()
    assert epochs == [{"epoch": 1, "val_accuracy": 0.5}]
    assert last_batch == {"type": "batch", "epoch": 2, "batch": 1}


def test_a_follower_waits_for_a_half_written_line(tmp_path: Path) -> None:
    follower = MetricsFollower(tmp_path)
    metrics = RunFiles(tmp_path).metrics
    metrics.write_text('{"epoch": 1, "val_acc')
    assert follower.read() == ([], None)

    with metrics.open("a") as fh:
        fh.write('uracy": 0.5}\n')

    assert follower.read()[0] == [{"epoch": 1, "val_accuracy": 0.5}]


def test_a_follower_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    follower = MetricsFollower(tmp_path)
    metrics = RunFiles(tmp_path).metrics
    for epoch in (1, 2, 3):
        append_jsonl(metrics, {"epoch": epoch})
    assert len(follower.read()[0]) == 3

    # What a resumed run does: keep the epochs up to its checkpoint, then train on.
    replacement = tmp_path / "kept.jsonl"
    replacement.write_text('{"epoch": 1}\n')
    os.replace(replacement, metrics)
    append_jsonl(metrics, {"epoch": 2, "resumed": True})

    assert follower.read()[0] == [{"epoch": 1}, {"epoch": 2, "resumed": True}]
