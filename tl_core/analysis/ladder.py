"""The freeze-depth ladder: one click queues runs that differ only in how deep they fine-tune.

Each rung trains the top ``d`` blocks of the backbone (``freeze="fine-tune"``,
``unfreeze_last=d``; ``d = 0`` trains the head alone, as feature extraction does) with
every other setting taken from a base run. Plotting best validation accuracy and seconds
per epoch against ``d`` shows what each block of fine-tuning buys and costs.

A ladder is recorded in ``TL_HOME/ladders/<ladder_id>.json``::

    {"ladder_id", "created_at", "base_run_id", "depths": [0, 1, 2], "run_ids": [...]}

Ladder ids are generated (the shape of run ids: UTC time and random bits), never taken
from user input as a path. The runs themselves are ordinary queued jobs
(`tl_core.jobs.queue.submit`): they share the queue, and its device slots, with every other run.

Example:
    >>> base = ladder_base("20261123-131500-a1b2c3")  # doctest: +SKIP
    >>> depths = suggest_depths(base.num_blocks)  # doctest: +SKIP
    >>> ladder = submit_ladder(base.config, depths, base_run_id=base.run_id)  # doctest: +SKIP
    >>> [row["state"] for row in ladder_results(ladder)]  # doctest: +SKIP
    ['queued', 'queued', 'queued', 'queued', 'queued']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.analysis.compare import median_epoch_seconds
from tl_core.analysis.runsets import RunSetStore, outcome_fields, read_outcome
from tl_core.classroom.identity import Identity
from tl_core.config import RunConfig, unavailable_options
from tl_core.errors import ConfigError, JobError
from tl_core.jobs.queue import submit
from tl_core.jobs.runs import RunFiles, new_run_id, read_json, run_path

__all__ = [
    "MAX_SUGGESTED_RUNS",
    "Ladder",
    "LadderBase",
    "ladder_base",
    "ladder_configs",
    "ladder_results",
    "ladders_dir",
    "list_ladders",
    "load_ladder",
    "submit_ladder",
    "suggest_depths",
]

#: Most runs `suggest_depths` proposes: each one is a full training run in the queue.
MAX_SUGGESTED_RUNS = 5


@dataclass(frozen=True)
class Ladder:
    """One queued ladder: which runs trained which depth.

    Attributes:
        ladder_id: generated id (``20261123-131500-a1b2c3``).
        created_at: when it was queued (seconds since the epoch).
        base_run_id: the run whose settings the rungs share (``None`` when the ladder
            was built from a config alone).
        depths: top blocks trained by each rung, shallow to deep.
        run_ids: the rungs' runs, in the order of `depths`.
    """

    ladder_id: str
    created_at: float
    base_run_id: str | None
    depths: tuple[int, ...]
    run_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the ladder as a JSON-ready dict."""
        return {
            "ladder_id": self.ladder_id,
            "created_at": self.created_at,
            "base_run_id": self.base_run_id,
            "depths": list(self.depths),
            "run_ids": list(self.run_ids),
        }


@dataclass(frozen=True)
class LadderBase:
    """A run to build a ladder on: its config and, once its model was built, its block count."""

    run_id: str
    config: RunConfig
    num_blocks: int | None


