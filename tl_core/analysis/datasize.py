"""How much data do you need? The data-size curve: one click queues runs on less and less data.

Each point of the curve trains on a fraction of the training images (``train_fraction``:
10, 25, 50, 100 %, drawn per class with a fixed seed, a smaller fraction a subset of a
larger one) and is judged on the same validation images, once with pretrained weights and,
unless left out, once from scratch. Plotting best validation accuracy against the number
of training images shows what pretraining is worth when images are few.

A curve is recorded in ``TL_HOME/datasizes/<datasize_id>.json``::

    {"datasize_id", "created_at", "base_run_id", "fractions": [0.1, 0.5, 1.0],
     "runs": [{"fraction": 0.1, "weights": "pretrained", "run_id": "…"}, …]}

Ids are generated (the shape of run ids), never taken from user input as a path. The runs
are ordinary queued jobs (`tl_core.jobs.queue.submit`), as a ladder's are
(`tl_core.analysis.ladder`). The pretrained runs at every fraction read the activations
cached for the whole training split, so only the first one computes them.

Example:
    >>> base = ladder_base("20261123-131500-a1b2c3").config  # doctest: +SKIP
    >>> curve = submit_datasize(base, [0.1, 0.25, 0.5, 1.0])  # doctest: +SKIP
    >>> [row["weights"] for row in datasize_results(curve)][:2]  # doctest: +SKIP
    ['pretrained', 'scratch']
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tl_core.analysis.runsets import RunSetStore, outcome_fields, read_outcome
from tl_core.classroom.identity import Identity
from tl_core.config import RunConfig, unavailable_options
from tl_core.errors import ConfigError
from tl_core.jobs.queue import submit
from tl_core.jobs.runs import RunFiles, new_run_id, read_json

__all__ = [
    "DEFAULT_FRACTIONS",
    "DataSize",
    "DataSizeRun",
    "datasize_configs",
    "datasize_results",
    "datasizes_dir",
    "list_datasizes",
    "load_datasize",
    "submit_datasize",
]

#: The fractions of the training images a curve trains on unless told otherwise.
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)

Arm = Literal["pretrained", "scratch"]


@dataclass(frozen=True)
class DataSizeRun:
    """One point of a curve: the fraction of training images, the weights, the run."""

    fraction: float
    weights: Arm
    run_id: str

    def to_json(self) -> dict[str, Any]:
        """Return the point as a JSON-ready dict."""
        return {"fraction": self.fraction, "weights": self.weights, "run_id": self.run_id}


@dataclass(frozen=True)
class DataSize:
    """One queued data-size curve.

    Attributes:
        datasize_id: generated id (``20261123-131500-a1b2c3``).
        created_at: when it was queued (seconds since the epoch).
        base_run_id: the run whose settings every point shares (``None`` when the curve
            was built from a config alone).
        fractions: the fractions of the training images, small to large.
        runs: the queued runs, per fraction the pretrained one first.
    """

    datasize_id: str
    created_at: float
    base_run_id: str | None
    fractions: tuple[float, ...]
    runs: tuple[DataSizeRun, ...]

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The runs' ids, in the order of `runs`."""
        return tuple(run.run_id for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        """Return the curve as a JSON-ready dict."""
        return {
            "datasize_id": self.datasize_id,
            "created_at": self.created_at,
            "base_run_id": self.base_run_id,
            "fractions": list(self.fractions),
            "runs": [run.to_json() for run in self.runs],
        }


def _parse(doc: Any) -> DataSize | None:
    """A curve file's contents as a `DataSize`; ``None`` for anything malformed."""
    if not isinstance(doc, dict):
        return None
    try:
        runs = tuple(
            DataSizeRun(float(run["fraction"]), run["weights"], str(run["run_id"]))
            for run in doc["runs"]
        )
        curve = DataSize(
            datasize_id=str(doc["datasize_id"]),
            created_at=float(doc["created_at"]),
            base_run_id=doc.get("base_run_id"),
            fractions=tuple(float(f) for f in doc["fractions"]),
            runs=runs,
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not runs or any(run.weights not in ("pretrained", "scratch") for run in runs):
        return None
    return curve


_STORE = RunSetStore(
    folder="datasizes",
    noun="data-size curve",
    id_field="datasize_id",
    pick="Pick a curve from the list of curves.",
    fewer=lambda _room: "Pick fewer fractions or leave out the from-scratch runs",
    parse=_parse,
)


def datasizes_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/datasizes``, created when missing."""
    return _STORE.directory(home)


def datasize_configs(
    base: RunConfig, fractions: Sequence[float], *, compare_scratch: bool = True
) -> list[tuple[float, Arm, RunConfig]]:
    """Return the runs of a curve: per fraction, `base` on that share of its training images
    with pretrained weights, then (with `compare_scratch`) from scratch.

    The pretrained run keeps `base`'s weights and freeze plan, or takes ImageNet weights
    when `base` starts from scratch. The scratch run has random weights and trains every
    block (a frozen random backbone passes almost nothing on), in one phase.

    Args:
        base: the settings every run shares.
        fractions: shares of the training images, each in (0, 1], distinct, small to large.
        compare_scratch: also queue a from-scratch run per fraction (default True).

    Raises:
        ConfigError: for fractions that are empty, not numbers, out of range, repeated or
            unsorted.

    Example:
        >>> base = RunConfig(dataset_id="0123456789ab", weights="imagenet")
        >>> [(f, arm) for f, arm, _ in datasize_configs(base, [0.5, 1.0])]
        [(0.5, 'pretrained'), (0.5, 'scratch'), (1.0, 'pretrained'), (1.0, 'scratch')]
    """
    fractions = _checked_fractions(fractions)
    pretrained = base if not base.from_scratch else base.with_changes(weights="imagenet")
    scratch = _fitting(
        base.with_changes(weights="none", freeze="full", trainable_blocks=(), two_phase=False)
    )
    points: list[tuple[float, Arm, RunConfig]] = []
    for fraction in fractions:
        points.append((fraction, "pretrained", pretrained.with_changes(train_fraction=fraction)))
        if compare_scratch:
            points.append((fraction, "scratch", scratch.with_changes(train_fraction=fraction)))
    return points


def _checked_fractions(fractions: Sequence[float]) -> list[float]:
    values = list(fractions)
    if not values:
        raise ConfigError(
            "Expected `fractions` to hold at least one share of the training images, "
            "e.g. 0.1,0.25,0.5,1. Received: fractions=[]"
        )
    numbers = all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) for f in values
    )
    if not numbers or not all(0 < f <= 1 for f in values):
        raise ConfigError(
            "Expected every fraction to be a number greater than 0 and at most 1 (1 means "
            f"every training image). Received: fractions={values!r}"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"Expected `fractions` to be distinct. Received: fractions={values!r}")
    if values != sorted(values):
        raise ConfigError(
            f"Expected `fractions` to be sorted from small to large. Received: fractions={values!r}"
        )
    return [float(f) for f in values]


def _fitting(config: RunConfig) -> RunConfig:
    # Caching needs a frozen bottom block; a run that trains every block trains on images
    # rather than being refused at submit.
    if config.fast and "fast" in unavailable_options(config.to_json()):
        return config.with_changes(fast=False)
    return config


def submit_datasize(
    base: RunConfig,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    compare_scratch: bool = True,
    base_run_id: str | None = None,
    actor: Identity | None = None,
    home: Path | None = None,
) -> DataSize:
    """Queue the runs of a data-size curve (`datasize_configs`) and record them.

    Every config, and a student's room under the class's run limit, is checked before the
    first run is queued. Should the queue fail part way, the runs queued so far are still
    recorded, then the error is raised.

    Args:
        base: the settings every run shares.
        fractions: shares of the training images, small to large (default
            `DEFAULT_FRACTIONS`: 10, 25, 50 and 100 %).
        compare_scratch: also queue a from-scratch run per fraction (default True).
        base_run_id: the run `base` came from (default ``None``), recorded with the curve.
        actor: who queues the runs (default ``None``: the operator), as in
            `tl_core.jobs.queue.submit`.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        ConfigError: for invalid fractions.
        JobError: when the queue cannot take the runs, or `base_run_id` is malformed.
        AccessDenied: when a student may not queue them (someone else's dataset, or more
            runs than the class's run limit leaves room for).

    Example:
        >>> curve = submit_datasize(base, [0.25, 1.0], compare_scratch=False)  # doctest: +SKIP
        >>> len(curve.runs)  # doctest: +SKIP
        2
    """
    points = datasize_configs(base, fractions, compare_scratch=compare_scratch)

    def record(run_ids: list[str]) -> DataSize:
        # After a failure part way, fewer runs than points were queued.
        runs = [
            DataSizeRun(fraction, arm, run_id)
            for (fraction, arm, _), run_id in zip(points, run_ids, strict=False)
        ]
        return _record(base_run_id, runs, home)

    return _STORE.queue(
        [config for _, _, config in points],
        lambda config: submit(config, actor=actor, home=home),
        record,
        base_run_id=base_run_id,
        actor=actor,
        home=home,
    )


def _record(base_run_id: str | None, runs: Sequence[DataSizeRun], home: Path | None) -> DataSize:
    curve = DataSize(
        datasize_id=new_run_id(),
        created_at=time.time(),
        base_run_id=base_run_id,
        fractions=tuple(dict.fromkeys(run.fraction for run in runs)),
        runs=tuple(runs),
    )
    _STORE.write(curve.datasize_id, curve.to_json(), home)
    return curve


def load_datasize(datasize_id: str, home: Path | None = None) -> DataSize:
    """Read the data-size curve `datasize_id`.

    Raises:
        JobError: when the id is malformed or names no (readable) curve.

    Example:
        >>> load_datasize("20261123-131500-a1b2c3").fractions  # doctest: +SKIP
        (0.1, 0.25, 0.5, 1.0)
    """
    return _STORE.load(datasize_id, home)


def list_datasizes(home: Path | None = None) -> list[DataSize]:
    """Return every recorded data-size curve, newest first; unreadable files are left out.

    Example:
        >>> [curve.fractions for curve in list_datasizes()]  # doctest: +SKIP
        [(0.1, 0.25, 0.5, 1.0)]
    """
    return _STORE.newest_first(home)


def datasize_results(curve: DataSize, home: Path | None = None) -> list[dict[str, Any]]:
    """Return one row per run of `curve`, in its order, read from the runs' folders.

    Each row: ``fraction``, ``weights`` (``"pretrained"`` or ``"scratch"``), ``run_id``,
    ``state`` (``"missing"`` when the run's folder is gone), ``best_val_accuracy`` (``None``
    until an epoch has ended) and ``train_images`` (the training images it used; ``None``
    until its worker has loaded the data).

    Example:
        >>> datasize_results(load_datasize("20261123-131500-a1b2c3"))[0]  # doctest: +SKIP
        {'fraction': 0.1, 'weights': 'pretrained', 'run_id': '…', 'state': 'completed',
         'best_val_accuracy': 0.74, 'train_images': 19}
    """
    rows = []
    for run in curve.runs:
        outcome = read_outcome(run.run_id, home)
        rows.append(
            run.to_json()
            | outcome_fields(outcome)
            | {"train_images": _train_images(outcome.root) if outcome else None}
        )
    return rows


def _train_images(root: Path) -> int | None:
    """The training images the run used, from its run.json; ``None`` before its worker
    has loaded the data."""
    doc = read_json(RunFiles(root).config, {})
    used = doc.get("num_train") if isinstance(doc, dict) else None
    return used if isinstance(used, int) else None
