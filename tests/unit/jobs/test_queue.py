"""The job queue and its scheduler, with a fake worker script instead of TensorFlow training.

Every worker process a test starts is killed and reaped afterwards (`conftest.py`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.jobs.queue_support import (
    CONFIG,
    ROOT,
    kill_worker,
    state,
    wait_for,
    worker_calls,
)
from tl_core import cli
from tl_core.classroom.identity import Identity
from tl_core.errors import ConfigError, JobError
from tl_core.fsutil import lock_held
from tl_core.jobs import queue as jobs
from tl_core.jobs.runs import RunFiles, read_json, read_status, run_path
from tl_core.jobs.scheduler import SLOTS_ENV, JobEvent, LocalProcessRunner, Scheduler

# --- the queue ------------------------------------------------------------------------------


def test_submit_prepares_the_run_and_queues_it() -> None:
    run_id = jobs.submit(CONFIG)

    job = jobs.get(run_id)
    assert (job.state, job.attempts, job.pid, job.slot, job.resume) == (
        "queued",
        0,
        None,
        None,
        False,
    )
    assert read_json(RunFiles(run_path(run_id)).config)["config"] == CONFIG.to_json()
    assert read_status(run_path(run_id)).state == "queued"
    assert jobs.queue_position(run_id) == 1


def test_owner_is_stored_and_read_back() -> None:
    mine = jobs.submit(CONFIG, actor=Identity.student("ada"))
    anyone = jobs.submit(CONFIG)

    assert jobs.get(mine).owner == "ada"
    assert {job.run_id: job.owner for job in jobs.list_jobs()} == {mine: "ada", anyone: None}


def test_queue_file_records_its_schema_version_and_uses_wal(tl_home: Path) -> None:
    jobs.submit(CONFIG)

    with contextlib.closing(sqlite3.connect(tl_home / "jobs.sqlite")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == jobs.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert {"owner", "slot", "pid", "attempts", "batch_size_override", "note"} <= columns


def test_queue_positions_follow_submission_order() -> None:
    first, second, third = (jobs.submit(CONFIG) for _ in range(3))
    assert [job.run_id for job in jobs.list_jobs()] == [first, second, third]
    assert [jobs.queue_position(r) for r in (first, second, third)] == [1, 2, 3]

    jobs.request_stop(second)

    assert [jobs.queue_position(r) for r in (first, second, third)] == [1, None, 2]


def test_unknown_and_malformed_run_ids_are_refused() -> None:
    with pytest.raises(JobError, match="Unknown run id '20990101-000000-abcdef'"):
        jobs.get("20990101-000000-abcdef")
    with pytest.raises(JobError, match="Expected a run id"):
        jobs.request_stop("../../etc")


def test_an_unreadable_queue_raises_job_error_and_keeps_no_orphan_run(tl_home: Path) -> None:
    jobs.queue_path().write_bytes(b"this is not a database" * 100)

    with pytest.raises(JobError, match=r"cannot be read .* Move it aside"):
        jobs.list_jobs()
    with pytest.raises(JobError, match="cannot be read"):
        jobs.submit(CONFIG)
    assert list((tl_home / "runs").iterdir()) == []


def test_a_queue_from_a_newer_version_is_refused() -> None:
    jobs.list_jobs()
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn:
        conn.execute("PRAGMA user_version = 99")

    with pytest.raises(JobError, match="schema version 99, newer than"):
        jobs.list_jobs()


def test_concurrent_submits_from_threads_and_processes_keep_the_queue_consistent(
    tl_home: Path,
) -> None:
    code = (
        "from tl_core.jobs import queue as jobs; from tl_core.config import RunConfig\n"
        "for _ in range(10): jobs.submit(RunConfig(dataset_id='0123456789ab'))"
    )
    env = os.environ | {"TL_HOME": str(tl_home), "PYTHONPATH": str(ROOT)}
    others = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: jobs.submit(CONFIG), range(40)))
    assert [process.wait(timeout=60) for process in others] == [0, 0]

    queued = jobs.list_jobs()
    assert len(queued) == 60
    assert set(ids) <= {job.run_id for job in queued}
    assert sorted(jobs.queue_position(job.run_id) for job in queued) == list(range(1, 61))
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- starting, stopping and settling jobs ---------------------------------------------------


def test_scheduler_starts_jobs_fifo_within_the_slot_limit(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait", slots=1)
    first, second = jobs.submit(CONFIG), jobs.submit(CONFIG)

    events = scheduler.tick()

    assert (state(first), state(second)) == ("running", "queued")
    assert jobs.queue_position(second) == 1
    assert [(e.run_id, e.before, e.after) for e in events] == [(first, "queued", "running")]
    jobs.request_stop(first)
    wait_for(lambda: state(second) == "running", scheduler)
    assert state(first) == "stopped"
    assert worker_calls(first)[0]["args"] == []


def test_each_gpu_slot_gets_its_own_device(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler("wait", slots=2, gpus=2)
    run_ids = [jobs.submit(CONFIG) for _ in range(3)]

    scheduler.tick()

    assert [state(r) for r in run_ids] == ["running", "running", "queued"]
    assert sorted(jobs.get(r).slot for r in run_ids[:2]) == [0, 1]
    wait_for(lambda: all(worker_calls(r) for r in run_ids[:2]))
    devices = {r: worker_calls(r)[0]["cuda"] for r in run_ids[:2]}
    assert devices == {r: str(jobs.get(r).slot) for r in run_ids[:2]}


def test_stopping_a_queued_job_means_it_never_starts(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait", slots=1)
    first, second = jobs.submit(CONFIG), jobs.submit(CONFIG)
    scheduler.tick()

    message = jobs.request_stop(second)

    assert "never started" in message
    assert state(second) == "stopped"
    assert read_status(run_path(second)).state == "stopped"
    jobs.request_stop(first)
    wait_for(lambda: state(first) == "stopped", scheduler)
    scheduler.tick()
    assert state(second) == "stopped"
    assert worker_calls(second) == []


def test_stopping_a_running_job_raises_its_flag_and_the_worker_ends_stopped(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait")
    run_id = jobs.submit(CONFIG)
    scheduler.tick()
    wait_for(lambda: len(worker_calls(run_id)) == 1)

    message = jobs.request_stop(run_id)

    assert "stops after the current batch" in message
    assert RunFiles(run_path(run_id)).stop_flag.exists()
    assert jobs.get(run_id).stop_requested
    wait_for(lambda: state(run_id) == "stopped", scheduler)
    assert read_status(run_path(run_id)).state == "stopped"
    assert (jobs.get(run_id).pid, jobs.get(run_id).slot) == (None, None)


def test_a_stop_requested_before_the_worker_starts_still_stops_it(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait")
    run_id = jobs.submit(CONFIG)
    scheduler.tick()

    jobs.request_stop(run_id)  # the worker clears the flag as it starts; the scheduler re-raises it

    wait_for(lambda: state(run_id) == "stopped", scheduler)


def test_stopping_a_finished_job_changes_nothing_and_says_so(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("complete")
    run_id = jobs.submit(CONFIG)
    wait_for(lambda: state(run_id) == "completed", scheduler)

    message = jobs.request_stop(run_id)

    assert message.endswith("is not running (it is completed); there is nothing to stop.")
    assert state(run_id) == "completed"
    assert not RunFiles(run_path(run_id)).stop_flag.exists()


def test_a_killed_worker_leaves_its_job_interrupted(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait")
    run_id = jobs.submit(CONFIG)
    scheduler.tick()

    kill_worker(run_id)

    wait_for(lambda: state(run_id) == "interrupted", scheduler)
    status = read_status(run_path(run_id))
    assert (status.state, status.error_kind, status.pid) == ("interrupted", "interrupted", None)
    assert "Resume the run" in status.error
    assert jobs.get(run_id).pid is None


def test_a_worker_that_exits_without_a_final_state_leaves_its_job_interrupted(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("vanish")
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "interrupted", scheduler)

    assert read_status(run_path(run_id)).state == "interrupted"


def test_a_worker_that_cannot_start_leaves_its_job_interrupted_with_the_reason(
    make_scheduler: Callable[..., Scheduler], tmp_path: Path
) -> None:
    scheduler = make_scheduler(command=[str(tmp_path / "no-such-worker")])
    run_id = jobs.submit(CONFIG)

    scheduler.tick()

    assert state(run_id) == "interrupted"
    assert "could not be started" in read_status(run_path(run_id)).error


def test_out_of_memory_is_retried_once_at_half_the_batch_size_with_a_note(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("oom-once")
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "completed", scheduler)

    assert [call["args"] for call in worker_calls(run_id)] == [
        [],
        ["--resume", "--batch-size", "16"],
    ]
    job = jobs.get(run_id)
    assert (job.attempts, job.batch_size_override) == (2, 16)
    note = "retried at batch size 16 after running out of memory"
    assert read_status(run_path(run_id)).note == note


def test_out_of_memory_after_the_retry_fails_the_run(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("oom")
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "failed", scheduler)
    for _ in range(3):
        scheduler.tick()

    assert len(worker_calls(run_id)) == 2
    assert state(run_id) == "failed"
    assert read_status(run_path(run_id)).error_kind == "oom"


# --- resume ---------------------------------------------------------------------------------


def test_resume_queues_an_interrupted_job_again_with_the_resume_flag(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait")
    run_id = jobs.submit(CONFIG)
    scheduler.tick()
    kill_worker(run_id)
    wait_for(lambda: state(run_id) == "interrupted", scheduler)

    job = jobs.resume(run_id)

    assert (job.state, job.resume, job.attempts) == ("queued", True, 0)
    assert jobs.queue_position(run_id) == 1
    status = read_status(run_path(run_id))
    assert (status.state, status.error) == ("queued", None)
    wait_for(lambda: len(worker_calls(run_id)) == 2, scheduler)
    assert worker_calls(run_id)[1]["args"] == ["--resume"]


def test_resume_refuses_completed_queued_and_unknown_runs(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("complete")
    done = jobs.submit(CONFIG)
    wait_for(lambda: state(done) == "completed", scheduler)
    waiting = jobs.submit(CONFIG)

    with pytest.raises(JobError, match="already completed; there is nothing to resume"):
        jobs.resume(done)
    with pytest.raises(JobError, match="already queued"):
        jobs.resume(waiting)
    with pytest.raises(JobError, match="Unknown run id"):
        jobs.resume("20990101-000000-abcdef")


def test_resuming_a_failed_run_needs_a_checkpoint_and_keeps_the_smaller_batch(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("oom")
    run_id = jobs.submit(CONFIG)
    wait_for(lambda: state(run_id) == "failed", scheduler)

    with pytest.raises(JobError, match="failed before saving a checkpoint"):
        jobs.resume(run_id)
    checkpoints = RunFiles(run_path(run_id)).checkpoints
    checkpoints.mkdir()
    (checkpoints / "last.json").write_text("{}")
    job = jobs.resume(run_id)

    assert (job.state, job.attempts, job.batch_size_override) == ("queued", 0, 16)
    note = "retried at batch size 16 after running out of memory"
    assert read_status(run_path(run_id)).note == note


# --- several schedulers, restarts -----------------------------------------------------------


def test_a_second_scheduler_in_the_same_home_is_passive_until_the_first_stops(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    first, second = make_scheduler("wait"), make_scheduler("wait")
    first.tick()
    second.tick()
    run_id = jobs.submit(CONFIG)

    assert second.tick() == [JobEvent(run_id, None, "queued")]
    assert (first.active, second.active) == (True, False)
    assert state(run_id) == "queued"
    first.tick()
    assert [(e.before, e.after) for e in second.tick()] == [("queued", "running")]

    first.stop()
    second.tick()

    assert second.active
    assert second.lock_path.read_text() == f"{os.getpid()}\n"


def test_a_new_scheduler_interrupts_jobs_whose_worker_died_and_watches_live_ones(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    old = make_scheduler("wait", slots=2)
    dead, alive = jobs.submit(CONFIG), jobs.submit(CONFIG)
    old.tick()
    wait_for(lambda: len(worker_calls(alive)) == 1)
    old.stop()  # the server restarts: its workers carry on
    kill_worker(dead)

    new = make_scheduler("wait", slots=2)
    wait_for(lambda: state(dead) == "interrupted", new)

    assert state(alive) == "running"
    jobs.request_stop(alive)
    wait_for(lambda: state(alive) == "stopped", new)


def test_a_scheduler_that_becomes_active_removes_leftovers_of_killed_writers(
    make_scheduler: Callable[..., Scheduler], tl_home: Path
) -> None:
    leftover = tl_home / "runs" / "20261123-131500-a1b2c3" / "model.tmp.keras"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a model")
    passive_first = make_scheduler("wait")
    passive_first.tick()
    leftover.write_bytes(b"half a model")  # the first one cleaned; a passive one must not
    make_scheduler("wait").tick()
    assert leftover.exists()

    passive_first.stop()
    make_scheduler("wait").tick()

    assert not leftover.exists()


def test_a_reused_pid_is_not_taken_for_the_worker(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    old = make_scheduler("wait")
    run_id = jobs.submit(CONFIG)
    old.tick()
    old.stop()
    kill_worker(run_id)
    wait_for(lambda: not lock_held(run_path(run_id)))
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn, conn:
        # This test's own process: alive, but not the process recorded at launch.
        conn.execute("UPDATE jobs SET pid = ?, pid_start = 1", (os.getpid(),))

    make_scheduler("wait").tick()

    assert state(run_id) == "interrupted"


def test_the_background_scheduler_runs_jobs_until_stopped(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("complete")
    scheduler.start_background(interval=0.01)
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "completed")
    scheduler.stop()

    assert not scheduler.active


def test_slots_default_to_the_environment_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = LocalProcessRunner(gpus=0)
    monkeypatch.setenv(SLOTS_ENV, "3")
    assert Scheduler(runner=runner).slots == 3

    monkeypatch.setenv(SLOTS_ENV, "none")
    with pytest.raises(ConfigError, match="Expected `TL_GPU_SLOTS` to be a positive integer"):
        Scheduler(runner=runner)
    with pytest.raises(ConfigError, match="Expected `slots` to be at least 1"):
        Scheduler(runner=runner, slots=0)


def test_job_events_read_as_one_line() -> None:
    event = JobEvent("20261123-131500-a1b2c3", "queued", "running", slot=0, pid=42, note="hi")

    assert str(event) == "20261123-131500-a1b2c3 queued -> running (slot 0, pid 42): hi"


# --- python -m tl_core scheduler ------------------------------------------------------------


def test_cli_scheduler_once_says_it_is_active_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["scheduler", "--once"]) == 0

    assert capsys.readouterr().out.startswith("scheduler active in ")


def test_cli_scheduler_is_passive_while_another_holds_the_lock(
    make_scheduler: Callable[..., Scheduler], capsys: pytest.CaptureFixture[str]
) -> None:
    make_scheduler().tick()

    assert cli.main(["scheduler", "--once"]) == 0

    assert capsys.readouterr().out.startswith("scheduler passive: another process holds ")


def test_cli_scheduler_exits_0_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)

    assert cli.main(["scheduler", "--interval", "0.5"]) == 0


def test_cli_scheduler_refuses_a_non_positive_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["scheduler", "--interval", "0"]) == 2

    assert capsys.readouterr().err.startswith("error: --interval must be a positive number")
