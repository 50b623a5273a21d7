"""The training job queue and its scheduler: which run trains next, where, and how it ended.

Jobs live in a SQLite file, ``TL_HOME/jobs.sqlite`` (WAL mode, one short transaction per
operation, busy waits of up to 10 s), so several processes share one queue: the Streamlit
server, ``python -m tl_core scheduler``, a second server. A job's life::

    queued → running → completed | failed | stopped | interrupted
    queued → stopped                  (stopped before it started)
    interrupted | stopped | failed → queued   (`resume`; failed only with a checkpoint)

- `submit` prepares a run directory and queues it; `queue_position`, `list_jobs` and `get`
  read; `request_stop` and `resume` change one job. All of them work in any process.
- `Scheduler.tick` does the work: it settles running jobs whose worker ended (the state the
  worker wrote in ``status.json``, else ``interrupted``), retries an out-of-memory failure
  once at half the batch size, and starts queued jobs first-in first-out while a device
  slot is free (one slot per GPU, one on a CPU-only machine, or ``TL_GPU_SLOTS``).
- One scheduler per ``TL_HOME`` is *active*: the one holding the exclusive lock on
  ``TL_HOME/scheduler.lock``. Any other is *passive*: its tick starts and settles nothing,
  it only reports the state changes it sees, and it tries the lock again at every tick, so
  it takes over when the active scheduler stops or its process ends.
- Workers run in a session of their own and outlive the scheduler (a server restart, Ctrl-C
  on the CLI scheduler). The next active scheduler watches them by pid; a job left
  ``running`` whose worker is gone becomes ``interrupted`` (restart recovery). A pid counts
  as the worker only while its process start time matches the one recorded at launch, so a
  reused pid is never mistaken for it; a zombie counts as ended.
- Workers start through a `Runner` (``submit``, ``status``, ``stop``): `LocalProcessRunner`
  runs subprocesses on this machine; a Ray cluster runner is planned behind the same calls.

Example:
    >>> run_id = submit(RunConfig(dataset_id="0123456789ab"))  # doctest: +SKIP
    >>> Scheduler().start_background(interval=1.0)  # doctest: +SKIP
    >>> queue_position(run_id)  # doctest: +SKIP
    1
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tl_core.config import RunConfig, check_runnable
from tl_core.errors import ConfigError, JobError
from tl_core.jobs.devices import probe_devices
from tl_core.jobs.processes import process_alive, process_start_time, spawn_detached
from tl_core.jobs.runs import (
    FINAL_STATES,
    RunFiles,
    RunStatus,
    new_run_id,
    prepare_run,
    read_json,
    read_status,
    run_path,
    write_status,
)
from tl_core.workspace import tl_home

__all__ = [
    "SCHEMA_VERSION",
    "SLOTS_ENV",
    "Job",
    "JobEvent",
    "LocalProcessRunner",
    "Runner",
    "Scheduler",
    "WorkerRef",
    "get",
    "list_jobs",
    "queue_path",
    "queue_position",
    "request_stop",
    "resume",
    "submit",
]

log = logging.getLogger("tl_core.jobs.queue")

#: Set to N >= 1 to run N workers at once (default: one per GPU, one without a GPU).
SLOTS_ENV = "TL_GPU_SLOTS"

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
)
SCHEMA_VERSION = len(_MIGRATIONS)

_FIFO = "ORDER BY queued_at, rowid"
_NO_WORKER = {"slot": None, "pid": None, "pid_start": None}
_INTERRUPTED = (
    "The worker process ended before the run finished (it was killed, crashed, or the "
    "machine restarted). Resume the run to continue from its last checkpoint; the worker's "
    "output is in the run's log.txt."
)


@dataclass(frozen=True)
class Job:
    """One job of the queue.

    ``queued_at`` orders the queue (first in, first out). ``slot``, ``pid`` and
    ``pid_start`` (the process start time, in clock ticks since boot) say where a running
    job's worker runs; they are ``None`` otherwise. ``attempts`` counts worker starts since
    the job was submitted or resumed. ``resume`` starts the worker with ``--resume``;
    ``batch_size_override`` replaces the config's batch size (the out-of-memory retry).
    ``owner`` names who submitted the job (for a shared classroom server; ``None`` on a
    personal one). ``note`` is the latest fact worth showing about the job.
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


