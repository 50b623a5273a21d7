"""The order queued jobs start in and the wait estimate (`tl_core.jobs.fairshare`)."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest

from tests.unit.jobs.queue_support import CONFIG
from tl_core.classroom.identity import Identity
from tl_core.classroom.settings import update_class_settings
from tl_core.errors import ConfigError
from tl_core.jobs import queue as jobs
from tl_core.jobs.fairshare import (
    DEFAULT_RUN_S,
    SLOTS_ENV,
    QueueWait,
    default_slots,
    fair_order,
    queue_order,
    queue_wait,
    queue_waits,
)
from tl_core.jobs.queue import Job
from tl_core.jobs.runs import RunStatus, run_path, write_status

ADA, GRACE, TEACHER = Identity.student("Ada"), Identity.student("Grace"), Identity.teacher()


def job(name: str, owner: str | None = None, *, rank: int | None = None) -> Job:
    """A queued job called `name` (its run id, for reading the order)."""
    return Job(
        run_id=name,
        state="queued",
        owner=owner,
        created_at=0.0,
        queued_at=0.0,
        updated_at=0.0,
        slot=None,
        pid=None,
        pid_start=None,
        attempts=0,
        resume=False,
        batch_size_override=None,
        stop_requested=False,
        note=None,
        rank=rank,
    )


def names(order: list[Job]) -> list[str]:
    return [j.run_id for j in order]


# --- the order --------------------------------------------------------------------------------


def test_a_student_with_ten_runs_does_not_make_a_classmate_wait_for_all_ten() -> None:
    queued = [job(f"A{i}", "Ada") for i in range(1, 11)] + [job("B1", "Grace")]

    assert names(fair_order(queued, [])) == ["A1", "B1", *(f"A{i}" for i in range(2, 11))]


def test_three_students_take_turns_each_in_the_order_they_queued() -> None:
    queued = [job("A1", "Ada"), job("A2", "Ada"), job("B1", "Bo"), job("C1", "Cy")]
    queued += [job("B2", "Bo"), job("C2", "Cy")]

    assert names(fair_order(queued, [])) == ["A1", "B1", "C1", "A2", "B2", "C2"]


def test_an_owner_with_a_running_job_waits_behind_one_with_none() -> None:
    queued = [job("A2", "Ada"), job("B1", "Grace")]

    assert names(fair_order(queued, [job("A1", "Ada")])) == ["B1", "A2"]


def test_a_tie_goes_to_the_owner_served_least_recently_then_to_the_oldest_waiting() -> None:
    queued = [job("A2", "Ada"), job("B1", "Grace"), job("C1", "Cy")]

    assert names(fair_order(queued, [], {"Ada": 100.0, "Grace": 50.0})) == ["C1", "B1", "A2"]
    assert names(fair_order(queued, [])) == ["A2", "B1", "C1"]


def test_names_differing_only_in_case_are_one_owner() -> None:
    queued = [job("A1", "Ada"), job("A2", "ada"), job("B1", "Grace")]

    assert names(fair_order(queued, [])) == ["A1", "B1", "A2"]


def test_the_operators_jobs_are_one_owner_so_a_personal_studio_stays_first_in_first_out() -> None:
    queued = [job(f"R{i}") for i in range(5)]

    assert names(fair_order(queued, [job("R-running")])) == [f"R{i}" for i in range(5)]


def test_pinned_jobs_start_first_by_rank_and_count_as_their_owners_turn() -> None:
    queued = [job("A1", "Ada"), job("B1", "Grace"), job("B2", "Grace", rank=0)]
    queued += [job("A2", "Ada", rank=1)]

    assert names(fair_order(queued, [])) == ["B2", "A2", "A1", "B1"]


def test_the_teacher_is_an_owner_like_the_others() -> None:
    queued = [job("T1", "Teacher"), job("T2", "Teacher"), job("A1", "Ada")]

    assert names(fair_order(queued, [])) == ["T1", "A1", "T2"]


def test_queue_order_reads_the_queue_and_queue_position_agrees() -> None:
    update_class_settings(TEACHER, max_active_runs=5)
    a1, a2, a3 = (jobs.submit(CONFIG, actor=ADA) for _ in range(3))
    b1 = jobs.submit(CONFIG, actor=GRACE)

    order = [j.run_id for j in queue_order()]

    assert order == [a1, b1, a2, a3]
    assert [jobs.queue_position(run_id) for run_id in order] == [1, 2, 3, 4]


# --- the wait --------------------------------------------------------------------------------


def finish(run_id: str, seconds: float) -> None:
    """Mark `run_id` completed after a run of `seconds`, as the scheduler settles it."""
    write_status(
        run_path(run_id),
        RunStatus(state="completed", started_at=1000.0, finished_at=1000 + seconds),
    )
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn, conn:
        conn.execute("UPDATE jobs SET state = 'completed' WHERE run_id = ?", (run_id,))


def start(run_id: str, seconds_ago: float) -> None:
    """Mark `run_id` running since `seconds_ago`."""
    write_status(run_path(run_id), RunStatus(state="running", started_at=time.time() - seconds_ago))
    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn, conn:
        conn.execute("UPDATE jobs SET state = 'running', slot = 0 WHERE run_id = ?", (run_id,))


def test_with_no_completed_run_each_run_ahead_counts_sixty_seconds() -> None:
    first, second, third = (jobs.submit(CONFIG) for _ in range(3))

    assert queue_wait(first, slots=1) == QueueWait(position=1, ahead=0, wait_s=0.0)
    assert queue_wait(third, slots=1) == QueueWait(position=3, ahead=2, wait_s=2 * DEFAULT_RUN_S)
    assert queue_wait(second, slots=2).wait_s == 0.0
    assert queue_wait(third, slots=2).wait_s == DEFAULT_RUN_S


def test_the_wait_uses_the_median_of_recent_runs_and_what_running_ones_have_left() -> None:
    done = [jobs.submit(CONFIG) for _ in range(3)]
    for run_id, seconds in zip(done, [100.0, 200.0, 900.0], strict=True):
        finish(run_id, seconds)
    running = jobs.submit(CONFIG)
    start(running, seconds_ago=50.0)
    first, second = jobs.submit(CONFIG), jobs.submit(CONFIG)

    wait = queue_wait(second, slots=1)

    assert (wait.position, wait.ahead) == (2, 1)
    assert wait.wait_s == pytest.approx(150.0 + 200.0, abs=5.0)
    assert queue_wait(first, slots=1).wait_s == pytest.approx(150.0, abs=5.0)


def test_a_run_that_is_not_queued_has_no_wait() -> None:
    run_id = jobs.submit(CONFIG)
    jobs.request_stop(run_id)

    assert queue_wait(run_id) is None


def test_while_the_class_is_paused_a_students_wait_is_unknown_and_the_teachers_is_not() -> None:
    student, teacher = jobs.submit(CONFIG, actor=ADA), jobs.submit(CONFIG, actor=TEACHER)
    update_class_settings(TEACHER, paused=True)

    assert queue_wait(student, slots=1) == QueueWait(position=1, ahead=0, wait_s=None)
    # The waiting student takes no slot, so the teacher's run starts at once.
    assert queue_wait(teacher, slots=1) == QueueWait(position=2, ahead=1, wait_s=0.0)


def test_queue_waits_gives_every_queued_run_its_wait_in_one_read() -> None:
    run_ids = [jobs.submit(CONFIG) for _ in range(3)]

    waits = queue_waits(slots=1)

    assert list(waits) == run_ids
    assert [wait.wait_s for wait in waits.values()] == [0.0, DEFAULT_RUN_S, 2 * DEFAULT_RUN_S]
    assert waits[run_ids[2]] == queue_wait(run_ids[2], slots=1)


def test_the_wait_uses_the_schedulers_slots_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SLOTS_ENV, "2")
    jobs.submit(CONFIG)
    second = jobs.submit(CONFIG)

    assert default_slots() == 2
    assert queue_wait(second).wait_s == 0.0
    monkeypatch.setenv(SLOTS_ENV, "0")
    with pytest.raises(ConfigError, match="positive integer"):
        default_slots()
