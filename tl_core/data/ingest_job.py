"""Ingest a zip in a process of its own, so that the web server's threads stay free.

Reading a 500 MB archive takes minutes of decoding and writing; in a Streamlit script
thread it would hold the page (and, through the GIL, slow every other session). So the
web app calls `start_ingest`, which starts ``python -m tl_core.data.ingest_job`` in a
detached process running `tl_core.data.archive.ingest_archive`, and then polls
`ingest_state`. Everything the two sides share is on disk, per dataset id (the archive's
content hash, `tl_core.data.archive.archive_id`)::

    TL_HOME/ingests/<sha12>/pid.json       while it runs: {"pid", "start_time", "started_at"}
    TL_HOME/ingests/<sha12>/archive.zip    the uploaded copy, until the ingest ends
    TL_HOME/ingests/<sha12>/progress.json  {"done", "total"}: files checked so far
    TL_HOME/ingests/<sha12>/error.json     {"error", "exit_code"} once it failed
    TL_HOME/ingests/<sha12>/log.txt        what the process printed (a traceback, a crash)

The finished dataset is ``TL_HOME/datasets/<sha12>/`` itself. ``pid.json`` is created
exclusively, so of several sessions uploading the same archive at once one starts the
process and the others wait for it. A process that dies without a word (killed, out of
memory) is noticed by the next look at its state: it reads as failed, and the folder it
was building is deleted, never taken for a dataset.

Example:
    >>> ticket = start_ingest("assets/sample_shapes.zip")  # doctest: +SKIP
    >>> ingest_state(ticket).label  # doctest: +SKIP
    'Checking 120 of 280 files…'
    >>> ingest_state(ticket).state  # a moment later  # doctest: +SKIP
    'ready'
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import dataset_owners, record_dataset_owner
from tl_core.classroom.settings import read_class_settings
from tl_core.data.archive import archive_id, discard_staging, ingest_archive
from tl_core.errors import AccessDenied, DataError, TLError
from tl_core.fsutil import FolderLock, read_json, write_json_atomic
from tl_core.jobs.processes import marker_alive, reap_children, spawn_tracked
from tl_core.workspace import datasets_dir, tl_home

__all__ = [
    "INGESTS_DIR",
    "IngestState",
    "IngestTicket",
    "forget_ingest",
    "ingest_folder",
    "ingest_state",
    "run_ingest",
    "save_upload",
    "start_ingest",
]

#: Folder of ``TL_HOME`` that holds the ingests in progress and their outcomes.
INGESTS_DIR = "ingests"

#: Seconds between two progress writes: often enough for a 1 s poll, rare enough that a
#: 50,000-file archive does not spend its time writing progress.
_PROGRESS_EVERY_S = 0.2
_COPY_CHUNK = 1 << 20
#: Seconds to wait for another session that is starting or checking the same ingest.
_LOCK_TIMEOUT_S = 10.0

#: Processes this process started, kept until they end so that they are reaped (no
#: zombies in a long-lived web server, no warning about a child still running).


@dataclass(frozen=True)
class IngestTicket:
    """What a session needs to follow an ingest: the dataset id it will have, and the
    archive's name as the user knows it."""

    dataset_id: str
    source_name: str


