"""Where a training run stands, from what its worker wrote: epoch, batch, speed and ETA.

The worker appends epoch lines and throttled batch lines to ``metrics.jsonl`` (see
`tl_core.engine.callbacks.MetricsStream`); `training_progress` turns the latest of them into the
numbers a progress bar shows. Plain data in, plain data out: no files, no clock.

Example:
    >>> batch = {"type": "batch", "epoch": 2, "batch": 5, "batches": 10, "phase": "train",
    ...          "images_per_s": 32.0}
    >>> progress = training_progress(batch, [{"epoch": 1, "seconds": 70.0}], 3, batch_size=32)
    >>> progress.label
    'Epoch 2/3 · batch 5/10 · 32 images/s · about 15 s left'
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tl_core.models.estimate import describe_seconds

__all__ = ["TrainingProgress", "describe_duration", "training_progress"]


@dataclass(frozen=True)
class TrainingProgress:
    """The latest progress of a running run.

    Attributes:
        epoch: the epoch in progress (1-based over all phases).
        total_epochs: epochs planned over all phases.
        batch: batches done in this epoch.
        batches: batches per epoch.
        phase: ``"train"``, or ``"head"`` / ``"fine-tune"`` in a two-phase run.
        images_per_s: training speed in this epoch, ``None`` when unknown.
        eta_seconds: time left for the whole run, ``None`` when unknown.
    """

    epoch: int
    total_epochs: int
    batch: int
    batches: int
    phase: str
    images_per_s: float | None
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        """Share of the whole run done, 0 to 1."""
        if self.total_epochs <= 0:
            return 0.0
        within = self.batch / self.batches if self.batches > 0 else 0.0
        return min(1.0, max(0.0, (self.epoch - 1 + within) / self.total_epochs))

    @property
    def label(self) -> str:
        """``"Epoch 2/10 · batch 5/20 · 31 images/s · about 4 min left"`` (the ETA rounded,
        since it is an estimate)."""
        parts = [f"Epoch {self.epoch}/{self.total_epochs}"]
        if self.batches > 0:
            parts.append(f"batch {self.batch}/{self.batches}")
        if self.images_per_s is not None:
            parts.append(f"{self.images_per_s:,.0f} images/s")
        if self.eta_seconds is not None:
            parts.append(f"{describe_seconds(self.eta_seconds)} left")
        return " · ".join(parts)


def training_progress(
    last_batch: dict[str, Any] | None,
    epochs: list[dict[str, Any]],
    total_epochs: int,
    *,
    batch_size: int | None,
) -> TrainingProgress | None:
    """Return the progress the latest batch line shows; ``None`` before the first batch.

    The time left is the rest of this epoch at the batch line's speed plus the remaining
    epochs at the duration of the latest finished epoch (which includes validation). The
    first epoch of each phase is left out of that, since it also compiles the model (a
    minute on a CPU); without another one, the batch speed stands in for it.

    Args:
        last_batch: the latest batch line (``"type": "batch"``).
        epochs: the epoch lines so far.
        total_epochs: epochs planned over all phases.
        batch_size: images per batch, to turn images/s into seconds per batch
            (``None``: no time estimate).
    """
    if last_batch is None:
        return None
    epoch = _int(last_batch.get("epoch"))
    batch = _int(last_batch.get("batch"))
    batches = _int(last_batch.get("batches"))
    finished = max((_int(e.get("epoch")) for e in epochs), default=0)
    if finished >= epoch:
        # The epoch of the batch line has ended: the next one has not sent a batch yet.
        epoch, batch = finished + 1, 0
    epoch = min(epoch, max(total_epochs, 1))
    speed = last_batch.get("images_per_s")
    speed = float(speed) if isinstance(speed, (int, float)) and speed > 0 else None
    return TrainingProgress(
        epoch=epoch,
        total_epochs=total_epochs,
        batch=batch,
        batches=batches,
        phase=str(last_batch.get("phase") or ""),
        images_per_s=speed,
        eta_seconds=_eta(epoch, batch, batches, epochs, total_epochs, speed, batch_size),
    )


def _eta(
    epoch: int,
    batch: int,
    batches: int,
    epochs: list[dict[str, Any]],
    total_epochs: int,
    speed: float | None,
    batch_size: int | None,
) -> float | None:
    if speed is None or not batch_size or batches <= 0:
        return None
    per_batch = batch_size / speed
    steady = [
        line.get("seconds")
        for previous, line in itertools.pairwise(epochs)
        if line.get("phase") == previous.get("phase")
    ]
    last = steady[-1] if steady else None
    per_epoch = float(last) if isinstance(last, (int, float)) else per_batch * batches
    return max(0, batches - batch) * per_batch + max(0, total_epochs - epoch) * per_epoch


def describe_duration(seconds: float) -> str:
    """Say a measured duration exactly, the way people do (estimates: `describe_seconds`).

    Example:
        >>> [describe_duration(s) for s in (4.2, 75, 3725)]
        ['4 s', '1 min 15 s', '1 h 2 min']
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
