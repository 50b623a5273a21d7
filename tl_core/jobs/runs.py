"""The run directory: its layout, its status file, and reading what a worker wrote.

```
runs/<run_id>/run.json          config, classes, blocks, params, device, versions
              status.json       RunStatus (state, pid, epoch, times, error)
              metrics.jsonl     one line per epoch; batch progress lines have "type": "batch"
              drift.json        {block: relative L2 change since the start} (latest epoch)
              drift_history.jsonl  one line per epoch: {"epoch", "phase", "drift": {…}}
              model.keras       the trained classifier (raw RGB 0–255 in, probabilities out)
              checkpoints/      epoch-NNNN.SSS.npz (variables and optimizer state, by object),
                                last.json (the commit pointer), initial.npz (drift origin),
                                best-epoch-NNNN.npz (the best epoch's variables)
              tensorboard/      TensorBoard logs
              log.txt           the worker's log
              STOP              present when a stop was requested
```

Run ids are generated here (`new_run_id`), never taken from user input as a path:
`run_path` accepts only ids of the generated shape.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tl_core.config import RunConfig
from tl_core.errors import JobError
from tl_core.fsutil import jsonable, read_json, write_json_atomic
from tl_core.workspace import safe_join, tl_home

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "MetricsFollower",
    "RunFiles",
    "RunStatus",
    "RunSummary",
    "append_jsonl",
    "best_epoch",
    "best_score",
    "list_runs",
    "new_run_id",
    "prepare_run",
    "read_json",
    "read_metrics",
    "read_shown_status",
    "read_status",
    "run_files_signature",
    "run_path",
    "runs_dir",
    "summarize_run",
    "write_json_atomic",
    "write_status",
]

#: States of a run. ``interrupted``: the worker died; the run can be resumed.
STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
ACTIVE_STATES = frozenset({"queued", "running"})
FINAL_STATES = frozenset({"completed", "failed", "stopped", "interrupted"})

_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


@dataclass(frozen=True)
class RunFiles:
    """The paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        """``run.json``."""
        return self.root / "run.json"

    @property
    def status(self) -> Path:
        """``status.json``."""
        return self.root / "status.json"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``."""
        return self.root / "metrics.jsonl"

    @property
    def drift(self) -> Path:
        """``drift.json``."""
        return self.root / "drift.json"

    @property
    def drift_history(self) -> Path:
        """``drift_history.jsonl``."""
        return self.root / "drift_history.jsonl"

    @property
    def model(self) -> Path:
        """``model.keras``."""
        return self.root / "model.keras"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``."""
        return self.root / "tensorboard"

    @property
    def log(self) -> Path:
        """``log.txt``."""
        return self.root / "log.txt"

    @property
    def stop_flag(self) -> Path:
        """``STOP``: its presence asks the worker to stop after the current batch."""
        return self.root / "STOP"


@dataclass(frozen=True)
class RunStatus:
    """What ``status.json`` says about a run.

    ``epoch`` counts finished epochs over all phases; ``error`` is a user-facing message
    (what, why, what to do) when ``state`` is ``failed``, ``error_kind`` says ``input``,
    ``oom`` or ``internal`` (the scheduler retries ``oom``); ``note`` carries other facts
    worth showing (e.g. "retried at batch size 16 after running out of memory").
    """

    state: str = "queued"
    pid: int | None = None
    epoch: int = 0
    total_epochs: int = 0
    phase: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    error_kind: str | None = None
    note: str | None = None

    def with_changes(self, **changes: Any) -> RunStatus:
        """Return a copy with `changes` applied and ``updated_at`` set to now."""
        return replace(self, updated_at=time.time(), **changes)


def runs_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/runs``, created when missing."""
    path = (home or tl_home()) / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id() -> str:
    """Return a fresh run id: UTC time (sortable) and 24 random bits, ``20261123-131500-a1b2c3``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def run_path(run_id: str, home: Path | None = None) -> Path:
    """Return the directory of `run_id` under ``TL_HOME/runs``; malformed ids are refused.

    Raises:
        JobError: when `run_id` is not of the generated shape (it may come from a URL).
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise JobError(
            f"Expected a run id like '20261123-131500-a1b2c3'. Received: run_id={run_id!r}. "
            "Pick a run from the runs list."
        )
    return safe_join(runs_dir(home), run_id)


def append_jsonl(path: Path, doc: dict[str, Any]) -> None:
    """Append one JSON line and flush it to the OS, so a reader sees it at once."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, ensure_ascii=False, default=jsonable) + "\n")
        fh.flush()