@dataclass(frozen=True)
class IngestState:
    """Where an ingest stands.

    Args:
        state: ``"running"``, ``"ready"`` (the dataset is stored) or ``"failed"``.
        done: files of the archive checked so far, while running.
        total: files to check, once the archive's directory is read (0 before).
        pid: the ingest process, while running.
        error: why it failed, in plain words (what, why, what to do).
        internal: the failure is a bug in `tl_core`, not a problem of the archive.
        crashed: the process died without a word (killed, out of memory).
    """

    state: str
    done: int = 0
    total: int = 0
    pid: int | None = None
    error: str | None = None
    internal: bool = False
    crashed: bool = False

    @property
    def label(self) -> str:
        """``"Checking 1,234 of 5,000 files…"``, or ``"Opening the archive…"`` before that."""
        if self.total <= 0:
            return "Opening the archive…"
        return f"Checking {self.done:,} of {self.total:,} files…"

    @property
    def fraction(self) -> float:
        """Share of the files checked, 0 to 1."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


@dataclass(frozen=True)
class _Paths:
    folder: Path
    pid: Path
    archive: Path
    progress: Path
    error: Path
    log: Path

    @classmethod
    def of(cls, folder: Path) -> _Paths:
        return cls(
            folder,
            folder / "pid.json",
            folder / "archive.zip",
            folder / "progress.json",
            folder / "error.json",
            folder / "log.txt",
        )


def ingest_folder(ticket: IngestTicket, *, home: Path | None = None) -> Path:
    """Return ``TL_HOME/ingests/<dataset id>``, where the ingest of `ticket` keeps its files."""
    return (home or tl_home()) / INGESTS_DIR / ticket.dataset_id


def save_upload(stream: IO[bytes], *, home: Path | None = None) -> Path:
    """Copy an uploaded archive into the workspace in chunks; return the copy's path.

    Pass the copy to `start_ingest` with ``consume=True``, which moves it (same disk,
    so no second copy) or deletes it.

    Example:
        >>> path = save_upload(upload)  # doctest: +SKIP
        >>> ticket = start_ingest(path, source_name=upload.name, consume=True)  # doctest: +SKIP
    """
    folder = (home or tl_home()) / INGESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f".upload-{os.getpid()}-{threading.get_ident()}-{time.time_ns()}.zip"
    try:
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out, _COPY_CHUNK)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise DataError(
            f"Cannot keep the uploaded archive on the server: {exc.strerror or exc}. "
            "Free some disk space or check the workspace's permissions, then upload it again."
        ) from exc
    return target


def start_ingest(
    archive: str | os.PathLike[str],
    *,
    source_name: str | None = None,
    consume: bool = False,
    home: Path | None = None,
    actor: Identity | None = None,
) -> IngestTicket:
    """Start ingesting `archive` in a background process, unless it is stored or under way.

    In class mode the uploader of a consumed upload is recorded as one of the dataset's
    owners (the same archive uploaded by two students has both; a file already on the
    server, such as the bundled sample, and a dataset stored before class mode stay open
    to everyone), and a student's archive over the class's upload limit
    (`tl_core.classroom.settings.ClassSettings.max_upload_mb`) is refused.

    Args:
        archive: the zip file.
        source_name: the name to show for it (default: the file name).
        consume: the file is a copy made for this ingest (`save_upload`): it is moved
            into the ingest's folder, or deleted when another ingest of the same archive
            is already stored or running (default False: the file is left alone).
        home: workspace root (default `tl_home()`).
        actor: who uploads it (default ``None``: the operator, who has no upload limit
            and is recorded as no owner).

    Returns:
        The `IngestTicket` to pass to `ingest_state`.

    Raises:
        DataError: the file cannot be read, or the process cannot be started.
        AccessDenied: `actor` is a student and the archive is over the upload limit;
            a consumed copy is deleted then.

    Example:
        >>> ticket = start_ingest("assets/sample_shapes.zip")  # doctest: +SKIP
        >>> ticket.dataset_id  # doctest: +SKIP
        'c3a2df1541e7'
    """
    path = Path(archive)
    name = source_name or path.name
    try:
        _check_upload_size(path, name, actor, home)
        ticket = IngestTicket(archive_id(path), name)
    except OSError as exc:
        raise DataError(
            f"Cannot read {name!r}: {exc.strerror or exc}. Check the file, or upload it again."
        ) from exc
    except AccessDenied:
        if consume:
            path.unlink(missing_ok=True)
        raise
    paths = _Paths.of(ingest_folder(ticket, home=home))
    paths.folder.mkdir(parents=True, exist_ok=True)
    reap_children()
    with _locked(paths):
        marker = _marker(paths)
        stored = _stored(ticket, home)
        launch = not stored and not (marker is not None and marker_alive(marker))
        if launch:
            if marker is not None:
                _settle_crash(paths, ticket, marker, home)
            _launch(paths, path, ticket, consume, home)
    if consume:
        path.unlink(missing_ok=True)  # already moved away when launched
        _record_uploader(ticket.dataset_id, actor, stored, home)
    return ticket


def _record_uploader(
    dataset_id: str, actor: Identity | None, stored: bool, home: Path | None
) -> None:
    """Record `actor` as an owner of the upload `dataset_id`: also when it was stored or
    under way already (the same archive from a second student), but not when it is stored
    with no owner, since it is open to everyone then and would become theirs alone."""
    if stored and not dataset_owners(dataset_id, home=home):
        return
    record_dataset_owner(dataset_id, actor, home=home)


def _check_upload_size(path: Path, name: str, actor: Identity | None, home: Path | None) -> None:
    """Refuse a student's archive over the class's upload limit (the teacher and the
    operator have none); raises `OSError` when the file cannot be read."""
    if actor is None or actor.is_teacher:
        return
    limit_mb = read_class_settings(home=home).max_upload_mb
    size = path.stat().st_size
    if size > limit_mb * 1024 * 1024:
        # Rounded up, so that an archive just over the limit never reads as equal to it.
        size_mb = math.ceil(size / (1024 * 1024))
        raise AccessDenied(
            f"The archive {name!r} is {size_mb:,} MB, over the class's upload limit of "
            f"{limit_mb:,} MB per student. Make it smaller (fewer or smaller images) or ask "
            "the teacher to raise the limit."
        )


def ingest_state(ticket: IngestTicket, *, home: Path | None = None) -> IngestState:
    """Return where the ingest of `ticket` stands: a few small file reads, no waiting.

    A process that died without recording an outcome reads as failed (``crashed``), and
    the half-built folder it leaves is deleted.

    Example:
        >>> ingest_state(ticket).state  # doctest: +SKIP
        'running'
    """
    paths = _Paths.of(ingest_folder(ticket, home=home))
    reap_children()
    for _ in range(2):  # the process may finish between the checks; look twice
        if _stored(ticket, home):
            return IngestState("ready")
        marker = _marker(paths)
        if marker is not None and marker_alive(marker):
            return _progress(paths, marker)
        if marker is not None:
            with _locked(paths):
                marker = _marker(paths)  # another session may have settled it, or restarted
                if marker is not None and not marker_alive(marker):
                    _settle_crash(paths, ticket, marker, home)
            continue
        record = read_json(paths.error)
        if isinstance(record, dict):
            return IngestState(
                "failed",
                error=str(record.get("error") or _crash_message(ticket)),
                internal=record.get("exit_code") == 1,
                crashed=bool(record.get("crashed")),
            )
    return IngestState(
        "failed",
        error=f"The ingest of {ticket.source_name!r} is not running and left no dataset "
        "(the workspace was cleaned meanwhile). Try again.",
        crashed=True,
    )


def forget_ingest(ticket: IngestTicket, *, home: Path | None = None) -> None:
    """Delete the record of a failed ingest, so that the next start tries afresh."""
    _Paths.of(ingest_folder(ticket, home=home)).error.unlink(missing_ok=True)


@contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Hold the ingest folder's lock: starting and settling a crash are one step each."""
    lock = FolderLock(paths.folder, ".lock")
    if not lock.acquire(timeout=_LOCK_TIMEOUT_S):
        raise DataError(
            "The server is busy starting or checking the same archive for another session. "
            "Wait a few seconds, then upload it again."
        )
    try:
        yield
    finally:
        lock.release()


