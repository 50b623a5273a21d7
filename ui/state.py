"""Every session-state key and query parameter of the studio, with typed getters and setters.

Session state holds small plain values only: ids and widget keys, never reports, images
or uploaded bytes. Everything heavier lives on disk under ``TL_HOME`` and is loaded
through `tl_core` by id. A browser reload starts a new session, so the chosen dataset
and backbone are mirrored into the URL (``?dataset=<id>&backbone=<id>``) and restored
from there.

The Backbone and Layers choices are read back resolved, defaults filled in, through
`model_choice`; `run_config_draft` turns them into `RunConfig` fields for the Train page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from tl_core import ConfigError, DatasetReport, load_dataset
from tl_core.config import RunConfig
from tl_core.models.backbones import get_backbone, weights_cached
from tl_core.models.catalog import DEFAULT_BACKBONE, suggest_image_size, typical_image_side
from tl_core.models.classifier import plan_trainable_blocks

#: The id of the dataset this session works on (12 hex digits, from `tl_core`).
DATASET_ID = "dataset_id"
#: The ``file_id`` of the last upload that was ingested (or refused), so that reruns
#: of the script, which see the same upload again, do not ingest it twice.
HANDLED_UPLOAD = "handled_upload"
#: Widget key of the "stored datasets" picker on the Data page.
DATASET_PICKER = "dataset_picker"
#: Widget key of the zip uploader on the Data page.
UPLOADER = "dataset_upload"

#: Query parameter that carries the dataset id across browser reloads.
DATASET_PARAM = "dataset"


def dataset_id() -> str | None:
    """Return the id of the chosen dataset, or ``None`` when none is chosen yet."""
    value = st.session_state.get(DATASET_ID)
    return value if isinstance(value, str) else None


def set_dataset_id(value: str) -> None:
    """Choose the dataset `value` for this session and put it into the URL."""
    st.session_state[DATASET_ID] = value
    if st.query_params.get(DATASET_PARAM) != value:
        st.query_params[DATASET_PARAM] = value


def clear_dataset_id() -> None:
    """Forget the chosen dataset, in the session and in the URL."""
    st.session_state.pop(DATASET_ID, None)
    if DATASET_PARAM in st.query_params:
        del st.query_params[DATASET_PARAM]


def dataset_param() -> str | None:
    """Return the dataset id the URL asks for (unvalidated), or ``None``."""
    return st.query_params.get(DATASET_PARAM)


def handled_upload() -> str | None:
    """Return the ``file_id`` of the last upload that was ingested or refused."""
    value = st.session_state.get(HANDLED_UPLOAD)
    return value if isinstance(value, str) else None


def set_handled_upload(file_id: str) -> None:
    """Remember that the upload `file_id` was handled, so reruns leave it alone."""
    st.session_state[HANDLED_UPLOAD] = file_id


# --- Backbone and Layers steps ------------------------------------------------------------
# Plain values only. Widgets have keys of their own (below) and copy their value here in
# an ``on_change`` callback: Streamlit deletes a widget's state when a page without that
# widget runs, and these choices must outlive a visit to another page.

#: Registry id of the chosen backbone (`tl_core.models.backbones`), mirrored into ``?backbone=``.
BACKBONE_ID = "backbone_id"
#: Where the backbone's weights come from: one of `WEIGHTS_SOURCES`. Absent until the
#: user picks one; until then `model_choice` takes ImageNet when its file is on this
#: machine and scratch when it is not, so that the sample trains at once offline.
WEIGHTS_SOURCE = "weights_source"
#: Path (str) of the uploaded weights file, under ``TL_HOME/weights``.
WEIGHTS_PATH = "weights_path"
#: The ``file_id`` of the last weights upload stored (or refused), as `HANDLED_UPLOAD`.
HANDLED_WEIGHTS_UPLOAD = "handled_weights_upload"
#: Input side in pixels chosen by the user; absent means the suggestion for the dataset.
IMAGE_SIZE = "image_size"
#: The Layers step's preset, one of `FREEZE_CHOICES`. Absent means the automatic one:
#: ``"scratch"`` with random weights, else ``"feature-extraction"``.
FREEZE_PRESET = "freeze_preset"
#: With the ``"fine-tune"`` preset: how many blocks train, counted from the top.
UNFREEZE_LAST = "unfreeze_last"
#: With the ``"custom"`` preset: the names of the blocks that train (a tuple).
TRAINABLE_BLOCKS = "trainable_blocks"
#: Let BatchNorm train in trainable blocks despite pretrained weights (the pitfall demo).
TRAIN_BN = "train_bn"
#: True once the Layers page has shown the freeze plan: the step counts as done.
LAYERS_SEEN = "layers_seen"
#: Bumped whenever the freeze plan changes from outside the block table, so that the
#: table starts afresh (its key ends with this number) instead of replaying old edits.
BLOCK_TABLE_VERSION = "block_table_version"

#: Widget keys of the Backbone page.
BACKBONE_PICKER = "backbone_picker"
WEIGHTS_PICKER = "weights_picker"
WEIGHTS_UPLOADER = "weights_upload"
#: The trained run whose backbone to start from (picker), and the button that takes it.
WEIGHTS_RUN_PICKER = "weights_run_picker"
WEIGHTS_RUN_BUTTON = "weights_run_button"
#: The run whose backbone is being exported as this session's weights file (its id).
WEIGHTS_FROM_RUN = "weights_from_run"
IMAGE_SIZE_INPUT = "image_size_input"
#: Widget keys of the Layers page (the block table's key is `block_table_key()`).
PRESET_PICKER = "freeze_preset_picker"
UNFREEZE_SLIDER = "unfreeze_last_slider"
TRAIN_BN_TOGGLE = "train_bn_toggle"
BLOCK_TABLE = "block_table"

#: Query parameter that carries the backbone id across browser reloads.
BACKBONE_PARAM = "backbone"

#: Weights sources: pretrained on ImageNet, random, or a file the user uploaded.
WEIGHTS_SOURCES = ("imagenet", "scratch", "file")
#: Freeze presets of the Layers page: `tl_core.config.FREEZE_PRESETS` plus ``"scratch"``,
#: which is ``"full"`` with random weights.
FREEZE_CHOICES = ("feature-extraction", "fine-tune", "full", "scratch", "custom")

# --- Train step ---------------------------------------------------------------------------
# The Train page owns its fields. Each one gets a key here (named after its `RunConfig`
# field) and a getter that falls back to the `RunConfig` default, so other pages can read
# it before the Train page ever ran; the Layers page's cost estimate reads `batch_size`.

#: Images per training step.
BATCH_SIZE = "batch_size"


@dataclass(frozen=True)
class ModelChoice:
    """The Backbone and Layers choices as a run would use them now, defaults filled in.

    Attributes:
        backbone: registry id.
        weights_source: one of `WEIGHTS_SOURCES`.
        weights_auto: True when the user has not picked a source (ImageNet when its file
            is cached, else scratch).
        weights_path: the uploaded weights file, or ``None``.
        image_size: input side in pixels (at least the backbone's minimum).
        image_size_auto: True when `image_size` is the suggestion, not the user's pick.
        suggested_image_size: what `tl_core.models.catalog.suggest_image_size` says for the dataset.
        typical_side: the dataset images' median shorter side, ``None`` when unknown.
        preset: one of `FREEZE_CHOICES`.
        unfreeze_last: blocks that train with the ``"fine-tune"`` preset.
        trainable_blocks: blocks that train with the ``"custom"`` preset.
        train_bn: let BatchNorm train despite pretrained weights.
    """

    backbone: str
    weights_source: str
    weights_auto: bool
    weights_path: str | None
    image_size: int
    image_size_auto: bool
    suggested_image_size: int
    typical_side: int | None
    preset: str
    unfreeze_last: int
    trainable_blocks: tuple[str, ...]
    train_bn: bool

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from learned weights (ImageNet or a file)."""
        return self.weights_source != "scratch"

    @property
    def freeze(self) -> str:
        """The `RunConfig.freeze` value: ``"scratch"`` trains every block, as ``"full"``."""
        return "full" if self.preset == "scratch" else self.preset

    @property
    def weights(self) -> str:
        """The `RunConfig.weights` value: ``"imagenet"``, ``"none"`` or a file path.

        Raises `ConfigError` when the source is a file and none is uploaded (any more).
        """
        if self.weights_source == "imagenet":
            return "imagenet"
        if self.weights_source == "scratch":
            return "none"
        if self.weights_path is None or not Path(self.weights_path).is_file():
            raise ConfigError(
                "The weights source is an uploaded file, but no weights file is stored. "
                "Upload one on the Backbone page, or choose ImageNet or From scratch there."
            )
        return self.weights_path

    def trainable(self, block_names: Sequence[str]) -> tuple[str, ...]:
        """Return the blocks (of `block_names`, input side first) this plan trains."""
        return plan_trainable_blocks(
            block_names,
            self.freeze,
            unfreeze_last=self.unfreeze_last,
            trainable_blocks=self.trainable_blocks,
        )


def model_choice(report: DatasetReport | None) -> ModelChoice:
    """Resolve this session's Backbone and Layers choices, defaults filled in.

    Args:
        report: the chosen dataset (its image sizes drive the suggested image size), or
            ``None`` when no dataset is chosen.
    """
    spec = get_backbone(backbone_id() or DEFAULT_BACKBONE)
    typical = _typical_side(report.dataset_id, report) if report is not None else None
    suggested = suggest_image_size(spec, typical)
    chosen_size = image_size()
    size = suggested if chosen_size is None else max(chosen_size, spec.min_input_size)
    source = _get(WEIGHTS_SOURCE, str)
    if source is None:
        weights = "imagenet" if weights_cached(spec, size) else "scratch"
    else:
        weights = source
    auto_preset = "scratch" if weights == "scratch" else "feature-extraction"
    return ModelChoice(
        backbone=spec.id,
        weights_source=weights,
        weights_auto=source is None,
        weights_path=weights_path(),
        image_size=size,
        image_size_auto=chosen_size is None,
        suggested_image_size=suggested,
        typical_side=typical,
        preset=_get(FREEZE_PRESET, str) or auto_preset,
        unfreeze_last=_get(UNFREEZE_LAST, int) or _RUN_DEFAULTS["unfreeze_last"],
        trainable_blocks=_get(TRAINABLE_BLOCKS, tuple) or (),
        train_bn=bool(_get(TRAIN_BN, bool)),
    )


def run_config_draft(dataset_id: str) -> dict[str, Any]:
    """Return the `RunConfig` fields chosen so far, as a plain dict (validated by RunConfig).

    It holds ``dataset_id`` and the model fields (``backbone``, ``weights``,
    ``image_size``, ``freeze``, ``unfreeze_last``, ``trainable_blocks``, ``train_bn``).
    The Train page adds its own fields as keyword arguments.

    Raises `TLError` when the dataset is gone or no weights file is stored for the
    "file" source.

    Example:
        >>> config = RunConfig(**run_config_draft(dataset_id()), epochs=5)  # doctest: +SKIP
    """
    choice = model_choice(load_dataset(dataset_id))
    return {
        "dataset_id": dataset_id,
        "backbone": choice.backbone,
        "weights": choice.weights,
        "image_size": choice.image_size,
        "freeze": choice.freeze,
        "unfreeze_last": choice.unfreeze_last,
        "trainable_blocks": list(choice.trainable_blocks) if choice.freeze == "custom" else [],
        "train_bn": choice.train_bn,
    }


def store_widget(widget_key: str, setter: Callable[[Any], object]) -> Callable[[], None]:
    """Return an ``on_change`` callback that hands the widget's new value to `setter`.

    Example:
        >>> st.slider("N", 1, 9, key=UNFREEZE_SLIDER,
        ...           on_change=store_widget(UNFREEZE_SLIDER, set_unfreeze_last))  # doctest: +SKIP
    """

    def store() -> None:
        setter(st.session_state[widget_key])

    return store


def backbone_id() -> str | None:
    """Return the id of the chosen backbone, or ``None`` when none is chosen yet."""
    return _get(BACKBONE_ID, str)


def set_backbone_id(value: str) -> None:
    """Choose the backbone `value` (a registry id) and put it into the URL.

    A custom freeze plan names blocks of the previous backbone, and a depth may exceed the
    new backbone's block count (which the core refuses), so both go back to defaults.
    """
    previous = backbone_id()
    st.session_state[BACKBONE_ID] = value
    if st.query_params.get(BACKBONE_PARAM) != value:
        st.query_params[BACKBONE_PARAM] = value
    if previous is not None and previous != value:
        st.session_state.pop(TRAINABLE_BLOCKS, None)
        st.session_state.pop(UNFREEZE_LAST, None)
        if _get(FREEZE_PRESET, str) == "custom":
            st.session_state.pop(FREEZE_PRESET)
        _bump_block_table()


def backbone_param() -> str | None:
    """Return the backbone id the URL asks for (unvalidated), or ``None``."""
    return st.query_params.get(BACKBONE_PARAM)


def clear_backbone_param() -> None:
    """Remove ``?backbone=`` from the URL."""
    if BACKBONE_PARAM in st.query_params:
        del st.query_params[BACKBONE_PARAM]


def backbone_ready() -> bool:
    """Whether a backbone is chosen and its weights source is usable (a file is stored)."""
    return backbone_id() is not None and (
        _get(WEIGHTS_SOURCE, str) != "file" or weights_path() is not None
    )


def set_weights_source(value: str) -> bool:
    """Choose where the weights come from (one of `WEIGHTS_SOURCES`).

    Leaving random weights turns the ``"scratch"`` preset into ``"full"`` (every block
    still trains). Returns True when it did that.
    """
    if value not in WEIGHTS_SOURCES:
        raise ConfigError(f"Expected a weights source in {WEIGHTS_SOURCES}. Received: {value!r}")
    st.session_state[WEIGHTS_SOURCE] = value
    if value != "scratch" and _get(FREEZE_PRESET, str) == "scratch":
        st.session_state[FREEZE_PRESET] = "full"
        return True
    return False


def weights_path() -> str | None:
    """Return the path of the uploaded weights file, or ``None``."""
    return _get(WEIGHTS_PATH, str)


def set_weights_path(path: str) -> None:
    """Record the stored weights file `path` (under ``TL_HOME/weights``)."""
    st.session_state[WEIGHTS_PATH] = path


def handled_weights_upload() -> str | None:
    """Return the ``file_id`` of the last weights upload stored or refused."""
    return _get(HANDLED_WEIGHTS_UPLOAD, str)


def set_handled_weights_upload(file_id: str) -> None:
    """Remember that the weights upload `file_id` was handled, so reruns leave it alone."""
    st.session_state[HANDLED_WEIGHTS_UPLOAD] = file_id


def image_size() -> int | None:
    """Return the image size the user chose, or ``None`` to use the suggestion."""
    return _get(IMAGE_SIZE, int)


def set_image_size(value: int) -> None:
    """Choose the input side in pixels."""
    st.session_state[IMAGE_SIZE] = int(value)


def set_freeze_preset(value: str) -> None:
    """Choose a preset of `FREEZE_CHOICES`; ``"scratch"`` also makes the weights random."""
    if value not in FREEZE_CHOICES:
        raise ConfigError(f"Expected a freeze preset in {FREEZE_CHOICES}. Received: {value!r}")
    st.session_state[FREEZE_PRESET] = value
    if value == "scratch":
        st.session_state[WEIGHTS_SOURCE] = "scratch"
    _bump_block_table()


def set_unfreeze_last(value: int) -> None:
    """Choose how many blocks, counted from the top, the ``"fine-tune"`` preset trains."""
    st.session_state[UNFREEZE_LAST] = int(value)
    _bump_block_table()


def set_custom_blocks(names: Sequence[str]) -> None:
    """Train exactly the blocks `names`: the ``"custom"`` preset.

    No block at all is feature extraction (a custom plan must name at least one block).
    """
    if names:
        st.session_state[FREEZE_PRESET] = "custom"
        st.session_state[TRAINABLE_BLOCKS] = tuple(names)
    else:
        st.session_state[FREEZE_PRESET] = "feature-extraction"
        st.session_state.pop(TRAINABLE_BLOCKS, None)
    _bump_block_table()


def set_train_bn(value: bool) -> None:
    """Let BatchNorm train in trainable blocks despite pretrained weights, or not."""
    st.session_state[TRAIN_BN] = bool(value)


def layers_seen() -> bool:
    """Whether the Layers page has shown the freeze plan in this session."""
    return bool(_get(LAYERS_SEEN, bool))


def mark_layers_seen() -> None:
    """Record that the Layers page has shown the freeze plan."""
    st.session_state[LAYERS_SEEN] = True


def block_table_key() -> str:
    """Return the widget key of the Layers page's block table (it changes with the plan)."""
    return f"{BLOCK_TABLE}_{_get(BLOCK_TABLE_VERSION, int) or 0}"


def batch_size() -> int:
    """Return the batch size chosen on the Train page, or the `RunConfig` default."""
    return _get(BATCH_SIZE, int) or _RUN_DEFAULTS["batch_size"]


def _bump_block_table() -> None:
    st.session_state[BLOCK_TABLE_VERSION] = (_get(BLOCK_TABLE_VERSION, int) or 0) + 1


_T = TypeVar("_T")


def _get(key: str, kind: type[_T]) -> _T | None:
    """Return ``st.session_state[key]`` when it holds a `kind`, else ``None``."""
    value = st.session_state.get(key)
    return value if isinstance(value, kind) else None


_RUN_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig)}


