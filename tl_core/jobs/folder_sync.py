"""Copying a run folder from the node that trains it to the server, as it changes.

A run trained on another machine (`tl_core.jobs.ray_runner`) writes into a node-local copy
of its run folder; the server's copy follows it through *deltas*. The receiving side keeps
`known`, the signature (inode, size, modification time) of every file as it last received
it, and asks for what changed since: `changes_since` (on the node) answers with a `Delta`,
`apply_delta` (on the server) writes it.

- Files that only grow (``metrics.jsonl``, ``drift_history.jsonl``, ``log.txt``, the
  TensorBoard event files) travel as their new bytes, appended on the server; for the
  text ones only whole lines travel, so a reader never sees half a line. A file that was
  replaced (a new inode: the resumed worker rewrote ``metrics.jsonl``) or that shrank
  travels whole and replaces the server's.
- Every other file travels whole when its signature changed and replaces the server's
  atomically (`tl_core.fsutil.write_bytes_atomic`). Files gone on the node (pruned
  checkpoints) are removed on the server after the new ones are written.
- Within a delta, checkpoint files come before their commit pointer
  (``checkpoints/last.json``) and ``status.json`` comes last: a server stopped halfway
  through a delta holds a run that resumes from a checkpoint it has whole.
- Hidden names (temporaries of atomic writes, ``.writer.lock``) and the ``STOP`` flag never
  travel: each side has its own.

`pack_folder` and `unpack_folder` move a whole folder (a dataset, a run to resume) the
other way, as one tar archive.

Example:
    >>> delta = changes_since(node_root, known)  # doctest: +SKIP
    >>> apply_delta(server_root, delta)  # doctest: +SKIP
    >>> known = delta.known  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tl_core.fsutil import write_bytes_atomic
from tl_core.workspace import safe_join

__all__ = [
    "Change",
    "Delta",
    "Signature",
    "apply_delta",
    "changes_since",
    "pack_folder",
    "signatures",
    "unpack_folder",
]

#: (inode, size, modification time in ns); for a growing file, size is the bytes sent.
Signature = tuple[int, int, int]

#: Files that only grow while a worker writes them (sent as their new bytes).
_GROWING = frozenset({"metrics.jsonl", "drift_history.jsonl", "log.txt"})
#: Growing files whose bytes travel in whole lines only.
_LINES = _GROWING
#: Per-run names that never travel: each side has its own.
_LOCAL_ONLY = frozenset({"STOP"})


@dataclass(frozen=True)
class Change:
    """New content of one file: appended to it (``append``) or replacing it."""

    path: str
    data: bytes
    append: bool


@dataclass(frozen=True)
class Delta:
    """What changed in a folder since `known`: `changes` to write in order, then `removed`;
    `known` is the signature map to ask with next time."""

    changes: list[Change] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    known: dict[str, Signature] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """The bytes this delta carries."""
        return sum(len(change.data) for change in self.changes)


def _travels(relative: Path) -> bool:
    return not any(part.startswith(".") for part in relative.parts) and (
        relative.as_posix() not in _LOCAL_ONLY
    )


def _growing(path: str) -> bool:
    return path in _GROWING or path.startswith("tensorboard/")


def _files(root: Path) -> Iterable[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if _travels(relative) and path.is_file():
            yield relative.as_posix(), path


def _stat(path: Path) -> Signature:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def signatures(root: Path) -> dict[str, Signature]:
    """The signature of every file of `root` that travels (as `changes_since` keys them).

    Example:
        >>> signatures(run_dir)["run.json"]  # doctest: +SKIP
        (1234567, 812, 1765000000000000000)
    """
    found: dict[str, Signature] = {}
    for name, path in _files(root):
        try:
            found[name] = _stat(path)
        except FileNotFoundError:  # replaced or pruned while we looked
            continue
    return found


def _order(change: Change) -> tuple[int, str]:
    """Checkpoint files, then their commit pointer, then the rest, ``status.json`` last."""
    if change.path == "status.json":
        return (3, change.path)
    if change.path == "checkpoints/last.json":
        return (1, change.path)
    return (0 if change.path.startswith("checkpoints/") else 2, change.path)


def _read_change(
    name: str, path: Path, before: Signature | None, now: Signature
) -> tuple[Change, Signature] | None:
    """The change of one file whose signature moved from `before` to `now`."""
    data = path.read_bytes()
    grows = _growing(name)
    same_file = before is not None and before[0] == now[0] and len(data) >= before[1]
    start = before[1] if grows and same_file and before is not None else 0
    end = len(data)
    if name in _LINES:
        end = data.rfind(b"\n", start) + 1 or start  # whole lines only
    if grows and same_file and end <= start:
        return None  # nothing whole to send yet
    change = Change(name, data[start:end], append=grows and same_file)
    return change, (now[0], end if grows else now[1], now[2])


def changes_since(root: Path, known: Mapping[str, Signature]) -> Delta:
    """What changed under `root` since the signatures `known` (empty: everything).

    Args:
        root: the folder being written (the node-local run folder).
        known: the signatures the receiver holds (`Delta.known` of its last delta).

    Example:
        >>> changes_since(run_dir, {}).changes[0].path  # doctest: +SKIP
        'checkpoints/epoch-0001.001.npz'
    """
    changes: list[Change] = []
    now_known: dict[str, Signature] = {}
    for name, path in _files(root):
        try:
            now = _stat(path)
            before = known.get(name)
            if before is not None and before == now:
                now_known[name] = now
                continue
            read = _read_change(name, path, before, now)
        except FileNotFoundError:  # replaced or pruned while we looked: next delta
            if name in known:
                now_known[name] = known[name]
            continue
        if read is None:
            now_known[name] = known[name]
            continue
        change, now_known[name] = read
        changes.append(change)
    removed = sorted(set(known) - set(now_known))
    return Delta(sorted(changes, key=_order), removed, now_known)


def apply_delta(root: Path, delta: Delta) -> None:
    """Write `delta` into `root` (the server's run folder), in its order.

    Raises:
        DataError: a path in the delta would leave `root` (never written then).

    Example:
        >>> apply_delta(run_path(run_id), delta)  # doctest: +SKIP
    """
    for change in delta.changes:
        target = safe_join(root, change.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if change.append:
            with target.open("ab") as out:
                out.write(change.data)
        else:
            write_bytes_atomic(target, change.data)
    for name in delta.removed:
        safe_join(root, name).unlink(missing_ok=True)


def pack_folder(root: Path, *, skip: Iterable[str] = ()) -> bytes:
    """The files of `root` that travel, as an uncompressed tar archive, minus `skip`
    (top-level names such as ``log.txt``).

    Example:
        >>> len(pack_folder(dataset_dir)) > 0  # doctest: +SKIP
        True
    """
    left_out = set(skip)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, path in _files(root):
            if name.split("/", 1)[0] not in left_out:
                archive.add(path, arcname=name, recursive=False)
    return buffer.getvalue()


def unpack_folder(data: bytes, target: Path) -> None:
    """Unpack a `pack_folder` archive as the folder `target`, all at once.

    The files go to a hidden sibling first, renamed to `target` at the end, so a reader
    (or a second unpacker of the same dataset) never sees a half-filled folder; when
    `target` appeared meanwhile, the copy unpacked here is dropped.

    Example:
        >>> unpack_folder(pack_folder(dataset_dir), cache / dataset_dir.name)  # doctest: +SKIP
    """
    staging = target.with_name(f".ingest-{target.name}-{os.getpid()}-{os.urandom(3).hex()}")
    staging.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
            archive.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
