"""A run has exactly one writer: the process holding its ``.writer.lock``.

A process that holds the lock stands in for a worker the queue lost track of (a server
killed between claiming a job and recording its worker). While it lives, nothing may start
a second writer or write the run's ``status.json``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.jobs.queue_support import (
    CONFIG,
    claim_without_starting,
    hold_writer_lock,
    state,
    wait_for,
    worker_calls,
)
from tl_core.errors import JobError
from tl_core.jobs import queue as jobs
from tl_core.jobs.runs import RunFiles, RunStatus, append_jsonl, run_path, write_status
from tl_core.jobs.scheduler import Scheduler


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Inode and bytes of the files a writer owns: a replaced file changes its inode."""
    files = RunFiles(root)
    return {
        path.name: (path.stat().st_ino, path.read_bytes())
        for path in (files.status, files.metrics)
        if path.exists()
    }


def _trained_run(job_state: str) -> tuple[str, Path]:
    """A run whose worker wrote two epochs and is (as far as `job_state` says) not running."""
    run_id = jobs.submit(CONFIG)
    root = run_path(run_id)
    write_status(root, RunStatus(state="running", pid=4242, epoch=2, total_epochs=5))
    for epoch in (1, 2):
        append_jsonl(RunFiles(root).metrics, {"epoch": epoch, "val_accuracy": 0.5})
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn, conn:
        conn.execute("UPDATE jobs SET state = ?, attempts = 1", (job_state,))
    return run_id, root


@pytest.mark.parametrize("job_state", ["interrupted", "stopped"])
def test_resuming_a_run_whose_writer_lock_is_held_is_refused_and_changes_nothing(
    job_state: str,
) -> None:
    run_id, root = _trained_run(job_state)
    with hold_writer_lock(root):
        before, job_before = _snapshot(root), jobs.get(run_id)

        with pytest.raises(JobError, match=r"still being trained .* Wait for it or stop it"):
            jobs.resume(run_id)

        assert _snapshot(root) == before
        assert jobs.get(run_id) == job_before


def test_resuming_a_command_line_run_that_is_training_names_its_writer(tl_home: Path) -> None:
    root = tl_home / "runs" / "20261123-131500-a1b2c3"
    root.mkdir(parents=True)
    with hold_writer_lock(root), pytest.raises(JobError, match="still being trained"):
        jobs.resume(root.name)


def test_a_new_scheduler_keeps_a_claimed_run_whose_writer_lock_is_held_running(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    run_id = jobs.submit(CONFIG)
    claim_without_starting(run_id)
    root = run_path(run_id)
    with hold_writer_lock(root):
        before = _snapshot(root)
        scheduler = make_scheduler("wait")

        for _ in range(3):
            scheduler.tick()

        assert state(run_id) == "running"
        assert "re-attached" in (jobs.get(run_id).note or "")
        assert _snapshot(root) == before
        assert worker_calls(run_id) == []


def test_a_claim_whose_worker_never_started_is_queued_again_after_the_grace_period(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    run_id = jobs.submit(CONFIG)
    claim_without_starting(run_id)
    scheduler = make_scheduler("complete")

    wait_for(lambda: state(run_id) == "completed", scheduler)

    assert len(worker_calls(run_id)) == 1
    assert jobs.get(run_id).attempts == 1


def test_a_claim_younger_than_the_grace_period_is_left_to_its_worker(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    run_id = jobs.submit(CONFIG)
    claim_without_starting(run_id, age_s=0)
    scheduler = make_scheduler("complete")

    scheduler.tick()
    time.sleep(0.2)
    scheduler.tick()

    assert state(run_id) == "running"
    assert worker_calls(run_id) == []


def test_the_server_writes_no_status_and_starts_no_worker_while_the_lock_is_held(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    run_id = jobs.submit(CONFIG)
    root = run_path(run_id)
    scheduler = make_scheduler("wait")
    with hold_writer_lock(root):
        before = _snapshot(root)

        for _ in range(3):
            scheduler.tick()
        message = jobs.request_stop(run_id)
        with pytest.raises(JobError):
            jobs.resume(run_id)

        assert _snapshot(root) == before
        assert worker_calls(run_id) == []
        assert "still being written" in message
        assert RunFiles(root).stop_flag.exists()
    scheduler.tick()
    assert worker_calls(run_id) == []
    assert state(run_id) == "stopped"


def test_resume_writes_the_queued_status_before_the_job_can_be_claimed(
    make_scheduler: Callable[..., Scheduler], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = _trained_run("interrupted")
    scheduler = make_scheduler("wait")
    committed_states: list[str] = []
    real_write_status = jobs.write_status

    def write_and_look(root: Path, status: RunStatus) -> None:
        # A scheduler that claimed the job at this moment would start a worker whose
        # status this write would then overwrite: the queue must not say queued yet.
        committed_states.append(_committed_state(run_id))
        real_write_status(root, status)

    monkeypatch.setattr(jobs, "write_status", write_and_look)
    jobs.resume(run_id)
    monkeypatch.setattr(jobs, "write_status", real_write_status)

    assert committed_states == ["interrupted"]
    wait_for(lambda: len(worker_calls(run_id)) == 1, scheduler)
    assert worker_calls(run_id)[0]["args"] == ["--resume"]


def _committed_state(run_id: str) -> str:
    """The job's state as another process sees it now (committed transactions only)."""
    with contextlib.closing(sqlite3.connect(jobs.queue_path(), timeout=0.1)) as conn:
        (value,) = conn.execute("SELECT state FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
    return str(value)