@st.cache_data(show_spinner=False, max_entries=64)
def _typical_side(dataset_id: str, _report: DatasetReport) -> int | None:
    # Keyed by the id alone: a stored dataset never changes (its folder is named by hash).
    return typical_image_side(_report)


# --- Train page: its form fields and the run this session watches -------------------------
# The form's values are kept under their `RunConfig` field names (`BATCH_SIZE` is one of
# them), copied there from the widgets (keys: `train_widget_key`) in ``on_change``, like
# the Backbone and Layers choices above. Unset fields take their defaults on the Train page.

#: The `RunConfig` fields the Train page sets.
TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "schedule",
    "two_phase",
    "fine_tune_epochs",
    "fine_tune_blocks",
    "fine_tune_lr_factor",
    "early_stopping",
    "patience",
    "restore_best",
    "augmentation",
    "label_smoothing",
    "dropout",
    "val_fraction",
    "seed",
    "mixed_precision",
    "fast",
)
#: The run this session shows (started here, or opened on the Runs page or from a link),
#: mirrored into ``?run=``.
RUN_ID = "run_id"
#: Query parameter that carries the run id across browser reloads.
RUN_PARAM = "run"
#: Bumped by the "New samples" button: which random draw the augmentation preview shows.
AUGMENT_PREVIEW_DRAW = "augment_preview_draw"


