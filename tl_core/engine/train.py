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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.config import RunConfig
from tl_core.errors import JobError, TLError
from tl_core.faults import fault_point
from tl_core.fsutil import FolderLock, write_text_atomic
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    read_json,
    read_status,
    write_json_atomic,
    write_status,
)

if TYPE_CHECKING:  # TensorFlow loads when a run starts, not when the facade is imported
    import keras
    import numpy as np
    import tensorflow as tf

    from tl_core.data import DatasetReport
    from tl_core.data.dataset import DatasetSplits
    from tl_core.data.report import ImageRecord
    from tl_core.engine.cache import CacheEntry
    from tl_core.engine.callbacks import (
        BatchNormRecalibrator,
        BestWeights,
        Checkpoint,
        RunProgress,
    )
    from tl_core.jobs.devices import DeviceInfo
    from tl_core.models.classifier import Classifier

__all__ = [
    "Phase",
    "ResumePoint",
    "main_worker",
    "moving_blocks",
    "plan_phases",
    "resume_point",
    "steps_per_execution",
    "take_writer_lock",
    "train_run",
]

log = logging.getLogger("tl_core.engine.train")


@dataclass(frozen=True)
class Phase:
    """One phase of a run: which blocks train, for how many epochs, at which rate.

    ``cached``: the run is ``fast`` and the bottom of the network is frozen in this phase,
    so what the frozen part computes is cached once and each epoch runs only the part
    above ``boundary`` (`tl_core.engine.boundary`): ``"pooled"`` when only the head
    trains, else the name of the last frozen block. Without ``cached`` it is ``None``.
    """

    name: str
    index: int
    epochs: int
    trainable: tuple[str, ...]
    learning_rate: float
    cached: bool = False
    boundary: str | None = None


def _phase(
    config: RunConfig,
    block_names: list[str],
    name: str,
    index: int,
    epochs: int,
    trainable: tuple[str, ...],
    learning_rate: float,
) -> Phase:
    from tl_core.engine.boundary import boundary_of

    boundary = boundary_of(block_names, trainable) if config.fast else None
    return Phase(name, index, epochs, trainable, learning_rate, boundary is not None, boundary)


def plan_phases(config: RunConfig, block_names: list[str]) -> list[Phase]:
    """Return the phases of a run, in order; with ``fast``, each phase whose bottom block
    is frozen is ``cached`` at its frozen boundary.

    Example:
        >>> cfg = RunConfig(dataset_id="0" * 12, two_phase=True, epochs=3,
        ...                 fine_tune_epochs=2, fine_tune_blocks=1, learning_rate=1e-3)
        >>> [(p.name, p.epochs, p.trainable, p.boundary) for p in plan_phases(cfg, ["stem", "top"])]
        [('head', 3, (), 'pooled'), ('fine-tune', 2, ('top',), 'stem')]
    """
    from tl_core.models.classifier import plan_trainable_blocks

    if config.two_phase:
        top = plan_trainable_blocks(block_names, "fine-tune", unfreeze_last=config.fine_tune_blocks)
        rate = config.learning_rate * config.fine_tune_lr_factor
        return [
            _phase(config, block_names, "head", 0, config.epochs, (), config.learning_rate),
            _phase(config, block_names, "fine-tune", 1, config.fine_tune_epochs, top, rate),
        ]
    trainable = plan_trainable_blocks(
        block_names,
        config.freeze,
        unfreeze_last=config.unfreeze_last,
        trainable_blocks=config.trainable_blocks,
    )
    return [_phase(config, block_names, "train", 0, config.epochs, trainable, config.learning_rate)]


