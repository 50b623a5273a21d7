"""The training job queue: which runs wait, in which order, and who writes each run.

Jobs live in a SQLite file, ``TL_HOME/jobs.sqlite`` (WAL mode, one short transaction per
operation, busy waits of up to 10 s), so several processes share one queue: the Streamlit
server, ``python -m tl_core scheduler``, a second server. A job's life::

    queued → running → completed | failed | stopped | interrupted
    queued → stopped                  (stopped before it started)
    interrupted | stopped | failed → queued   (`resume`; failed only with a checkpoint)

`submit` prepares a run directory and queues it; `queue_position`, `list_jobs` and `get`
read; `request_stop`, `resume` and `delete_run` change one job; `reorder_queue` pins the
start order. All of them work in any process. The scheduler that starts workers and
settles them is `tl_core.jobs.scheduler`; the order queued jobs start in is
`tl_core.jobs.fairshare.queue_order`.

**Who may do what (class mode).** Each call takes ``actor`` (`Identity`; ``None`` is the
machine's operator, who may do everything): a student stops, resumes and deletes only
their own runs, has at most ``max_active_runs`` runs waiting or training, and trains only
on datasets they may use; only the teacher reorders the queue
(`tl_core.classroom.ownership`, `tl_core.classroom.settings`).

**One writer per run.** A worker holds the run's writer lock, an exclusive ``flock`` on
``runs/<id>/.writer.lock`` (`tl_core.fsutil.FolderLock`), from its first instant to its
exit; the kernel drops it however the process dies. "The lock is held" is therefore the
test of "a worker is writing this run", and nothing here starts a second one while it is
held: `resume` refuses, the scheduler neither starts nor interrupts such a run.

**One source of truth per state.** Two records describe a run, and each state has one
owner:

- The queue (this module) owns the states before a worker runs: ``queued``, the order of
  the queue, the scheduler's claim (``running`` with a slot, before the worker takes the
  lock) and ``stopped`` before a start.
- ``status.json`` owns everything from the moment a worker holds the lock: running,
  progress, and how it ended (completed, failed, stopped). Only the lock holder writes it
  then. The server (scheduler, `request_stop`, `resume`) writes ``status.json`` only while
  holding the lock itself, so never while a worker does (`write_status_unless_written`).
- The queue's copy of a worker's final state is derived, and only the active scheduler
  writes it: it copies the state from ``status.json`` once the worker's process has ended
  (``interrupted`` when the worker wrote none). Until then the queue says ``running``
  (a second or so), which is what the buttons follow (no Resume while the process ends).
  What a page shows comes from `shown_state`, which applies this rule and the lock.

Example:
    >>> run_id = submit(RunConfig(dataset_id="0123456789ab"))  # doctest: +SKIP
    >>> queue_position(run_id)  # doctest: +SKIP
    1
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.classroom.identity import TEACHER_NAME, Identity, same_name
from tl_core.classroom.ownership import (
    forget_run,
    require_dataset,
    require_run_control,
    require_teacher,
)
from tl_core.classroom.settings import read_class_settings
from tl_core.config import RunConfig, check_runnable
from tl_core.errors import AccessDenied, JobError
from tl_core.fsutil import FolderLock, lock_held
from tl_core.jobs.runs import (
    FINAL_STATES,
    RunFiles,
    RunStatus,
    new_run_id,
    prepare_run,
    read_json,
    read_shown_status,
    read_status,
    run_path,
    runs_dir,
    write_status,
)
from tl_core.workspace import tl_home

__all__ = [
    "SCHEMA_VERSION",
    "Job",
    "RunState",
    "active_run_count",
    "active_run_limit",
    "delete_run",
    "get",
    "is_student_owner",
    "list_jobs",
    "queue_path",
    "queue_position",
    "reorder_queue",
    "request_stop",
    "resume",
    "run_shown_state",
    "run_state",
    "shown_state",
    "submit",
    "write_status_unless_written",
    "writer_alive",
]

_BUSY_TIMEOUT_S = 10.0

#: One tuple of statements per schema version; `PRAGMA user_version` says how many ran.
#: Add a tuple to migrate; never edit one that has shipped.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            run_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            owner TEXT,
            created_at REAL NOT NULL,
            queued_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            slot INTEGER,
            pid INTEGER,
            pid_start INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            resume INTEGER NOT NULL DEFAULT 0,
            batch_size_override INTEGER,
            stop_requested INTEGER NOT NULL DEFAULT 0,
            note TEXT
        )""",
        "CREATE INDEX jobs_by_queue ON jobs (state, queued_at)",
    ),
    # The teacher's pinned start order (`reorder_queue`); NULL: not pinned.
    ("ALTER TABLE jobs ADD COLUMN rank INTEGER",),
    # When the scheduler last claimed the job: fair turns go to whoever waited longest.
    ("ALTER TABLE jobs ADD COLUMN claimed_at REAL",),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_FIFO = "ORDER BY queued_at, rowid"
