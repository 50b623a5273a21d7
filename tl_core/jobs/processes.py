"""Background processes of this machine: start one detached, and tell whether it still lives.

Both the training queue (`tl_core.jobs.queue`) and the web app's analyses
(`tl_core.analysis.background`)
start ``python -m …`` subprocesses that must outlive the process that started them (a
browser reload, an app restart), and later check them by pid alone. A pid is reused by the
system once its process is gone, so a process is identified by its pid and its start time.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tl_core.fsutil import write_json_atomic

__all__ = [
    "SPAWN_GRACE_S",
    "marker_alive",
    "process_alive",
    "process_start_time",
    "reap_children",
    "spawn_detached",
    "spawn_tracked",
]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return ``(state letter, start time in clock ticks)`` from ``/proc``, or ``None``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def process_start_time(pid: int) -> int | None:
    """Return when the process `pid` started (clock ticks since boot), or ``None``."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """True when `pid` lives, is no zombie, and is the process that started at `start_time`.

    Example:
        >>> process_alive(os.getpid(), process_start_time(os.getpid()))
        True
    """
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: the pid was reused
        return False
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (not Linux): the signal check is all there is
        return True
    state, started = stat
    return state != "Z" and (start_time is None or started == start_time)


def package_root() -> str:
    """Return the folder that holds the ``tl_core`` package (for ``PYTHONPATH``).

    Example:
        >>> (Path(package_root()) / "tl_core" / "jobs").is_dir()
        True
    """
    return str(Path(__file__).resolve().parents[2])  # tl_core/jobs/processes.py


def spawn_detached(
    argv: Sequence[str], *, env: Mapping[str, str], output: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own, stdout and stderr to `output`.

    ``tl_core`` is put on ``PYTHONPATH`` (the app may run from another folder) and Python's
    output is unbuffered, so that a log shows what happened up to a crash.

    Raises:
        OSError: when the command cannot be started.
    """
    python_path = os.pathsep.join(filter(None, [package_root(), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(env) | {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


_children: list[subprocess.Popen[bytes]] = []
_children_lock = threading.Lock()


def spawn_tracked(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    marker: Path,
    **facts: object,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached (output appended to `log`) and write its pid `marker`.

    The marker (``{"pid", "start_time", **facts}``, written atomically) is how any other
    session or a restarted server tells later whether this process still lives
    (`process_alive`). The child is also remembered, so that `reap_children` collects it
    once it ends instead of leaving a zombie behind in this long-lived process.

    Raises:
        OSError: the process could not be started (no marker is written then).

    Example:
        >>> spawn_tracked([sys.executable, "-c", "pass"], env=os.environ, log=folder / "x.log",
        ...               marker=folder / "x.pid", started_at=time.time())  # doctest: +SKIP
    """
    with log.open("ab") as output:
        process = spawn_detached(argv, env=env, output=output)
    with _children_lock:
        _children.append(process)
    doc = {"pid": process.pid, "start_time": process_start_time(process.pid), **facts}
    write_json_atomic(marker, doc)
    return process


#: A marker without a pid yet (its starter is between creating it and spawning) counts as
#: a live process for this long; after that its starter is taken to have died.
SPAWN_GRACE_S = 30.0


def marker_alive(marker: Mapping[str, Any]) -> bool:
    """Whether the process a `spawn_tracked` marker names still lives, or is still being
    started (no pid yet, for up to `SPAWN_GRACE_S` after its ``started_at``).

    Example:
        >>> marker_alive({"pid": None, "started_at": time.time()})
        True
    """
    pid = marker.get("pid")
    if pid is None:
        return time.time() - float(marker.get("started_at") or 0.0) < SPAWN_GRACE_S
    return process_alive(int(pid), marker.get("start_time"))


def reap_children() -> None:
    """Collect the children `spawn_tracked` started that have ended."""
    with _children_lock:
        _children[:] = [child for child in _children if child.poll() is None]