def write_status(root: Path, status: RunStatus) -> None:
    """Write ``status.json`` atomically."""
    write_json_atomic(RunFiles(root).status, asdict(status))


def read_status(root: Path) -> RunStatus | None:
    """Read ``status.json``; ``None`` when the run has none yet."""
    doc = read_json(RunFiles(root).status)
    if not isinstance(doc, dict):
        return None
    known = {k: v for k, v in doc.items() if k in RunStatus.__dataclass_fields__}
    return RunStatus(**known)


def read_shown_status(root: Path) -> RunStatus | None:
    """`read_status` for what the pages show: a ``status.json`` that exists but cannot be
    read (damaged on disk; the writers replace it atomically, so never half-written by
    them) counts as a run that was running. With no writer alive it then reads
    ``interrupted``, which the pages explain and offer to resume.

    Example:
        >>> read_shown_status(run_path("20261123-131500-a1b2c3"))  # doctest: +SKIP
        RunStatus(state='completed', ...)
    """
    status = read_status(root)
    if status is None and RunFiles(root).status.exists():
        return RunStatus(state="running")
    return status


def read_metrics(root: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Return the epoch lines of ``metrics.jsonl`` and the latest batch line.

    A last line that is still being written is ignored; so is any line that is not JSON.
    """
    epochs: list[dict[str, Any]] = []
    last_batch: dict[str, Any] | None = None
    try:
        text = RunFiles(root).metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return epochs, None
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("type") == "batch":
            last_batch = doc
        else:
            epochs.append(doc)
    return epochs, last_batch


# --- listing runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run as a runs list shows it, read from its directory alone.

    ``backbone`` and the other config fields are ``None`` when ``run.json`` holds no
    config; ``trainable_blocks`` and ``total_blocks`` are ``None`` until the worker has
    built the model (it writes the per-block plan into ``run.json``). For a two-phase run
    they describe the last phase. ``best_val_accuracy`` and ``best_epoch`` come from the
    epoch lines of ``metrics.jsonl`` (``None`` before the first epoch ends). ``owner`` is
    who submitted the run in class mode (``run.json``'s ``"owner"``; ``None`` outside it).
    """

    run_id: str
    state: str
    created_at: float
    backbone: str | None = None
    weights: str | None = None
    dataset_id: str | None = None
    image_size: int | None = None
    epochs_done: int = 0
    total_epochs: int = 0
    phase: str = ""
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    trainable_blocks: int | None = None
    total_blocks: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    note: str | None = None
    owner: str | None = None

    @property
    def freeze_summary(self) -> str:
        """``"3/19 blocks trainable"``, or ``""`` while the block plan is unknown."""
        if self.trainable_blocks is None or self.total_blocks is None:
            return ""
        return f"{self.trainable_blocks}/{self.total_blocks} blocks trainable"

    def duration(self, now: float | None = None) -> float | None:
        """Seconds from the first start to the end (to `now` while unfinished); ``None``
        before it started."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, end - self.started_at)


def best_score(epoch: dict[str, Any]) -> tuple[float, float] | None:
    """How good an epoch is, as one sortable key: higher validation accuracy, then lower loss.

    The studio's one definition of "best" (pages, compare, the model card, early stopping
    and the exported model all use it): accuracy is what users read, and the validation
    loss breaks ties, which small validation sets make common. ``None`` when the epoch has
    no validation accuracy.

    Example:
        >>> best_score({"val_accuracy": 0.9, "val_loss": 0.3}) > best_score(
        ...     {"val_accuracy": 0.9, "val_loss": 0.4})
        True
    """
    accuracy = epoch.get("val_accuracy")
    if not isinstance(accuracy, (int, float)) or math.isnan(accuracy):
        return None
    loss = epoch.get("val_loss")
    loss_ok = isinstance(loss, (int, float)) and not math.isnan(loss)
    return (float(accuracy), -float(loss) if loss_ok else -math.inf)


def best_epoch(epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best of `epochs` by `best_score`; the earliest wins a full tie. ``None`` if none
    has a validation accuracy.

    Example:
        >>> best_epoch([{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.7}])
        {'epoch': 2, 'val_accuracy': 0.7}
    """
    best: dict[str, Any] | None = None
    best_key: tuple[float, float] | None = None
    for epoch in epochs:
        key = best_score(epoch)
        if key is not None and (best_key is None or key > best_key):
            best, best_key = epoch, key
    return best


