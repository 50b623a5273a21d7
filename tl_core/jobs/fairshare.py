"""Fair share of a shared box: the order queued jobs start in, and how long each waits.

The scheduler starts queued jobs in `queue_order`:

1. Jobs the teacher pinned (`tl_core.jobs.queue.reorder_queue`), by their pinned rank.
2. The others round-robin across owners: the next job is the oldest queued job of the
   owner with the fewest jobs running or already placed before it; a tie goes to the
   owner served least recently (whose latest job was claimed to start longest ago, or
   never), then to the owner whose oldest waiting job is oldest. So a student who queues
   ten runs does not make a classmate with one run wait for all ten: ``A1, B1, A2, A3,
   …``, and the classmate's turn still comes next when ``A1`` ends before ``B1`` starts.

Jobs with no owner (the operator's, single-user mode) count as one owner, so a personal
studio keeps plain first-in first-out. `queue_wait` (one run) and `queue_waits` (the
whole queue) estimate the wait from the recent runs' durations.

Example:
    >>> [job.run_id for job in queue_order()]  # doctest: +SKIP
    ['20261123-131500-a1b2c3', '20261123-131502-d4e5f6']
"""

from __future__ import annotations

import heapq
import os
import statistics
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tl_core.classroom.identity import name_key
from tl_core.classroom.settings import read_class_settings
from tl_core.errors import ConfigError
from tl_core.jobs.devices import probe_devices
from tl_core.jobs.queue import Job, _last_claims, _select, _transaction, is_student_owner
from tl_core.jobs.runs import read_status, run_path

__all__ = [
    "DEFAULT_RUN_S",
    "SLOTS_ENV",
    "QueueWait",
    "default_slots",
    "fair_order",
    "queue_order",
    "queue_wait",
    "queue_waits",
]

#: Set to N >= 1 to run N workers at once (default: one per visible GPU, one without a GPU).
SLOTS_ENV = "TL_GPU_SLOTS"
#: Seconds a run is assumed to take while no run has completed yet.
DEFAULT_RUN_S = 60.0
#: Completed runs whose durations give the typical run time.
RECENT_RUNS = 20
#: The owner key of the jobs that record no owner (the operator's).
OPERATOR = "(operator)"


def default_slots() -> int:
    """Workers that run at once: ``TL_GPU_SLOTS``, else one per visible GPU, else 1.

    Raises:
        ConfigError: when ``TL_GPU_SLOTS`` is not a positive integer.

    Example:
        >>> default_slots()  # doctest: +SKIP
        1
    """
    raw = os.environ.get(SLOTS_ENV, "").strip()
    if not raw:
        return max(1, probe_devices().count)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"Expected `{SLOTS_ENV}` to be a positive integer. Received: {SLOTS_ENV}={raw!r}"
        )
    return int(raw)


def _key(owner: str | None) -> str:
    return name_key(owner) if owner is not None else OPERATOR


def fair_order(
    queued: Sequence[Job],
    running: Sequence[Job],
    last_claims: Mapping[str | None, float] | None = None,
) -> list[Job]:
    """Order `queued` (first-in first-out, as the queue lists them) as they will start,
    given the jobs `running` now (module rules).

    Args:
        queued: the queued jobs, oldest first.
        running: the jobs running now.
        last_claims: when each owner's latest job was claimed to start (default ``None``:
            nobody served yet).

    Example:
        >>> [job.run_id for job in fair_order([a1, a2, b1], [])]  # doctest: +SKIP
        ['a1', 'b1', 'a2']
    """
    pinned = sorted((job for job in queued if job.rank is not None), key=lambda job: job.rank)
    load = Counter(_key(job.owner) for job in [*running, *pinned])
    # (0, time) for a real claim, (1, step) for a turn planned here: planned turns are the
    # most recent, so the owners take turns; never served sorts first.
    served: dict[str, tuple[int, float]] = {}
    for owner, claimed in (last_claims or {}).items():
        key = _key(owner)  # "ada" and "Ada" are one person: the latest claim counts
        served[key] = max(served.get(key, (0, claimed)), (0, claimed))
    waiting: dict[str, deque[tuple[int, Job]]] = {}
    for place, job in enumerate(queued):
        if job.rank is None:
            waiting.setdefault(_key(job.owner), deque()).append((place, job))
    order = list(pinned)
    while waiting:
        owner = min(
            waiting,
            key=lambda name: (load[name], served.get(name, (-1, 0.0)), waiting[name][0][0]),
        )
        _, job = waiting[owner].popleft()
        order.append(job)
        load[owner] += 1
        served[owner] = (1, len(order))
        if not waiting[owner]:
            del waiting[owner]
    return order