def run_config_default(name: str) -> Any:
    """Return the `RunConfig` default of the field `name`."""
    return _RUN_DEFAULTS[name]


def train_widget_key(name: str) -> str:
    """Return the widget key of the Train page's field `name` (one of `TRAIN_FIELDS`)."""
    return f"{name}_input"


def train_setting(name: str) -> Any:
    """Return the value the user chose for the Train page's field `name`, or ``None``."""
    if name not in TRAIN_FIELDS:
        raise KeyError(name)
    return st.session_state.get(name)


def set_train_setting(name: str, value: Any) -> None:
    """Record the user's value for the Train page's field `name` (one of `TRAIN_FIELDS`)."""
    if name not in TRAIN_FIELDS:
        raise KeyError(name)
    st.session_state[name] = value


def run_id() -> str | None:
    """Return the id of the run this session shows, or ``None``."""
    return _get(RUN_ID, str)


def set_run_id(value: str) -> None:
    """Show the run `value` in this session and put it into the URL."""
    st.session_state[RUN_ID] = value
    if st.query_params.get(RUN_PARAM) != value:
        st.query_params[RUN_PARAM] = value


def clear_run_id() -> None:
    """Forget the shown run, in the session and in the URL."""
    st.session_state.pop(RUN_ID, None)
    if RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def run_param() -> str | None:
    """Return the run id the URL asks for (unvalidated), or ``None``."""
    return st.query_params.get(RUN_PARAM)