_NO_WORKER = {"slot": None, "pid": None, "pid_start": None}


@dataclass(frozen=True)
class Job:
    """One job of the queue.

    ``queued_at`` orders the queue (first in, first out). ``slot``, ``pid`` and
    ``pid_start`` (the process start time, in clock ticks since boot) say where a running
    job's worker runs; they are ``None`` otherwise (and ``pid`` is ``None`` for a claim
    whose worker is not started yet). ``attempts`` counts worker starts since the job was
    submitted or resumed. ``resume`` starts the worker with ``--resume``;
    ``batch_size_override`` replaces the config's batch size (the out-of-memory retry).
    ``owner`` names who submitted the job (for a shared classroom server; ``None`` on a
    personal one). ``note`` is the latest fact worth showing about the job. ``rank`` is
    the place the teacher pinned a queued job at (`reorder_queue`; ``None``: not pinned,
    it waits its fair turn after the pinned ones). ``claimed_at`` is when the scheduler
    last picked it to start (``None``: never).
    """

    run_id: str
    state: str
    owner: str | None
    created_at: float
    queued_at: float
    updated_at: float
    slot: int | None
    pid: int | None
    pid_start: int | None
    attempts: int
    resume: bool
    batch_size_override: int | None
    stop_requested: bool
    note: str | None
    rank: int | None = None
    claimed_at: float | None = None


def is_student_owner(owner: str | None) -> bool:
    """Whether a job with `owner` is a student's: neither the operator's (``None``) nor
    the teacher's.

    Example:
        >>> is_student_owner("Ada"), is_student_owner(None), is_student_owner("Teacher")
        (True, False, False)
    """
    return owner is not None and owner != TEACHER_NAME


# --- who writes a run ------------------------------------------------------------------------


def writer_alive(root: Path) -> bool:
    """Whether a process holds the writer lock of the run directory `root` now.

    Example:
        >>> writer_alive(run_path("20261123-131500-a1b2c3"))  # doctest: +SKIP
        False
    """
    return lock_held(root)


def still_writing_message(run_id: str) -> str:
    """The sentence for a run whose writer lock is held by a process the queue did not
    expect (a worker from before a server restart, or a command-line run)."""
    return (
        f"Run {run_id} is still being trained by a worker process that holds its writer lock "
        "(a worker started before the server restarted, or a command-line run), so a second "
        "worker would overwrite its checkpoints. Wait for it or stop it."
    )


def write_status_unless_written(root: Path, change: Callable[[RunStatus], RunStatus]) -> bool:
    """Apply `change` to the run's ``status.json`` unless a worker holds the writer lock.

    The server takes the writer lock itself for the moment of the write, so that no worker
    can start writing in between; a worker that starts then waits a moment for the lock.

    Returns:
        True when the status was written; False when a writer holds the lock (or the
        run directory is gone), and nothing was written.

    Example:
        >>> write_status_unless_written(root, lambda s: s.with_changes(note="hi"))  # doctest: +SKIP
        True
    """
    with _writer_lock(root) as free:
        if free:
            write_status(root, change(read_status(root) or RunStatus()))
        return free


@contextmanager
def _writer_lock(root: Path) -> Iterator[bool]:
    """Hold the run's writer lock for the block when it is free; yield whether it was."""
    if not root.is_dir():
        yield False
        return
    lock = FolderLock(root)
    free = lock.acquire(timeout=0)
    try:
        yield free
    finally:
        lock.release()