def queue_order(*, home: Path | None = None) -> list[Job]:
    """The queued jobs in the order they will start (`fair_order` of the queue now).

    Args:
        home: the workspace root (default ``TL_HOME``).

    Example:
        >>> [job.owner for job in queue_order()]  # doctest: +SKIP
        ['Ada', 'Grace', 'Ada']
    """
    with _transaction(home) as conn:
        running = _select(conn, "running")
        queued = _select(conn, "queued")
        claims = _last_claims(conn)
    return fair_order(queued, running, claims)


@dataclass(frozen=True)
class QueueWait:
    """Where a queued job stands.

    Attributes:
        position: its 1-based place in `queue_order`.
        ahead: the jobs that start before it.
        wait_s: estimated seconds until it starts; ``None`` while the class is paused and
            it is a student's job (it starts only when the teacher resumes the class).
    """

    position: int
    ahead: int
    wait_s: float | None


def queue_wait(
    run_id: str, *, home: Path | None = None, slots: int | None = None
) -> QueueWait | None:
    """Estimate when queued `run_id` starts; ``None`` when it is not queued.

    A run is assumed to take the median duration of the last 20 completed runs (60 s when
    none has completed). The running jobs free their slots after their remaining time, and
    each job ahead takes the slot that frees first (`queue_waits`).

    Args:
        run_id: the queued run.
        home: the workspace root (default ``TL_HOME``).
        slots: workers that run at once (default `default_slots`).

    Raises:
        JobError: when `run_id` is malformed.

    Example:
        >>> queue_wait("20261123-131500-a1b2c3", slots=1)  # doctest: +SKIP
        QueueWait(position=2, ahead=1, wait_s=95.0)
    """
    run_path(run_id, home)
    return queue_waits(home=home, slots=slots).get(run_id)


def queue_waits(*, home: Path | None = None, slots: int | None = None) -> dict[str, QueueWait]:
    """`queue_wait` of every queued job at once (one read of the queue, for a whole table).

    While the class is paused, students' jobs get ``wait_s=None`` and take no slot in the
    estimate (the teacher's jobs behind them start first).

    Args:
        home: the workspace root (default ``TL_HOME``).
        slots: workers that run at once (default `default_slots`).

    Example:
        >>> [wait.position for wait in queue_waits(slots=1).values()]  # doctest: +SKIP
        [1, 2]
    """
    with _transaction(home) as conn:
        running = _select(conn, "running")
        completed = conn.execute(
            "SELECT run_id FROM jobs WHERE state = 'completed' ORDER BY updated_at DESC LIMIT ?",
            (RECENT_RUNS,),
        ).fetchall()
        order = fair_order(_select(conn, "queued"), running, _last_claims(conn))
    if not order:
        return {}
    paused = any(is_student_owner(job.owner) for job in order) and (
        read_class_settings(home=home).paused
    )
    typical = typical_run_s([row["run_id"] for row in completed], home=home)
    free_at = _slots_free_at(
        [_remaining_s(job, typical, home) for job in running],
        slots if slots is not None else default_slots(),
    )
    waits = {}
    for ahead, job in enumerate(order):
        if paused and is_student_owner(job.owner):
            waits[job.run_id] = QueueWait(ahead + 1, ahead, None)
            continue
        # It takes the slot that frees first, and holds it for a typical run.
        waits[job.run_id] = QueueWait(ahead + 1, ahead, free_at[0])
        heapq.heappush(free_at, heapq.heappop(free_at) + typical)
    return waits


def typical_run_s(run_ids: Sequence[str], *, home: Path | None = None) -> float:
    """The median duration (start to end, from ``status.json``) of the runs `run_ids`;
    `DEFAULT_RUN_S` when none has both times."""
    durations = []
    for run_id in run_ids:
        status = read_status(run_path(run_id, home))
        if status is not None and status.started_at and status.finished_at:
            durations.append(max(0.0, status.finished_at - status.started_at))
    return statistics.median(durations) if durations else DEFAULT_RUN_S


def _remaining_s(job: Job, typical: float, home: Path | None) -> float:
    status = read_status(run_path(job.run_id, home))
    started = status.started_at if status is not None else None
    elapsed = time.time() - started if started else 0.0
    return max(0.0, typical - elapsed)


def _slots_free_at(remaining: list[float], slots: int) -> list[float]:
    """A heap of the seconds until each slot is free: a running job's remaining time, 0 for
    a free slot."""
    # More running jobs than slots (slots were lowered): the queue waits for the longest ones.
    free_at = sorted(remaining)[-slots:] + [0.0] * max(0, slots - len(remaining))
    heapq.heapify(free_at)
    return free_at
