"""Where class mode keeps its small records: JSON files under ``TL_HOME/class``.

Each file is read whole and replaced atomically; changes happen under an exclusive lock
per file (`edit_json`), so two server processes (or two sessions' threads) never lose
each other's change. The records are small (a roster of ~30 names, a few shares), so a
file beats a database here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tl_core.errors import JobError
from tl_core.fsutil import FolderLock, read_json, write_json_atomic
from tl_core.workspace import tl_home

__all__ = ["class_dir", "edit_json", "read_record"]

#: Seconds a change waits for another one on the same file.
_LOCK_TIMEOUT_S = 10.0


def class_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/class`` (roster, secret, settings, shares), created when missing."""
    folder = (home or tl_home()) / "class"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_record(name: str, *, home: Path | None = None) -> dict[str, Any]:
    """The record ``TL_HOME/class/<name>.json``; empty when missing or damaged.

    Reading creates nothing, so a personal studio never grows a ``class`` folder.
    """
    doc = read_json((home or tl_home()) / "class" / f"{name}.json", {})
    return doc if isinstance(doc, dict) else {}


@contextmanager
def edit_json(name: str, *, home: Path | None = None) -> Iterator[dict[str, Any]]:
    """Yield the record `name` to change in place; it is written back when the block ends
    without an exception.

    Raises:
        JobError: when another change holds the file for more than 10 s.
    """
    folder = class_dir(home)
    lock = FolderLock(folder, f".{name}.lock")
    if not lock.acquire(timeout=_LOCK_TIMEOUT_S):
        raise JobError(
            f"The class's {name} record stayed locked for {_LOCK_TIMEOUT_S:.0f} s. Try again."
        )
    try:
        record = read_record(name, home=home)
        yield record
        write_json_atomic(folder / f"{name}.json", record)
    finally:
        lock.release()
