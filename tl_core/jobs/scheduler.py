"""The scheduler: it starts queued jobs on free device slots and settles the ones that ended.

- `Scheduler.tick` does the work: it watches running jobs (a worker lives while it holds
  the run's writer lock, or while its process lives before it took the lock), records
  how ended ones ended (the state the worker wrote in ``status.json``, else
  ``interrupted``), retries an out-of-memory failure once at half the batch size, and
  starts queued jobs in their fair order (`tl_core.jobs.fairshare.queue_order`: the
  teacher's pins, then round-robin across owners; first-in first-out for one user) while
  a device slot is free (one slot per visible GPU, one on a CPU-only machine, or
  ``TL_GPU_SLOTS``). While the teacher has paused the class, students' jobs wait; the
  teacher's and the operator's still start.
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
  runs subprocesses on this machine; `tl_core.jobs.ray_runner.RayRunner` trains on a Ray
  cluster (``TL_RUNNER=ray``; `tl_core.jobs.runners` picks the runner). A runner's
  ``status`` is the liveness test besides the writer lock: a process for local workers, a
  receiver thread (and, after a restart, the job's Ray actor) for the cluster.
- *Warm workers* (`LocalProcessRunner` with ``warm=True``, the app's default; off with
  ``TL_WARM_WORKERS=0``): the runner keeps, per slot, a process that has already imported
  TensorFlow (`tl_core.engine.warm`), and a job on that slot runs in it: its pid is the
  job's pid, it takes the writer lock like any worker, and it exits after that one job. A
  runner with a ``keep_warm`` call gets it at every active tick, which replaces warm
  workers that were used or died idle.

Example:
    >>> Scheduler().start_background(interval=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from tl_core.classroom.settings import read_class_settings
from tl_core.errors import ConfigError
from tl_core.faults import fault_point
from tl_core.jobs.devices import probe_devices
from tl_core.jobs.fairshare import SLOTS_ENV, default_slots, fair_order
from tl_core.jobs.processes import (
    package_root,
    process_alive,
    process_start_time,
    spawn_detached,
)
from tl_core.jobs.queue import (
    _NO_WORKER,
    Job,
    _fetch,
    _home,
    _last_claims,
    _select,
    _transaction,
    _update,
    is_student_owner,
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
    "WARM_ENV",
    "JobEvent",
    "LocalProcessRunner",
    "Runner",
    "Scheduler",
    "WorkerRef",
    "warm_workers_enabled",
]

log = logging.getLogger("tl_core.jobs.scheduler")

#: Set to 0 to start every job in a fresh process (default: warm workers in the app).
WARM_ENV = "TL_WARM_WORKERS"
#: Warm workers that die during their imports before a slot stops getting new ones.
WARM_START_ATTEMPTS = 3
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

    Keep it to these three calls, so that the cluster runner (Ray) can replace the local
    one. Optional calls the scheduler uses when a runner has them: ``keep_warm(slots)``
    and ``close()``.
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


def warm_workers_enabled() -> bool:
    """Whether the app keeps warm workers: yes unless ``TL_WARM_WORKERS`` is 0/false/no/off.

    Example:
        >>> warm_workers_enabled()  # doctest: +SKIP
        True
    """
    return os.environ.get(WARM_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class _WarmWorker:
    """An idle warm worker: its process (stdin is the pipe its job arrives on) and the
    file it creates once TensorFlow is imported."""

    process: subprocess.Popen[bytes]
    ready: Path


def _stamp(log_file: IO[bytes], message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log_file.write(f"{stamp} scheduler: {message}\n".encode())
    log_file.flush()


class LocalProcessRunner:
    """Runs each worker as a subprocess of this machine, in a session of its own.

    The worker is ``COMMAND RUN_ID [--resume] [--batch-size N]`` with stdout and stderr
    appended to the run's ``log.txt``, ``TL_HOME`` set to this workspace and, on a GPU
    machine, ``CUDA_VISIBLE_DEVICES`` set to the GPU of the job's slot (`device_for`).

    With ``warm=True``, `keep_warm` keeps one *warm worker* per slot (``WARM_COMMAND
    --ready FILE``: TensorFlow imported, the slot's ``CUDA_VISIBLE_DEVICES`` set, waiting
    on a stdin pipe), and `submit` sends a job on that slot down the pipe instead of
    starting a process: the job then starts without TensorFlow's import time (about 4.5 s
    on two CPU cores). The warm worker becomes the job's worker (same pid, same lock, same
    log) and exits after it, so no memory or state of one run reaches the next. Without a
    live warm worker on the slot, or when its pipe is broken, the job starts cold. An idle
    warm worker reads end-of-file and exits when this process ends or `close` is called.

    Args:
        home: the workspace root (default ``TL_HOME``).
        command: the worker command before the run id (default
            ``[sys.executable, "-m", "tl_core", "worker"]``); tests pass a fake worker.
        gpus: the GPUs to spread workers over: their ``CUDA_VISIBLE_DEVICES`` names, or a
            count N for ``"0"`` … ``"N-1"`` (default: the GPUs `probe_devices` finds, as
            this process's ``CUDA_VISIBLE_DEVICES`` allows; 0 = CPU).
        warm: keep a warm worker per slot (default False; the app passes
            `warm_workers_enabled`).
        warm_command: the warm worker command (default
            ``[sys.executable, "-m", "tl_core", "warm-worker"]``); tests pass a fake.

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
        warm: bool = False,
        warm_command: Sequence[str] | None = None,
    ) -> None:
        self.home = _home(home)
        self.command = (
            list(command) if command is not None else [sys.executable, "-m", "tl_core", "worker"]
        )
        self.warm = warm
        self.warm_command = (
            list(warm_command)
            if warm_command is not None
            else [sys.executable, "-m", "tl_core", "warm-worker"]
        )
        self._warm: dict[int, _WarmWorker] = {}
        self._failed_starts: dict[int, int] = {}
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
        """Start the worker of `job` (in the slot's warm worker when one lives); return its pid.

        Raises:
            OSError: when the command cannot be started.
        """
        files = RunFiles(run_path(job.run_id, self.home))
        args = [job.run_id]
        if job.resume:
            args.append("--resume")
        if job.batch_size_override is not None:
            args += ["--batch-size", str(job.batch_size_override)]
        process = self._hand_to_warm(job.slot, args, files.log)
        if process is None:
            argv = [*self.command, *args]
            with files.log.open("ab") as log_file:
                _stamp(log_file, f"starting {shlex.join(argv)}")
                process = spawn_detached(argv, env=self._env(job.slot), output=log_file)
        self._workers[job.run_id] = process
        return WorkerRef(process.pid, process_start_time(process.pid))

    def _env(self, slot: int | None) -> dict[str, str]:
        env = os.environ | {"TL_HOME": str(self.home)}
        device = self.device_for(slot) if slot is not None else None
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        return env

    # --- warm workers ----------------------------------------------------------------------

    def keep_warm(self, slots: Iterable[int]) -> None:
        """Start a warm worker on each of `slots` that has none live (used, or died idle).

        Does nothing unless the runner was made with ``warm=True``. The scheduler calls it
        at every tick while it is active.

        Example:
            >>> LocalProcessRunner(warm=True, gpus=0).keep_warm(range(1))  # doctest: +SKIP
        """
        if not self.warm:
            return
        for slot in slots:
            current = self._warm.get(slot)
            if current is not None and current.process.poll() is None:
                if current.ready.exists():
                    self._failed_starts.pop(slot, None)  # the command works
                continue
            if current is not None:  # died idle
                if not current.ready.exists():  # before its imports ended: a broken start
                    self._failed_starts[slot] = self._failed_starts.get(slot, 0) + 1
                self._end_idle(current)
            if self._failed_starts.get(slot, 0) >= WARM_START_ATTEMPTS:
                continue  # a crash loop helps nobody; jobs on this slot start cold
            try:
                self._warm[slot] = self._start_warm(slot)
            except OSError:
                log.exception("could not start a warm worker on slot %d; jobs start cold", slot)
                self._warm.pop(slot, None)

    def warm_worker(self, slot: int) -> WorkerRef | None:
        """The idle warm worker of `slot` that has finished its imports, or ``None``.

        Example:
            >>> runner.warm_worker(0)  # doctest: +SKIP
            WorkerRef(pid=4242, pid_start=1234567)
        """
        warm = self._warm.get(slot)
        if warm is None or warm.process.poll() is not None or not warm.ready.exists():
            return None
        return WorkerRef(warm.process.pid, process_start_time(warm.process.pid))

    def close(self) -> None:
        """End the idle warm workers; jobs already handed to one carry on.

        Example:
            >>> runner.close()  # doctest: +SKIP
        """
        while self._warm:
            _, warm = self._warm.popitem()
            self._end_idle(warm)

    def _start_warm(self, slot: int) -> _WarmWorker:
        folder = self.home / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        ready = folder / f"slot-{slot}-{os.urandom(4).hex()}.ready"
        env = self._env(slot)  # CUDA_VISIBLE_DEVICES now: TensorFlow reads it at import
        python_path = os.pathsep.join(filter(None, [package_root(), env.get("PYTHONPATH")]))
        with (folder / f"slot-{slot}.log").open("ab") as log_file:
            process = subprocess.Popen(
                [*self.warm_command, "--ready", str(ready)],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env | {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
                # Its own session, like a cold worker: once busy it outlives this process.
                start_new_session=True,
            )
        return _WarmWorker(process, ready)

    def _hand_to_warm(
        self, slot: int | None, args: list[str], log_path: Path
    ) -> subprocess.Popen[bytes] | None:
        """Send the job to the warm worker of `slot`; ``None`` when there is none to take it."""
        warm = self._warm.pop(slot, None) if self.warm and slot is not None else None
        if warm is None:
            return None
        if warm.process.poll() is not None or warm.process.stdin is None:
            self._end_idle(warm)  # died idle: reap it and drop its ready sign
            return None
        request = json.dumps({"args": args, "log": str(log_path)}) + "\n"
        with log_path.open("ab") as log_file:
            _stamp(log_file, f"worker {shlex.join(args)} runs in warm worker {warm.process.pid}")
        try:
            warm.process.stdin.write(request.encode())
            warm.process.stdin.close()
        except OSError:  # it died just now (broken pipe): a cold start takes over
            self._end_idle(warm)
            return None
        return warm.process

    @staticmethod
    def _end_idle(warm: _WarmWorker) -> None:
        with contextlib.suppress(OSError):
            if warm.process.stdin is not None:
                warm.process.stdin.close()
        if warm.process.poll() is None:
            warm.process.kill()  # idle: it holds no lock and has written nothing
        with contextlib.suppress(subprocess.TimeoutExpired):
            warm.process.wait(timeout=5)
        warm.ready.unlink(missing_ok=True)

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
        self.slots = slots if slots is not None else default_slots()
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
                keep_warm = getattr(self.runner, "keep_warm", None)
                if keep_warm is not None:  # an optional call: other runners have no warm workers
                    keep_warm(range(self.slots))
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
            close = getattr(self.runner, "close", None)
            if close is not None:  # idle warm workers go; busy ones are workers and carry on
                close()
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
            queued = fair_order(_select(conn, "queued"), running, _last_claims(conn))
        used = {job.slot for job in running}
        free = [slot for slot in range(self.slots + len(used)) if slot not in used]
        paused = self._class_paused(queued)
        for job in queued:
            if len(running) >= self.slots or not free:
                return
            if paused and is_student_owner(job.owner):
                continue
            if writer_alive(run_path(job.run_id, self.home)):
                if job.note != _WAITING_FOR_WRITER:
                    _update(self.home, job.run_id, note=_WAITING_FOR_WRITER)
                continue
            if self._launch(job, free[0]):
                running.append(job)
                free.pop(0)

    def _class_paused(self, queued: list[Job]) -> bool:
        """Whether the teacher paused the class; read only when a student's job waits, so a
        personal studio never reads (nor creates) the class's records."""
        if not any(is_student_owner(job.owner) for job in queued):
            return False
        return read_class_settings(home=self.home).paused

    def _claim(self, job: Job, slot: int) -> Job | None:
        """Mark `job` running on `slot` (no worker yet); ``None`` when it is no longer queued."""
        now = time.time()
        with _transaction(self.home, write=True) as conn:
            claimed = conn.execute(
                "UPDATE jobs SET state = 'running', slot = ?, attempts = attempts + 1, "
                "updated_at = ?, claimed_at = ? WHERE run_id = ? AND state = 'queued'",
                (slot, now, now, job.run_id),
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