def augment_preview_draw() -> int:
    """Return which random draw the augmentation preview shows (0 at first)."""
    return _get(AUGMENT_PREVIEW_DRAW, int) or 0


def next_augment_preview_draw() -> None:
    """Show another random draw in the augmentation preview."""
    st.session_state[AUGMENT_PREVIEW_DRAW] = augment_preview_draw() + 1


# --- lessons ---------------------------------------------------------------------------------

#: The lesson this session trains in (a lesson id), mirrored into ``?lesson=``; absent: none.
LESSON_ID = "lesson_id"
#: Query parameter that carries the lesson across browser reloads.
LESSON_PARAM = "lesson"
#: The values a lesson's student chose for its editable model settings (freeze plan, image
#: size, share of the images), by `RunConfig` field; the Train page's own fields use
#: `train_setting`.
LESSON_VALUES = "lesson_values"


def lesson_id() -> str | None:
    """Return the id of the lesson this session trains in, or ``None``."""
    return _get(LESSON_ID, str)


def set_lesson_id(value: str) -> None:
    """Train in the lesson `value` in this session and put it into the URL."""
    if st.session_state.get(LESSON_ID) != value:
        st.session_state.pop(LESSON_VALUES, None)  # another lesson starts from its own values
    st.session_state[LESSON_ID] = value
    if st.query_params.get(LESSON_PARAM) != value:
        st.query_params[LESSON_PARAM] = value