def _stored(ticket: IngestTicket, home: Path | None) -> bool:
    return (datasets_dir(home) / ticket.dataset_id / "report.json").is_file()


def _marker(paths: _Paths) -> dict[str, Any] | None:
    marker = read_json(paths.pid)
    return marker if isinstance(marker, dict) else None


def _progress(paths: _Paths, marker: dict[str, Any]) -> IngestState:
    progress = read_json(paths.progress)
    pid = marker.get("pid")
    if not isinstance(progress, dict):
        return IngestState("running", pid=pid)
    done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
    return IngestState("running", done=done, total=total, pid=pid)


def _settle_crash(
    paths: _Paths, ticket: IngestTicket, marker: dict[str, Any], home: Path | None
) -> None:
    """Record a process that died without an outcome, and clear what it left."""
    if not _stored(ticket, home) and not paths.error.exists():
        write_json_atomic(
            paths.error, {"error": _crash_message(ticket), "exit_code": None, "crashed": True}
        )
    pid = marker.get("pid")
    if isinstance(pid, int):
        discard_staging(ticket.dataset_id, pid, home=home)
    for path in (paths.archive, paths.progress, paths.pid):
        path.unlink(missing_ok=True)


def _crash_message(ticket: IngestTicket) -> str:
    return (
        f"The ingest of {ticket.source_name!r} stopped before it finished: its process "
        "ended without a result (it was stopped, or the server ran out of memory). Nothing "
        "of it was stored, and the datasets stored earlier are untouched. Try again; if it "
        "stops again, try a smaller archive."
    )


