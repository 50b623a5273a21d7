"""Files that readers never see half-written, and locks that say who writes a folder.

Every file the studio replaces (``status.json``, checkpoints, ``model.keras``, exports, cache
entries, uploads) goes through `atomic_write`: the content is written to a temporary file
with a name unique to this process and thread, flushed to disk (``fsync``), then renamed
over the target, and the folder is flushed so the rename survives a power cut. A reader
sees the old file or the new one, never a mix, and two writers never share a temporary.

`FolderLock` is an exclusive ``flock`` on a file inside a folder, held for a process's
lifetime. The kernel drops it when the process dies, however it dies (SIGKILL included),
so "the lock is held" is the one liveness test that cannot go stale.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text_atomic(folder / "note.txt", "hello")
    >>> (folder / "note.txt").read_text()
    'hello'
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_core.faults import fault_point

__all__ = [
    "FolderLock",
    "atomic_write",
    "jsonable",
    "lock_held",
    "read_json",
    "temporary_name",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path`, unique to this process and thread.

    The target's whole name stays at the end, so libraries that check suffixes (Keras wants
    ``.keras`` or ``.weights.h5``, NumPy appends ``.npz`` otherwise) accept it; the
    ``.tmp.`` marker lets a clean-up find leftovers of killed writers.
    """
    return path.with_name(f".{os.getpid()}-{threading.get_ident()}.tmp.{path.name}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # some filesystems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any], *, durable: bool = True) -> None:
    """Call ``write(tmp)`` for a temporary file next to `path`, then move it into place.

    Args:
        path: the file to create or replace.
        write: writes the complete content to the path it is given.
        durable: flush file and folder to disk (default ``True``); ``False`` for files that
            are cheap to recompute and written often (progress lines, caches).

    The temporary is removed when `write` or the rename fails; the old file stays intact.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if durable:
            _fsync_file(tmp)
        fault_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_folder(path.parent)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically (see `atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace `path` with UTF-8 `text` atomically (see `atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def jsonable(value: Any) -> Any:
    """`json.dumps` default: paths become strings, NumPy scalars plain numbers."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file; return `default` when it is missing or not (yet) valid."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def write_json_atomic(path: Path, doc: Any, *, durable: bool = True) -> None:
    """Replace `path` with `doc` as JSON atomically; paths and NumPy scalars are converted."""
    text = json.dumps(doc, indent=1, ensure_ascii=False, default=jsonable)
    write_text_atomic(path, text, durable=durable)


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``folder/name`` for as long as it is held.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with FolderLock(folder) as lock:
        ...     lock_held(folder)
        True
        >>> lock_held(folder)
        False
    """

    def __init__(self, folder: Path, name: str = ".writer.lock") -> None:
        self.path = Path(folder) / name
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.5) -> bool:
        """Take the lock; return ``False`` (and hold nothing) when another holder keeps it.

        Retries for up to `timeout` seconds (default 0.5): `lock_held` probes by taking the
        lock for an instant, and such a probe must not turn away the rightful writer.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)
        os.set_inheritable(fd, False)
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        if not self.acquire():
            raise BlockingIOError(f"{self.path} is locked by another process")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_held(folder: Path, name: str = ".writer.lock") -> bool:
    """Whether some process (this one included) holds the `FolderLock` of `folder` now.

    Tests by trying the lock: flock locks belong to open file descriptions, so a probe from
    the holder's own process still sees it taken.
    """
    path = Path(folder) / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
