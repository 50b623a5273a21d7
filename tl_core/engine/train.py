"""The training worker: runs one run directory from start (or checkpoint) to the end.

It runs in its own process (``python -m tl_core worker RUN_ID``, or in the foreground for
``python -m tl_core train``/``resume``). Everything it learns goes to disk as it happens
(see `tl_core.jobs.runs` for the layout); the UI only reads those files.

A run is one or two phases. One phase: the freeze plan of the config. Two phases (the
classic recipe): the head trains with the backbone frozen, then the top
``fine_tune_blocks`` blocks are unfrozen and training continues at a 10× (configurable)
lower learning rate. Each phase recompiles, because Keras applies ``trainable`` changes
only at compile time.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tl_core.config import RunConfig
from tl_core.errors import JobError, TLError
from tl_core.fsutil import atomic_write, write_text_atomic
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    read_json,
    read_metrics,
    read_status,
    write_json_atomic,
    write_status,
)

__all__ = ["Phase", "plan_phases", "train_run"]

log = logging.getLogger("tl_core.engine.train")


@dataclass(frozen=True)
class Phase:
    """One phase of a run: which blocks train, for how many epochs, at which rate.

    ``cached``: only the head trains and the run is ``fast``, so the head trains on
    backbone features computed once (`tl_core.engine.cache`).
    """

    name: str
    index: int
    epochs: int
    trainable: tuple[str, ...]
    learning_rate: float
    cached: bool = False


def plan_phases(config: RunConfig, block_names: list[str]) -> list[Phase]:
    """Return the phases of a run, in order.

    Example:
        >>> cfg = RunConfig(dataset_id="0" * 12, two_phase=True, epochs=3,
        ...                 fine_tune_epochs=2, fine_tune_blocks=1, learning_rate=1e-3)
        >>> [(p.name, p.epochs, p.trainable) for p in plan_phases(cfg, ["stem", "top"])]
        [('head', 3, ()), ('fine-tune', 2, ('top',))]
    """
    from tl_core.models.classifier import plan_trainable_blocks

    if config.two_phase:
        top = plan_trainable_blocks(block_names, "fine-tune", unfreeze_last=config.fine_tune_blocks)
        return [
            Phase("head", 0, config.epochs, (), config.learning_rate, cached=config.fast),
            Phase(
                "fine-tune",
                1,
                config.fine_tune_epochs,
                top,
                config.learning_rate * config.fine_tune_lr_factor,
            ),
        ]
    trainable = plan_trainable_blocks(
        block_names,
        config.freeze,
        unfreeze_last=config.unfreeze_last,
        trainable_blocks=config.trainable_blocks,
    )
    cached = config.fast and not trainable
    return [Phase("train", 0, config.epochs, trainable, config.learning_rate, cached=cached)]


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    from tl_core import __version__

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "tl_core": __version__,
    }


def _weights_source(config: RunConfig) -> dict[str, Any]:
    if config.from_scratch:
        return {"kind": "none", "pretrained": False}
    if config.weights == "imagenet":
        return {"kind": "imagenet", "pretrained": True}
    return {"kind": "file", "path": str(Path(config.weights).resolve()), "pretrained": True}


def _user_message(exc: BaseException) -> tuple[str, str]:
    """Return ``(kind, message)`` for a failure, in words a user can act on."""
    import tensorflow as tf

    if isinstance(exc, TLError):
        return "input", str(exc)
    if isinstance(exc, tf.errors.ResourceExhaustedError) or "out of memory" in str(exc).lower():
        return "oom", (
            "Training ran out of memory. The batch or the images are too large for this "
            "device: lower the batch size or the image size, or pick a smaller backbone."
        )
    return "internal", (
        f"Training failed unexpectedly ({type(exc).__name__}: {exc}). "
        "The details are in the run's log.txt; please report it."
    )


def train_run(run_dir: Path, *, resume: bool = False, batch_size: int | None = None) -> RunStatus:
    """Run (or, with `resume`, continue) the training of `run_dir`; return the final status.

    Never raises for a failed run: the failure is written to ``status.json`` (state
    ``failed`` with a plain-language ``error``) and to ``log.txt``, and returned.

    Args:
        run_dir: a directory made by `prepare_run` (or a run to resume).
        resume: continue from the last checkpoint instead of starting.
        batch_size: train with this batch size instead of the config's (default ``None``:
            the config's). The scheduler's out-of-memory retry passes half of it; run.json
            keeps the config as submitted and status.json's ``note`` says what changed.
    """
    files = RunFiles(Path(run_dir))
    doc = read_json(files.config)
    if not isinstance(doc, dict) or "config" not in doc:
        raise JobError(
            f"{run_dir} is not a run folder (no readable run.json). "
            "Start a run with `python -m tl_core train`, or pick one from the runs list."
        )
    config = RunConfig.from_json(doc["config"])
    if batch_size is not None:
        config = config.with_changes(batch_size=batch_size)
    previous = read_status(files.root) or RunStatus(total_epochs=config.total_epochs)
    if resume and previous.state == "completed":
        raise JobError(
            f"The run in {run_dir} has already completed; there is nothing to resume. "
            "Start a new run to train longer."
        )
    files.stop_flag.unlink(missing_ok=True)
    status = previous.with_changes(
        state="running",
        pid=os.getpid(),
        started_at=previous.started_at or time.time(),
        finished_at=None,
        error=None,
        error_kind=None,
        total_epochs=config.total_epochs,
    )
    write_status(files.root, status)
    handler = logging.FileHandler(files.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("tl_core").addHandler(handler)
    logging.getLogger("tl_core").setLevel(logging.INFO)
    try:
        status = _Trainer(files, config, doc, resume=resume).run(status)
    except BaseException as exc:  # the run must end in a written state, whatever happened
        if isinstance(exc, KeyboardInterrupt):
            kind, message = "interrupted", "The worker was interrupted; resume the run."
            state = "interrupted"
        else:
            kind, message = _user_message(exc)
            state = "failed"
        log.error("run failed: %s\n%s", message, traceback.format_exc())
        status = (read_status(files.root) or status).with_changes(
            state=state, error=message, error_kind=kind, finished_at=time.time(), pid=None
        )
        write_status(files.root, status)
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        logging.getLogger("tl_core").removeHandler(handler)
        handler.close()
    return status


class _Trainer:
    """The steps of one worker invocation; kept in one object to share the built pieces."""

    def __init__(self, files: RunFiles, config: RunConfig, doc: dict[str, Any], *, resume: bool):
        self.files = files
        self.config = config
        self.doc = doc
        self.resume = resume

    def run(self, status: RunStatus) -> RunStatus:
        import keras

        from tl_core.data import load_dataset
        from tl_core.data.dataset import split_dataset
        from tl_core.engine.callbacks import load_variables, read_last_checkpoint
        from tl_core.engine.device import distribution_strategy, worker_devices
        from tl_core.models.classifier import build_classifier

        config, files = self.config, self.files
        device = worker_devices()
        strategy, strategy_name = distribution_strategy(device)
        mixed = config.mixed_precision and device.kind == "gpu"
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        report = load_dataset(config.dataset_id)
        splits = split_dataset(report, val_fraction=config.val_fraction, seed=config.seed)
        checkpoint = read_last_checkpoint(files) if self.resume else None
        if self.resume and checkpoint is None:
            log.info("no checkpoint yet: the run starts from the beginning")
        if self.resume:
            _forget_epochs_after(files, int(checkpoint["epoch"]) if checkpoint else 0)
        with strategy.scope():
            classifier = build_classifier(
                config, splits.class_names, load_weights=checkpoint is None
            )
        block_names = [b.name for b in classifier.blocks]
        phases = plan_phases(config, block_names)
        self._write_run_json(classifier, splits, phases, device, strategy_name, mixed)
        log.info(
            "training %s on %s (%s), %d train / %d val images",
            config.backbone,
            device.describe(),
            strategy_name,
            len(splits.train),
            len(splits.val),
        )
        epoch = 0
        phase_start = 0
        first_phase = 0
        if checkpoint is not None:
            with strategy.scope():
                load_variables(classifier.model, files.checkpoints / checkpoint["weights"])
            epoch = int(checkpoint["epoch"])
            first_phase = int(checkpoint["phase_index"])
            phase_start = int(checkpoint.get("phase_start", 0))
            if checkpoint.get("phase_done") or epoch >= phase_start + phases[first_phase].epochs:
                first_phase += 1
                phase_start = epoch
            log.info("resuming after epoch %d (phase %d)", epoch, first_phase)
        stopped = False
        for phase in phases[first_phase:]:
            if phase.index != first_phase or checkpoint is None:
                phase_start = epoch
            mid_phase = (
                checkpoint is not None and phase.index == first_phase and epoch > phase_start
            )
            result = self._run_phase(
                classifier,
                report,
                splits,
                phase,
                strategy,
                epoch=epoch,
                phase_start=phase_start,
                restore=checkpoint if mid_phase else None,
            )
            epoch, stopped = result
            if stopped:
                break
        final_state = "stopped" if stopped else "completed"
        self._save_model(classifier)
        status = (read_status(files.root) or status).with_changes(
            state=final_state, epoch=epoch, finished_at=time.time(), pid=None
        )
        write_status(files.root, status)
        log.info("run %s after %d epochs", final_state, epoch)
        return status

    def _write_run_json(
        self,
        classifier: Any,
        splits: Any,
        phases: list[Phase],
        device: Any,
        strategy_name: str,
        mixed: bool,
    ) -> None:
        from tl_core.models.classifier import apply_freeze_plan

        config = self.config
        summary = apply_freeze_plan(
            classifier,
            phases[-1].trainable,
            pretrained=not config.from_scratch,
            train_bn=config.train_bn,
        )
        doc = dict(self.doc)
        doc.update(
            {
                "class_names": list(splits.class_names),
                "num_train": len(splits.train),
                "num_val": len(splits.val),
                "val_source": splits.val_source,
                "image_size": classifier.image_size,
                "preprocess": classifier.spec.preprocess,
                "blocks": [
                    {
                        "name": b.name,
                        "layers": len(b.layers),
                        "params": b.params,
                        "output_shape": list(b.output_shape),
                        "trainable": summary.block_trainable[b.name],
                    }
                    for b in classifier.blocks
                ],
                "phases": [asdict(p) for p in phases],
                "trainable_params": summary.trainable_params,
                "non_trainable_params": summary.non_trainable_params,
                "bn_trainable": summary.bn_trainable,
                "device": device.to_json() | {"strategy": strategy_name, "mixed_precision": mixed},
                "versions": _versions(),
                "weights_source": _weights_source(config),
            }
        )
        write_json_atomic(self.files.config, doc)

    def _run_phase(
        self,
        classifier: Any,
        report: Any,
        splits: Any,
        phase: Phase,
        strategy: Any,
        *,
        epoch: int,
        phase_start: int,
        restore: dict[str, Any] | None,
    ) -> tuple[int, bool]:
        """Train one phase from `epoch`; return the epoch reached and whether it was stopped."""
        import keras

        from tl_core.data.dataset import make_batches, steps_per_epoch
        from tl_core.engine.callbacks import (
            BatchNormRecalibrator,
            BestWeights,
            Checkpoint,
            DriftTracker,
            MetricsStream,
            RunProgress,
            StatusUpdater,
            StopFlag,
            Validation,
            block_variables,
        )
        from tl_core.models.classifier import (
            apply_freeze_plan,
            batch_norm_layers,
            compile_model,
            uses_one_hot_labels,
        )

        config, files = self.config, self.files
        stop_epoch = phase_start + phase.epochs
        replicas = strategy.num_replicas_in_sync
        train_records, batch_size = _even_for_replicas(splits.train, config.batch_size, replicas)
        val_records, _ = _even_for_replicas(splits.val, config.batch_size, replicas)
        steps = steps_per_epoch(len(train_records), batch_size)
        one_hot = uses_one_hot_labels(config)
        common = {
            "class_names": splits.class_names,
            "image_size": classifier.image_size,
            "batch_size": batch_size,
            "one_hot": one_hot,
        }
        if phase.cached:
            fit_model, train, val = self._cached_head(
                classifier, report, train_records, val_records, (epoch, stop_epoch), common
            )
        else:
            fit_model = classifier.model
            train = make_batches(
                report,
                train_records,
                shuffle_epochs=(epoch, stop_epoch),
                seed=config.seed,
                **common,
            )
            val = make_batches(report, val_records, **common)
        with strategy.scope():
            summary = apply_freeze_plan(
                classifier,
                phase.trainable,
                pretrained=not config.from_scratch,
                train_bn=config.train_bn,
            )
            compile_model(fit_model, config, learning_rate=self._rate(phase, steps))
            if restore is not None:
                self._restore_optimizer(fit_model, restore)
        log.info(
            "phase %s: epochs %d-%d, trainable blocks %s, %d trainable params",
            phase.name,
            epoch + 1,
            stop_epoch,
            ", ".join(phase.trainable) or "none (head only)",
            summary.trainable_params,
        )
        progress = RunProgress(phase=phase.name, phase_index=phase.index)
        bn_layers = [
            layer
            for block in classifier.blocks
            if block.name in phase.trainable
            for name in block.layers
            for layer in batch_norm_layers(classifier.backbone.get_layer(name))
            if layer.trainable
        ]
        recalibrate = None
        if bn_layers:
            plain_train = make_batches(report, splits.train, **common)
            recalibrate = (BatchNormRecalibrator(classifier.features, bn_layers), plain_train)
        early = (
            BestWeights(
                files,
                progress,
                patience=config.patience,
                restore=config.restore_best,
                **(restore or {}).get("early_stopping", {}),
            )
            if config.early_stopping
            else None
        )

        def extra_state() -> dict[str, Any]:
            state: dict[str, Any] = {
                "phase_start": phase_start,
                "phase_done": progress.early_stopped,
            }
            if early is not None:
                state["early_stopping"] = early.state()
            return state

        callbacks: list[keras.callbacks.Callback] = [Validation(val, progress, recalibrate)]
        if early is not None:
            callbacks.append(early)
        if config.schedule == "plateau":
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss", factor=0.5, patience=2, min_lr=phase.learning_rate / 100
                )
            )
        callbacks += [
            MetricsStream(files.metrics, progress, batches=steps, batch_size=batch_size),
            DriftTracker(files, block_variables(classifier.backbone, classifier.blocks), progress),
            Checkpoint(files, progress, extra_state, weights_of=classifier.model),
            StopFlag(files.stop_flag, progress),
            keras.callbacks.TensorBoard(str(files.tensorboard), write_graph=False),
            StatusUpdater(files, progress),
        ]
        history = fit_model.fit(
            train,
            epochs=stop_epoch,
            initial_epoch=epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            # The batches are already shuffled per (seed, epoch); Keras warns on shuffle=True.
            shuffle=False,
            verbose=0,
        )
        reached = epoch + len(history.epoch) - (1 if progress.stop_requested else 0)
        if progress.early_stopped:
            log.info("phase %s stopped early after epoch %d", phase.name, reached)
            self._mark_phase_done(classifier, fit_model, progress, reached, phase_start, early)
        return reached, progress.stop_requested

    def _mark_phase_done(
        self,
        classifier: Any,
        fit_model: Any,
        progress: Any,
        epoch: int,
        phase_start: int,
        early: Any,
    ) -> None:
        """After early stopping (and restoring the best weights), checkpoint the phase end."""
        from tl_core.engine.callbacks import Checkpoint

        state = {"phase_start": phase_start, "phase_done": True}
        if early is not None:
            state["early_stopping"] = early.state()
        checkpoint = Checkpoint(self.files, progress, lambda: state, weights_of=classifier.model)
        checkpoint.set_model(fit_model)
        checkpoint.on_epoch_end(epoch - 1)

    def _cached_head(
        self,
        classifier: Any,
        report: Any,
        train_records: tuple[Any, ...],
        val_records: tuple[Any, ...],
        epochs: tuple[int, int],
        common: dict[str, Any],
    ) -> tuple[Any, Any, Any]:
        """The head model and batches of cached backbone features for a ``fast`` phase."""
        from tl_core.data.dataset import make_array_batches, make_batches
        from tl_core.engine.cache import feature_key, load_or_compute_features, weights_identity
        from tl_core.models.classifier import head_model, pooled_features_model

        config = self.config
        pooled = pooled_features_model(classifier)
        identity = weights_identity(config.weights, config.seed)
        index = {name: i for i, name in enumerate(common["class_names"])}

        def features(records: tuple[Any, ...]) -> Any:
            key = feature_key(
                dataset_id=config.dataset_id,
                backbone=config.backbone,
                weights=identity,
                image_size=classifier.image_size,
                paths=[r.path for r in records],
            )

            def compute() -> Any:
                batches = make_batches(
                    report, records, **(common | {"one_hot": False}), cache=False
                )
                return pooled.predict(batches, verbose=0)

            meta = {"backbone": config.backbone, "weights": identity, "images": len(records)}
            rows, hit = load_or_compute_features(key, compute, meta=meta)
            log.info(
                "%s features of %d images (%s)", "cached" if hit else "computed", len(records), key
            )
            return rows

        log.info("fast: the head trains on cached backbone features; no augmentation here")
        train_rows, val_rows = features(train_records), features(val_records)
        arrays = {
            "num_classes": len(common["class_names"]),
            "batch_size": common["batch_size"],
            "one_hot": common["one_hot"],
        }
        train = make_array_batches(
            train_rows,
            [index[r.label] for r in train_records],
            shuffle_epochs=epochs,
            seed=config.seed,
            **arrays,
        )
        val = make_array_batches(val_rows, [index[r.label] for r in val_records], **arrays)
        return head_model(classifier, int(train_rows.shape[1])), train, val

    def _rate(self, phase: Phase, steps: int) -> Any:
        import keras

        if self.config.schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(
                phase.learning_rate, decay_steps=max(1, phase.epochs * steps)
            )
        return phase.learning_rate

    def _restore_optimizer(self, model: Any, checkpoint: dict[str, Any]) -> None:
        import numpy as np

        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        with np.load(self.files.checkpoints / checkpoint["optimizer"]) as saved:
            values = [saved[f"v{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables):
            raise JobError(
                "The checkpoint's optimizer state does not match this run's model "
                f"({len(values)} vs {len(optimizer.variables)} variables). The run folder "
                "was changed or comes from another version; start a new run."
            )
        for variable, value in zip(optimizer.variables, values, strict=True):
            variable.assign(value)

    def _save_model(self, classifier: Any) -> None:
        """Save ``model.keras`` without optimizer state (a third of the size)."""
        import keras

        # Not `clone_model`: Keras 3.15 compiles the clone and builds its optimizer.
        clone = keras.Model.from_config(classifier.model.get_config())
        clone.set_weights(classifier.model.get_weights())
        atomic_write(self.files.model, clone.save)


def _forget_epochs_after(files: RunFiles, epoch: int) -> None:
    """Drop the metrics and drift lines of epochs after `epoch`, the last checkpoint's.

    A worker killed after writing an epoch's lines but before committing its checkpoint
    leaves lines of an epoch that the resumed run trains again; kept, they would appear
    twice. A half-written last line goes too.
    """
    for path in (files.metrics, files.drift_history):
        if not path.is_file():
            continue
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("epoch", 0) <= epoch:
                kept.append(line + "\n")
        write_text_atomic(path, "".join(kept))


def _even_for_replicas(records: Any, batch_size: int, replicas: int) -> tuple[tuple[Any, ...], int]:
    """Return `records` and `batch_size` cut so that every batch splits evenly over replicas.

    Under a distribution strategy Keras builds the model from the mean of the first
    batch's per-replica shares, which fails unless they have equal shapes, and a replica
    with an empty share fails too. So with several replicas the last
    ``len(records) % replicas`` records are left out and the batch size is rounded down
    to a multiple of `replicas`; with one replica nothing changes.
    """
    keep = len(records) - len(records) % replicas
    if keep < len(records):
        log.info(
            "%d of %d images left out to split batches evenly over %d replicas",
            len(records) - keep,
            len(records),
            replicas,
        )
    return tuple(records[:keep]), max(replicas, batch_size - batch_size % replicas)


def best_val_accuracy(run_dir: Path) -> float | None:
    """Return the best validation accuracy recorded so far, or ``None``."""
    epochs, _ = read_metrics(run_dir)
    values = [e["val_accuracy"] for e in epochs if e.get("val_accuracy") is not None]
    return max(values) if values else None


def main_worker(run_dir: Path, *, resume: bool = False, batch_size: int | None = None) -> int:
    """Process entry of a worker: train, and exit 0 (completed/stopped) or 1 (failed)."""
    status = train_run(run_dir, resume=resume, batch_size=batch_size)
    sys.stdout.flush()
    return 0 if status.state in ("completed", "stopped") else 1