@dataclass(frozen=True)
class JobEvent:
    """A state change a scheduler saw; ``str()`` gives the line the CLI prints.

    ``before`` is ``None`` for a job the scheduler had not seen yet.
    """

    run_id: str
    before: str | None
    after: str
    slot: int | None = None
    pid: int | None = None
    note: str | None = None

    def __str__(self) -> str:
        line = f"{self.run_id} {self.before or 'new'} -> {self.after}"
        if self.after == "running" and self.pid is not None:
            line += f" (slot {self.slot}, pid {self.pid})"
        return line + (f": {self.note}" if self.note else "")


@dataclass(frozen=True)
class WorkerRef:
    """Where a runner started a worker: its pid and process start time (clock ticks)."""

    pid: int
    pid_start: int | None


class Runner(Protocol):
    """Starts, watches and stops workers; the scheduler's only view of where jobs run.

    Keep it to these three calls, so that a cluster runner (Ray) can replace the local one.
    """

    def submit(self, job: Job) -> WorkerRef:
        """Start the worker of `job` (its ``slot``, ``resume``, ``batch_size_override``)."""
        ...

    def status(self, job: Job) -> str:
        """Return ``"running"`` while the worker of `job` lives, else ``"exited"``."""
        ...

    def stop(self, job: Job) -> None:
        """Ask the worker of `job` to stop after the current batch."""
        ...


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