def clear_lesson_id() -> None:
    """Leave the lesson, in the session and in the URL."""
    st.session_state.pop(LESSON_ID, None)
    st.session_state.pop(LESSON_VALUES, None)
    if LESSON_PARAM in st.query_params:
        del st.query_params[LESSON_PARAM]


def lesson_param() -> str | None:
    """Return the lesson id the URL asks for (unvalidated), or ``None``."""
    return st.query_params.get(LESSON_PARAM)


def lesson_value(name: str) -> Any:
    """Return the value the student chose for the lesson's editable setting `name`, or ``None``."""
    return (_get(LESSON_VALUES, dict) or {}).get(name)


def set_lesson_value(name: str, value: Any) -> None:
    """Record the student's value for the lesson's editable setting `name`."""
    st.session_state[LESSON_VALUES] = {**(_get(LESSON_VALUES, dict) or {}), name: value}


# --- Evaluate, Compare, Predict & Export pages ----------------------------------------------
# These pages read trained runs from disk. Their widgets keep their own keys (in their
# ``ui/*_view.py`` modules); only what other pages read lives here.

#: True once the Evaluate page has shown a run's metrics: the step counts as done.
EVALUATED = "evaluated"
#: True once the Predict & Export page has produced a prediction or a download.
EXPORTED = "exported"


def evaluated() -> bool:
    """Whether this session has seen a run's evaluation (the Evaluate step is done)."""
    return bool(st.session_state.get(EVALUATED))


def mark_evaluated() -> None:
    """Record that this session has seen a run's evaluation."""
    st.session_state[EVALUATED] = True


def exported() -> bool:
    """Whether this session has predicted with or exported a model (the last step is done)."""
    return bool(st.session_state.get(EXPORTED))


def mark_exported() -> None:
    """Record that this session has predicted with or exported a model."""
    st.session_state[EXPORTED] = True
