"""The scheduler: it starts queued jobs on free device slots and settles the ones that ended.

- `Scheduler.tick` does the work: it watches running jobs (a worker lives while it holds
  the run's writer lock, or while its process lives before it took the lock), records
  how ended ones ended (the state the worker wrote in ``status.json``, else
  ``interrupted``), retries an out-of-memory failure once at half the batch size, and
  starts queued jobs first-in first-out while a device slot is free (one slot per visible
  GPU, one on a CPU-only machine, or ``TL_GPU_SLOTS``).
- One scheduler per ``TL_HOME`` is *active*: the one holding the exclusive lock on
  ``TL_HOME/scheduler.lock``. Any other is *passive*: its tick starts and settles nothing,
  it only reports the state changes it sees, and it tries the lock again at every tick, so
  it takes over when the active scheduler stops or its process ends. A scheduler that
  becomes active first removes what killed writers left half written
  (`tl_core.workspace.clean_staging`).
- Workers run in a session of their own and outlive the scheduler (a server restart, Ctrl-C
  on the CLI scheduler). A scheduler that becomes active *re-attaches* the running jobs
  whose worker still holds its lock (they keep running, with a note saying so) and marks
  ``interrupted`` those whose worker is gone. A pid counts as the worker only while its
  process start time matches the one recorded at launch, so a reused pid is never
  mistaken for it; a zombie counts as ended.
- Starting a job is two steps: the claim (the job becomes ``running`` on a slot, no pid
  yet) and the worker's start (its pid is recorded). A server killed between the two leaves
  a claim with no worker. Such a claim, still without a worker after `CLAIM_GRACE_S`
  seconds (no lock held, no pid, nothing written by a worker), is *queued again* at its
  old place: nothing ran, so nothing is lost, and the user asked for this run to train.
  The grace period covers a worker that was started but had not yet taken its lock.
- Workers start through a `Runner` (``submit``, ``status``, ``stop``): `LocalProcessRunner`
  runs subprocesses on this machine; a Ray cluster runner is planned behind the same calls.

Example:
    >>> Scheduler().start_background(interval=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tl_core.errors import ConfigError
from tl_core.faults import fault_point
from tl_core.jobs.devices import probe_devices
from tl_core.jobs.processes import process_alive, process_start_time, spawn_detached
from tl_core.jobs.queue import (
    _NO_WORKER,
    Job,
    _fetch,
    _home,
    _select,
    _transaction,
    _update,
    list_jobs,
    oom_note,
    oom_retry_batch_size,
    requeued_status,
    write_status_unless_written,
    writer_alive,
)
from tl_core.jobs.runs import FINAL_STATES, RunFiles, RunStatus, read_status, run_path
from tl_core.workspace import clean_staging

__all__ = [
    "CLAIM_GRACE_S",
    "REATTACHED_NOTE",
    "SLOTS_ENV",
    "JobEvent",
    "LocalProcessRunner",
    "Runner",
    "Scheduler",
    "WorkerRef",
]

log = logging.getLogger("tl_core.jobs.scheduler")

#: Set to N >= 1 to run N workers at once (default: one per visible GPU, one without a GPU).
SLOTS_ENV = "TL_GPU_SLOTS"
#: Seconds a claim may stay without a worker before it is queued again: a started worker
#: takes its lock within seconds (Python start and the import of tl_core, no TensorFlow).
CLAIM_GRACE_S = 20.0

_INTERRUPTED = (
    "The worker process ended before the run finished (it was killed, crashed, or the "
    "machine restarted). Resume the run to continue from its last checkpoint; the worker's "
    "output is in the run's log.txt."
)
#: The note of a running job whose worker outlived the scheduler that started it.
REATTACHED_NOTE = "re-attached after a server restart: its worker kept training"
_REQUEUED = "queued again: the server stopped after picking this run and before starting its worker"
_WAITING_FOR_WRITER = (
    "waiting: a worker process from before is still writing this run; it starts when that "
    "process ends (wait for it or stop it)"
)


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


# --- workers on this machine ---------------------------------------------------------------


class LocalProcessRunner:
    """Runs each worker as a subprocess of this machine, in a session of its own.

    The worker is ``COMMAND RUN_ID [--resume] [--batch-size N]`` with stdout and stderr
    appended to the run's ``log.txt``, ``TL_HOME`` set to this workspace and, on a GPU
    machine, ``CUDA_VISIBLE_DEVICES`` set to the GPU of the job's slot (`device_for`).

    Args:
        home: the workspace root (default ``TL_HOME``).
        command: the worker command before the run id (default
            ``[sys.executable, "-m", "tl_core", "worker"]``); tests pass a fake worker.
        gpus: the GPUs to spread workers over: their ``CUDA_VISIBLE_DEVICES`` names, or a
            count N for ``"0"`` … ``"N-1"`` (default: the GPUs `probe_devices` finds, as
            this process's ``CUDA_VISIBLE_DEVICES`` allows; 0 = CPU).

    Example:
        >>> runner = LocalProcessRunner(command=["python", "fake.py"], gpus=0)  # doctest: +SKIP
        >>> Scheduler(runner=runner, slots=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        command: Sequence[str] | None = None,
        gpus: int | Sequence[str] | None = None,
    ) -> None:
        self.home = _home(home)
        self.command = (
            list(command) if command is not None else [sys.executable, "-m", "tl_core", "worker"]
        )
        if gpus is None:
            self.devices: tuple[str, ...] = probe_devices().ids
        elif isinstance(gpus, int):
            self.devices = tuple(str(number) for number in range(gpus))
        else:
            self.devices = tuple(gpus)
        # Workers this process started: poll() reaps them, so none lingers as a zombie.
        self._workers: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def gpus(self) -> int:
        """How many GPUs workers are spread over (0 on the CPU)."""
        return len(self.devices)

    def device_for(self, slot: int) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` of a worker on `slot`; ``None`` without GPUs.

        Example:
            >>> LocalProcessRunner(gpus=["2", "3"]).device_for(1)  # doctest: +SKIP
            '3'
        """
        return self.devices[slot % len(self.devices)] if self.devices else None

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
        device = self.device_for(job.slot) if job.slot is not None else None
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
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
        slots: workers running at once (default: ``TL_GPU_SLOTS``, else one per visible
            GPU, else 1).
        claim_grace_s: seconds a claimed job may wait for its worker before it is queued
            again (default `CLAIM_GRACE_S`).

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
        claim_grace_s: float = CLAIM_GRACE_S,
    ) -> None:
        if slots is not None and slots < 1:
            raise ConfigError(f"Expected `slots` to be at least 1. Received: slots={slots}")
        self.home = _home(home)
        self.runner: Runner = runner if runner is not None else LocalProcessRunner(self.home)
        self.slots = slots if slots is not None else _default_slots()
        self.claim_grace_s = claim_grace_s
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
            was_active = self.active
            if self._take_lock():
                if not was_active:
                    # Taking over (a start, a restart, another server gone): what killed
                    # writers left half written goes before any new writer starts.
                    clean_staging(self.home)
                self._watch_running(recovering=not was_active)
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

    # --- running jobs ----------------------------------------------------------------------

    def _watch_running(self, *, recovering: bool) -> None:
        with _transaction(self.home) as conn:
            running = _select(conn, "running")
        for job in running:
            root = run_path(job.run_id, self.home)
            worker = self._worker(job, root)
            if worker == "alive":
                if job.stop_requested:
                    # The worker clears the flag when it starts: raise it again until it ends.
                    self.runner.stop(job)
                if recovering or job.pid is None:  # a worker this scheduler did not start
                    self._reattach(job, root)
            elif worker == "never started":
                self._requeue_claim(job, root)
            elif worker == "ended":
                self._settle(job, root)

    def _worker(self, job: Job, root: Path) -> str:
        """``alive``, ``ended``, ``starting`` (a fresh claim) or ``never started``."""
        if writer_alive(root) or self.runner.status(job) == "running":
            return "alive"
        if job.pid is not None:
            return "ended"
        status = read_status(root)
        if status is not None and (status.pid is not None or status.state in FINAL_STATES):
            return "ended"  # a worker ran (it wrote its pid or its end) and is gone
        if time.time() - job.updated_at < self.claim_grace_s:
            return "starting"
        return "never started"

    def _reattach(self, job: Job, root: Path) -> None:
        """Keep a job whose worker outlived the previous scheduler; learn its pid if unknown."""
        fields: dict[str, object] = {}
        if job.pid is None:
            status = read_status(root)
            pid = status.pid if status is not None else None
            if pid is not None:
                fields = {"pid": pid, "pid_start": process_start_time(pid)}
        if job.note != REATTACHED_NOTE or fields:
            _update(self.home, job.run_id, note=REATTACHED_NOTE, **fields)

    def _requeue_claim(self, job: Job, root: Path) -> None:
        """Put a claim whose worker never started back in the queue, at its old place."""
        written = write_status_unless_written(
            root, lambda status: requeued_status(status, job.batch_size_override)
        )
        if written:  # else a worker took the lock just now: the next tick sees it alive
            _update(
                self.home,
                job.run_id,
                state="queued",
                attempts=max(0, job.attempts - 1),
                note=_REQUEUED,
                **_NO_WORKER,
            )

    def _settle(self, job: Job, root: Path) -> None:
        """Record how the worker of `job` ended: its own final state, else interrupted."""
        status = read_status(root) or RunStatus()
        retry_size = oom_retry_batch_size(job, root, status)
        if retry_size is not None:
            if write_status_unless_written(root, lambda s: requeued_status(s, retry_size)):
                _update(
                    self.home,
                    job.run_id,
                    state="queued",
                    resume=1,
                    batch_size_override=retry_size,
                    note=oom_note(retry_size),
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
            if not write_status_unless_written(root, lambda _: status):
                return
        _update(
            self.home,
            job.run_id,
            state=status.state,
            note=status.error or status.note,
            **_NO_WORKER,
        )

    # --- starting queued jobs --------------------------------------------------------------

    def _start_queued(self) -> None:
        with _transaction(self.home) as conn:
            running = _select(conn, "running")
            queued = _select(conn, "queued")
        used = {job.slot for job in running}
        free = [slot for slot in range(self.slots + len(used)) if slot not in used]
        for job in queued:
            if len(running) >= self.slots or not free:
                return
            if writer_alive(run_path(job.run_id, self.home)):
                if job.note != _WAITING_FOR_WRITER:
                    _update(self.home, job.run_id, note=_WAITING_FOR_WRITER)
                continue
            if self._launch(job, free[0]):
                running.append(job)
                free.pop(0)

    def _claim(self, job: Job, slot: int) -> Job | None:
        """Mark `job` running on `slot` (no worker yet); ``None`` when it is no longer queued."""
        with _transaction(self.home, write=True) as conn:
            claimed = conn.execute(
                "UPDATE jobs SET state = 'running', slot = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE run_id = ? AND state = 'queued'",
                (slot, time.time(), job.run_id),
            ).rowcount
            return _fetch(conn, job.run_id) if claimed else None

    def _launch(self, job: Job, slot: int) -> bool:
        """Claim `job` and start its worker; return whether the slot was taken."""
        claimed = self._claim(job, slot)
        if claimed is None:  # stopped since we looked
            return False
        fault_point("claimed")  # a server killed here leaves a claim with no worker
        root = run_path(job.run_id, self.home)

        def starting(status: RunStatus) -> RunStatus:
            return status.with_changes(
                state="running",
                pid=None,
                started_at=status.started_at or time.time(),
                finished_at=None,
                error=None,
                error_kind=None,
            )

        # Before the worker starts: from its start on, only the worker writes the status.
        if not write_status_unless_written(root, starting):
            _update(
                self.home,
                job.run_id,
                state="queued",
                attempts=claimed.attempts - 1,
                note=_WAITING_FOR_WRITER,
                **_NO_WORKER,
            )
            return False
        try:
            worker = self.runner.submit(claimed)
        except OSError as exc:
            self._not_started(claimed, root, exc)
            return True
        _update(self.home, job.run_id, pid=worker.pid, pid_start=worker.pid_start)
        return True

    def _not_started(self, job: Job, root: Path, exc: OSError) -> None:
        message = (
            f"The worker process could not be started ({exc}). Check that Python and "
            "tl_core are installed where the scheduler runs, then resume the run."
        )
        write_status_unless_written(
            root,
            lambda status: status.with_changes(
                state="interrupted",
                error=message,
                error_kind="internal",
                finished_at=time.time(),
            ),
        )
        _update(self.home, job.run_id, state="interrupted", note=message, **_NO_WORKER)