def shown_state(job_state: str | None, status: RunStatus | None, *, writing: bool) -> str:
    """The state to show for a run, from the queue's view and ``status.json`` (module rule).

    Args:
        job_state: the queue's state (``None`` for a run that is not a queued job).
        status: the run's ``status.json`` (``None`` when it has none).
        writing: whether a worker holds the run's writer lock (`writer_alive`).

    Example:
        >>> shown_state("running", RunStatus(state="completed"), writing=False)
        'completed'
        >>> shown_state("interrupted", RunStatus(state="running"), writing=True)
        'running'
    """
    written = status.state if status is not None else None
    if writing:
        return written if written is not None and written != "queued" else "running"
    if job_state is None:
        # Not a queued job (a command-line run): "running" with no writer means its
        # process died, since a worker takes the lock before it writes anything.
        return "interrupted" if written == "running" else written or "queued"
    if job_state == "running" and written in FINAL_STATES:
        return written  # the worker wrote its end; the scheduler settles the job next
    return job_state


@dataclass(frozen=True)
class RunState:
    """How a run stands, from the queue, its ``status.json`` and its writer lock.

    ``shown``: the state the pages show (`shown_state`); ``job`` and ``note``: the queue's
    state and note (``None``: not a queued job); ``writing``: a worker holds the lock.
    """

    shown: str
    job: str | None
    note: str | None
    writing: bool


def run_state(run_id: str, *, home: Path | None = None) -> RunState:
    """Read how `run_id` stands now (see `RunState`); a damaged ``status.json`` counts as
    `read_shown_status` says.

    Example:
        >>> run_state("20261123-131500-a1b2c3").shown  # doctest: +SKIP
        'completed'
    """
    root = run_path(run_id, home)
    status = read_shown_status(root)
    writing = writer_alive(root)
    try:
        job: Job | None = get(run_id, home=home)
    except JobError:
        job = None
    job_state, note = (job.state, job.note) if job is not None else (None, None)
    return RunState(shown_state(job_state, status, writing=writing), job_state, note, writing)


def run_shown_state(run_id: str, *, home: Path | None = None) -> str:
    """The state the pages show for `run_id` (`run_state`'s ``shown``).

    Example:
        >>> run_shown_state("20261123-131500-a1b2c3")  # doctest: +SKIP
        'completed'
    """
    return run_state(run_id, home=home).shown


# --- the queue database ---------------------------------------------------------------------


def _home(home: Path | None) -> Path:
    if home is None:
        return tl_home()
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    return path


def queue_path(home: Path | None = None) -> Path:
    """Return the queue database, ``TL_HOME/jobs.sqlite``.

    Example:
        >>> queue_path().name  # doctest: +SKIP
        'jobs.sqlite'
    """
    return _home(home) / "jobs.sqlite"


