"""`RunConfig`: every setting of one training run, validated, with a JSON round trip.

A config is plain data (a frozen dataclass of strings, numbers and tuples) so it can cross
the core/UI boundary, be stored in ``run.json`` and be diffed between runs. Invalid
values raise `ConfigError` with Keras-style messages:
"Expected `epochs` to be between 1 and 1000. Received: epochs=0".

Rules that tie fields together or need facts a config does not hold (the backbone's
block names, whether the training machine has a GPU) live here too, once: the CLI, the
queue (`tl_core.jobs.queue.submit`) and the Train page all call `RunConfig.validate_for`
(through `check_runnable` where this process must look the facts up), and the page
switches off what `unavailable_options` names, showing its reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tl_core.errors import ConfigError

__all__ = [
    "AUGMENTATIONS",
    "FREEZE_PRESETS",
    "OPTIMIZERS",
    "SCHEDULES",
    "RunConfig",
    "check_runnable",
    "expect_block_depth",
    "expect_block_names",
    "unavailable_options",
]

#: Freeze presets. ``feature-extraction``: only the head trains. ``fine-tune``: the top
#: ``unfreeze_last`` blocks train too. ``full``: every block trains. ``custom``: the blocks
#: named in ``trainable_blocks`` train.
FREEZE_PRESETS = ("feature-extraction", "fine-tune", "full", "custom")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast")

_IMAGE_SIZE_RANGE = (32, 512)


def _expect(ok: bool, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")


def expect_block_depth(
    name: str, value: int, blocks: Sequence[str], *, backbone: str | None = None, low: int = 0
) -> None:
    """Refuse a count of top blocks outside ``low``–``len(blocks)`` instead of clamping it.

    Example:
        >>> expect_block_depth("unfreeze_last", 9, ["stem", "top"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tl_core.errors.ConfigError: Expected `unfreeze_last` to be between 0 and 2 for this ...
    """
    owner = backbone or "this backbone"
    _expect(
        _is_int(value) and low <= value <= len(blocks),
        name,
        f"between {low} and {len(blocks)} for {owner} (its block count)",
        value,
    )


def expect_block_names(
    names: Sequence[str], blocks: Sequence[str], *, backbone: str | None = None
) -> None:
    """Refuse block names that are not blocks of the backbone, listing the valid ones.

    Example:
        >>> expect_block_names(["top"], ["stem", "top"])  # no error
    """
    unknown = sorted(set(names) - set(blocks))
    if unknown:
        owner = backbone or "this backbone"
        raise ConfigError(
            f"Expected `trainable_blocks` to name blocks of {owner} ({', '.join(blocks)}). "
            f"Received unknown blocks: {unknown}. List them with "
            f"`python -m tl_core blocks {backbone or 'BACKBONE'}`."
        )


def _bottom_frozen_somewhere(settings: Mapping[str, Any]) -> bool:
    """Whether some phase keeps the bottom block frozen (what caching needs): every preset
    but ``full`` in one phase; the head phase of two."""
    return (
        settings.get("two_phase", False) or settings.get("freeze", "feature-extraction") != "full"
    )


#: Options that are preferences, never refused: where ``fast`` cannot apply (every block
#: trains), the run takes the plain path, so its default (on) fits every config.
_FALLS_BACK = frozenset({"fast"})


def unavailable_options(
    settings: Mapping[str, Any], *, gpu: bool | None = None
) -> dict[str, tuple[str, str]]:
    """Return the on/off options that cannot be on with these `settings`, and why.

    The studio's cross-field rules, written once: `RunConfig.validate_for` refuses a
    config that switches such an option on (except ``fast``, a preference: the run then
    trains on images), and the Train page switches it off and shows the reason.

    Args:
        settings: `RunConfig` fields by name (``weights``, ``freeze``, ``unfreeze_last``,
            ``two_phase``); a missing field takes `RunConfig`'s default.
        gpu: whether the machine that trains has a GPU; ``None`` (default) when unknown,
            which skips the GPU rule.

    Returns:
        ``{option: (expected, reason)}``: what the option was expected to be, in words,
        and a sentence for people saying why and what to do.

    Example:
        >>> sorted(unavailable_options({"weights": "none", "freeze": "full"}, gpu=False))
        ['fast', 'mixed_precision', 'two_phase']
    """
    found: dict[str, tuple[str, str]] = {}
    if settings.get("weights", "imagenet") == "none":
        found["two_phase"] = (
            "False when training from scratch (weights='none')",
            "Two phases need pretrained weights: a frozen, randomly initialised backbone "
            "passes almost nothing to the head, so the head-only phase learns nothing. "
            "Choose ImageNet weights or a weights file, or train in one phase.",
        )
    # Where two phases are ruled out above, the page switches them off: judge `fast` so.
    two_phase = settings.get("two_phase", False) and "two_phase" not in found
    if not _bottom_frozen_somewhere({**settings, "two_phase": two_phase}):
        found["fast"] = (
            "False when every block trains",
            "Caching needs frozen blocks at the bottom: when every block trains, the whole "
            "backbone runs on every batch, so the run trains on images. Freeze some blocks, "
            "or choose two phases, to train from cached activations.",
        )
    if gpu is False:
        found["mixed_precision"] = (
            "False on a machine without a GPU",
            "Mixed precision needs a GPU: float16 compute on a CPU is slower, not faster. "
            "Turn it off, or train on a machine with a GPU.",
        )
    return found


def check_runnable(
    config: RunConfig, *, blocks: Sequence[str] | None = None, home: Path | None = None
) -> None:
    """`RunConfig.validate_for` with the facts this process finds without TensorFlow.

    The block names are `blocks` when given, else the cached block list of the config's
    backbone (`tl_core.models.catalog`); when it is not cached the block checks are left
    to the worker, which refuses on the built model. Whether this machine has a GPU is
    asked (``nvidia-smi``) only when the config wants mixed precision.

    Args:
        config: the run's settings.
        blocks: the backbone's block names, input side first (default ``None``: look them
            up in the cache).
        home: the workspace root holding the block cache (default ``TL_HOME``).

    Raises:
        ConfigError: the settings cannot run here (see `RunConfig.validate_for`).

    Example:
        >>> check_runnable(RunConfig(dataset_id="0123456789ab"))  # doctest: +SKIP
    """
    from tl_core.models.catalog import cached_backbone_blocks

    if blocks is None:
        cached = cached_backbone_blocks(config.backbone, config.image_size, home=home)
        blocks = [block.name for block in cached] if cached is not None else None
    gpu = None
    if config.mixed_precision:
        from tl_core.jobs.devices import probe_devices

        gpu = probe_devices().kind == "gpu"
    config.validate_for(blocks=blocks, gpu=gpu)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RunConfig:
    """The settings of one training run.

    Args:
        dataset_id: the stored dataset (12 hex digits, from `ingest_archive`).
        backbone: registry id, e.g. ``"mobilenet_v2"`` (see `tl_core.models.backbones`).
        weights: ``"imagenet"``, ``"none"`` (from scratch) or a path to a weights file.
        image_size: square input side in pixels, 32–512; ``None`` uses the backbone's
            default input size.
        freeze: one of `FREEZE_PRESETS` (default ``"feature-extraction"``).
        unfreeze_last: with ``freeze="fine-tune"``, how many top blocks train (default 2).
        trainable_blocks: with ``freeze="custom"``, the names of the blocks that train.
        train_bn: let BatchNorm train in trainable blocks even with pretrained weights
            (default False: the classic pitfall, kept for demonstrations).
        epochs: epochs of the first (or only) phase, 1–1000 (default 10).
        batch_size: 1–1024 (default 32).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        learning_rate: of the first phase (default 1e-3).
        schedule: ``"constant"``, ``"cosine"`` (decay to 0 over the phase) or
            ``"plateau"`` (halve when validation loss stalls for 2 epochs).
        two_phase: the classic recipe in one run: phase 1 trains the head with the
            backbone frozen (whatever ``freeze`` says), phase 2 unfreezes the top
            ``fine_tune_blocks`` blocks and trains ``fine_tune_epochs`` more epochs at
            ``learning_rate * fine_tune_lr_factor``.
        early_stopping: stop a phase when the best epoch (highest validation accuracy,
            ties to the lower validation loss) has not improved for ``patience`` epochs.
        restore_best: end every phase on the weights of the best epoch so far, so the
            saved model is the epoch the pages call best (default True).
        augmentation: any of `AUGMENTATIONS`; applied to training batches only.
        label_smoothing: 0 ≤ value < 1 (default 0).
        dropout: dropout before the classifier head, 0 ≤ value < 1 (default 0.2).
        val_fraction: share of each class held out for validation when the dataset has
            no ``val/`` folder (default 0.2).
        train_fraction: share of each class's training images that train, 0 < value ≤ 1
            (default 1.0: all); at least one per class, drawn with a fixed seed. The
            validation images stay the same, so runs at different fractions compare fairly
            (`tl_core.data.dataset.split_dataset`).
        seed: seeds the split, the shuffling, augmentation and initialisation.
        mixed_precision: float16 compute on a GPU (ignored on CPU, recorded in run.json).
        fast: in every phase whose bottom blocks are frozen, compute the frozen part's
            output once (the shared cache, `tl_core.engine.cache`) and train the blocks
            above it and the head from it (default True). Where every block trains, the
            run trains on images: never refused.
        cache_views: augmented views cached per training image when ``fast`` and
            augmentation are on; each epoch draws one (default 4).

    Example:
        >>> cfg = RunConfig(dataset_id="0123456789ab", backbone="mobilenet_v2", epochs=3)
        >>> RunConfig.from_json(cfg.to_json()) == cfg
        True
    """

    dataset_id: str
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    image_size: int | None = None
    freeze: str = "feature-extraction"
    unfreeze_last: int = 2
    trainable_blocks: tuple[str, ...] = ()
    train_bn: bool = False
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    two_phase: bool = False
    fine_tune_epochs: int = 5
    fine_tune_blocks: int = 2
    fine_tune_lr_factor: float = 0.1
    early_stopping: bool = False
    patience: int = 3
    restore_best: bool = True
    augmentation: tuple[str, ...] = field(default=("flip",))
    label_smoothing: float = 0.0
    dropout: float = 0.2
    val_fraction: float = 0.2
    train_fraction: float = 1.0
    seed: int = 0
    mixed_precision: bool = False
    fast: bool = True
    cache_views: int = 4

    def __post_init__(self) -> None:
        # Tuples may arrive as lists from JSON or the UI; store them as tuples.
        object.__setattr__(self, "trainable_blocks", tuple(self.trainable_blocks))
        object.__setattr__(self, "augmentation", tuple(self.augmentation))
        self._validate()

    def _validate(self) -> None:
        v = self
        _expect(
            isinstance(v.dataset_id, str)
            and len(v.dataset_id) == 12
            and all(c in "0123456789abcdef" for c in v.dataset_id),
            "dataset_id",
            "12 hex digits (from `ingest_archive`)",
            v.dataset_id,
        )
        _expect(
            isinstance(v.backbone, str) and v.backbone != "",
            "backbone",
            "a backbone id such as 'mobilenet_v2'",
            v.backbone,
        )
        _expect(
            isinstance(v.weights, str) and v.weights != "",
            "weights",
            "'imagenet', 'none' or the path of a weights file",
            v.weights,
        )
        lo, hi = _IMAGE_SIZE_RANGE
        _expect(
            v.image_size is None or (_is_int(v.image_size) and lo <= v.image_size <= hi),
            "image_size",
            f"None or an integer between {lo} and {hi}",
            v.image_size,
        )
        _expect(v.freeze in FREEZE_PRESETS, "freeze", f"one of {list(FREEZE_PRESETS)}", v.freeze)
        _expect(
            _is_int(v.unfreeze_last) and 0 <= v.unfreeze_last <= 1000,
            "unfreeze_last",
            "an integer between 0 and 1000",
            v.unfreeze_last,
        )
        _expect(
            all(isinstance(b, str) and b for b in v.trainable_blocks),
            "trainable_blocks",
            "a list of block names",
            v.trainable_blocks,
        )
        _expect(
            v.freeze != "custom" or bool(v.trainable_blocks),
            "trainable_blocks",
            "at least one block name when freeze='custom'",
            v.trainable_blocks,
        )
        bools = (
            "train_bn",
            "two_phase",
            "early_stopping",
            "restore_best",
            "mixed_precision",
            "fast",
        )
        for name in bools:
            _expect(isinstance(getattr(v, name), bool), name, "True or False", getattr(v, name))
        _expect(
            _is_int(v.cache_views) and 1 <= v.cache_views <= 16,
            "cache_views",
            "an integer between 1 and 16",
            v.cache_views,
        )
        _expect(
            _is_int(v.epochs) and 1 <= v.epochs <= 1000,
            "epochs",
            "an integer between 1 and 1000",
            v.epochs,
        )
        _expect(
            _is_int(v.batch_size) and 1 <= v.batch_size <= 1024,
            "batch_size",
            "an integer between 1 and 1024",
            v.batch_size,
        )
        _expect(v.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}", v.optimizer)
        _expect(
            _is_number(v.learning_rate) and 0 < v.learning_rate <= 1,
            "learning_rate",
            "a number in (0, 1]",
            v.learning_rate,
        )
        _expect(v.schedule in SCHEDULES, "schedule", f"one of {list(SCHEDULES)}", v.schedule)
        _expect(
            _is_int(v.fine_tune_epochs) and 1 <= v.fine_tune_epochs <= 1000,
            "fine_tune_epochs",
            "an integer between 1 and 1000",
            v.fine_tune_epochs,
        )
        _expect(
            _is_int(v.fine_tune_blocks) and 1 <= v.fine_tune_blocks <= 1000,
            "fine_tune_blocks",
            "an integer between 1 and 1000",
            v.fine_tune_blocks,
        )
        _expect(
            _is_number(v.fine_tune_lr_factor) and 0 < v.fine_tune_lr_factor <= 1,
            "fine_tune_lr_factor",
            "a number in (0, 1]",
            v.fine_tune_lr_factor,
        )
        _expect(
            _is_int(v.patience) and 1 <= v.patience <= 100,
            "patience",
            "an integer between 1 and 100",
            v.patience,
        )
        unknown = sorted(set(v.augmentation) - set(AUGMENTATIONS))
        _expect(
            not unknown and len(set(v.augmentation)) == len(v.augmentation),
            "augmentation",
            f"distinct names from {list(AUGMENTATIONS)}",
            v.augmentation,
        )
        for name in ("label_smoothing", "dropout"):
            value = getattr(v, name)
            _expect(_is_number(value) and 0 <= value < 1, name, "a number in [0, 1)", value)
        _expect(
            _is_number(v.val_fraction) and 0.05 <= v.val_fraction <= 0.5,
            "val_fraction",
            "a number between 0.05 and 0.5",
            v.val_fraction,
        )
        _expect(
            _is_number(v.train_fraction) and 0 < v.train_fraction <= 1,
            "train_fraction",
            "a number greater than 0 and at most 1",
            v.train_fraction,
        )
        _expect(
            _is_int(v.seed) and 0 <= v.seed < 2**31,
            "seed",
            "an integer between 0 and 2**31 - 1",
            v.seed,
        )

    def validate_for(self, *, blocks: Sequence[str] | None = None, gpu: bool | None = None) -> None:
        """Refuse settings that do not fit each other, the backbone or the machine.

        Construction checks each field alone; this checks what ties them together (the
        rules of `unavailable_options`) and, given the facts, that the freeze plan fits
        the backbone's blocks. The CLI calls it before training and
        `tl_core.jobs.queue.submit` before queueing (both through `check_runnable`).

        Args:
            blocks: the backbone's block names, input side first; ``None`` (default)
                skips the block checks. In the web process they come from
                `tl_core.models.catalog.cached_backbone_blocks`, in the worker from the
                built model.
            gpu: whether the training machine has a GPU; ``None`` (default) when unknown.

        Raises:
            ConfigError: naming the setting, what was expected and what was received.

        Example:
            >>> cfg = RunConfig(dataset_id="0123456789ab", freeze="fine-tune", unfreeze_last=9)
            >>> cfg.validate_for(blocks=["stem", "block_1", "top"])  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            tl_core.errors.ConfigError: Expected `unfreeze_last` to be between 0 and 3 for ...
        """
        for option, (expected, reason) in unavailable_options(self.to_json(), gpu=gpu).items():
            if getattr(self, option) and option not in _FALLS_BACK:
                raise ConfigError(
                    f"Expected `{option}` to be {expected}. Received: {option}=True. {reason}"
                )
        if blocks is not None:
            self._validate_blocks(list(blocks))

    def _validate_blocks(self, blocks: list[str]) -> None:
        # Two phases fix the second phase's depth in `fine_tune_blocks`, whatever `freeze` says.
        if self.two_phase:
            expect_block_depth(
                "fine_tune_blocks", self.fine_tune_blocks, blocks, backbone=self.backbone, low=1
            )
        elif self.freeze == "fine-tune":
            expect_block_depth("unfreeze_last", self.unfreeze_last, blocks, backbone=self.backbone)
        elif self.freeze == "custom":
            expect_block_names(self.trainable_blocks, blocks, backbone=self.backbone)

    @property
    def from_scratch(self) -> bool:
        """True when the backbone starts from random weights."""
        return self.weights == "none"

    @property
    def total_epochs(self) -> int:
        """Epochs over all phases."""
        return self.epochs + (self.fine_tune_epochs if self.two_phase else 0)

    def with_changes(self, **changes: Any) -> RunConfig:
        """Return a validated copy with `changes` applied."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict (tuples become lists)."""
        doc = asdict(self)
        doc["trainable_blocks"] = list(self.trainable_blocks)
        doc["augmentation"] = list(self.augmentation)
        return doc

    def dumps(self) -> str:
        """Return the config as a JSON string."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, doc: dict[str, Any] | str) -> RunConfig:
        """Build a config from `to_json` output (a dict or a JSON string); unknown keys fail."""
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"The run config is not valid JSON ({exc}).") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"Expected the run config to be a JSON object. Received: {doc!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(
                f"Unknown run config keys {unknown}. Known keys: {sorted(known)}. "
                "Remove them, or update tl_core if the config came from a newer version."
            )
        if "dataset_id" not in doc:
            raise ConfigError("The run config has no `dataset_id`; pick a dataset first.")
        try:
            return cls(**doc)
        except TypeError as exc:
            raise ConfigError(f"The run config cannot be read: {exc}.") from exc