def _set(conn: sqlite3.Connection, run_id: str, **fields: Any) -> None:
    """Update the columns `fields` (names from this module, never from users) of one job."""
    fields["updated_at"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE run_id = ?", (*fields.values(), run_id))


def _update(home: Path, run_id: str, **fields: Any) -> None:
    with _transaction(home, write=True) as conn:
        _set(conn, run_id, **fields)


def _oom_note(batch_size: int) -> str:
    return f"retried at batch size {batch_size} after running out of memory"


def _requeue_status(root: Path, note: str | None) -> None:
    """Write ``status.json`` for a run that is queued again (no worker, no error)."""
    status = read_status(root) or RunStatus()
    write_status(
        root,
        status.with_changes(
            state="queued", pid=None, finished_at=None, error=None, error_kind=None, note=note
        ),
    )


# --- the queue API (any process) -----------------------------------------------------------


def submit(config: RunConfig, *, owner: str | None = None, home: Path | None = None) -> str:
    """Create a run directory for `config` and queue its training; return the run id.

    Args:
        config: the run's settings.
        owner: who submits it (default ``None``; a classroom server records the student).
        home: the workspace root (default ``TL_HOME``).

    Example:
        >>> run_id = submit(RunConfig(dataset_id="0123456789ab"), owner="ada")  # doctest: +SKIP
        >>> get(run_id).state  # doctest: +SKIP
        'queued'

    Raises:
        ConfigError: settings that do not fit together, the backbone's blocks (when
            cached) or this machine (`tl_core.config.check_runnable`).
    """
    check_runnable(config, home=home)
    run_id = new_run_id()
    root = run_path(run_id, home)
    prepare_run(root, config, run_id=run_id)
    now = time.time()
    try:
        with _transaction(home, write=True) as conn:
            conn.execute(
                "INSERT INTO jobs (run_id, state, owner, created_at, queued_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?, ?)",
                (run_id, owner, now, now, now),
            )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # no run directory without its job
        raise
    return run_id


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
    """Return the 1-based place of `run_id` among queued jobs; ``None`` when it is not queued.

    Example:
        >>> queue_position(submit(RunConfig(dataset_id="0123456789ab")))  # doctest: +SKIP
        1
    """
    run_path(run_id, home)
    with _transaction(home) as conn:
        if _fetch(conn, run_id).state != "queued":
            return None
        (position,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (queued_at, rowid) <= "
            "(SELECT queued_at, rowid FROM jobs WHERE run_id = ?)",
            (run_id,),
        ).fetchone()
    return int(position)


def request_stop(run_id: str, *, home: Path | None = None) -> str:
    """Stop a job and return a sentence saying what happened.

    A queued job becomes ``stopped`` at once and never starts. A running job gets its
    ``STOP`` flag: the worker stops after the current batch, keeps its last checkpoint and
    ends ``stopped``. A job that already ended is left as it is (the sentence says so).

    Raises:
        JobError: when the id is malformed or not in the queue.

    Example:
        >>> request_stop(run_id)  # doctest: +SKIP
        'Stop requested for run 20261123-131500-a1b2c3: it stops after the current batch …'
    """
    root = run_path(run_id, home)
    with _transaction(home, write=True) as conn:
        job = _fetch(conn, run_id)
        if job.state == "queued":
            _set(conn, run_id, state="stopped", note="stopped before it started")
        elif job.state == "running":
            _set(conn, run_id, stop_requested=1)
    if job.state == "queued":
        status = read_status(root) or RunStatus()
        write_status(
            root,
            status.with_changes(
                state="stopped", finished_at=time.time(), note="stopped before it started"
            ),
        )
        return f"Run {run_id} was still queued: it is now stopped and never started."
    if job.state == "running":
        RunFiles(root).stop_flag.touch()
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


def resume(run_id: str, *, home: Path | None = None) -> Job:
    """Queue an interrupted, stopped or failed job again; its worker starts with ``--resume``.

    The job goes to the back of the queue and continues from its last checkpoint (from
    the start when it has none). A batch size set by an out-of-memory retry is kept.

    Raises:
        JobError: when the run completed, is queued or running, failed without a
            checkpoint, or is not in the queue.

    Example:
        >>> resume(run_id).state  # doctest: +SKIP
        'queued'
    """
    root = run_path(run_id, home)
    files = RunFiles(root)
    with _transaction(home, write=True) as conn:
        job = _fetch(conn, run_id)
        _check_resumable(job, files)
        _set(
            conn,
            run_id,
            state="queued",
            queued_at=time.time(),
            resume=1,
            attempts=0,
            stop_requested=0,
            note="resumed from its last checkpoint",
            **_NO_WORKER,
        )
        job = _fetch(conn, run_id)
    files.stop_flag.unlink(missing_ok=True)
    # The smaller batch of an out-of-memory retry still applies; other notes are history.
    override = job.batch_size_override
    _requeue_status(root, _oom_note(override) if override is not None else None)
    return job


# --- workers on this machine ---------------------------------------------------------------


class LocalProcessRunner:
    """Runs each worker as a subprocess of this machine, in a session of its own.

    The worker is ``COMMAND RUN_ID [--resume] [--batch-size N]`` with stdout and stderr
    appended to the run's ``log.txt``, ``TL_HOME`` set to this workspace and, on a GPU
    machine, ``CUDA_VISIBLE_DEVICES`` set to the job's slot (modulo the GPU count).

    Args:
        home: the workspace root (default ``TL_HOME``).
        command: the worker command before the run id (default
            ``[sys.executable, "-m", "tl_core", "worker"]``); tests pass a fake worker.
        gpus: GPUs to spread workers over (default: what `probe_devices` finds; 0 = CPU).

    Example:
        >>> runner = LocalProcessRunner(command=["python", "fake.py"], gpus=0)  # doctest: +SKIP
        >>> Scheduler(runner=runner, slots=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        command: Sequence[str] | None = None,
        gpus: int | None = None,
    ) -> None:
        self.home = _home(home)
        self.command = (
            list(command) if command is not None else [sys.executable, "-m", "tl_core", "worker"]
        )
        self.gpus = gpus if gpus is not None else probe_devices().count
        # Workers this process started: poll() reaps them, so none lingers as a zombie.
        self._workers: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, job: Job) -> WorkerRef:
        """Start the worker of `job` and return its pid.

        Raises:
            OSError: when the command cannot be started.
        """
        files = RunFiles(run_path(job.run_id, self.home))
        argv = [*self.command, job.run_id]
        if job.resume:
            argv.append("--resume")
        if job.batch_size_override is not None:
            argv += ["--batch-size", str(job.batch_size_override)]
        env = os.environ | {"TL_HOME": str(self.home)}
        if self.gpus > 0 and job.slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(job.slot % self.gpus)
        with files.log.open("ab") as log_file:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_file.write(f"{stamp} scheduler: starting {shlex.join(argv)}\n".encode())
            log_file.flush()
            process = spawn_detached(argv, env=env, output=log_file)
        self._workers[job.run_id] = process
        return WorkerRef(process.pid, process_start_time(process.pid))

    def status(self, job: Job) -> str:
        """Return ``"running"`` or ``"exited"``; workers of other processes are checked by pid."""
        process = self._workers.get(job.run_id)
        if process is not None and process.pid == job.pid:
            if process.poll() is None:
                return "running"
            del self._workers[job.run_id]
            return "exited"
        return "running" if process_alive(job.pid, job.pid_start) else "exited"

    def stop(self, job: Job) -> None:
        """Raise the run's ``STOP`` flag; the worker checks it between batches."""
        RunFiles(run_path(job.run_id, self.home)).stop_flag.touch()


# --- the scheduler -------------------------------------------------------------------------


def _default_slots() -> int:
    raw = os.environ.get(SLOTS_ENV, "").strip()
    if not raw:
        return max(1, probe_devices().count)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"Expected `{SLOTS_ENV}` to be a positive integer. Received: {SLOTS_ENV}={raw!r}"
        )
    return int(raw)


