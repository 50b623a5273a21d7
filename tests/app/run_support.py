"""Helpers for the Train and Runs page tests: fabricated runs and a scheduler that fakes workers.

No test here trains: a run is a directory written by hand (what a worker would write),
and `FakeRunner` stands in for worker processes, so the real `Scheduler` moves jobs
through the queue without starting anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import ui.jobs
from tl_core import tl_home
from tl_core.jobs.queue import Job
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    append_jsonl,
    read_status,
    run_path,
    write_json_atomic,
    write_status,
)
from tl_core.jobs.scheduler import Scheduler, WorkerRef

#: A pid no worker has: the fake runner never starts a process.
FAKE_PID = 999_999


class FakeRunner:
    """A `tl_core.jobs.scheduler.Runner` whose "workers" live until `end` says they ended."""

    def __init__(self) -> None:
        self.alive: set[str] = set()

    def submit(self, job: Job) -> WorkerRef:
        """Pretend to start the worker of `job`."""
        self.alive.add(job.run_id)
        return WorkerRef(FAKE_PID, None)

    def status(self, job: Job) -> str:
        """``"running"`` until `end` was called for the job."""
        return "running" if job.run_id in self.alive else "exited"

    def stop(self, job: Job) -> None:
        """Raise the stop flag, as the local runner does."""
        RunFiles(run_path(job.run_id)).stop_flag.touch()

    def end(self, run_id: str, state: str | None = None, **changes: Any) -> None:
        """End the worker of `run_id`, first writing `state` (and `changes`) as it would."""
        if state is not None:
            root = run_path(run_id)
            status = read_status(root) or RunStatus()
            write_status(root, status.with_changes(state=state, pid=None, **changes))
        self.alive.discard(run_id)


def install_fake_scheduler(monkeypatch: pytest.MonkeyPatch) -> tuple[Scheduler, FakeRunner]:
    """Make the app use a real scheduler over ``TL_HOME`` with one slot and a `FakeRunner`,
    which ticks only when the test calls ``tick()``; return it and its runner.

    The queue's wait estimates (`tl_core.jobs.fairshare.queue_wait`) count one slot too."""
    monkeypatch.setenv("TL_GPU_SLOTS", "1")
    runner = FakeRunner()
    scheduler = Scheduler(tl_home(), runner=runner, slots=1)
    monkeypatch.setattr(ui.jobs, "scheduler", lambda: scheduler)
    return scheduler, runner


def epoch_line(epoch: int, val_accuracy: float, phase: str = "train") -> dict[str, Any]:
    """An epoch line of ``metrics.jsonl`` as `MetricsStream` writes it."""
    return {
        "epoch": epoch,
        "phase": phase,
        "loss": round(1.2 / epoch, 4),
        "accuracy": min(1.0, 0.4 + 0.1 * epoch),
        "val_loss": round(1.3 / epoch, 4),
        "val_accuracy": val_accuracy,
        "lr": 0.001,
        "seconds": 3.0,
        "time": time.time(),
    }


def batch_line(epoch: int, batch: int, batches: int, phase: str = "train") -> dict[str, Any]:
    """A batch progress line of ``metrics.jsonl``."""
    return {
        "type": "batch",
        "epoch": epoch,
        "batch": batch,
        "batches": batches,
        "phase": phase,
        "loss": 0.9,
        "accuracy": 0.6,
        "images_per_s": 32.0,
        "time": time.time(),
    }


def write_metrics(run_id: str, lines: Sequence[dict[str, Any]]) -> None:
    """Append `lines` to the run's ``metrics.jsonl``, as a worker does."""
    path = RunFiles(run_path(run_id)).metrics
    for line in lines:
        append_jsonl(path, line)


def fabricate_run(
    run_id: str,
    *,
    state: str,
    val_accuracies: Sequence[float] = (),
    total_epochs: int = 10,
    trainable_blocks: int = 3,
    total_blocks: int = 19,
    created: float | None = None,
    config: Mapping[str, Any] | None = None,
    owner: str | None = None,
    **status: Any,
) -> Path:
    """Write a run directory by hand, as a worker would have left it; return its root.

    Its config trains ``mobilenet_v2`` from scratch at 64 px on dataset ``0123456789ab``
    (`config` overrides or adds fields); ``run.json`` lists `total_blocks` blocks, the
    last `trainable_blocks` of them trainable, and names `owner` as a class server does
    (default ``None``: no owner, as outside class mode).
    """
    root = run_path(run_id)
    root.mkdir(parents=True)
    created = created if created is not None else time.time()
    blocks = [
        {"name": f"block_{i}", "params": 100, "trainable": i >= total_blocks - trainable_blocks}
        for i in range(total_blocks)
    ]
    stored = {
        "dataset_id": "0123456789ab",
        "backbone": "mobilenet_v2",
        "weights": "none",
        "image_size": 64,
        "epochs": total_epochs,
        "batch_size": 32,
    }
    write_json_atomic(
        RunFiles(root).config,
        {
            "run_id": run_id,
            "config": stored | dict(config or {}),
            "created": created,
            "image_size": 64,
            "blocks": blocks,
        }
        | ({"owner": owner} if owner is not None else {}),
    )
    epochs = len(val_accuracies)
    write_status(
        root,
        RunStatus(
            state=state,
            epoch=epochs,
            total_epochs=total_epochs,
            phase="train",
            created_at=created,
            started_at=created + 1,
            finished_at=None if state in ("queued", "running") else created + 61,
            **status,
        ),
    )
    write_metrics(run_id, [epoch_line(i + 1, acc) for i, acc in enumerate(val_accuracies)])
    return root


def chart_traces(app: AppTest) -> list[dict[str, Any]]:
    """The traces of the first plotly chart on the page, as plotly JSON."""
    (chart, *_) = app.get("plotly_chart")
    return json.loads(chart.proto.spec)["data"]


def texts(app: AppTest, kind: str) -> list[str]:
    """The texts of every element of `kind` (``"info"``, ``"caption"``, …), unescaped."""
    return [element.value.replace("\\", "") for element in getattr(app, kind)]