def moving_blocks(phases: Sequence[Phase]) -> tuple[str, ...]:
    """The blocks some phase of the run trains: the only ones whose weights can move.

    Example:
        >>> moving_blocks([Phase("head", 0, 1, (), 1e-3), Phase("ft", 1, 1, ("top",), 1e-4)])
        ('top',)
    """
    return tuple(dict.fromkeys(name for phase in phases for name in phase.trainable))


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
    ``failed`` with a plain-language ``error``) and to ``log.txt``, and returned. Holds
    the run's writer lock (`tl_core.fsutil.FolderLock`) while it trains.

    Args:
        run_dir: a directory made by `prepare_run` (or a run to resume).
        resume: continue from the last checkpoint instead of starting.
        batch_size: train with this batch size instead of the config's (default ``None``:
            the config's). The scheduler's out-of-memory retry passes half of it; run.json
            keeps the config as submitted and status.json's ``note`` says what changed.

    Raises:
        JobError: `run_dir` is not a run, another process is writing it, or (with
            `resume`) the run has completed.

    Example:
        >>> train_run(prepare_run(folder, config).root).state  # doctest: +SKIP
        'completed'
    """
    files = RunFiles(Path(run_dir))
    doc = _read_run_json(files)
    lock = take_writer_lock(files.root)
    try:
        return _train_locked(files, doc, resume=resume, batch_size=batch_size)
    finally:
        lock.release()


def main_worker(run_dir: Path, *, resume: bool = False, batch_size: int | None = None) -> int:
    """Process entry of a worker: train, and exit 0 (completed/stopped) or 1 (failed).

    Takes the run's writer lock before anything else and holds it until the process
    exits (the kernel drops it then, however the process dies): the scheduler reads a
    held lock as "this run's worker lives", and a second worker is refused before it
    writes anything.

    Raises:
        JobError: another process holds the lock (the CLI prints it and exits 2).

    Example:
        >>> main_worker(run_path(run_id))  # doctest: +SKIP
        0
    """
    files = RunFiles(Path(run_dir))
    _WORKER_LOCKS.append(take_writer_lock(files.root))
    status = _train_locked(files, _read_run_json(files), resume=resume, batch_size=batch_size)
    sys.stdout.flush()
    return 0 if status.state in ("completed", "stopped") else 1


#: The worker's writer lock, held from `main_worker`'s start to the end of the process.
_WORKER_LOCKS: list[FolderLock] = []


def take_writer_lock(root: Path) -> FolderLock:
    """Take the writer lock of the run folder `root`; refuse when another process has it.

    Raises:
        JobError: `root` is no folder, or another process holds its lock.

    Example:
        >>> take_writer_lock(run_dir).held  # doctest: +SKIP
        True
    """
    if not root.is_dir():
        raise JobError(
            f"{root} is not a run folder. "
            "Start a run with `python -m tl_core train`, or pick one from the runs list."
        )
    lock = FolderLock(root)
    if not lock.acquire():
        raise JobError(
            f"Another process is training the run in {root} (it holds {lock.path.name}); "
            "two writers would mix their epochs and checkpoints. Wait for it to finish, or "
            "stop it first (Stop in the app, or create the file STOP in the run folder)."
        )
    return lock


def _read_run_json(files: RunFiles) -> dict[str, Any]:
    doc = read_json(files.config)
    if not isinstance(doc, dict) or "config" not in doc:
        raise JobError(
            f"{files.root} is not a run folder (no readable run.json). "
            "Start a run with `python -m tl_core train`, or pick one from the runs list."
        )
    return doc


def _train_locked(
    files: RunFiles, doc: dict[str, Any], *, resume: bool, batch_size: int | None
) -> RunStatus:
    """`train_run` once the writer lock is held."""
    config = RunConfig.from_json(doc["config"])
    if batch_size is not None:
        config = config.with_changes(batch_size=batch_size)
    previous = read_status(files.root) or RunStatus(total_epochs=config.total_epochs)
    if resume and previous.state == "completed":
        raise JobError(
            f"The run in {files.root} has already completed; there is nothing to resume. "
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
        status = _record_failure(files, status, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        logging.getLogger("tl_core").removeHandler(handler)
        handler.close()
    return status


def _record_failure(files: RunFiles, status: RunStatus, exc: BaseException) -> RunStatus:
    """Write and return the end state of a run that raised `exc`."""
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
    return status


@dataclass(frozen=True)
class ResumePoint:
    """Where a run continues: after `epoch`, in the phase `phase_index` that began after
    epoch `phase_start`.

    ``mid_phase``: the phase was under way, so its optimizer state comes back from the
    checkpoint ``file``. ``early_stopping``: the best-weights counters to continue from.
    """

    epoch: int = 0
    phase_index: int = 0
    phase_start: int = 0
    mid_phase: bool = False
    early_stopping: dict[str, Any] = field(default_factory=dict)
    file: str | None = None


def resume_point(record: dict[str, Any] | None, phases: Sequence[Phase]) -> ResumePoint:
    """Return where a run continues after the committed checkpoint `record`.

    A phase that ended (early stop, best weights restored, or all its epochs done) is
    continued from the next phase, with a fresh patience count.

    Example:
        >>> phases = [Phase("head", 0, 2, (), 1e-3), Phase("fine-tune", 1, 2, ("top",), 1e-4)]
        >>> resume_point({"epoch": 2, "phase_index": 0, "file": "f.npz"}, phases).phase_index
        1
    """
    if record is None:
        return ResumePoint()
    epoch, index = int(record["epoch"]), int(record["phase_index"])
    start = int(record.get("phase_start", 0))
    early = dict(record.get("early_stopping") or {})
    if record.get("phase_done") or epoch >= start + phases[index].epochs:
        return ResumePoint(epoch, index + 1, epoch, False, early | {"wait": 0}, record["file"])
    return ResumePoint(epoch, index, start, epoch > start, early, record["file"])


@dataclass(frozen=True)
class _Built:
    """What every phase of one worker invocation shares."""

    classifier: Classifier
    report: DatasetReport
    splits: DatasetSplits
    strategy: tf.distribute.Strategy
    moving: tuple[str, ...]
    only: Callable[[str], bool]


@dataclass(frozen=True)
class _PhaseData:
    """The model a phase fits and its batches; ``val`` is ``(x, y)`` arrays when a cached
    phase's validation activations are in memory (see `Validation`). ``cached``: the phase
    trains above its frozen boundary on cached activations."""

    fit_model: keras.Model
    train: tf.data.Dataset
    val: tf.data.Dataset | tuple[np.ndarray, np.ndarray]
    steps: int
    batch_size: int
    common: dict[str, Any]
    cached: bool = False


#: At most this many head steps on cached features run per call into TensorFlow (Keras's
#: ``steps_per_execution``): such a step computes far less than Keras spends calling it.
HEAD_STEPS_PER_EXECUTION = 32


def steps_per_execution(steps: int, most: int = HEAD_STEPS_PER_EXECUTION) -> int:
    """The largest divisor of `steps` up to `most`: the training batches of all epochs come
    from one stream, so an execution that crossed an epoch's end would take the next
    epoch's batches.

    Example:
        >>> steps_per_execution(10), steps_per_execution(64), steps_per_execution(37)
        (10, 32, 1)
    """
    return max(n for n in range(1, min(steps, most) + 1) if steps % n == 0)


@dataclass(frozen=True)
class _PhaseOutcome:
    """The epoch a phase reached, whether a stop was requested, the best-weights counters."""

    epoch: int
    stopped: bool
    early_stopping: dict[str, Any]


class _Trainer:
    """The steps of one worker invocation; kept in one object to share the built pieces."""

    def __init__(self, files: RunFiles, config: RunConfig, doc: dict[str, Any], *, resume: bool):
        self.files = files
        self.config = config
        self.doc = doc
        self.resume = resume
        self._source: str | None = None
        # A resumed run keeps the paths its earlier phases took.
        self._paths: dict[str, dict[str, Any]] = dict(doc.get("cache", {}).get("phases", {}))

    def run(self, status: RunStatus) -> RunStatus:
        """Build, train every remaining phase, save ``model.keras``; return the end status."""
        from tl_core.engine.saving import save_inference_model

        record = self._checkpoint_to_resume()
        built, phases = self._build(record)
        point = resume_point(record, phases)
        if record is not None:
            log.info("resuming after epoch %d (phase %d)", point.epoch, point.phase_index)
        epoch, stopped, early = point.epoch, False, point.early_stopping
        for phase in phases[point.phase_index :]:
            first = phase.index == point.phase_index
            outcome = self._run_phase(
                built,
                phase,
                epoch=epoch,
                phase_start=point.phase_start if first else epoch,
                early_stopping=early,
                optimizer_from=point.file if first and point.mid_phase else None,
            )
            epoch, stopped = outcome.epoch, outcome.stopped
            early = outcome.early_stopping | {"wait": 0}
            if stopped:
                break
            fault_point("phase-end")
        final_state = "stopped" if stopped else "completed"
        save_inference_model(built.classifier.model, self.files.model)
        status = (read_status(self.files.root) or status).with_changes(
            state=final_state, epoch=epoch, finished_at=time.time(), pid=None
        )
        write_status(self.files.root, status)
        log.info("run %s after %d epochs", final_state, epoch)
        return status

    def _checkpoint_to_resume(self) -> dict[str, Any] | None:
        """The committed checkpoint to continue from (``None``: start), epochs after it
        forgotten; one written under other Keras/TensorFlow versions is refused."""
        from tl_core.engine.checkpoints import check_versions, read_last_checkpoint

        if not self.resume:
            return None
        record = read_last_checkpoint(self.files)
        if record is None:
            log.info("no checkpoint yet: the run starts from the beginning")
        else:
            check_versions(record, self.files.root)
        _forget_epochs_after(self.files, int(record["epoch"]) if record else 0)
        return record

    def _build(self, record: dict[str, Any] | None) -> tuple[_Built, list[Phase]]:
        """Pick devices and precision, load the data, build the classifier (restoring the
        checkpoint's variables), plan the phases and write ``run.json``."""
        from tl_core.data import load_dataset
        from tl_core.data.dataset import split_dataset
        from tl_core.engine.checkpoints import load_variables, only_blocks
        from tl_core.engine.device import distribution_strategy, worker_devices
        from tl_core.models.classifier import build_classifier

        config = self.config
        device = worker_devices()
        strategy, strategy_name = distribution_strategy(device)
        precision = _choose_precision(config.mixed_precision, device)
        report = load_dataset(config.dataset_id)
        splits = split_dataset(
            report,
            val_fraction=config.val_fraction,
            seed=config.seed,
            train_fraction=config.train_fraction,
        )
        lean = record is not None and bool(record.get("lean"))
        if lean:
            self._check_frozen_source(record)
        with strategy.scope():
            # A lean checkpoint holds what trains; the frozen blocks come from their source.
            classifier = build_classifier(
                config, splits.class_names, load_weights=record is None or lean
            )
            phases = plan_phases(config, [b.name for b in classifier.blocks])
            moving = moving_blocks(phases)
            only = only_blocks(
                name for block in classifier.blocks if block.name in moving for name in block.layers
            )
            if record is not None:
                path = self.files.checkpoints / record["file"]
                load_variables(classifier.model, path, only=only if lean else None)
        device_doc = device.to_json() | {"strategy": strategy_name} | precision
        self._write_run_json(classifier, splits, phases, device_doc)
        log.info(
            "training %s on %s (%s), %d train / %d val images",
            config.backbone,
            device.describe(),
            strategy_name,
            len(splits.train),
            len(splits.val),
        )
        return _Built(classifier, report, splits, strategy, moving, only), phases

    def _check_frozen_source(self, record: dict[str, Any]) -> None:
        """Refuse a lean resume when the weights its frozen blocks come from changed."""
        if record.get("frozen_source") != self._frozen_source:
            raise JobError(
                f"The run in {self.files.root} started from weights "
                f"{record.get('frozen_source')!r}, but {self.config.weights!r} is now "
                f"{self._frozen_source!r}: its frozen blocks cannot be restored as they were. "
                "Put the original weights file back, or start a new run."
            )

    @property
    def _frozen_source(self) -> str:
        """The identity of the weights the frozen blocks hold (`weights_identity`)."""
        from tl_core.engine.cache import weights_identity

        if self._source is None:
            self._source = weights_identity(self.config.weights, self.config.seed)
        return self._source

    def _write_run_json(
        self,
        classifier: Classifier,
        splits: DatasetSplits,
        phases: list[Phase],
        device: dict[str, Any],
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
                "device": device,
                "versions": _versions(),
                "weights_source": _weights_source(config),
            }
        )
        write_json_atomic(self.files.config, doc)

    def _run_phase(
        self,
        built: _Built,
        phase: Phase,
        *,
        epoch: int,
        phase_start: int,
        early_stopping: dict[str, Any],
        optimizer_from: str | None,
    ) -> _PhaseOutcome:
        """Train one phase from `epoch`; a phase that ends on restored best weights
        commits a checkpoint of them, so a kill before the next phase resumes from them."""
        from tl_core.engine.callbacks import Checkpoint, RunProgress

        stop_epoch = phase_start + phase.epochs
        data = self._phase_data(built, phase, (epoch, stop_epoch))
        trainable_params = self._compile_phase(built, phase, data, optimizer_from)
        log.info(
            "phase %s: epochs %d-%d, trainable blocks %s, %d trainable params",
            phase.name,
            epoch + 1,
            stop_epoch,
            ", ".join(phase.trainable) or "none (head only)",
            trainable_params,
        )
        progress = RunProgress(phase=phase.name, phase_index=phase.index)
        early = self._best_weights(built, progress, early_stopping)
        checkpoint = Checkpoint(
            self.files,
            progress,
            lambda: {
                "phase_start": phase_start,
                "phase_done": progress.phase_done,
                "frozen_source": self._frozen_source,
            },
            weights_of=built.classifier.model,
            best=early,
            only=built.only,
        )
        history = data.fit_model.fit(
            data.train,
            epochs=stop_epoch,
            initial_epoch=epoch,
            steps_per_epoch=data.steps,
            callbacks=self._callbacks(built, phase, data, progress, early, checkpoint),
            # The batches are already shuffled per (seed, epoch); Keras warns on shuffle=True.
            shuffle=False,
            verbose=0,
        )
        reached = epoch + len(history.epoch) - (1 if progress.stop_requested else 0)
        if progress.early_stopped:
            log.info("phase %s stopped early after epoch %d", phase.name, reached)
        if early is not None and early.restored:
            log.info("phase %s ends with the weights of epoch %d", phase.name, early.best_epoch)
            checkpoint.commit(reached)
        return _PhaseOutcome(
            reached, progress.stop_requested, early.state() if early is not None else {}
        )

    def _phase_data(self, built: _Built, phase: Phase, epochs: tuple[int, int]) -> _PhaseData:
        """The model to fit and its batches: the whole classifier on images, or for a
        cached phase the head on cached backbone features."""
        from tl_core.data.dataset import make_batches, steps_per_epoch
        from tl_core.models.classifier import uses_one_hot_labels

        config, classifier = self.config, built.classifier
        replicas = built.strategy.num_replicas_in_sync
        train_records, batch_size = _even_for_replicas(
            built.splits.train, config.batch_size, replicas
        )
        val_records, _ = _even_for_replicas(built.splits.val, config.batch_size, replicas)
        steps = steps_per_epoch(len(train_records), batch_size)
        common = {
            "class_names": built.splits.class_names,
            "image_size": classifier.image_size,
            "batch_size": batch_size,
            "one_hot": uses_one_hot_labels(config),
        }
        cached = (
            self._cached_phase(built, phase, (train_records, val_records), epochs, common)
            if phase.cached
            else None
        )
        if cached is not None:
            return _PhaseData(*cached, steps, batch_size, common, cached=True)
        if not phase.cached:
            self._record_path(phase, {"path": "plain", "storage": "none"})
        train = make_batches(
            built.report, train_records, shuffle_epochs=epochs, seed=config.seed, **common
        )
        val = make_batches(built.report, val_records, **common)
        return _PhaseData(classifier.model, train, val, steps, batch_size, common)

    def _compile_phase(
        self, built: _Built, phase: Phase, data: _PhaseData, optimizer_from: str | None
    ) -> int:
        """Apply the phase's freeze plan and compile (Keras applies ``trainable`` only
        then); mid-phase, bring the optimizer state back from the checkpoint. Return the
        number of trainable parameters."""
        from tl_core.engine.boundary import HEAD_FEATURES
        from tl_core.engine.checkpoints import load_optimizer
        from tl_core.models.classifier import apply_freeze_plan, compile_model

        config = self.config
        distributed = built.strategy.num_replicas_in_sync > 1
        with built.strategy.scope():
            summary = apply_freeze_plan(
                built.classifier,
                phase.trainable,
                pretrained=not config.from_scratch,
                train_bn=config.train_bn,
            )
            compile_model(data.fit_model, config, learning_rate=self._rate(phase, data.steps))
            if data.cached and phase.boundary == HEAD_FEATURES and not distributed:
                # Stop requests are then seen between executions: a few milliseconds apart.
                # Not under several replicas: Keras's loop over their batches fails there.
                data.fit_model.steps_per_execution = steps_per_execution(data.steps)
            if optimizer_from is not None:
                # Built first: an unbuilt optimizer has no slots to receive the state.
                data.fit_model.optimizer.build(data.fit_model.trainable_variables)
                load_optimizer(
                    data.fit_model.optimizer,
                    built.classifier.model,
                    self.files.checkpoints / optimizer_from,
                )
        return summary.trainable_params

    def _best_weights(
        self, built: _Built, progress: RunProgress, state: dict[str, Any]
    ) -> BestWeights | None:
        """The best-weights keeper of a phase, continuing from `state` (``None`` when
        neither early stopping nor restoring the best is asked for)."""
        from tl_core.engine.callbacks import BestWeights

        config = self.config
        if not (config.early_stopping or config.restore_best):
            return None
        return BestWeights(
            self.files,
            progress,
            patience=config.patience if config.early_stopping else None,
            restore=config.restore_best,
            weights_of=built.classifier.model,
            only=built.only,
            **state,
        )

    def _callbacks(
        self,
        built: _Built,
        phase: Phase,
        data: _PhaseData,
        progress: RunProgress,
        early: BestWeights | None,
        checkpoint: Checkpoint,
    ) -> list[keras.callbacks.Callback]:
        """The phase's callbacks, in the order `tl_core.engine.callbacks` needs them."""
        import keras

        from tl_core.engine.callbacks import (
            DriftTracker,
            EpochSummaries,
            MetricsStream,
            StatusUpdater,
            StopFlag,
            Validation,
            block_variables,
        )

        classifier, files = built.classifier, self.files
        callbacks: list[keras.callbacks.Callback] = [
            Validation(data.val, progress, self._recalibration(built, phase, data.common))
        ]
        if early is not None:
            callbacks.append(early)
        if self.config.schedule == "plateau":
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss", factor=0.5, patience=2, min_lr=phase.learning_rate / 100
                )
            )
        callbacks += [
            MetricsStream(files.metrics, progress, batches=data.steps, batch_size=data.batch_size),
            DriftTracker(
                files,
                block_variables(classifier.backbone, classifier.blocks),
                progress,
                fixed=[b.name for b in classifier.blocks if b.name not in built.moving],
            ),
            checkpoint,
            StopFlag(files.stop_flag, progress),
            # A cached epoch takes milliseconds; Keras's callback would add as many again.
            EpochSummaries(files.tensorboard, progress)
            if data.cached
            else keras.callbacks.TensorBoard(str(files.tensorboard), write_graph=False),
            StatusUpdater(files, progress),
        ]
        return callbacks

    def _recalibration(
        self, built: _Built, phase: Phase, common: dict[str, Any]
    ) -> tuple[BatchNormRecalibrator, tf.data.Dataset] | None:
        """BatchNorm re-estimation before each validation, when BatchNorm trains."""
        from tl_core.data.dataset import make_batches
        from tl_core.engine.callbacks import BatchNormRecalibrator
        from tl_core.models.classifier import batch_norm_layers

        classifier = built.classifier
        bn_layers = [
            layer
            for block in classifier.blocks
            if block.name in phase.trainable
            for name in block.layers
            for layer in batch_norm_layers(classifier.backbone.get_layer(name))
            if layer.trainable
        ]
        if not bn_layers:
            return None
        plain_train = make_batches(built.report, built.splits.train, **common)
        return BatchNormRecalibrator(classifier.features, bn_layers), plain_train

    def _cached_phase(
        self,
        built: _Built,
        phase: Phase,
        records: tuple[tuple[ImageRecord, ...], tuple[ImageRecord, ...]],
        epochs: tuple[int, int],
        common: dict[str, Any],
    ) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset] | None:
        """The model above the phase's frozen boundary and batches of the activations
        cached there (`tl_core.engine.boundary`); ``None`` when they do not fit the cache
        bound (the phase then trains on images). run.json records the path taken."""
        import numpy as np

        from tl_core.data.dataset import MEMORY_CACHE_BYTES
        from tl_core.engine.boundary import HEAD_FEATURES, extraction_model, upper_model
        from tl_core.engine.cache import choose_dtype

        config, classifier = self.config, built.classifier
        boundary = phase.boundary or HEAD_FEATURES
        path = "head-features" if boundary == HEAD_FEATURES else f"boundary:{boundary}"
        views = config.cache_views if config.augmentation else 1
        shape = extraction_model(classifier, boundary).output_shape[1:]
        train_records, val_records = records
        # A subsample of the training split (`train_fraction`) is served from the whole
        # split's entry, which every fraction shares (its images are the key).
        pool = built.splits.train_pool or train_records
        values = int(np.prod(shape)) * (views * len(pool) + len(val_records))
        dtype = choose_dtype(values)
        if dtype is None:
            log.info("%s: the activations do not fit TL_CACHE_MB; training on images", path)
            self._record_path(phase, {"path": "plain", "storage": "none", "wanted": path})
            return None
        # RAM takes entries up to half the decoded-image budget each (train and val).
        ram = MEMORY_CACHE_BYTES // 2
        train = _rows_of(
            self._activations(
                built, boundary, pool, config.augmentation, views, dtype, ram, common
            ),
            pool,
            train_records,
        )
        # Validation images are never augmented: one plain view each.
        val = self._activations(built, boundary, val_records, (), 1, dtype, ram, common)
        self._record_path(
            phase,
            {
                "path": path,
                "storage": train.storage,
                "dtype": dtype,
                "views": views,
                "hit": train.hit and val.hit,
                "keys": [train.key, val.key],
                "estimated_seconds_saved": round(
                    _seconds_saved(phase, train, val, len(train_records), len(val_records)), 2
                ),
            },
        )
        log.info(
            "%s: %s activations (%s, %s, %d view(s))",
            path,
            "cached" if train.hit else "computed",
            train.storage,
            dtype,
            views,
        )
        # Inside the strategy's scope: a model made outside it fits under the default
        # strategy, and its optimizer (compiled in the scope) then refuses to build.
        with built.strategy.scope():
            fit_model = upper_model(classifier, boundary, shape)
        # `Validation`'s compiled step on arrays runs outside any distribution strategy.
        in_memory = built.strategy.num_replicas_in_sync == 1 and val.storage == "ram"
        return fit_model, *self._view_batches(train, val, records, epochs, common, in_memory)

    def _activations(
        self,
        built: _Built,
        boundary: str,
        records: tuple[ImageRecord, ...],
        augmentation: tuple[str, ...],
        views: int,
        dtype: str,
        ram_bytes: int,
        common: dict[str, Any],
    ) -> CacheEntry:
        """The cached activations of `records` at `boundary`, `views` views of each drawn
        through `augmentation`, computed on a miss."""

        from tl_core.data.dataset import make_batches
        from tl_core.engine.boundary import extract_views
        from tl_core.engine.cache import activation_key, load_or_compute

        config, classifier = self.config, built.classifier
        key = activation_key(
            dataset_id=config.dataset_id,
            paths=[r.path for r in records],
            backbone=config.backbone,
            weights=self._frozen_source,
            image_size=classifier.image_size,
            boundary=boundary,
            augmentation=augmentation,
            views=views,
            bn_mode="frozen",
            dtype=dtype,
        )

        # The extraction adds its per-image time: what the plain path pays every epoch.
        meta: dict[str, Any] = {
            "backbone": config.backbone,
            "weights": self._frozen_source,
            "boundary": boundary,
            "augmentation": list(augmentation),
            "images": len(records),
            "views": views,
        }

        def compute() -> np.ndarray:
            batches = make_batches(
                built.report, records, **(common | {"one_hot": False}), cache=False
            )
            return extract_views(
                classifier,
                boundary,
                batches,
                views=views,
                augment=bool(augmentation),
                timings=meta,
            )

        return load_or_compute(key, compute, dtype=dtype, ram_bytes=ram_bytes, meta=meta)

    def _view_batches(
        self,
        train: CacheEntry,
        val: CacheEntry,
        records: tuple[tuple[ImageRecord, ...], tuple[ImageRecord, ...]],
        epochs: tuple[int, int],
        common: dict[str, Any],
        val_in_memory: bool,
    ) -> tuple[tf.data.Dataset, tf.data.Dataset | tuple[np.ndarray, np.ndarray]]:
        """The training batches of the cached views; the validation batches, or with
        `val_in_memory` the validation arrays ``(x, y)`` themselves (see `Validation`)."""
        from tl_core.engine.boundary import view_batches

        index = {name: i for i, name in enumerate(common["class_names"])}
        arrays = {
            "num_classes": len(common["class_names"]),
            "batch_size": common["batch_size"],
            "one_hot": common["one_hot"],
        }
        train_labels = [index[r.label] for r in records[0]]
        val_labels = [index[r.label] for r in records[1]]
        return (
            view_batches(
                train.activations,
                train_labels,
                shuffle_epochs=epochs,
                seed=self.config.seed,
                **arrays,
            ),
            _validation_arrays(
                val.activations, val_labels, arrays["num_classes"], common["one_hot"]
            )
            if val_in_memory
            else view_batches(val.activations, val_labels, **arrays),
        )

    def _record_path(self, phase: Phase, path: dict[str, Any]) -> None:
        """Record in run.json the path a phase took and the time caching saved."""
        self._paths[phase.name] = path
        doc = read_json(self.files.config)
        if not isinstance(doc, dict):
            return
        saved = sum(p.get("estimated_seconds_saved", 0.0) for p in self._paths.values())
        doc["cache"] = {"phases": self._paths, "estimated_seconds_saved": round(saved, 2)}
        write_json_atomic(self.files.config, doc)

    def _rate(
        self, phase: Phase, steps: int
    ) -> float | keras.optimizers.schedules.LearningRateSchedule:
        import keras

        if self.config.schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(
                phase.learning_rate, decay_steps=max(1, phase.epochs * steps)
            )
        return phase.learning_rate