def _launch(
    paths: _Paths, archive: Path, ticket: IngestTicket, consume: bool, home: Path | None
) -> None:
    """Start the ingest process; call with the folder's lock held and no live marker."""
    started_at = time.time()
    # The marker goes first: a session that looks meanwhile sees an ingest starting, not
    # the outcome of an earlier attempt nor nothing at all.
    write_json_atomic(paths.pid, {"pid": None, "started_at": started_at}, durable=False)
    for stale in (paths.error, paths.progress):
        stale.unlink(missing_ok=True)
    source = archive.resolve()
    if consume:
        os.replace(archive, paths.archive)
        source = paths.archive
    argv = [
        sys.executable,
        "-m",
        "tl_core.data.ingest_job",
        str(paths.folder),
        str(source),
        ticket.source_name,
    ]
    env = os.environ | {"TL_HOME": str(home or tl_home())}
    try:
        spawn_tracked(argv, env=env, log=paths.log, marker=paths.pid, started_at=started_at)
    except OSError as exc:
        for path in (paths.archive, paths.pid):
            path.unlink(missing_ok=True)
        raise DataError(
            f"Could not start reading {ticket.source_name!r} in a background process "
            f"({exc.strerror or type(exc).__name__}). Check that this machine has free memory "
            "and process slots, then upload it again."
        ) from exc


class _ProgressFile:
    """``progress(done, total)`` for `ingest_archive` that writes ``progress.json``,
    at most every `_PROGRESS_EVERY_S` seconds (and always for the first file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == 1 or now - self.last >= _PROGRESS_EVERY_S:
            self.last = now
            # Cheap to recompute and written often: no fsync.
            write_json_atomic(self.path, {"done": done, "total": total}, durable=False)


def run_ingest(folder: Path, archive: Path, source_name: str) -> int:
    """Ingest `archive` reporting into the ingest folder `folder`; return an exit code.

    A `TLError` is recorded in ``error.json`` with its message (exit code 2); any other
    exception is recorded as a bug (exit code 1) and raised again, so that its traceback
    reaches the log. The copy of an upload and the marker are removed whatever happens.

    Example:
        >>> run_ingest(folder, folder / "archive.zip", "pets.zip")  # doctest: +SKIP
        0
    """
    paths = _Paths.of(Path(folder))
    try:
        ingest_archive(archive, source_name=source_name, progress=_ProgressFile(paths.progress))
    except TLError as exc:
        _record_failure(paths, " ".join(str(exc).split()), 2)
        return 2
    except Exception as exc:
        _record_failure(
            paths,
            f"Reading {source_name!r} failed on an internal error ({type(exc).__name__}: "
            f"{exc}). This is a bug in tl_core, not in your archive.",
            1,
        )
        raise
    finally:
        for path in (paths.archive, paths.progress, paths.pid):
            path.unlink(missing_ok=True)
    paths.log.unlink(missing_ok=True)
    return 0


def _record_failure(paths: _Paths, message: str, exit_code: int) -> None:
    paths.folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.error, {"error": message, "exit_code": exit_code})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tl_core.data.ingest_job FOLDER ARCHIVE SOURCE_NAME``: run one ingest."""
    folder, archive, source_name = sys.argv[1:] if argv is None else list(argv)
    return run_ingest(Path(folder), Path(archive), source_name)


if __name__ == "__main__":
    sys.exit(main())
