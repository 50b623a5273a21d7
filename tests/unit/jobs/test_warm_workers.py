"""Warm workers of the local runner, with a fake warm worker instead of TensorFlow.

The fake warm worker (`FAKE_WARM_WORKER`) follows the protocol of ``python -m tl_core
warm-worker``: it creates its ready file, records its start, waits for one job line on
stdin, then *becomes* the fake worker of `queue_support` with ``os.execv`` (same pid), as
the real one runs the worker command in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.jobs.queue_support import CONFIG, FAKE_WORKER, state, wait_for, worker_calls
from tl_core.jobs import queue as jobs
from tl_core.jobs.scheduler import (
    WARM_ENV,
    WARM_START_ATTEMPTS,
    LocalProcessRunner,
    Scheduler,
    WorkerRef,
    warm_workers_enabled,
)

FAKE_WARM_WORKER = textwrap.dedent(
    """
    import json, os, sys

    mode, fake_worker, ready = sys.argv[1], sys.argv[2], sys.argv[4]
    with open(os.path.join(os.environ["TL_HOME"], "warm-starts.jsonl"), "a") as fh:
        start = {"pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
        fh.write(json.dumps(start) + "\\n")
    if mode == "die":
        sys.exit(5)
    open(ready, "w").close()
    line = sys.stdin.readline()
    os.remove(ready)
    if not line:
        sys.exit(0)
    job = json.loads(line)
    fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv(sys.executable, [sys.executable, fake_worker, mode, *job["args"]])
    """
)


@pytest.fixture
def make_warm_scheduler(
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Scheduler]]:
    """Return ``make(mode="wait", slots=1, gpus=0, warm_mode=mode)``: a scheduler whose
    runner keeps fake warm workers (`warm_mode` "die" makes them exit at once)."""
    monkeypatch.delenv(WARM_ENV, raising=False)
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    warm = tmp_path / "fake_warm_worker.py"
    warm.write_text(FAKE_WARM_WORKER)
    made: list[Scheduler] = []

    def make(
        mode: str = "wait", *, slots: int = 1, gpus: int = 0, warm_mode: str | None = None
    ) -> Scheduler:
        runner = LocalProcessRunner(
            command=[sys.executable, str(worker), mode],
            gpus=gpus,
            warm=True,
            warm_command=[sys.executable, str(warm), warm_mode or mode, str(worker)],
        )
        scheduler = Scheduler(runner=runner, slots=slots)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop()


def warm_starts() -> list[dict[str, object]]:
    """Every fake warm worker started so far: its pid and CUDA device."""
    path = Path(os.environ["TL_HOME"]) / "warm-starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ready_warm_worker(scheduler: Scheduler, slot: int = 0, *, not_pid: int = 0) -> WorkerRef:
    """Tick `scheduler` until a warm worker of `slot` (not `not_pid`) has done its imports;
    return it."""
    runner = scheduler.runner
    assert isinstance(runner, LocalProcessRunner)

    def ready() -> bool:
        warm = runner.warm_worker(slot)
        return warm is not None and warm.pid != not_pid

    wait_for(ready, scheduler)
    warm = runner.warm_worker(slot)
    assert warm is not None
    return warm


def job_in_warm_worker(scheduler: Scheduler) -> tuple[str, WorkerRef]:
    """Submit a job once a warm worker is ready and tick until that worker runs it."""
    warm = ready_warm_worker(scheduler)
    run_id = jobs.submit(CONFIG)
    scheduler.tick()
    wait_for(lambda: worker_calls(run_id) != [])
    return run_id, warm


def test_a_job_runs_in_the_warm_worker_started_before_it_and_a_new_one_is_started(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait")
    warm = ready_warm_worker(scheduler)
    run_id = jobs.submit(CONFIG)

    scheduler.tick()

    assert state(run_id) == "running"
    assert (jobs.get(run_id).pid, jobs.get(run_id).pid_start) == (warm.pid, warm.pid_start)
    wait_for(lambda: worker_calls(run_id) != [])
    next_warm = ready_warm_worker(scheduler)
    assert next_warm.pid != warm.pid
    assert [start["pid"] for start in warm_starts()] == [warm.pid, next_warm.pid]


def test_stop_ends_a_job_that_runs_in_a_warm_worker(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait")
    run_id, _ = job_in_warm_worker(scheduler)

    jobs.request_stop(run_id)

    wait_for(lambda: state(run_id) == "stopped", scheduler)


def test_a_completed_job_in_a_warm_worker_is_settled_like_a_cold_one(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("complete")
    ready_warm_worker(scheduler)
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "completed", scheduler)

    assert worker_calls(run_id)[0]["args"] == []


def test_a_killed_busy_warm_worker_leaves_its_run_interrupted_and_resumable(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait")
    run_id, warm = job_in_warm_worker(scheduler)

    os.killpg(warm.pid, signal.SIGKILL)

    wait_for(lambda: state(run_id) == "interrupted", scheduler)
    jobs.resume(run_id)
    wait_for(lambda: len(worker_calls(run_id)) == 2, scheduler)
    assert worker_calls(run_id)[1]["args"] == ["--resume"]


def test_a_warm_worker_that_dies_idle_is_replaced(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait")
    first = ready_warm_worker(scheduler)

    os.killpg(first.pid, signal.SIGKILL)

    second = ready_warm_worker(scheduler, not_pid=first.pid)
    assert [start["pid"] for start in warm_starts()] == [first.pid, second.pid]


def test_a_job_starts_cold_when_its_slot_has_no_live_warm_worker(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("complete", warm_mode="die")
    scheduler.tick()  # starts a warm worker that exits at once
    wait_for(lambda: warm_starts() != [])
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "completed", scheduler)

    assert jobs.get(run_id).pid not in {start["pid"] for start in warm_starts()}
    assert len(warm_starts()) <= WARM_START_ATTEMPTS  # no crash loop of warm workers


def test_warm_workers_start_with_the_gpu_of_their_slot(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait", slots=2, gpus=2)
    warm = {slot: ready_warm_worker(scheduler, slot).pid for slot in (0, 1)}
    run_ids = [jobs.submit(CONFIG) for _ in range(2)]

    scheduler.tick()

    cuda_of = {start["pid"]: start["cuda"] for start in warm_starts()}
    assert {slot: cuda_of[pid] for slot, pid in warm.items()} == {0: "0", 1: "1"}
    for run_id in run_ids:
        job = jobs.get(run_id)
        assert job.pid == warm[job.slot]
        wait_for(lambda run_id=run_id: worker_calls(run_id) != [])
        assert worker_calls(run_id)[0]["cuda"] == str(job.slot)


def test_stopping_the_scheduler_ends_its_idle_warm_workers(
    make_warm_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_warm_scheduler("wait")
    warm = ready_warm_worker(scheduler)

    scheduler.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(warm.pid, 0)


def test_a_runner_without_warm_workers_starts_none() -> None:
    runner = LocalProcessRunner(gpus=0, warm_command=[sys.executable, "-c", "pass"])

    runner.keep_warm(range(2))

    assert runner.warm_worker(0) is None and warm_starts() == []


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, True), ("1", True), ("0", False), ("off", False), ("False", False)],
)
def test_warm_workers_are_on_unless_the_environment_turns_them_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, enabled: bool
) -> None:
    if value is None:
        monkeypatch.delenv(WARM_ENV, raising=False)
    else:
        monkeypatch.setenv(WARM_ENV, value)

    assert warm_workers_enabled() is enabled