def _validation_arrays(
    activations: np.ndarray, labels: Sequence[int], num_classes: int, one_hot: bool
) -> tuple[np.ndarray, np.ndarray]:
    """View 0 of every validation image and its labels, as `view_batches` gives them
    without shuffling (float32 activations; class indices or one-hot rows)."""
    import numpy as np

    y = np.asarray(labels, np.int32)
    return (
        np.asarray(activations[0], np.float32),
        np.eye(num_classes, dtype=np.float32)[y] if one_hot else y,
    )


def _seconds_saved(
    phase: Phase, train: CacheEntry, val: CacheEntry, num_train: int, num_val: int
) -> float:
    """Estimate what caching saves a phase: on images, every epoch would run the frozen
    part over one view of each training image and over every validation image; the
    extraction done in this run (nothing on a hit) is paid once."""
    per_image = float(train.meta.get("seconds_per_image") or 0.0) or train.compute_seconds / max(
        1, train.activations.shape[0] * num_train
    )
    spent = sum(entry.compute_seconds for entry in (train, val) if not entry.hit)
    return phase.epochs * per_image * (num_train + num_val) - spent


def _choose_precision(requested: bool, device: DeviceInfo) -> dict[str, Any]:
    """Switch Keras to mixed_float16 when asked for and the GPUs support it; return what
    run.json records (``mixed_precision``, and ``mixed_precision_note`` saying why not)."""
    if not requested:
        return {"mixed_precision": False}
    import keras

    from tl_core.engine.device import gpu_compute_capabilities, mixed_precision_refusal

    refusal = mixed_precision_refusal(device, gpu_compute_capabilities())
    if refusal is not None:
        log.warning("%s", refusal)
        return {"mixed_precision": False, "mixed_precision_note": refusal}
    keras.mixed_precision.set_global_policy("mixed_float16")
    return {"mixed_precision": True}


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


def _even_for_replicas(
    records: Sequence[ImageRecord], batch_size: int, replicas: int
) -> tuple[tuple[ImageRecord, ...], int]:
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


def _rows_of(
    entry: CacheEntry, pool: Sequence[ImageRecord], records: Sequence[ImageRecord]
) -> CacheEntry:
    """`entry` (the activations of `pool`) cut down to `records`, a subset of `pool`, in
    their order; `entry` itself when they are the same images."""
    import numpy as np

    if len(records) == len(pool) and all(
        a.path == b.path for a, b in zip(records, pool, strict=True)
    ):
        return entry
    position = {record.path: i for i, record in enumerate(pool)}
    rows = np.asarray(entry.activations[:, [position[r.path] for r in records]])
    return replace(entry, activations=rows, storage="ram")
