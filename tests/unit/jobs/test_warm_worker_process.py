"""Real warm workers (``python -m tl_core warm-worker``) training tiny runs from the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.engine_helpers import epoch_lines, tiny_config, write_easy_archive
from tl_core.data import ingest_archive
from tl_core.jobs import queue as jobs
from tl_core.jobs.runs import read_status, run_path
from tl_core.jobs.scheduler import LocalProcessRunner, Scheduler, WorkerRef

pytestmark = pytest.mark.slow


def tick_until(scheduler: Scheduler, condition: Callable[[], bool], timeout: float = 180) -> None:
    """Tick `scheduler` every 0.2 s until `condition` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        scheduler.tick()
        time.sleep(0.2)


def epochs(run_id: str) -> int:
    """How many epoch lines the run has written so far."""
    root = run_path(run_id)
    return len(epoch_lines(root)) if (root / "metrics.jsonl").exists() else 0


def ready_warm_worker(scheduler: Scheduler, runner: LocalProcessRunner) -> WorkerRef:
    """Tick until slot 0's warm worker has imported TensorFlow; return it."""
    tick_until(scheduler, lambda: runner.warm_worker(0) is not None)
    warm = runner.warm_worker(0)
    assert warm is not None
    return warm


def test_queued_runs_train_in_warm_workers_and_stop_kill_and_resume_work_as_usual(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    dataset = ingest_archive(write_easy_archive(tmp_path / "easy.zip", per_class=16))
    runner = LocalProcessRunner(gpus=0, warm=True)
    scheduler = Scheduler(runner=runner, slots=1)
    try:
        first_warm = ready_warm_worker(scheduler, runner)
        done = jobs.submit(tiny_config(dataset.dataset_id, epochs=2))
        tick_until(scheduler, lambda: jobs.get(done).state == "completed")
        assert jobs.get(done).attempts == 1
        assert epochs(done) == 2
        assert f"runs in warm worker {first_warm.pid}" in (run_path(done) / "log.txt").read_text()

        second_warm = ready_warm_worker(scheduler, runner)
        assert second_warm.pid != first_warm.pid
        long = jobs.submit(tiny_config(dataset.dataset_id, epochs=200))
        tick_until(scheduler, lambda: epochs(long) > 0)
        assert read_status(run_path(long)).pid == second_warm.pid  # the process that trains
        os.killpg(second_warm.pid, signal.SIGKILL)
        tick_until(scheduler, lambda: jobs.get(long).state == "interrupted")

        third_warm = ready_warm_worker(scheduler, runner)
        jobs.resume(long)
        tick_until(scheduler, lambda: jobs.get(long).pid == third_warm.pid)
        epochs_before = epochs(long)
        tick_until(scheduler, lambda: epochs(long) > epochs_before)
        jobs.request_stop(long)
        tick_until(scheduler, lambda: jobs.get(long).state == "stopped")
    finally:
        scheduler.stop()