def summarize_run(
    run_id: str, home: Path | None = None, *, epochs: list[dict[str, Any]] | None = None
) -> RunSummary:
    """Read one run directory into a `RunSummary`.

    Args:
        run_id: the run.
        home: the workspace root (default ``TL_HOME``).
        epochs: the run's epoch lines when the caller has read them already (default
            ``None``: read from ``metrics.jsonl``).

    Raises:
        JobError: when `run_id` is malformed or names no run (no readable ``run.json``).

    Example:
        >>> summarize_run("20261123-131500-a1b2c3").freeze_summary  # doctest: +SKIP
        '3/19 blocks trainable'
    """
    root = run_path(run_id, home)
    doc = read_json(RunFiles(root).config)
    if not isinstance(doc, dict):
        raise JobError(
            f"There is no run {run_id} in {root.parent} (or its run.json is unreadable). "
            "Pick a run from the runs list."
        )
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    status = read_shown_status(root) or RunStatus(created_at=_number(doc.get("created"), 0.0))
    best = best_epoch(_epoch_lines(root) if epochs is None else epochs)
    blocks = doc.get("blocks")
    trainable = total = None
    if isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks):
        total = len(blocks)
        trainable = sum(1 for b in blocks if b.get("trainable"))
    image_size = doc.get("image_size", config.get("image_size"))
    owner = doc.get("owner")
    return RunSummary(
        run_id=run_id,
        state=status.state,
        created_at=_number(doc.get("created"), status.created_at),
        backbone=config.get("backbone"),
        weights=config.get("weights"),
        dataset_id=config.get("dataset_id"),
        image_size=image_size if isinstance(image_size, int) else None,
        epochs_done=status.epoch,
        total_epochs=status.total_epochs,
        phase=status.phase,
        best_val_accuracy=float(best["val_accuracy"]) if best else None,
        best_epoch=best.get("epoch") if best else None,
        trainable_blocks=trainable,
        total_blocks=total,
        started_at=status.started_at,
        finished_at=status.finished_at,
        error=status.error,
        note=status.note,
        owner=owner if isinstance(owner, str) and owner else None,
    )


def list_runs(home: Path | None = None) -> list[RunSummary]:
    """Return every run under ``TL_HOME/runs``, newest first, read from disk.

    Runs survive restarts of the app because this reads only their directories (queued
    jobs included). Directories that are not runs, or whose ``run.json`` is not written
    yet, are left out.

    Example:
        >>> [run.state for run in list_runs()]  # doctest: +SKIP
        ['running', 'completed']
    """
    summaries = []
    for entry in runs_dir(home).iterdir():
        if not entry.is_dir() or not _RUN_ID.fullmatch(entry.name):
            continue
        try:
            summaries.append(summarize_run(entry.name, home))
        except JobError:
            continue
    return sorted(summaries, key=lambda run: (run.created_at, run.run_id), reverse=True)


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) else default


def _epoch_lines(root: Path) -> list[dict[str, Any]]:
    """The epoch lines of ``metrics.jsonl``; batch lines are skipped before parsing (most
    lines are batch lines, and listing many runs must stay fast)."""
    try:
        text = RunFiles(root).metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    docs = (_metrics_doc(line) for line in text.splitlines() if '"type": "batch"' not in line)
    return [doc for doc in docs if doc is not None and doc.get("type") != "batch"]


def _metrics_doc(line: str | bytes) -> dict[str, Any] | None:
    """One line of ``metrics.jsonl`` as a dict; ``None`` for anything else."""
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