class Scheduler:
    """Starts queued jobs on free device slots and settles the ones whose worker ended.

    Only the scheduler holding ``TL_HOME/scheduler.lock`` acts (see the module docstring);
    a second one, in another server process, stays passive and only reports changes. The
    Streamlit server keeps one in ``st.cache_resource`` and calls `start_background`.

    Args:
        home: the workspace root (default ``TL_HOME``).
        runner: starts and watches workers (default: a `LocalProcessRunner`).
        slots: workers running at once (default: ``TL_GPU_SLOTS``, else one per GPU,
            else 1).

    Example:
        >>> scheduler = Scheduler()  # doctest: +SKIP
        >>> for event in scheduler.tick():  # doctest: +SKIP
        ...     print(event)
        20261123-131500-a1b2c3 queued -> running (slot 0, pid 4242)
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        runner: Runner | None = None,
        slots: int | None = None,
    ) -> None:
        if slots is not None and slots < 1:
            raise ConfigError(f"Expected `slots` to be at least 1. Received: slots={slots}")
        self.home = _home(home)
        self.runner: Runner = runner if runner is not None else LocalProcessRunner(self.home)
        self.slots = slots if slots is not None else _default_slots()
        self.lock_path = self.home / "scheduler.lock"
        self._lock_fd: int | None = None
        self._tick_lock = threading.Lock()
        self._seen: dict[str, Job] | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True while this scheduler holds the lock and so starts and settles jobs."""
        return self._lock_fd is not None

    def tick(self) -> list[JobEvent]:
        """Settle ended workers, retry out-of-memory once, start queued jobs on free slots.

        A passive scheduler (another holds the lock) only tries to take the lock. Either
        way, return the state changes seen since the previous tick.

        Example:
            >>> [str(event) for event in Scheduler().tick()]  # doctest: +SKIP
            ['20261123-131500-a1b2c3 queued -> running (slot 0, pid 4242)']
        """
        with self._tick_lock:
            if self._seen is None:
                self._seen = self._snapshot()
            if self._take_lock():
                self._settle_ended()
                self._start_queued()
            return self._changes()

    def start_background(self, interval: float = 1.0) -> None:
        """Call `tick` every `interval` seconds (default 1.0) in a daemon thread, until `stop`.

        Example:
            >>> Scheduler().start_background(interval=0.5)  # doctest: +SKIP
        """
        if self._thread is not None and self._thread.is_alive():
            return
        self._halt.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="tl-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and release the lock; running workers carry on.

        Another scheduler (this process or another) takes over at its next tick.
        """
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._tick_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    def _loop(self, interval: float) -> None:
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed; trying again in %.1f s", interval)
            self._halt.wait(interval)

    def _take_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people wondering who holds it
        self._lock_fd = fd
        return True

    def _snapshot(self) -> dict[str, Job]:
        return {job.run_id: job for job in list_jobs(home=self.home)}

    def _changes(self) -> list[JobEvent]:
        seen = self._seen or {}
        now = self._snapshot()
        events = [
            JobEvent(
                job.run_id, before.state if before else None, job.state, job.slot, job.pid, job.note
            )
            for job in now.values()
            if (before := seen.get(job.run_id)) is None
            or (before.state, before.attempts) != (job.state, job.attempts)
        ]
        self._seen = now
        return events

    def _settle_ended(self) -> None:
        with _transaction(self.home) as conn:
            running = _select(conn, "running")
        for job in running:
            if self.runner.status(job) == "running":
                if job.stop_requested:
                    # The worker clears the flag when it starts: raise it again until it ends.
                    self.runner.stop(job)
                continue
            self._settle(job)

    def _settle(self, job: Job) -> None:
        """Record how the worker of `job` ended: its own final state, else interrupted."""
        root = run_path(job.run_id, self.home)
        status = read_status(root) or RunStatus()
        retry_size = self._oom_retry_batch_size(job, root, status)
        if retry_size is not None:
            note = _oom_note(retry_size)
            _requeue_status(root, note)
            _update(
                self.home,
                job.run_id,
                state="queued",
                resume=1,
                batch_size_override=retry_size,
                note=note,
                **_NO_WORKER,
            )
            return
        if status.state not in FINAL_STATES:
            status = status.with_changes(
                state="interrupted",
                pid=None,
                finished_at=time.time(),
                error=_INTERRUPTED,
                error_kind="interrupted",
            )
            write_status(root, status)
        _update(
            self.home,
            job.run_id,
            state=status.state,
            note=status.error or status.note,
            **_NO_WORKER,
        )

    @staticmethod
    def _oom_retry_batch_size(job: Job, root: Path, status: RunStatus) -> int | None:
        """Half the batch size when the first attempt ran out of memory, else ``None``."""
        if status.state != "failed" or status.error_kind != "oom" or job.attempts != 1:
            return None
        config = (read_json(RunFiles(root).config) or {}).get("config", {})
        current = job.batch_size_override or config.get("batch_size")
        if not isinstance(current, int) or current < 2:
            return None
        return current // 2

    def _start_queued(self) -> None:
        with _transaction(self.home) as conn:
            running = _select(conn, "running")
            queued = _select(conn, "queued")
        used = {job.slot for job in running}
        free = (slot for slot in range(self.slots + len(used)) if slot not in used)
        for job, slot in zip(queued[: max(0, self.slots - len(running))], free, strict=False):
            self._launch(job, slot)

    def _launch(self, job: Job, slot: int) -> None:
        with _transaction(self.home, write=True) as conn:
            claimed = conn.execute(
                "UPDATE jobs SET state = 'running', slot = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE run_id = ? AND state = 'queued'",
                (slot, time.time(), job.run_id),
            ).rowcount
            if not claimed:  # stopped since we looked
                return
            job = _fetch(conn, job.run_id)
        root = run_path(job.run_id, self.home)
        status = read_status(root) or RunStatus()
        status = status.with_changes(
            state="running",
            pid=None,
            started_at=status.started_at or time.time(),
            finished_at=None,
            error=None,
            error_kind=None,
        )
        write_status(root, status)  # before the worker starts: it writes its own states next
        try:
            worker = self.runner.submit(job)
        except OSError as exc:
            message = (
                f"The worker process could not be started ({exc}). Check that Python and "
                "tl_core are installed where the scheduler runs, then resume the run."
            )
            write_status(
                root,
                status.with_changes(
                    state="interrupted",
                    error=message,
                    error_kind="internal",
                    finished_at=time.time(),
                ),
            )
            _update(self.home, job.run_id, state="interrupted", note=message, **_NO_WORKER)
            return
        _update(self.home, job.run_id, pid=worker.pid, pid_start=worker.pid_start)