def _parse_ladder(doc: Any) -> Ladder | None:
    """A ladder file's contents as a `Ladder`; ``None`` for anything malformed."""
    if not isinstance(doc, dict):
        return None
    try:
        ladder = Ladder(
            ladder_id=str(doc["ladder_id"]),
            created_at=float(doc["created_at"]),
            base_run_id=doc.get("base_run_id"),
            depths=tuple(int(d) for d in doc["depths"]),
            run_ids=tuple(str(r) for r in doc["run_ids"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return ladder if ladder.run_ids and len(ladder.depths) == len(ladder.run_ids) else None


_STORE = RunSetStore(
    folder="ladders",
    noun="ladder",
    id_field="ladder_id",
    pick="Pick a ladder from the list on the Compare page.",
    fewer=lambda room: f"Pick at most {room} depths",
    parse=_parse_ladder,
)


def ladders_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/ladders``, created when missing."""
    return _STORE.directory(home)


def suggest_depths(num_blocks: int | None, *, max_runs: int = MAX_SUGGESTED_RUNS) -> list[int]:
    """Propose depths for a ladder: 0, 1, 2, 4, … and the whole backbone, `max_runs` at most.

    Doubling spends the runs where a block more or less matters most (near the top); the
    last rung trains every block, as the far end of the scale.

    Args:
        num_blocks: the backbone's blocks, or ``None`` when not known yet (then no rung
            claims to train them all).
        max_runs: most depths returned (default `MAX_SUGGESTED_RUNS`).

    Example:
        >>> suggest_depths(19)
        [0, 1, 2, 4, 19]
        >>> suggest_depths(3)
        [0, 1, 2, 3]
    """
    doubling = [0]
    step = 1
    while (num_blocks is None or step < num_blocks) and len(doubling) < max_runs:
        doubling.append(step)
        step *= 2
    if num_blocks is None or num_blocks == 0:
        return doubling
    return [*doubling[: max_runs - 1], num_blocks]


def ladder_configs(
    base: RunConfig, depths: Sequence[int], *, num_blocks: int | None = None
) -> list[RunConfig]:
    """Return one config per depth: `base` with its top ``d`` blocks trainable.

    Every config has ``freeze="fine-tune"`` and ``unfreeze_last=d`` (no custom block
    list), so the configs differ from one another in ``unfreeze_last`` alone, and in
    ``fast`` where it applies: every rung that keeps its bottom blocks frozen trains from
    activations cached at its frozen boundary (shared by rungs with the same boundary);
    the full-depth rung trains on images.

    Args:
        base: the settings the rungs share.
        depths: top blocks to train, distinct and sorted, each between 0 and `num_blocks`.
        num_blocks: the backbone's blocks, when known (default ``None``: not checked).

    Raises:
        ConfigError: for depths that are empty, not whole numbers, repeated, unsorted or
            out of range, and for a two-phase base (its second phase fixes the depth in
            ``fine_tune_blocks``). A base with random weights is accepted: see
            `ladder_caveat`.

    Example:
        >>> base = RunConfig(dataset_id="0123456789ab", weights="imagenet")
        >>> [c.unfreeze_last for c in ladder_configs(base, [0, 2, 4], num_blocks=19)]
        [0, 2, 4]
    """
    depths = list(depths)
    if not depths:
        raise ConfigError("Expected `depths` to hold at least one depth. Received: depths=[]")
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in depths):
        raise ConfigError(
            f"Expected `depths` to be whole numbers of blocks. Received: depths={depths!r}"
        )
    if len(set(depths)) != len(depths):
        raise ConfigError(f"Expected `depths` to be distinct. Received: depths={depths!r}")
    if depths != sorted(depths):
        raise ConfigError(
            f"Expected `depths` to be sorted from shallow to deep. Received: depths={depths!r}"
        )
    top = num_blocks if num_blocks is not None else 1000
    if depths[0] < 0 or depths[-1] > top:
        raise ConfigError(
            f"Expected every depth to be between 0 and {top}"
            + (" (the backbone's blocks)" if num_blocks is not None else "")
            + f". Received: depths={depths!r}"
        )
    if base.two_phase:
        raise ConfigError(
            "Expected `two_phase` to be False for a freeze-depth ladder: a two-phase run "
            "fine-tunes `fine_tune_blocks` blocks whatever the ladder says. "
            "Received: two_phase=True. Pick a single-phase run as the base."
        )
    return [_rung(base, depth) for depth in depths]


def _rung(base: RunConfig, depth: int) -> RunConfig:
    rung = base.with_changes(freeze="fine-tune", unfreeze_last=depth, trainable_blocks=())
    # Caching needs a frozen bottom block; a rung that trains every block trains on images
    # rather than being refused at submit.
    if rung.fast and "fast" in unavailable_options(rung.to_json()):
        return rung.with_changes(fast=False)
    return rung


def ladder_caveat(base: RunConfig) -> str | None:
    """Return what a viewer should know before reading a ladder on `base`, or ``None``.

    With random weights the frozen blocks of the shallow rungs pass almost nothing on
    (measured: output std ~1e-12 with BatchNorm frozen), so those rungs stay near chance.
    That is a finding worth showing (freezing only pays with pretrained weights), not an error.

    Example:
        >>> ladder_caveat(RunConfig(dataset_id="0123456789ab", weights="imagenet")) is None
        True
    """
    if not base.from_scratch:
        return None
    return (
        "This run starts from random weights: frozen random blocks pass almost nothing on, "
        "so the shallow rungs will stay near chance and only the deep ones can learn. That "
        "shows why freezing needs pretrained weights; for a fair ladder, pick a run with "
        "ImageNet weights or a weights file as the base."
    )


def submit_ladder(
    base: RunConfig,
    depths: Sequence[int],
    *,
    base_run_id: str | None = None,
    num_blocks: int | None = None,
    actor: Identity | None = None,
    home: Path | None = None,
) -> Ladder:
    """Queue one run per depth (`ladder_configs`) and record them as a ladder.

    Every config, and a student's room under the class's run limit, is checked before the
    first run is queued. Should the queue fail part way, the runs queued so far are still
    recorded as a ladder, then the error is raised.

    Args:
        base: the settings the rungs share.
        depths: top blocks to train, distinct and sorted.
        base_run_id: the run `base` came from (default ``None``), recorded with the ladder.
        num_blocks: the backbone's blocks, when known (default ``None``: not checked).
        actor: who queues the runs (default ``None``: the operator), as in
            `tl_core.jobs.queue.submit`.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        ConfigError: for invalid depths or a base a ladder cannot use (`ladder_configs`).
        JobError: when the queue cannot take the runs, or `base_run_id` is malformed.
        AccessDenied: when a student may not queue them (someone else's dataset, or more
            rungs than the class's run limit leaves room for).

    Example:
        >>> ladder = submit_ladder(base, [0, 1, 2, 4], num_blocks=19)  # doctest: +SKIP
        >>> len(ladder.run_ids)  # doctest: +SKIP
        4
    """
    return _STORE.queue(
        ladder_configs(base, depths, num_blocks=num_blocks),
        lambda config: submit(config, actor=actor, home=home),
        lambda run_ids: _record(base_run_id, depths, run_ids, home),
        base_run_id=base_run_id,
        actor=actor,
        home=home,
    )


def _record(
    base_run_id: str | None, depths: Sequence[int], run_ids: Sequence[str], home: Path | None
) -> Ladder:
    # Ladder ids take the shape of run ids: sortable by time, unique by their random bits.
    ladder = Ladder(
        ladder_id=new_run_id(),
        created_at=time.time(),
        base_run_id=base_run_id,
        depths=tuple(depths[: len(run_ids)]),
        run_ids=tuple(run_ids),
    )
    _STORE.write(ladder.ladder_id, ladder.to_json(), home)
    return ladder


def load_ladder(ladder_id: str, home: Path | None = None) -> Ladder:
    """Read the ladder `ladder_id`.

    Raises:
        JobError: when the id is malformed or names no (readable) ladder.

    Example:
        >>> load_ladder("20261123-131500-a1b2c3").depths  # doctest: +SKIP
        (0, 1, 2, 4, 19)
    """
    return _STORE.load(ladder_id, home)


def list_ladders(home: Path | None = None) -> list[Ladder]:
    """Return every recorded ladder, newest first; unreadable files are left out.

    Example:
        >>> [ladder.depths for ladder in list_ladders()]  # doctest: +SKIP
        [(0, 1, 2, 4, 19)]
    """
    return _STORE.newest_first(home)


def ladder_base(run_id: str, home: Path | None = None) -> LadderBase:
    """Read the run `run_id` as the base of a ladder: its config and block count.

    The block count comes from the ``blocks`` list the worker writes into ``run.json``
    once it has built the model (``None`` before that).

    Raises:
        JobError: when the id is malformed or names no run.
        ConfigError: when its stored config cannot be read back as a `RunConfig`.

    Example:
        >>> ladder_base("20261123-131500-a1b2c3").num_blocks  # doctest: +SKIP
        19
    """
    root = run_path(run_id, home)
    doc = read_json(RunFiles(root).config)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise JobError(
            f"There is no run {run_id} in {root.parent} (or its run.json is unreadable). "
            "Pick a run from the runs list."
        )
    blocks = doc.get("blocks")
    return LadderBase(
        run_id=run_id,
        config=RunConfig.from_json(doc["config"]),
        num_blocks=len(blocks) if isinstance(blocks, list) else None,
    )


def ladder_results(ladder: Ladder, home: Path | None = None) -> list[dict[str, Any]]:
    """Return one row per rung, shallow to deep, read from the runs' directories.

    Each row: ``depth``, ``run_id``, ``state`` (``"missing"`` when the run's folder is
    gone), ``best_val_accuracy`` and ``seconds_per_epoch`` (the median of its epochs;
    both ``None`` until an epoch has ended).

    Example:
        >>> ladder_results(load_ladder("20261123-131500-a1b2c3"))[0]  # doctest: +SKIP
        {'depth': 0, 'run_id': '…', 'state': 'completed', 'best_val_accuracy': 0.81,
         'seconds_per_epoch': 3.1}
    """
    rows = []
    for depth, run_id in zip(ladder.depths, ladder.run_ids, strict=True):
        outcome = read_outcome(run_id, home)
        rows.append(
            {"depth": depth, "run_id": run_id}
            | outcome_fields(outcome)
            | {"seconds_per_epoch": median_epoch_seconds(outcome.epochs) if outcome else None}
        )
    return rows