class MetricsFollower:
    """Follows one run's ``metrics.jsonl`` as it grows: each `read` parses only new lines.

    A live view reads the file every second or so, while it grows by a batch line every
    half second for hours: reading it whole each time would cost more the longer a run
    trains. A file that was replaced or shortened (a resumed run drops the lines of the
    epochs it trains again) is read again from the start. A last line still being
    written waits for the next `read`. Safe to share between threads.

    Example:
        >>> follower = MetricsFollower(run_path(run_id))  # doctest: +SKIP
        >>> epochs, last_batch = follower.read()  # doctest: +SKIP
    """

    def __init__(self, root: Path) -> None:
        self.path = RunFiles(root).metrics
        self._lock = threading.Lock()
        self._file: tuple[int, int] | None = None  # (device, inode) of the file read so far
        self._offset = 0
        self._epochs: list[dict[str, Any]] = []
        self._last_batch: dict[str, Any] | None = None

    def read(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Return the epoch lines so far (a new list) and the latest batch line, as
        `read_metrics` does."""
        with self._lock:
            try:
                with self.path.open("rb") as fh:
                    info = os.fstat(fh.fileno())
                    if (info.st_dev, info.st_ino) != self._file or info.st_size < self._offset:
                        self._file, self._offset = (info.st_dev, info.st_ino), 0
                        self._epochs, self._last_batch = [], None
                    fh.seek(self._offset)
                    chunk = fh.read()
            except FileNotFoundError:
                self._file, self._offset, self._epochs, self._last_batch = None, 0, [], None
                return [], None
            complete = chunk.rfind(b"\n") + 1
            self._offset += complete
            for line in chunk[:complete].splitlines():
                doc = _metrics_doc(line)
                if doc is None:
                    continue
                if doc.get("type") == "batch":
                    self._last_batch = doc
                else:
                    self._epochs.append(doc)
            return list(self._epochs), self._last_batch


#: What `run_files_signature` gives for each of a run's live files: ``(inode, size,
#: mtime_ns)``, or ``None`` while the file does not exist.
_FileStamp = tuple[int, int, int] | None


def run_files_signature(root: Path) -> tuple[_FileStamp, _FileStamp, _FileStamp]:
    """Stamps of the files a live view shows: ``metrics.jsonl``, ``status.json`` and the
    stop flag. Equal signatures mean nothing was written since (three ``stat`` calls, no
    reading); the inode catches a file replaced atomically within one clock tick.

    Example:
        >>> before = run_files_signature(run_path(run_id))  # doctest: +SKIP
        >>> run_files_signature(run_path(run_id)) == before  # doctest: +SKIP
        True
    """
    files = RunFiles(root)
    return _stamp(files.metrics), _stamp(files.status), _stamp(files.stop_flag)


def _stamp(path: Path) -> _FileStamp:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def prepare_run(
    run_dir: Path,
    config: RunConfig,
    *,
    run_id: str | None = None,
    owner: str | None = None,
    labels: Mapping[str, Any] | None = None,
) -> RunFiles:
    """Create a run directory with its ``run.json`` (config) and a ``queued`` status.

    Args:
        run_dir: the new run's directory.
        config: the run's settings.
        run_id: the id recorded in ``run.json`` (default ``None``: the directory's name).
        owner: who submitted the run in class mode (default ``None``: nothing recorded).
        labels: more top-level ``run.json`` entries, such as ``{"lesson": {...}}`` for a
            lesson's run (default ``None``: none); the worker keeps them when it rewrites
            ``run.json``. They may not replace the entries above.

    Example:
        >>> prepare_run(run_path(run_id), config, run_id=run_id, owner="Ada")  # doctest: +SKIP

    Raises:
        JobError: when `run_dir` already holds a run.
        ValueError: when `labels` names ``run_id``, ``config``, ``created`` or ``owner``.
    """
    reserved = sorted(set(labels or {}) & {"run_id", "config", "created", "owner"})
    if reserved:
        raise ValueError(f"run.json labels may not replace {reserved}")
    files = RunFiles(Path(run_dir))
    if files.config.exists():
        raise JobError(
            f"{run_dir} already holds a run. Choose a new --out folder, or continue that run "
            f"with `python -m tl_core resume {run_dir}`."
        )
    files.root.mkdir(parents=True, exist_ok=True)
    doc = {"run_id": run_id or files.root.name, "config": config.to_json(), "created": time.time()}
    if owner is not None:
        doc["owner"] = owner
    doc.update(labels or {})
    write_json_atomic(files.config, doc)
    write_status(files.root, RunStatus(state="queued", total_epochs=config.total_epochs))
    return files
