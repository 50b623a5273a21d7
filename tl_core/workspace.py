"""Where `tl_core` keeps its files: the workspace root `TL_HOME` and safe paths under it."""

from __future__ import annotations

import os
from pathlib import Path

from tl_core.errors import DataError

DEFAULT_HOME = "workspace"


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
