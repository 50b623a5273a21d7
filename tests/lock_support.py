"""A run folder's writer lock held by another process, as a live worker holds it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Hold `folder`'s `FolderLock` in a child process for the block; SIGKILL it after.

    The child is killed, not asked to stop, so the test also sees the kernel drop the lock
    of a process that died without a word.
    """
    script = (
        "import time; from tl_core.fsutil import FolderLock\n"
        f"lock = FolderLock({str(folder)!r}); assert lock.acquire()\n"
        "print('held', flush=True); time.sleep(300)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE)
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == b"held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
