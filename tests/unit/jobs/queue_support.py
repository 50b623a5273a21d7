"""Helpers for the queue and scheduler tests: a fake worker script and ways to watch it.

The fake worker (`FAKE_WORKER`) behaves like ``python -m tl_core worker`` as far as the
scheduler can tell: it takes the run's writer lock for its lifetime, clears the STOP flag,
writes ``status.json`` states, and its mode says how it ends. `hold_writer_lock` starts a
process that only holds a run's writer lock: a worker the queue does not know about.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tl_core.config import RunConfig
from tl_core.fsutil import lock_held
from tl_core.jobs import queue as jobs
from tl_core.jobs.runs import run_path
from tl_core.jobs.scheduler import Scheduler

ROOT = Path(__file__).resolve().parents[3]
CONFIG = RunConfig(dataset_id="0123456789ab", batch_size=32)

FAKE_WORKER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time

    mode, run_id, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    root = os.path.join(os.environ["TL_HOME"], "runs", run_id)
    stop_flag = os.path.join(root, "STOP")
    # main_worker holds FolderLock(run_dir) for its lifetime; importing tl_core to take it
    # would cost each fake worker half a second, so the same flock is taken by hand.
    lock_fd = os.open(os.path.join(root, ".writer.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write_status(**changes):
        path = os.path.join(root, "status.json")
        with open(path) as fh:
            doc = json.load(fh)
        doc.update(changes)
        with open(path + ".fake", "w") as fh:
            json.dump(doc, fh)
        os.replace(path + ".fake", path)

    if os.path.exists(stop_flag):  # train_run clears a stale flag when it starts
        os.remove(stop_flag)
    with open(os.path.join(root, "worker.jsonl"), "a") as fh:
        call = {"args": args, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
        fh.write(json.dumps(call) + "\\n")
    if mode == "vanish":
        sys.exit(3)
    write_status(state="running", pid=os.getpid())
    if mode == "oom" or (mode == "oom-once" and "--batch-size" not in args):
        write_status(state="failed", error="Training ran out of memory.", error_kind="oom")
        sys.exit(1)
    if mode == "wait":
        deadline = time.monotonic() + 30
        while not os.path.exists(stop_flag):
            if time.monotonic() > deadline:
                sys.exit(4)
            time.sleep(0.01)
        write_status(state="stopped", pid=None)
    else:
        write_status(state="completed", pid=None)
    """
)

_LOCK_HOLDER = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(os.path.join(sys.argv[1], '.writer.lock'), os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "time.sleep(60)\n"
)


def wait_for(condition: Callable[[], bool], scheduler: Scheduler | None = None) -> None:
    """Tick `scheduler` (when given) until `condition` holds; fail after 10 seconds."""
    deadline = time.monotonic() + 10
    while True:
        if scheduler is not None:
            scheduler.tick()
        if condition():
            return
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.01)


def state(run_id: str) -> str:
    """The job's state in the queue."""
    return jobs.get(run_id).state


def worker_calls(run_id: str) -> list[dict[str, object]]:
    """What each worker started for `run_id` received: its arguments and CUDA device."""
    path = run_path(run_id) / "worker.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def kill_worker(run_id: str) -> None:
    """SIGKILL the worker of `run_id` (and its session) once it has started."""
    wait_for(lambda: len(worker_calls(run_id)) > 0)
    pid = jobs.get(run_id).pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def hold_writer_lock(run_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process that holds the writer lock of `run_dir` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(run_dir)], start_new_session=True
    )
    try:
        wait_for(lambda: lock_held(run_dir))
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=10)


def claim_without_starting(run_id: str, *, slot: int = 0, age_s: float = 3600) -> None:
    """Commit a scheduler's claim of `run_id` made `age_s` seconds ago (running, no worker
    recorded), as a server killed between claiming the job and starting its worker leaves
    it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(jobs.queue_path())) as conn, conn:
        conn.execute(
            "UPDATE jobs SET state = 'running', slot = ?, attempts = attempts + 1, "
            "pid = NULL, pid_start = NULL, updated_at = ? WHERE run_id = ?",
            (slot, time.time() - age_s, run_id),
        )
