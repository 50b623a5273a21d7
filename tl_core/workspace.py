"""Where `tl_core` keeps its files: the workspace root `TL_HOME`, safe paths under it, and
the clean-up of what killed writers left half written (`clean_staging`)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from tl_core.errors import DataError
from tl_core.fsutil import lock_held
from tl_core.jobs.processes import process_alive

__all__ = ["DEFAULT_HOME", "clean_staging", "datasets_dir", "safe_join", "tl_home"]

DEFAULT_HOME = "workspace"
#: Seconds a staging item without a writer's pid must stay untouched before it counts as
#: left behind: live writers (an ingest, an upload) add to theirs every few seconds.
STAGING_QUIET_S = 15 * 60

log = logging.getLogger("tl_core.workspace")

#: ``fsutil.temporary_name``: ``.<pid>-<thread id>.tmp.<target name>``.
_TEMPORARY = re.compile(r"^\.(\d+)-\d+\.tmp\.")
#: Dataset ingest staging: ``.ingest-<sha12>-<pid>-<random>`` (older: without the pid).
_INGEST = re.compile(r"^\.ingest-[0-9a-f]{12}-(?:(\d+)-)?")
#: Folders that hold only finished files by the thousand: not worth walking.
_NOT_WALKED = frozenset({"images", "tensorboard"})


def tl_home() -> Path:
    """Return the workspace root: ``$TL_HOME``, or ``./workspace`` when it is unset.

    The directory is created when missing.

    Example:
        >>> tl_home().name  # doctest: +SKIP
        'workspace'
    """
    root = Path(os.environ.get("TL_HOME") or DEFAULT_HOME).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def datasets_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/datasets``, created when missing."""
    path = (home or tl_home()) / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_join(root: Path, *parts: str) -> Path:
    """Join `parts` under `root` and check that the result stays inside `root`.

    Use it for every path built from a name that came from outside (an archive entry,
    a query parameter). Raises `DataError` when the result would escape `root`.
    """
    root = root.resolve()
    candidate = root.joinpath(*parts).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(
            f"Refused the path {'/'.join(parts)!r}: it points outside {root}. "
            "Names from archives and links may not leave the workspace; rename the entry."
        )
    return candidate


def clean_staging(home: Path | None = None, *, quiet_s: float = STAGING_QUIET_S) -> list[str]:
    """Remove what writers killed mid-write left under `home`; return what was removed.

    A server calls it when its scheduler starts. Removed, when their writer is gone:

    - ``datasets/.ingest-*`` (dataset ingest staging folders),
    - hidden folders in ``cache/`` (feature cache staging),
    - ``weights/.upload-*.part`` (weights uploads),
    - ``model.tmp.keras`` in a run folder,
    - ``fsutil.temporary_name`` temporaries (``.<pid>-<tid>.tmp.<name>``) anywhere.

    The writer is gone when the pid in the name is no live process; a run folder whose
    writer lock is held is left alone entirely (its worker owns everything in it); an item
    whose name has no pid counts as left behind once nothing in it changed for `quiet_s`
    seconds (default `STAGING_QUIET_S`).

    Args:
        home: the workspace root (default ``TL_HOME``).
        quiet_s: seconds without change after which a pid-less staging item is removed.

    Returns:
        The removed paths, relative to `home`, with ``/`` separators.

    Example:
        >>> clean_staging()  # doctest: +SKIP
        ['datasets/.ingest-0123456789ab-4242-x1y2z3', 'runs/20261123-131500-a1b2c3/model.tmp.keras']
    """
    root = (home or tl_home()).resolve()
    removed = []
    for path in _leftovers(root, time.time() - quiet_s):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # its writer finished (or cleaned) meanwhile
        except OSError as exc:
            log.warning("could not remove the leftover %s: %s", path, exc)
            continue
        removed.append(path.relative_to(root).as_posix())
    if removed:
        log.info("removed %d leftover(s) of killed writers: %s", len(removed), removed)
    return removed


def _leftovers(root: Path, quiet_since: float) -> Iterator[Path]:
    """The items `clean_staging` removes, found by one walk that skips live run folders."""
    for folder, names, files in os.walk(root):
        here = Path(folder)
        if here.parent.name == "runs" and here.parent.parent == root and lock_held(here):
            names.clear()
            continue
        for name in list(names):
            if _is_leftover(here, name, quiet_since, is_dir=True):
                names.remove(name)
                yield here / name
            elif name in _NOT_WALKED:
                names.remove(name)
        for name in files:
            if _is_leftover(here, name, quiet_since, is_dir=False):
                yield here / name


def _is_leftover(folder: Path, name: str, quiet_since: float, *, is_dir: bool) -> bool:
    path = folder / name
    if match := _TEMPORARY.match(name):
        return not _pid_alive(int(match[1]))
    if is_dir and folder.name == "datasets" and (match := _INGEST.match(name)):
        return not _pid_alive(int(match[1])) if match[1] else _quiet(path, quiet_since)
    if is_dir and folder.name == "cache" and name.startswith("."):
        return _quiet(path, quiet_since)
    if not is_dir and folder.name == "weights" and name.startswith(".upload-"):
        return name.endswith(".part") and _quiet(path, quiet_since)
    # Run folders are written by their lock holder only, and the walk skips locked ones.
    return not is_dir and name == "model.tmp.keras" and folder.parent.name == "runs"


def _quiet(path: Path, since: float) -> bool:
    """Whether nothing in `path` (a file, or a folder and all it holds) changed after `since`."""
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    try:
        return all(item.lstat().st_mtime < since for item in items)
    except FileNotFoundError:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether a process `pid` lives on this machine (a zombie counts as ended)."""
    return process_alive(pid, None)