def _queue_error(path: Path, exc: sqlite3.Error) -> JobError:
    if "locked" in str(exc) or "busy" in str(exc):
        return JobError(
            f"The job queue {path} stayed busy for more than {_BUSY_TIMEOUT_S:.0f} s "
            f"(sqlite: {exc}). Another process holds it; try again, and restart the server "
            "if it persists."
        )
    return JobError(
        f"The job queue {path} cannot be read (sqlite: {exc}). The file is damaged or is not "
        "a tl_core queue. Move it aside and restart: runs in TL_HOME/runs are kept, queued "
        "jobs must be submitted again."
    )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise JobError(
            f"The job queue {path} has schema version {version}, newer than this tl_core "
            f"understands ({SCHEMA_VERSION}). Update tl_core, or point TL_HOME elsewhere."
        )
    conn.execute("PRAGMA journal_mode=WAL")  # a property of the file: set once, at creation
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our read and our lock.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[number]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _transaction(home: Path | None, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """Yield a connection inside one short transaction; sqlite errors become `JobError`.

    Writers take the write lock at once (``BEGIN IMMEDIATE``), so concurrent writers wait
    for each other instead of failing to upgrade a read lock.
    """
    path = queue_path(home)
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise _queue_error(path, exc) from exc
    try:
        conn.row_factory = sqlite3.Row
        _migrate(conn, path)
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise _queue_error(path, exc) from exc
    finally:
        conn.close()


def _job(row: sqlite3.Row) -> Job:
    doc = dict(row)
    doc["resume"] = bool(doc["resume"])
    doc["stop_requested"] = bool(doc["stop_requested"])
    return Job(**doc)


def _fetch(conn: sqlite3.Connection, run_id: str) -> Job:
    row = conn.execute("SELECT * FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise JobError(
            f"Unknown run id {run_id!r}: the job queue has no such job. Pick a run from the "
            "jobs list (runs trained with `python -m tl_core train` are not queued jobs)."
        )
    return _job(row)


def _select(conn: sqlite3.Connection, state: str | None = None) -> list[Job]:
    if state is None:
        rows = conn.execute(f"SELECT * FROM jobs {_FIFO}")
    else:
        rows = conn.execute(f"SELECT * FROM jobs WHERE state = ? {_FIFO}", (state,))
    return [_job(row) for row in rows]


def _last_claims(conn: sqlite3.Connection) -> dict[str | None, float]:
    """When each owner's latest job was claimed to start (owners never served are absent)."""
    rows = conn.execute(
        "SELECT owner, MAX(claimed_at) FROM jobs WHERE claimed_at IS NOT NULL GROUP BY owner"
    )
    return {owner: float(claimed) for owner, claimed in rows}


def _set(conn: sqlite3.Connection, run_id: str, **fields: Any) -> None:
    """Update the columns `fields` (names from this module, never from users) of one job."""
    fields["updated_at"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE run_id = ?", (*fields.values(), run_id))


def _update(home: Path, run_id: str, **fields: Any) -> None:
    with _transaction(home, write=True) as conn:
        _set(conn, run_id, **fields)


# --- the queue API (any process) -----------------------------------------------------------


def submit(
    config: RunConfig,
    *,
    actor: Identity | None = None,
    home: Path | None = None,
    labels: Mapping[str, Any] | None = None,
) -> str:
    """Create a run directory for `config` and queue its training; return the run id.

    In class mode the run records its submitter (``run.json``'s ``"owner"``, the job's
    ``owner``). A student may have at most the class's ``max_active_runs`` runs waiting or
    training; the count and the new job are one write transaction, so two quick clicks
    cannot both pass it.

    Args:
        config: the run's settings.
        actor: who submits it (default ``None``: the operator, no owner recorded and no
            limit).
        home: the workspace root (default ``TL_HOME``).
        labels: more ``run.json`` entries (default ``None``), such as the lesson a run
            belongs to (`tl_core.classroom.lessons.submit_lesson_run`).

    Example:
        >>> run_id = submit(RunConfig(dataset_id="0123456789ab"))  # doctest: +SKIP
        >>> get(run_id).state  # doctest: +SKIP
        'queued'

    Raises:
        ConfigError: settings that do not fit together, the backbone's blocks (when
            cached) or this machine (`tl_core.config.check_runnable`).
        AccessDenied: a student's dataset that is someone else's, or a student already
            at the class's limit of runs. Nothing is created then.
    """
    check_runnable(config, home=home)
    require_dataset(actor, config.dataset_id, home=home)
    owner = actor.name if actor is not None else None
    limit = active_run_limit(actor, home=home)
    run_id = new_run_id()
    root = run_path(run_id, home)
    try:
        with _transaction(home, write=True) as conn:
            if limit is not None:
                _refuse_over_limit(conn, owner, limit)
            prepare_run(root, config, run_id=run_id, owner=owner, labels=labels)
            now = time.time()
            conn.execute(
                "INSERT INTO jobs (run_id, state, owner, created_at, queued_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?, ?)",
                (run_id, owner, now, now, now),
            )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # no run directory without its job
        raise
    return run_id


def active_run_limit(actor: Identity | None, *, home: Path | None = None) -> int | None:
    """The runs `actor` may have waiting or training at once; ``None``: no limit (the
    operator, the teacher).

    Example:
        >>> active_run_limit(Identity.student("Ada"))  # doctest: +SKIP
        2
    """
    if actor is None or actor.is_teacher:
        return None
    return read_class_settings(home=home).max_active_runs


def active_run_count(actor: Identity | None, *, home: Path | None = None) -> int:
    """How many runs `actor` has waiting or training now (0 for the operator).

    Example:
        >>> active_run_count(Identity.student("Ada"))  # doctest: +SKIP
        1
    """
    if actor is None:
        return 0
    with _transaction(home) as conn:
        return _active_count(conn, actor.name)


def _active_count(conn: sqlite3.Connection, owner: str) -> int:
    rows = conn.execute(
        "SELECT owner FROM jobs WHERE state IN ('queued', 'running') AND owner IS NOT NULL"
    )
    # Names compare as the roster does (NFC, case folded), so "ada" cannot dodge "Ada"'s limit.
    return sum(1 for (name,) in rows if same_name(name, owner))


def _over_limit_message(active: int, limit: int) -> str:
    """The refusal for a student with `active` runs waiting or training, at `limit`."""
    runs = "run" if active == 1 else "runs"
    return (
        f"You already have {active} {runs} waiting or training, and the class's limit per "
        f"student is {limit}. Wait for one to finish, or stop one on the Runs page."
    )


def _refuse_over_limit(conn: sqlite3.Connection, owner: str | None, limit: int) -> None:
    active = _active_count(conn, owner) if owner is not None else 0
    if active >= limit:
        raise AccessDenied(_over_limit_message(active, limit))


def get(run_id: str, *, home: Path | None = None) -> Job:
    """Return the job of `run_id`.

    Raises:
        JobError: when the id is malformed or not in the queue.

    Example:
        >>> get("20261123-131500-a1b2c3").state  # doctest: +SKIP
        'running'
    """
    run_path(run_id, home)
    with _transaction(home) as conn:
        return _fetch(conn, run_id)


def list_jobs(*, home: Path | None = None) -> list[Job]:
    """Return every job, in queue order (the order they were last queued).

    Example:
        >>> [job.state for job in list_jobs()]  # doctest: +SKIP
        ['completed', 'running', 'queued']
    """
    with _transaction(home) as conn:
        return _select(conn)


def queue_position(run_id: str, *, home: Path | None = None) -> int | None:
    """Return the 1-based place of `run_id` in the start order of the queued jobs
    (`tl_core.jobs.fairshare.queue_order`); ``None`` when it is not queued.

    Raises:
        JobError: when the id is malformed or not in the queue.

    Example:
        >>> queue_position(submit(RunConfig(dataset_id="0123456789ab")))  # doctest: +SKIP
        1
    """
    # fairshare reads the queue through this module, so it is imported when first needed.
    from tl_core.jobs.fairshare import queue_order

    get(run_id, home=home)  # an unknown id is an error, not "not queued"
    order = [job.run_id for job in queue_order(home=home)]
    return order.index(run_id) + 1 if run_id in order else None


def request_stop(run_id: str, *, actor: Identity | None = None, home: Path | None = None) -> str:
    """Stop a job and return a sentence saying what happened.

    A queued job becomes ``stopped`` at once and never starts. A running job gets its
    ``STOP`` flag: the worker stops after the current batch, keeps its last checkpoint and
    ends ``stopped``. A run whose writer lock is held gets the flag too, whatever the queue
    says (a worker from before a restart). A job that already ended is left as it is (the
    sentence says so).

    Args:
        run_id: the run to stop.
        actor: who asks (default ``None``: the operator); a student stops only their own runs.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        JobError: when the id is malformed or not in the queue.
        AccessDenied: when a student asks to stop someone else's run; nothing changes then.

    Example:
        >>> request_stop(run_id)  # doctest: +SKIP
        'Stop requested for run 20261123-131500-a1b2c3: it stops after the current batch …'
    """
    root = run_path(run_id, home)
    require_run_control(actor, run_id, action="stop", home=home)
    with _transaction(home, write=True) as conn:
        job = _fetch(conn, run_id)
        if job.state == "queued":
            _set(conn, run_id, state="stopped", note="stopped before it started")
        elif job.state == "running":
            _set(conn, run_id, stop_requested=1)
    writing = writer_alive(root)
    if writing or job.state == "running":
        RunFiles(root).stop_flag.touch()
    if job.state == "queued":
        written = not writing and write_status_unless_written(
            root,
            lambda status: status.with_changes(
                state="stopped", finished_at=time.time(), note="stopped before it started"
            ),
        )
        if written:
            return f"Run {run_id} was still queued: it is now stopped and never started."
        return (
            f"Run {run_id} was queued, but it is still being written by a worker process: "
            "that process stops after its current batch, and the queue will not start the run."
        )
    if job.state == "running" or writing:
        return (
            f"Stop requested for run {run_id}: it stops after the current batch and keeps its "
            "last checkpoint."
        )
    return f"Run {run_id} is not running (it is {job.state}); there is nothing to stop."


def _check_resumable(job: Job, files: RunFiles) -> None:
    if job.state == "completed":
        raise JobError(
            f"Run {job.run_id} has already completed; there is nothing to resume. "
            "Submit a new run (with more epochs) to train longer."
        )
    if job.state in ("queued", "running"):
        raise JobError(
            f"Run {job.run_id} is already {job.state}; there is nothing to resume. "
            "Wait for it to end, or stop it first."
        )
    if job.state == "failed" and not (files.checkpoints / "last.json").exists():
        raise JobError(
            f"Run {job.run_id} failed before saving a checkpoint, so there is nothing to "
            "resume from. Read the error in its status, fix the cause, and submit a new run."
        )


def resume(run_id: str, *, actor: Identity | None = None, home: Path | None = None) -> Job:
    """Queue an interrupted, stopped or failed job again; its worker starts with ``--resume``.

    The job goes to the back of the queue and continues from its last checkpoint (from
    the start when it has none). A batch size set by an out-of-memory retry is kept.

    The run's files are reset (``status.json`` to queued, the ``STOP`` flag removed) while
    this holds the run's writer lock and before the queue says ``queued``: a scheduler can
    claim the job only after that, so no worker's status is ever overwritten by this one.

    Args:
        run_id: the run to queue again.
        actor: who asks (default ``None``: the operator); a student resumes only their own
            runs.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        JobError: when the run completed, is queued or running, failed without a
            checkpoint, is still written by a worker (its lock is held), or is not in the
            queue. Nothing changes then.
        AccessDenied: when a student asks to resume someone else's run; nothing changes then.

    Example:
        >>> resume(run_id).state  # doctest: +SKIP
        'queued'
    """
    root = run_path(run_id, home)
    require_run_control(actor, run_id, action="resume", home=home)
    files = RunFiles(root)
    with _transaction(home, write=True) as conn:
        try:
            job = _fetch(conn, run_id)
        except JobError:
            if writer_alive(root):  # a command-line run: its live writer is the news
                raise JobError(still_writing_message(run_id)) from None
            raise
        _check_resumable(job, files)
        with _writer_lock(root) as free:
            if not free:
                raise JobError(still_writing_message(run_id))
            files.stop_flag.unlink(missing_ok=True)
            # The smaller batch of an out-of-memory retry still applies; other notes are history.
            override = job.batch_size_override
            write_status(root, requeued_status(read_status(root), override))
            _set(
                conn,
                run_id,
                state="queued",
                queued_at=time.time(),
                resume=1,
                attempts=0,
                stop_requested=0,
                rank=None,  # a pin from its earlier wait does not carry over
                note="resumed from its last checkpoint",
                **_NO_WORKER,
            )
        return _fetch(conn, run_id)


_DELETING = ".deleting-"


def delete_run(run_id: str, *, actor: Identity | None = None, home: Path | None = None) -> str:
    """Delete a run that has ended: its job and its whole directory (checkpoints, model,
    metrics). Return a sentence saying what happened.

    The directory is first renamed aside (one atomic step that takes it off every list),
    then removed; what a crash leaves aside is removed by the next deletion.

    Args:
        run_id: the run to delete.
        actor: who asks (default ``None``: the operator); a student deletes only their own
            runs.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: when a student asks to delete someone else's run.
        JobError: when the run is queued or running, a worker still holds its writer lock,
            or there is no such run. Nothing changes then.

    Example:
        >>> delete_run("20261123-131500-a1b2c3")  # doctest: +SKIP
        'Run 20261123-131500-a1b2c3 was deleted with its checkpoints, metrics and model.'
    """
    root = run_path(run_id, home)
    require_run_control(actor, run_id, action="delete", home=home)
    aside = root.with_name(f"{_DELETING}{run_id}-{secrets.token_hex(3)}")
    with _transaction(home, write=True) as conn:
        row = conn.execute("SELECT state FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and row["state"] in ("queued", "running"):
            raise JobError(
                f"Run {run_id} is {row['state']}, so it cannot be deleted now. Stop it first, "
                "wait until it has stopped, then delete it."
            )
        if row is None and not root.is_dir():
            raise JobError(f"There is no run {run_id} to delete. Pick a run from the runs list.")
        # Holding the writer lock keeps a worker from starting to write while it goes.
        with _writer_lock(root) as free:
            if root.is_dir():
                if not free:
                    raise JobError(still_writing_message(run_id))
                os.rename(root, aside)
            conn.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,))
    forget_run(run_id, home=home)
    _remove_deleted(home)
    return f"Run {run_id} was deleted with its checkpoints, metrics and model."


def _remove_deleted(home: Path | None) -> None:
    """Remove the run directories set aside by deletions (this one, or ones a crash cut short)."""
    for entry in runs_dir(home).glob(f"{_DELETING}*"):
        shutil.rmtree(entry, ignore_errors=True)


def reorder_queue(
    actor: Identity | None, run_ids: list[str], *, home: Path | None = None
) -> list[Job]:
    """Pin the start order of queued jobs: `run_ids` start first, in this order; the other
    queued jobs follow in their fair order (`tl_core.jobs.fairshare.queue_order`).

    Ids that are no longer queued (started, stopped, unknown) are ignored; earlier pins of
    jobs not listed are dropped.

    Args:
        actor: who asks; only the teacher and the operator (``None``) may.
        run_ids: queued run ids in the order they should start.
        home: the workspace root (default ``TL_HOME``).

    Returns:
        The jobs that are pinned now, in their order.

    Raises:
        AccessDenied: when `actor` is a student; nothing changes then.

    Example:
        >>> reorder_queue(Identity.teacher(), [second, first])  # doctest: +SKIP
    """
    require_teacher(actor, action="reorder the queue")
    with _transaction(home, write=True) as conn:
        queued = {job.run_id for job in _select(conn, "queued")}
        pinned = list(dict.fromkeys(run_id for run_id in run_ids if run_id in queued))
        conn.execute("UPDATE jobs SET rank = NULL WHERE rank IS NOT NULL")
        for rank, run_id in enumerate(pinned):
            _set(conn, run_id, rank=rank)
        return [_fetch(conn, run_id) for run_id in pinned]


def oom_note(batch_size: int) -> str:
    """The note of a run retried at `batch_size` after running out of memory."""
    return f"retried at batch size {batch_size} after running out of memory"


def oom_retry_batch_size(job: Job, root: Path, status: RunStatus) -> int | None:
    """Half the batch size when the first attempt ran out of memory, else ``None``.

    An out-of-memory failure is retried once, in a fresh process, at half the batch size.

    Example:
        >>> oom_retry_batch_size(job, root, RunStatus(state="completed"))  # doctest: +SKIP
    """
    if status.state != "failed" or status.error_kind != "oom" or job.attempts != 1:
        return None
    config = (read_json(RunFiles(root).config) or {}).get("config", {})
    current = job.batch_size_override or config.get("batch_size")
    if not isinstance(current, int) or current < 2:
        return None
    return current // 2


def requeued_status(status: RunStatus | None, batch_size_override: int | None) -> RunStatus:
    """``status.json`` of a run queued again: no worker, no error, the retry's note kept."""
    note = oom_note(batch_size_override) if batch_size_override is not None else None
    return (status or RunStatus()).with_changes(
        state="queued", pid=None, finished_at=None, error=None, error_kind=None, note=note
    )
