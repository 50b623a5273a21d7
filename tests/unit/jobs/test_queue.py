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
    hold_writer_lock,
    kill_worker,
    state,
    wait_for,
    worker_calls,
)
from tl_core import cli
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import record_dataset_owner, share_run, shared_runs
from tl_core.classroom.settings import update_class_settings
from tl_core.errors import AccessDenied, ConfigError, JobError
from tl_core.fsutil import lock_held
from tl_core.jobs import queue as jobs
from tl_core.jobs.fairshare import queue_order
from tl_core.jobs.runs import RunFiles, list_runs, read_json, read_status, run_path, summarize_run
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


# --- who may do what (class mode) ------------------------------------------------------------

ADA, GRACE, TEACHER = Identity.student("Ada"), Identity.student("Grace"), Identity.teacher()


def test_a_students_run_records_its_owner_and_an_operators_run_records_none() -> None:
    mine = jobs.submit(CONFIG, actor=ADA)
    anyone = jobs.submit(CONFIG)

    assert read_json(RunFiles(run_path(mine)).config)["owner"] == "Ada"
    assert "owner" not in read_json(RunFiles(run_path(anyone)).config)
    assert (summarize_run(mine).owner, summarize_run(anyone).owner) == ("Ada", None)
    assert jobs.get(mine).owner == "Ada"


def test_a_student_at_the_class_limit_is_refused_and_nothing_is_created(tl_home: Path) -> None:
    first, second = jobs.submit(CONFIG, actor=ADA), jobs.submit(CONFIG, actor=ADA)

    with pytest.raises(AccessDenied, match="You already have 2 runs waiting or training, and the"):
        jobs.submit(CONFIG, actor=ADA)

    assert {job.run_id for job in jobs.list_jobs()} == {first, second}
    assert sorted(p.name for p in (tl_home / "runs").iterdir()) == sorted([first, second])
    assert jobs.get(jobs.submit(CONFIG, actor=GRACE)).owner == "Grace"


def test_a_stopped_run_frees_a_place_under_the_limit() -> None:
    first = jobs.submit(CONFIG, actor=ADA)
    jobs.submit(CONFIG, actor=ADA)
    jobs.request_stop(first, actor=ADA)

    assert jobs.get(jobs.submit(CONFIG, actor=ADA)).state == "queued"


def test_the_limit_follows_the_class_settings_and_counts_names_as_the_roster_does() -> None:
    update_class_settings(TEACHER, max_active_runs=1)
    jobs.submit(CONFIG, actor=ADA)

    with pytest.raises(AccessDenied, match="1 run waiting or training"):
        jobs.submit(CONFIG, actor=Identity.student("ada"))


def test_the_teacher_and_the_operator_have_no_limit() -> None:
    for _ in range(3):
        jobs.submit(CONFIG, actor=TEACHER)
        jobs.submit(CONFIG)

    assert len(jobs.list_jobs()) == 6


def test_quick_concurrent_submits_of_one_student_never_pass_the_limit() -> None:
    def attempt(_: int) -> str | None:
        try:
            return jobs.submit(CONFIG, actor=ADA)
        except AccessDenied:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))

    assert sum(result is not None for result in results) == 2
    assert len(jobs.list_jobs()) == 2


def test_a_student_cannot_train_on_another_students_dataset(tl_home: Path) -> None:
    record_dataset_owner(CONFIG.dataset_id, GRACE)

    with pytest.raises(AccessDenied, match="uploaded by another student"):
        jobs.submit(CONFIG, actor=ADA)

    assert jobs.list_jobs() == []
    assert list((tl_home / "runs").glob("*")) == []
    assert jobs.submit(CONFIG, actor=GRACE)


