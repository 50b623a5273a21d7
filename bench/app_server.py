"""Run the Streamlit app in a subprocess for the browser tests and the UI bench.

``streamlit run app.py`` on a free port with its own ``TL_HOME``; the server leads its own
process group, so one signal ends it and anything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Debian's Chromium (Playwright cannot download its own here) and the flags that keep it
#: from reaching for the network at every start.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_app(
    home: Path,
    log: Path,
    *,
    extra_args: Sequence[str] = (),
    start_seconds: float = 60,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, int]]:
    """Serve the app with ``TL_HOME=home``, output into `log`; yield ``(url, pid)``.

    At the end the server's worker processes (which lead sessions of their own, so that
    they outlive a server restart) are ended with it.

    Args:
        home: the server's ``TL_HOME``.
        log: the file its output goes to.
        extra_args: more ``streamlit run`` options (default none).
        start_seconds: how long it may take to become healthy (default 60).
        env: variables added to this process's environment (default none), e.g.
            ``{"TL_CLASS_CODE": "ABC", "TL_TEACHER_PASSWORD": "pw"}`` for class mode.

    Example:
        >>> with serve_app(home, home / "streamlit.log") as (url, pid):  # doctest: +SKIP
        ...     urllib.request.urlopen(url)

    Raises:
        RuntimeError: the server exited or was not healthy within `start_seconds`; the
            message ends with its log.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless=true",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        *extra_args,
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=os.environ | {"TL_HOME": str(home)} | dict(env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://localhost:{port}"
    try:
        _wait_until_healthy(url, server, log, start_seconds)
        yield url, server.pid
    finally:
        workers = descendants(server.pid)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        _end(workers)


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, from ``/proc`` (``[]`` off Linux)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended while we looked
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _end(pids: list[int]) -> None:
    """SIGKILL each of `pids` that still runs, with its process group when it leads one."""
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def _wait_until_healthy(
    url: str, server: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s:\n{log.read_text()}")
