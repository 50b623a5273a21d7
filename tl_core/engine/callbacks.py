"""Keras callbacks of the training worker, one job each.

They share a `RunProgress` (the phase, whether a stop was requested) and are meant to run
in this order: `Validation` first (it adds ``val_loss``/``val_accuracy`` to the epoch logs
the others read), then `BestWeights`, `MetricsStream`, `DriftTracker`, `Checkpoint`,
`StopFlag`. Each can be tested by calling its hooks with a fake ``logs`` dict.

An epoch cut short by a stop request is not an epoch: the epoch-end callbacks skip it,
so a resumed run repeats it whole instead of recording half of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tl_core.engine.checkpoints import (
    commit_checkpoint,
    load_variables,
    save_variables,
    saved_keys,
)
from tl_core.faults import fault_point
from tl_core.fsutil import atomic_write
from tl_core.jobs.runs import (
    RunFiles,
    append_jsonl,
    best_score,
    read_status,
    write_json_atomic,
)

__all__ = [
    "BatchNormRecalibrator",
    "BestWeights",
    "Checkpoint",
    "DriftTracker",
    "EpochSummaries",
    "MetricsStream",
    "RunProgress",
    "StatusUpdater",
    "StopFlag",
    "Validation",
]


@dataclass
class RunProgress:
    """Mutable facts the callbacks share during one ``fit`` call.

    ``phase_done``: the phase is over (early stop, or it ends on restored best weights),
    so a checkpoint taken now resumes at the next phase.
    """

    phase: str = "train"
    phase_index: int = 0
    stop_requested: bool = False
    early_stopped: bool = False
    restored_best: bool = False

    @property
    def phase_done(self) -> bool:
        """True once the phase has ended early or on its restored best weights."""
        return self.early_stopped or self.restored_best

    @property
    def epoch_incomplete(self) -> bool:
        """True when the epoch that just ended was cut short by a stop request."""
        return self.stop_requested


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def current_learning_rate(model: keras.Model) -> float | None:
    """Return the optimizer's learning rate now (schedules evaluated at this step)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return _float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class BatchNormRecalibrator:
    """Replace BatchNorm moving statistics by their average over training batches.

    BatchNorm trained from scratch on little data keeps moving statistics far from the
    real ones (momentum 0.99 forgets slowly), so validation runs on wrong statistics and
    sits at chance (measured: MobileNetV2 at 64 px, 48 images, 10 epochs: train accuracy
    0.92, validation 0.25). Before each validation we re-estimate them on training
    images without augmentation: with momentum 0 each forward pass leaves one batch's
    statistics in the layer, and the average of those becomes the moving statistics.

    Args:
        model: the path from raw images to the backbone's output (preprocessing and
            backbone, no augmentation or dropout); called with ``training=True``.
        layers: the BatchNormalization layers to re-estimate (frozen BatchNorm layers run
            in inference mode and would not update anyway).
        max_batches: at most this many batches are used per call (default 20).

    Example:
        >>> recalibrate = BatchNormRecalibrator(features, bn_layers)  # doctest: +SKIP
        >>> recalibrate(train_batches)  # doctest: +SKIP
        7
    """

    def __init__(
        self, model: keras.Model, layers: list[keras.layers.Layer], max_batches: int = 20
    ) -> None:
        import tensorflow as tf

        self.layers = layers
        self.max_batches = max_batches
        # Compiled once; momentum stays 0 during the passes, so it never retraces.
        self._forward = tf.function(lambda images: model(images, training=True))

    def __call__(self, batches: Any) -> int:
        """Re-estimate from `batches` (``(images, labels)`` pairs); return the batches used."""
        if not self.layers:
            return 0
        saved = [layer.momentum for layer in self.layers]
        means = [np.zeros(layer.moving_mean.shape, np.float64) for layer in self.layers]
        variances = [np.zeros(layer.moving_variance.shape, np.float64) for layer in self.layers]
        used = 0
        try:
            for layer in self.layers:
                layer.momentum = 0.0
            for images, _labels in batches:
                self._forward(images)
                used += 1
                for i, layer in enumerate(self.layers):
                    means[i] += keras.ops.convert_to_numpy(layer.moving_mean)
                    variances[i] += keras.ops.convert_to_numpy(layer.moving_variance)
                if used >= self.max_batches:
                    break
        finally:
            for layer, momentum in zip(self.layers, saved, strict=True):
                layer.momentum = momentum
        if used:
            for i, layer in enumerate(self.layers):
                layer.moving_mean.assign(means[i] / used)
                layer.moving_variance.assign(variances[i] / used)
        return used