def test_a_student_cannot_stop_resume_or_delete_another_students_run() -> None:
    waiting, stopped = jobs.submit(CONFIG, actor=GRACE), jobs.submit(CONFIG, actor=GRACE)
    jobs.request_stop(stopped, actor=GRACE)

    with pytest.raises(AccessDenied, match="belongs to Grace, so you cannot stop it"):
        jobs.request_stop(waiting, actor=ADA)
    with pytest.raises(AccessDenied, match="cannot resume it"):
        jobs.resume(stopped, actor=ADA)
    with pytest.raises(AccessDenied, match="cannot delete it"):
        jobs.delete_run(stopped, actor=ADA)

    assert (state(waiting), state(stopped)) == ("queued", "stopped")
    assert run_path(stopped).is_dir()
    assert read_status(run_path(waiting)).state == "queued"


def test_a_student_controls_their_own_runs() -> None:
    run_id = jobs.submit(CONFIG, actor=ADA)

    assert "now stopped" in jobs.request_stop(run_id, actor=Identity.student("ada"))
    assert jobs.resume(run_id, actor=ADA).state == "queued"
    jobs.request_stop(run_id, actor=ADA)
    assert "was deleted" in jobs.delete_run(run_id, actor=ADA)


@pytest.mark.parametrize("actor", [TEACHER, None], ids=["teacher", "operator"])
def test_the_teacher_and_the_operator_control_anyones_run(actor: Identity | None) -> None:
    run_id = jobs.submit(CONFIG, actor=GRACE)

    jobs.request_stop(run_id, actor=actor)
    assert state(run_id) == "stopped"
    assert jobs.resume(run_id, actor=actor).state == "queued"
    jobs.request_stop(run_id, actor=actor)
    jobs.delete_run(run_id, actor=actor)
    assert not run_path(run_id).exists()


def test_delete_removes_the_job_and_the_directory_so_the_run_leaves_every_list() -> None:
    kept, gone = jobs.submit(CONFIG), jobs.submit(CONFIG)
    jobs.request_stop(gone)

    message = jobs.delete_run(gone)

    assert message == f"Run {gone} was deleted with its checkpoints, metrics and model."
    assert [job.run_id for job in jobs.list_jobs()] == [kept]
    assert [run.run_id for run in list_runs()] == [kept]
    assert not run_path(gone).exists()
    with pytest.raises(JobError, match="no run"):
        jobs.delete_run(gone)


def test_a_deleted_shared_run_leaves_the_shared_list(tl_home: Path) -> None:
    shared = jobs.submit(CONFIG)
    share_run(Identity.teacher(), shared)
    jobs.request_stop(shared)

    jobs.delete_run(shared, actor=Identity.teacher())

    assert shared_runs() == frozenset()


def test_deleting_in_single_user_mode_creates_no_class_folder(tl_home: Path) -> None:
    run_id = jobs.submit(CONFIG)
    jobs.request_stop(run_id)

    jobs.delete_run(run_id)

    assert not (tl_home / "class").exists()


def test_delete_refuses_a_queued_run_and_one_whose_writer_lock_is_held() -> None:
    waiting, stopped = jobs.submit(CONFIG), jobs.submit(CONFIG)
    jobs.request_stop(stopped)

    with pytest.raises(JobError, match=r"is queued, so it cannot be deleted now\. Stop it first"):
        jobs.delete_run(waiting)
    with hold_writer_lock(run_path(stopped)), pytest.raises(JobError, match="still being trained"):
        jobs.delete_run(stopped)

    assert run_path(waiting).is_dir() and run_path(stopped).is_dir()
    assert {job.run_id for job in jobs.list_jobs()} == {waiting, stopped}


def test_a_deletion_cut_short_never_lists_and_the_next_one_finishes_it(tl_home: Path) -> None:
    run_id = jobs.submit(CONFIG)
    jobs.request_stop(run_id)
    leftover = tl_home / "runs" / f".deleting-{run_id}-abcdef"
    run_path(run_id).rename(leftover)  # what a crash between the rename and the removal leaves

    assert list_runs() == []
    jobs.delete_run(run_id)

    assert not leftover.exists()
    assert jobs.list_jobs() == []


def test_a_student_cannot_reorder_the_queue() -> None:
    first, second = jobs.submit(CONFIG, actor=ADA), jobs.submit(CONFIG, actor=GRACE)

    with pytest.raises(AccessDenied, match="Only the teacher can reorder the queue"):
        jobs.reorder_queue(ADA, [second, first])

    assert [job.rank for job in jobs.list_jobs()] == [None, None]
    assert jobs.queue_position(first) == 1


def test_the_teacher_pins_the_start_order_and_runs_no_longer_queued_are_ignored() -> None:
    a, b, c, stopped = (jobs.submit(CONFIG) for _ in range(4))
    jobs.request_stop(stopped)

    pinned = jobs.reorder_queue(TEACHER, [c, stopped, a])

    assert [(job.run_id, job.rank) for job in pinned] == [(c, 0), (a, 1)]
    assert [job.run_id for job in queue_order()] == [c, a, b]
    assert [jobs.queue_position(r) for r in (a, b, c)] == [2, 3, 1]
    assert jobs.get(stopped).rank is None
    jobs.reorder_queue(None, [b])
    assert [job.run_id for job in queue_order()] == [b, a, c]


def test_a_resumed_run_loses_its_old_pin() -> None:
    first, second = jobs.submit(CONFIG), jobs.submit(CONFIG)
    jobs.reorder_queue(TEACHER, [second])
    jobs.request_stop(second)

    assert jobs.resume(second).rank is None
    assert [job.run_id for job in queue_order()] == [first, second]


def test_a_version_1_queue_file_is_migrated_and_keeps_its_jobs(tl_home: Path) -> None:
    with contextlib.closing(sqlite3.connect(tl_home / "jobs.sqlite")) as conn, conn:
        for statement in jobs._MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO jobs (run_id, state, owner, created_at, queued_at, updated_at) "
            "VALUES ('20261123-131500-a1b2c3', 'completed', 'Ada', 1, 1, 1)"
        )

    (job,) = jobs.list_jobs()

    assert (job.run_id, job.state, job.owner, job.rank) == (
        "20261123-131500-a1b2c3",
        "completed",
        "Ada",
        None,
    )
    with contextlib.closing(sqlite3.connect(tl_home / "jobs.sqlite")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == jobs.SCHEMA_VERSION == 3


def test_while_the_class_is_paused_students_runs_wait_and_the_teachers_start(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait", slots=1)
    student = jobs.submit(CONFIG, actor=ADA)
    teacher = jobs.submit(CONFIG, actor=TEACHER)
    update_class_settings(TEACHER, paused=True)

    scheduler.tick()

    assert (state(student), state(teacher)) == ("queued", "running")
    jobs.request_stop(teacher)
    wait_for(lambda: state(teacher) == "stopped", scheduler)
    scheduler.tick()
    assert state(student) == "queued"
    update_class_settings(TEACHER, paused=False)
    wait_for(lambda: state(student) == "running", scheduler)


def test_the_scheduler_takes_turns_between_students(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = make_scheduler("wait", slots=1)
    update_class_settings(TEACHER, max_active_runs=5)
    ada_first, ada_second = jobs.submit(CONFIG, actor=ADA), jobs.submit(CONFIG, actor=ADA)
    grace = jobs.submit(CONFIG, actor=GRACE)
    scheduler.tick()
    assert state(ada_first) == "running"

    jobs.request_stop(ada_first)
    wait_for(lambda: state(ada_first) == "stopped", scheduler)
    wait_for(lambda: state(grace) == "running", scheduler)

    assert state(ada_second) == "queued"


def test_a_personal_studio_never_reads_or_creates_class_records(
    tl_home: Path, make_scheduler: Callable[..., Scheduler]
) -> None:
    scheduler = make_scheduler("complete", slots=1)
    run_id = jobs.submit(CONFIG)

    wait_for(lambda: state(run_id) == "completed", scheduler)

    assert "owner" not in read_json(RunFiles(run_path(run_id)).config)
    assert not (tl_home / "class").exists()