#: Rows per call of `Validation`'s compiled step on in-memory arrays: one call for a
#: typical validation split, and bounded memory for a large one.
VALIDATION_CHUNK_ROWS = 1024


class Validation(keras.callbacks.Callback):
    """Evaluate on the validation batches at each epoch end and add ``val_*`` to the logs.

    Done here rather than by ``fit(validation_data=…)`` so that BatchNorm statistics can
    be re-estimated first (`BatchNormRecalibrator`) when BatchNorm trains.

    Validation data given as in-memory arrays ``(x, y)`` (cached activations) are held as
    tensors and evaluated by the model's own ``test_step`` compiled once, in chunks of
    `VALIDATION_CHUNK_ROWS` rows: the same loss and metrics as ``evaluate`` (its loss is
    the batch-size-weighted mean, so the chunking does not change it), without the ~15 ms
    ``evaluate`` spends each epoch setting up its loop and a dataset iterator. Use them on
    a single device only: the compiled step runs outside any distribution strategy.

    Args:
        val_batches: the validation dataset (never augmented), or ``(x, y)`` arrays.
        progress: the shared `RunProgress`.
        recalibrate: ``(BatchNormRecalibrator, train_batches)`` when BatchNorm trains,
            else ``None``.
    """

    def __init__(
        self,
        val_batches: Any,
        progress: RunProgress,
        recalibrate: tuple[BatchNormRecalibrator, Any] | None = None,
    ) -> None:
        super().__init__()
        self.val_batches = val_batches
        self.progress = progress
        self.recalibrate = recalibrate
        self._chunks: list[tuple[Any, Any]] = []
        self._step: Callable[..., Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Recalibrate BatchNorm when it trains, evaluate, and extend `logs`."""
        if logs is None or self.progress.epoch_incomplete:
            return
        if self.recalibrate is not None:
            recalibrator, train_batches = self.recalibrate
            recalibrator(train_batches)
        if isinstance(self.val_batches, tuple):
            results = self._evaluate_arrays()
        else:
            results = self.model.evaluate(self.val_batches, verbose=0, return_dict=True)
        logs["val_loss"] = float(results["loss"])
        logs["val_accuracy"] = float(results["accuracy"])

    def _evaluate_arrays(self) -> dict[str, Any]:
        """``evaluate`` on the in-memory arrays: reset the metrics, one compiled
        ``test_step`` per chunk, read the metrics."""
        import tensorflow as tf

        if self._step is None:
            x, y = self.val_batches
            self._chunks = [
                (
                    tf.constant(x[i : i + VALIDATION_CHUNK_ROWS]),
                    tf.constant(y[i : i + VALIDATION_CHUNK_ROWS]),
                )
                for i in range(0, len(x), VALIDATION_CHUNK_ROWS)
            ]
            # reduce_retracing: a shorter last chunk shares the first chunk's graph.
            self._step = tf.function(
                lambda x, y: self.model.test_step((x, y)), reduce_retracing=True
            )
        self.model.reset_metrics()
        for x, y in self._chunks:
            self._step(x, y)
        return self.model.get_metrics_result()


class MetricsStream(keras.callbacks.Callback):
    """Append epoch lines and throttled batch-progress lines to ``metrics.jsonl``.

    Epoch line: ``epoch`` (1-based over all phases), ``phase``, ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``. Batch line: ``"type": "batch"``,
    ``epoch``, ``batch`` (1-based), ``batches``, ``loss``, ``accuracy``, ``images_per_s``,
    ``phase``. Batch lines are written at most every `min_interval` seconds, and for the
    last batch of an epoch, so that logging never slows training measurably.
    """

    def __init__(
        self,
        path: Path,
        progress: RunProgress,
        *,
        batches: int,
        batch_size: int,
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.path = path
        self.progress = progress
        self.batches = batches
        self.batch_size = batch_size
        self.min_interval = min_interval
        self.clock = clock
        self._epoch = 0
        self._epoch_start = 0.0
        self._last_write = float("-inf")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Remember when the epoch began."""
        self._epoch = epoch
        self._epoch_start = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Write a progress line when `min_interval` has passed or the epoch is done."""
        now = self.clock()
        last = batch + 1 >= self.batches
        if not last and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        elapsed = max(now - self._epoch_start, 1e-9)
        logs = logs or {}
        append_jsonl(
            self.path,
            {
                "type": "batch",
                "epoch": self._epoch + 1,
                "batch": batch + 1,
                "batches": self.batches,
                "phase": self.progress.phase,
                "loss": _float(logs.get("loss")),
                "accuracy": _float(logs.get("accuracy")),
                "images_per_s": round((batch + 1) * self.batch_size / elapsed, 2),
                "time": time.time(),
            },
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Write the epoch line (skipped for an epoch cut short by a stop request)."""
        if self.progress.epoch_incomplete:
            return
        logs = logs or {}
        append_jsonl(
            self.path,
            {
                "epoch": epoch + 1,
                "phase": self.progress.phase,
                "loss": _float(logs.get("loss")),
                "accuracy": _float(logs.get("accuracy")),
                "val_loss": _float(logs.get("val_loss")),
                "val_accuracy": _float(logs.get("val_accuracy")),
                "lr": current_learning_rate(self.model) if self.model is not None else None,
                "seconds": round(self.clock() - self._epoch_start, 3),
                "time": time.time(),
            },
        )


class StopFlag(keras.callbacks.Callback):
    """Stop training after the current batch when the run's ``STOP`` file exists."""

    def __init__(self, flag: Path, progress: RunProgress) -> None:
        super().__init__()
        self.flag = flag
        self.progress = progress
        self._steps_seen = 0

    def _check(self) -> None:
        if not self.progress.stop_requested and self.flag.exists():
            self.progress.stop_requested = True
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Check the flag between batches (`batch`: the last step of this call, 0-based)."""
        # With steps_per_execution one call covers several steps; the fault point counts
        # steps, so "batch@4" means the fourth training step whatever the grouping.
        fault_point("batch", times=max(1, batch + 1 - self._steps_seen))
        self._steps_seen = batch + 1
        self._check()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Check the flag before an epoch starts, too."""
        self._steps_seen = 0
        self._check()


def block_variables(backbone: keras.Model, blocks: list[Any]) -> dict[str, list[keras.Variable]]:
    """Map each block name to the variables (weights and BatchNorm statistics) of its layers."""
    return {
        block.name: [v for name in block.layers for v in backbone.get_layer(name).weights]
        for block in blocks
    }


class DriftTracker(keras.callbacks.Callback):
    """Write each block's relative L2 weight change since the run started.

    ``drift = ||w - w0|| / ||w0||`` over all variables of the block (weights and BatchNorm
    statistics). A frozen block is bit-identical to its start, so its drift is exactly 0.0.
    The start weights are kept in ``checkpoints/initial.npz`` so a resumed run measures
    from the same origin. Blocks named in `fixed` (frozen in every phase of the run) are
    0.0 by definition: they are neither snapshotted nor compared, which keeps the
    per-epoch cost to the blocks that train.
    """

    def __init__(
        self,
        files: RunFiles,
        variables: dict[str, list[keras.Variable]],
        progress: RunProgress,
        *,
        fixed: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.files = files
        self.order = list(variables)
        self.variables = {name: vs for name, vs in variables.items() if name not in set(fixed)}
        self.progress = progress
        self._initial: dict[str, list[np.ndarray]] | None = None
        self._origins: dict[str, float] = {}
        self._changes: Callable[[], dict[str, Any]] | None = None
        self._written: dict[str, float] | None = None

    @property
    def _snapshot_path(self) -> Path:
        return self.files.checkpoints / "initial.npz"

    def snapshot(self) -> None:
        """Record the start weights (once per run; later calls load the saved ones)."""
        if self._snapshot_path.is_file():
            with np.load(self._snapshot_path) as saved:
                self._initial = {
                    name: [saved[f"{name}/{i}"] for i in range(len(variables))]
                    for name, variables in self.variables.items()
                }
            return
        self._initial = {
            name: [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
            for name, variables in self.variables.items()
        }
        arrays = {
            f"{name}/{i}": array
            for name, items in self._initial.items()
            for i, array in enumerate(items)
        }
        self.files.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write(self._snapshot_path, lambda tmp: np.savez(tmp, **arrays))

    def drift(self) -> dict[str, float]:
        """Return ``{block: relative L2 change}`` for the current weights."""
        if self._initial is None:
            self.snapshot()
        assert self._initial is not None
        if self._changes is None:
            self._changes = self._compile_changes()
        changes = {name: float(value) for name, value in self._changes().items()}
        return {
            name: 0.0
            if changes.get(name, 0.0) == 0.0
            else float(np.sqrt(changes[name] / max(self._origins[name], 1e-12)))
            for name in self.order
        }

    def _compile_changes(self) -> Callable[[], dict[str, Any]]:
        """One graph call for all blocks: per-variable host copies cost ~0.2 s an epoch."""
        import tensorflow as tf

        assert self._initial is not None
        if not self.variables:
            return dict
        starts = {
            name: [tf.constant(array) for array in arrays] for name, arrays in self._initial.items()
        }
        self._origins = {
            name: float(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays))
            for name, arrays in self._initial.items()
        }
        variables = self.variables

        @tf.function
        def changes() -> dict[str, Any]:
            # Identical values subtract to exactly zero, so a frozen block stays exactly 0.0.
            return {
                name: tf.add_n(
                    [tf.constant(0.0, tf.float64)]
                    + [
                        tf.reduce_sum(tf.square(tf.cast(v, tf.float64) - tf.cast(s, tf.float64)))
                        for v, s in zip(block, starts[name], strict=True)
                    ]
                )
                for name, block in variables.items()
            }

        return changes

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Make sure the start weights are recorded."""
        if self._initial is None:
            self.snapshot()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Write ``drift.json`` and append to ``drift_history.jsonl``."""
        if self.progress.epoch_incomplete:
            return
        drift = self.drift()
        # Unchanged drift (every block frozen) is not written again: each write costs two
        # disk flushes, a large share of a head epoch on cached features.
        if drift != self._written or not self.files.drift.is_file():
            write_json_atomic(self.files.drift, drift)
            self._written = drift
        append_jsonl(
            self.files.drift_history,
            {"epoch": epoch + 1, "phase": self.progress.phase, "drift": drift},
        )


class BestWeights(keras.callbacks.Callback):
    """Keep the best epoch's weights; end a phase early when patience runs out.

    "Best" is the studio's one definition, `tl_core.jobs.runs.best_score`: higher
    validation accuracy, ties broken by lower validation loss, so the weights kept are
    those of the epoch the pages show as best. With ``restore`` the best epoch's
    variables go to ``checkpoints/best-epoch-NNNN.npz`` (a new name per best epoch, so
    the file a committed checkpoint names is never overwritten) and the phase ends with
    them; `restored` then says the model no longer holds the last epoch's weights.

    ``best``, ``best_epoch``, ``wait`` and ``file`` start from the values given (`state`
    of an earlier phase or of the checkpoint), so a resumed run continues the count and
    a later phase restores an earlier phase's best when it finds no better one.

    Args:
        files: the run's files.
        progress: the shared `RunProgress`.
        patience: epochs without a better one before the phase ends (``None``: never).
        restore: keep and restore the best weights.
        weights_of: whose variables to keep (default ``None``: the model being fitted).
        only: keep only the variables this key filter accepts (default ``None``: all;
            see `tl_core.engine.checkpoints.only_blocks`).

    Example:
        >>> early = BestWeights(files, progress, patience=2, restore=True)  # doctest: +SKIP
        >>> early.on_epoch_end(0, {"val_accuracy": 0.8, "val_loss": 0.5})  # doctest: +SKIP
    """

    def __init__(
        self,
        files: RunFiles,
        progress: RunProgress,
        *,
        patience: int | None,
        restore: bool,
        weights_of: keras.Model | None = None,
        only: Callable[[str], bool] | None = None,
        best: Sequence[float] | None = None,
        best_epoch: int = 0,
        wait: int = 0,
        file: str | None = None,
    ) -> None:
        super().__init__()
        self.files = files
        self.progress = progress
        self.patience = patience
        self.restore = restore
        self.weights_of = weights_of
        self.only = only
        self.best = tuple(best) if best is not None else None
        self.best_epoch = best_epoch
        self.wait = wait
        self.file = file
        self.restored = False
        self._last_epoch = 0
        self._keys: dict[str, Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Keep a better epoch's weights; stop the phase when patience runs out."""
        score = best_score(logs or {})
        if self.progress.epoch_incomplete or score is None:
            return
        self._last_epoch = epoch + 1
        if self.best is None or score > self.best:
            self.best, self.best_epoch, self.wait = score, epoch + 1, 0
            if self.restore:
                self.file = f"best-epoch-{epoch + 1:04d}.npz"
                self.files.checkpoints.mkdir(parents=True, exist_ok=True)
                model = self.weights_of or self.model
                if self._keys is None:
                    self._keys = saved_keys(model, only=self.only)
                save_variables(
                    model, self.files.checkpoints / self.file, only=self.only, keys=self._keys
                )
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.progress.early_stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Restore the best weights when asked, unless the run was stopped or the last
        epoch is the best."""
        if (
            not self.restore
            or self.progress.stop_requested
            or self.file is None
            or self.best_epoch == self._last_epoch
            or not self._last_epoch
            or not (self.files.checkpoints / self.file).is_file()
        ):
            return
        load_variables(
            self.weights_of or self.model, self.files.checkpoints / self.file, only=self.only
        )
        self.restored = self.progress.restored_best = True

    def state(self) -> dict[str, Any]:
        """The counters a checkpoint stores (JSON-ready)."""
        return {
            "best": list(self.best) if self.best is not None else None,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "file": self.file,
        }


class Checkpoint(keras.callbacks.Callback):
    """Commit a checkpoint at every complete epoch (`commit_checkpoint`).

    The weights are those of `weights_of` (default: the model being fitted), so a phase
    that fits only the head still checkpoints the whole classifier; the optimizer state
    is the fitted model's. With `best`, the pointer records its counters and keeps its
    best-weights file. With `only` (`tl_core.engine.checkpoints.only_blocks`) the
    checkpoint is lean: it holds what can move, and the pointer says ``"lean": true``.

    Example:
        >>> Checkpoint(files, progress, lambda: {"phase_start": 0}).on_epoch_end(3)
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        files: RunFiles,
        progress: RunProgress,
        extra_state: Callable[[], dict[str, Any]] = dict,
        *,
        weights_of: keras.Model | None = None,
        best: BestWeights | None = None,
        only: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.files = files
        self.progress = progress
        self.extra_state = extra_state
        self.weights_of = weights_of
        self.best = best
        self.only = only
        self._keys: dict[str, Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Commit the checkpoint of the epoch that just ended (1-based ``epoch`` in it)."""
        if not self.progress.epoch_incomplete:
            self.commit(epoch + 1)

    def commit(self, epoch: int) -> dict[str, Any]:
        """Commit the current state as the checkpoint after `epoch`; return the pointer."""
        record = {
            "epoch": epoch,
            "phase": self.progress.phase,
            "phase_index": self.progress.phase_index,
        } | self.extra_state()
        if self.only is not None:
            record["lean"] = True
        keep: tuple[str, ...] = ()
        if self.best is not None:
            record["early_stopping"] = self.best.state()
            keep = (self.best.file,) if self.best.file else ()
        model = self.weights_of or self.model
        if self._keys is None:
            # Taken at the first commit, after an epoch: the optimizer has its slots.
            self._keys = saved_keys(model, self.model.optimizer, only=self.only)
        return commit_checkpoint(
            self.files,
            model,
            record,
            optimizer=self.model.optimizer,
            keep=keep,
            only=self.only,
            keys=self._keys,
        )


class EpochSummaries(keras.callbacks.Callback):
    """TensorBoard's epoch scalars, written once when ``fit`` ends.

    What ``keras.callbacks.TensorBoard(write_graph=False)`` writes, under the same tags
    (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate`` in ``train/``;
    ``epoch_loss``, ``epoch_accuracy`` in ``validation/``), but kept in memory until the
    end: the Keras callback costs a few milliseconds every epoch, a large share of a head
    epoch on cached features. A worker killed mid-phase leaves that phase's epochs out
    of TensorBoard; ``metrics.jsonl`` has them. An epoch cut short by a stop is skipped.

    Example:
        >>> EpochSummaries(files.tensorboard, progress)  # doctest: +SKIP
    """

    def __init__(self, log_dir: Path, progress: RunProgress) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.progress = progress
        self._epochs: list[tuple[int, dict[str, float]]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Keep the epoch's scalars and the learning rate."""
        if self.progress.epoch_incomplete:
            return
        scalars = {k: _float(v) for k, v in (logs or {}).items()}
        scalars["learning_rate"] = current_learning_rate(self.model)
        self._epochs.append((epoch, {k: v for k, v in scalars.items() if v is not None}))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Write the kept epochs: training scalars to ``train/``, ``val_*`` to
        ``validation/`` without the prefix, as the Keras callback does."""
        import tensorflow as tf

        if not self._epochs:
            return
        for folder, pick in (("train", False), ("validation", True)):
            writer = tf.summary.create_file_writer(str(self.log_dir / folder))
            with writer.as_default():
                for epoch, scalars in self._epochs:
                    for name, value in scalars.items():
                        if name.startswith("val_") == pick:
                            tf.summary.scalar(f"epoch_{name.removeprefix('val_')}", value, epoch)
            writer.close()
        self._epochs = []


class StatusUpdater(keras.callbacks.Callback):
    """Keep ``status.json`` current: finished epochs and the phase, after each epoch.

    Written atomically but not flushed to disk: a reader always sees a whole file, and
    the next epoch or the run's end (written durably) replaces it anyway; what a resume
    continues from is the checkpoint, never this count.
    """

    def __init__(self, files: RunFiles, progress: RunProgress) -> None:
        super().__init__()
        self.files = files
        self.progress = progress

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the finished epoch (1-based) and the phase."""
        if self.progress.epoch_incomplete:
            return
        status = read_status(self.files.root)
        if status is not None:
            changed = status.with_changes(epoch=epoch + 1, phase=self.progress.phase)
            write_json_atomic(self.files.status, asdict(changed), durable=False)
