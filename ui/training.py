"""The Train page's form: how to train, with defaults that suit a first run, and Start.

Each field is a `RunConfig` field. Its widget mirrors the value kept in session state
(`ui.state.train_setting`) and copies a change back in ``on_change``, so the form keeps
its values across visits to other pages. Unset fields show `default_settings`. Runs are
queued as the session's person; in class mode a student at the class's limit of runs
waiting or training is told so before Start (`run_limit_reached`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from tl_core import DatasetReport, ImageRecord, load_dataset
from tl_core.classroom.identity import Identity, same_name
from tl_core.classroom.lessons import (
    OPERATOR_NAME,
    Lesson,
    Variant,
    lesson_config,
    list_lessons,
    locked_reason,
    open_lessons,
    prediction_for,
    record_prediction,
    submit_lesson_run,
    variant_for,
)
from tl_core.classroom.settings import read_class_settings
from tl_core.config import (
    AUGMENTATIONS,
    FREEZE_PRESETS,
    OPTIMIZERS,
    SCHEDULES,
    RunConfig,
    unavailable_options,
)
from tl_core.data.augment import CONTRAST_FACTOR, ROTATION_FACTOR, ZOOM_FACTOR, augment_preview
from tl_core.jobs.queue import list_jobs, submit
from tl_core.jobs.runs import ACTIVE_STATES
from tl_core.models import catalog
from tl_core.models.backbones import get_backbone
from tl_core.models.blocks import BlockInfo
from tl_core.models.classifier import plan_trainable_blocks
from tl_core.models.estimate import PhasePlan
from tl_core.viz.markdown import escape_markdown
from ui import state
from ui.errors import user_errors
from ui.identity import current_actor
from ui.layers_view import current_device, describe_run_time, estimate_run_time

#: Learning rates offered (a log scale; both defaults are among them).
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2, 0.1)
#: Default learning rate with pretrained weights (Adam's usual) and from scratch, where
#: a little more moves random weights along faster on a small dataset.
PRETRAINED_LEARNING_RATE = 1e-3
SCRATCH_LEARNING_RATE = 2e-3
BATCH_SIZES = (4, 8, 16, 32, 64, 128, 256)
#: Phase-two learning rate as a share of phase one's.
FINE_TUNE_LR_FACTORS = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Source images in the augmentation preview (one per class), and draws of each.
PREVIEW_IMAGES = 3
PREVIEW_DRAWS = 2
PREVIEW_TILE_PX = 84
#: Previews of larger images are drawn at this side (they are shown smaller anyway).
PREVIEW_MAX_PX = 160

OPTIMIZER_LABELS = {"adam": "Adam", "sgd": "SGD (momentum 0.9)"}
SCHEDULE_LABELS = {
    "constant": "Constant",
    "cosine": "Cosine decay",
    "plateau": "Halve on plateau",
}
_SCHEDULE_HELP = (
    "Constant: the same rate throughout. Cosine decay: glides down to zero by the last "
    "epoch, often a little better at the end. Halve on plateau: halves the rate when the "
    "validation loss has not improved for 2 epochs."
)
AUGMENTATION_LABELS = {
    "flip": "Flip left–right",
    "rotation": f"Rotate ±{ROTATION_FACTOR * 360:.0f}°",
    "zoom": f"Zoom ±{ZOOM_FACTOR:.0%}",
    "contrast": f"Contrast ±{CONTRAST_FACTOR:.0%}",
}


def default_settings(choice: state.ModelChoice) -> dict[str, Any]:
    """Return the form's defaults: `RunConfig`'s, with the learning rate for the weights.

    Example:
        >>> default_settings(choice)["learning_rate"]  # doctest: +SKIP
        0.002
    """
    defaults = {name: state.run_config_default(name) for name in state.TRAIN_FIELDS}
    defaults["learning_rate"] = (
        PRETRAINED_LEARNING_RATE if choice.pretrained else SCRATCH_LEARNING_RATE
    )
    return defaults


def current_settings(choice: state.ModelChoice) -> dict[str, Any]:
    """Return the form's values: what the user chose, defaults for the rest.

    Options that `tl_core.config.unavailable_options` rules out for these choices (two
    phases from scratch, fast head training with no head-only phase, mixed precision
    without a GPU) are switched off, whatever was chosen earlier; `blocked_options`
    says why.
    """
    settings = default_settings(choice)
    for name in state.TRAIN_FIELDS:
        value = state.train_setting(name)
        if value is not None:
            settings[name] = value
    for name in blocked_options(choice, settings):
        settings[name] = False
    return settings


def blocked_options(choice: state.ModelChoice, settings: Mapping[str, Any]) -> dict[str, str]:
    """Return ``{option: reason}`` for the on/off options these choices rule out.

    The rules and their reasons are `RunConfig`'s (`tl_core.config.unavailable_options`);
    the page only switches those options off and shows the reason.
    """
    choices = {
        "weights": "imagenet" if choice.pretrained else "none",
        "freeze": choice.freeze,
        "unfreeze_last": choice.unfreeze_last,
    }
    gpu = current_device().kind == "gpu"
    rules = unavailable_options({**settings, **choices}, gpu=gpu)
    return {option: reason for option, (_, reason) in rules.items()}


def start_training(dataset_id: str, settings: Mapping[str, Any]) -> str:
    """Queue a run of the session's model choices with `settings`; show it in the session.

    Returns the new run id. Raises `TLError` (`ConfigError` for invalid settings,
    `AccessDenied` for a student at the class's limit or on another student's dataset)
    and leaves the session as it was.
    """
    config = RunConfig(**state.run_config_draft(dataset_id), **settings)
    run_id = submit(config, actor=current_actor())
    state.set_run_id(run_id)
    return run_id


def run_limit_reached() -> str | None:
    """Say so when the session's student has as many runs waiting or training as the class
    allows (`tl_core.classroom.settings.ClassSettings.max_active_runs`); ``None`` otherwise,
    always for the teacher and in single-user mode.

    Example:
        >>> run_limit_reached()  # doctest: +SKIP
        'You have 2 runs waiting or training, the class limit. …'
    """
    actor = current_actor()
    if actor is None or actor.is_teacher:
        return None
    limit = read_class_settings().max_active_runs
    active = sum(
        job.state in ACTIVE_STATES and job.owner is not None and same_name(job.owner, actor.name)
        for job in list_jobs()
    )
    if active < limit:
        return None
    runs = "run" if active == 1 else "runs"
    return (
        f"You have {active} {runs} waiting or training, the class limit. Start another "
        "when one of them ends, or stop one on the Runs page."
    )


def render_form(
    choice: state.ModelChoice,
    report: DatasetReport,
    block_count: int | None,
    *,
    lesson: LessonForm | None = None,
) -> dict[str, Any]:
    """Draw the settings and return them (`current_settings`: widget changes are stored by
    their callbacks before the script runs).

    Args:
        choice: the session's model choices.
        report: the chosen dataset (its images feed the augmentation preview).
        block_count: blocks of the backbone, when known (caps the fine-tune blocks).
        lesson: in a lesson, its values and locks (default ``None``: the wizard's form).
    """
    if lesson is not None:
        token = _LOCKS.set(lesson)
        try:
            return _render_columns(lesson.settings(choice), choice, report, block_count)
        finally:
            _LOCKS.reset(token)
    return _render_columns(current_settings(choice), choice, report, block_count)


def _render_columns(
    settings: dict[str, Any],
    choice: state.ModelChoice,
    report: DatasetReport,
    block_count: int | None,
) -> dict[str, Any]:
    schedule_col, recipe_col, augment_col = st.columns(3, gap="medium")
    with schedule_col.container(border=True, height="stretch"):
        st.markdown(":material/speed: **How long, how fast**")
        _render_optimisation(settings, choice)
    with recipe_col.container(border=True, height="stretch"):
        st.markdown(":material/route: **Recipe**")
        _render_recipe(settings, choice, block_count)
        st.markdown(":material/tune: **Fine points**")
        _render_more(settings, report)
    with augment_col.container(border=True, height="stretch"):
        st.markdown(":material/auto_awesome: **Augmentation** (training images only)")
        _render_augmentation(settings, report, choice.image_size)
    return settings


def render_time_estimate(
    choice: state.ModelChoice,
    report: DatasetReport,
    blocks: Sequence[BlockInfo] | None,
    settings: Mapping[str, Any],
) -> None:
    """Say how long the run should take with cached activations and without, before Start.

    The phases are the form's: the Layers plan, or with two phases the head and then the
    top `fine_tune_blocks`. Without the block list (the Layers page has not read it yet)
    there is nothing to price, and the form says nothing.
    """
    if not blocks:
        return
    names = [block.name for block in blocks]
    if settings["two_phase"]:
        # The form caps the depth at the block count; Start refuses a deeper stored one.
        depth = min(settings["fine_tune_blocks"], len(names))
        top = plan_trainable_blocks(names, "fine-tune", unfreeze_last=depth)
        phases = [PhasePlan(settings["epochs"], ()), PhasePlan(settings["fine_tune_epochs"], top)]
    else:
        phases = [PhasePlan(settings["epochs"], choice.trainable(names))]
    run = estimate_run_time(
        get_backbone(choice.backbone),
        choice.image_size,
        blocks,
        report,
        phases,
        fast=settings["fast"],
        augmentation=settings["augmentation"],
        batch_size=settings["batch_size"],
    )
    # Where caching cannot apply the form has switched `fast` off; the reason is then
    # that every block trains, not the user's choice.
    switched_off = not settings["fast"] and "fast" not in blocked_options(choice, settings)
    st.caption(
        f":material/timer: {describe_run_time(run, fast=not switched_off)} An estimate: "
        "expect it to be off by a factor of 2 or 3."
    )


def _field(
    name: str,
    widget: Callable[..., Any],
    label: str,
    value: Any,
    *,
    key: str | None = None,
    **options: Any,
) -> Any:
    """Draw `widget` for the field `name` showing `value`; a change is stored in state.

    In a lesson (`render_form`'s ``lesson``) a change is kept for the lesson only, and a
    locked field is drawn greyed, with a lock, its reason as help, and the reason as a
    caption the first time the form shows it.

    Args:
        key: the widget key (default ``None``: `state.train_widget_key`).
    """
    key = key or state.train_widget_key(name)
    st.session_state[key] = value
    form = _LOCKS.get()
    reason = form.reasons.get(name) if form is not None else None
    if reason is not None:
        label = f":material/lock: {label}"
        options["disabled"] = True
        options["help"] = reason
    drawn = widget(
        label, key=key, on_change=_store_field, args=(name, key, form is not None), **options
    )
    if reason is not None and form is not None:
        form.caption(reason)
    return drawn


def _store_field(name: str, key: str, in_lesson: bool = False) -> None:
    value = st.session_state[key]
    if in_lesson:
        state.set_lesson_value(name, value)
    else:
        state.set_train_setting(name, value)


def _nearest(options: Sequence[float], value: float) -> float:
    return min(options, key=lambda option: abs(np.log(option) - np.log(value)))


def _render_optimisation(settings: dict[str, Any], choice: state.ModelChoice) -> None:
    _field(
        "epochs",
        st.number_input,
        "Epochs",
        settings["epochs"],
        min_value=1,
        max_value=1000,
        step=1,
        help="Passes over the training images. The sample needs about 10.",
    )
    _field(
        "batch_size",
        st.select_slider,
        "Batch size",
        min(BATCH_SIZES, key=lambda size: abs(size - settings["batch_size"])),
        options=BATCH_SIZES,
        help="Images per training step. Larger batches are faster per image and use more "
        "memory; on a CPU, 32 is a good start.",
    )
    _field(
        "optimizer",
        st.radio,
        "Optimizer",
        settings["optimizer"],
        options=OPTIMIZERS,
        format_func=OPTIMIZER_LABELS.__getitem__,
        horizontal=True,
    )
    _field(
        "learning_rate",
        st.select_slider,
        "Learning rate",
        _nearest(LEARNING_RATES, settings["learning_rate"]),
        options=LEARNING_RATES,
        format_func=lambda rate: f"{rate:g}",
        help=f"How big each step is. Suggested: {PRETRAINED_LEARNING_RATE:g} with pretrained "
        f"weights, {SCRATCH_LEARNING_RATE:g} from scratch. Too high and the loss jumps "
        "around; too low and nothing moves.",
    )
    if state.train_setting("learning_rate") is None and _LOCKS.get() is None:
        weights = "pretrained weights" if choice.pretrained else "training from scratch"
        st.caption(f"Suggested for {weights}.")
    _field(
        "schedule",
        st.radio,
        "Learning-rate schedule",
        settings["schedule"],
        options=SCHEDULES,
        format_func=SCHEDULE_LABELS.__getitem__,
        horizontal=True,
        help=_SCHEDULE_HELP,
    )


def _render_recipe(
    settings: dict[str, Any], choice: state.ModelChoice, block_count: int | None
) -> None:
    blocked = blocked_options(choice, settings)
    _field(
        "two_phase",
        st.toggle,
        "Two phases: head first, then fine-tune",
        settings["two_phase"],
        disabled="two_phase" in blocked,
        help="The classic recipe: train the new head with the backbone frozen, then "
        "unfreeze the top blocks and go on at a lower learning rate. It replaces the "
        "Layers plan for this run.",
    )
    if "two_phase" in blocked:
        st.caption(blocked["two_phase"])
    if settings["two_phase"]:
        epochs_col, blocks_col = st.columns(2)
        with epochs_col:
            _field(
                "fine_tune_epochs",
                st.number_input,
                "Fine-tune epochs",
                settings["fine_tune_epochs"],
                min_value=1,
                max_value=1000,
            )
        with blocks_col:
            _field(
                "fine_tune_blocks",
                st.number_input,
                "Blocks to unfreeze",
                min(settings["fine_tune_blocks"], block_count or 1000),
                min_value=1,
                max_value=block_count or 1000,
                help="Counted from the top (output side) of the backbone.",
            )
        _field(
            "fine_tune_lr_factor",
            st.select_slider,
            "Fine-tune learning rate (× the first phase's)",
            _nearest(FINE_TUNE_LR_FACTORS, settings["fine_tune_lr_factor"]),
            options=FINE_TUNE_LR_FACTORS,
            format_func=lambda factor: f"{factor:g}×",
        )
        st.caption(
            f"Phase 1: {settings['epochs']} epochs at {settings['learning_rate']:g}. "
            f"Phase 2: {settings['fine_tune_epochs']} epochs at "
            f"{settings['learning_rate'] * settings['fine_tune_lr_factor']:g}."
        )
    if "fast" not in blocked:
        _field(
            "fast",
            st.toggle,
            "Train from cached activations of the frozen blocks",
            settings["fast"],
            help="The frozen blocks at the bottom run once over every image (with "
            "augmentation, a few augmented views of each) and their output is kept; each "
            "epoch then trains only the blocks above them and the head: many times faster.",
        )
    _field(
        "early_stopping",
        st.toggle,
        "Stop early when validation accuracy stops improving",
        settings["early_stopping"],
        help="Saves time and avoids overfitting when more epochs no longer help. Either way "
        "the saved model is the best epoch: highest validation accuracy, ties to the lower "
        "validation loss.",
    )
    if settings["early_stopping"]:
        _field(
            "patience",
            st.number_input,
            "Patience (epochs without improvement)",
            settings["patience"],
            min_value=1,
            max_value=100,
        )
        _field(
            "restore_best",
            st.checkbox,
            "Keep the weights of the best epoch (highest validation accuracy)",
            settings["restore_best"],
        )


def _render_augmentation(settings: dict[str, Any], report: DatasetReport, image_size: int) -> None:
    chosen = tuple(settings["augmentation"])
    form = _LOCKS.get()
    reason = form.reasons.get("augmentation") if form is not None else None
    columns = st.columns(2)
    for index, name in enumerate(AUGMENTATIONS):
        key = _augmentation_key(name)
        st.session_state[key] = name in chosen
        columns[index % 2].checkbox(
            AUGMENTATION_LABELS[name],
            key=key,
            on_change=_store_augmentation,
            args=(form is not None,),
            disabled=reason is not None,
            help=reason,
        )
    if reason is not None and form is not None:
        form.caption(reason)
    if not chosen:
        st.caption("No augmentation: the model sees every training image as it is.")
        return
    records = _preview_records(report)
    if report.root is None or not records:
        return
    draw = state.augment_preview_draw()
    tiles = _preview_tiles(
        tuple(str(report.root / record.path) for record in records),
        chosen,
        draw,
        min(image_size, PREVIEW_MAX_PX),
    )
    for record, row in zip(records, _rows(tiles, PREVIEW_DRAWS + 1), strict=True):
        st.image(
            row,
            width=PREVIEW_TILE_PX,
            caption=[escape_markdown(record.label)] + ["preview"] * PREVIEW_DRAWS,
        )
    st.caption(
        f"Each row: a training image at {image_size} px, then previews of what augmentation "
        "makes of it (drawn here to look like training's; training draws new ones each epoch)."
    )
    st.button("New samples", icon=":material/casino:", on_click=state.next_augment_preview_draw)


def _augmentation_key(name: str) -> str:
    return f"{state.train_widget_key('augmentation')}_{name}"


def _store_augmentation(in_lesson: bool = False) -> None:
    chosen = tuple(name for name in AUGMENTATIONS if st.session_state.get(_augmentation_key(name)))
    if in_lesson:
        state.set_lesson_value("augmentation", chosen)
    else:
        state.set_train_setting("augmentation", chosen)


def _preview_records(report: DatasetReport) -> list[ImageRecord]:
    """The first training image of each of the first `PREVIEW_IMAGES` classes."""
    first: dict[str, ImageRecord] = {}
    for record in report.images:
        if record.split not in ("val", "test") and record.label not in first:
            first[record.label] = record
    return [first[name] for name in sorted(first)[:PREVIEW_IMAGES]]


def _rows(items: list[bytes], width: int) -> list[list[bytes]]:
    return [items[start : start + width] for start in range(0, len(items), width)]


@st.cache_data(max_entries=64, show_spinner=False)
def _preview_tiles(
    paths: tuple[str, ...], names: tuple[str, ...], draw: int, size: int
) -> list[bytes]:
    """For each image: itself at `size` px, then `PREVIEW_DRAWS` augmented versions (PNG)."""
    tiles = []
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            source = image.convert("RGB")
        rng = np.random.default_rng([draw, index])
        versions = [source.resize((size, size), Image.Resampling.BILINEAR)]
        versions += [augment_preview(source, names, rng, size=size) for _ in range(PREVIEW_DRAWS)]
        for version in versions:
            out = io.BytesIO()
            version.save(out, format="PNG")
            tiles.append(out.getvalue())
    return tiles


def _render_more(settings: dict[str, Any], report: DatasetReport) -> None:
    _field(
        "label_smoothing",
        st.slider,
        "Label smoothing",
        float(settings["label_smoothing"]),
        min_value=0.0,
        max_value=0.3,
        step=0.05,
        help="Aims a little below 100% certainty; can help with noisy labels.",
    )
    _field(
        "dropout",
        st.slider,
        "Dropout before the head",
        float(settings["dropout"]),
        min_value=0.0,
        max_value=0.7,
        step=0.05,
        help="Switches off this share of the features at random while training, so that the "
        "head cannot lean on a few of them.",
    )
    if report.split is not None and "val" in report.split:
        st.caption(f"Validation: the archive's own val/ folder ({report.split['val']:,} images).")
    else:
        _field(
            "val_fraction",
            st.slider,
            "Validation share",
            float(settings["val_fraction"]),
            min_value=0.05,
            max_value=0.5,
            step=0.05,
            help="Images of each class held out to measure accuracy on unseen images.",
        )
    _field(
        "seed",
        st.number_input,
        "Seed",
        settings["seed"],
        min_value=0,
        max_value=2**31 - 1,
        help="The same seed gives the same split, shuffling and augmentation.",
    )
    if current_device().kind == "gpu":  # without one, `blocked_options` rules it out
        _field(
            "mixed_precision",
            st.toggle,
            "Mixed precision (float16 on the GPU: faster, less memory)",
            settings["mixed_precision"],
        )


# --- lessons ---------------------------------------------------------------------------------

#: Widget keys of the lesson parts of the Train page.
LESSON_PICKER = "lesson_picker"
LESSON_ARM_PICK = "lesson_arm_pick"
LESSON_START = "lesson_start"
#: The model settings a lesson may leave to students, drawn above the form in a lesson.
SETUP_FIELDS = ("weights", "freeze", "unfreeze_last", "train_bn", "train_fraction", "image_size")
#: Every setting the Train page can offer a lesson's students (the Class page lists these).
LESSON_EDITABLE_FIELDS = SETUP_FIELDS + state.TRAIN_FIELDS
_FREEZE_LABELS = {
    "feature-extraction": "Feature extraction (backbone frozen)",
    "fine-tune": "Fine-tune the top blocks",
    "full": "Train every block",
    "custom": "Custom blocks",
}
_WEIGHTS_LABELS = {"imagenet": "ImageNet (pretrained)", "none": "None (from scratch)"}
_NOT_OFFERED = "Set by the lesson; the Train page does not change it."


@dataclass
class LessonForm:
    """A lesson as the Train page draws it for one person.

    Attributes:
        lesson: the lesson.
        arm: the arm the person trains in (``None``: the lesson has none).
        values: every `RunConfig` field as it would run now: the lesson's, the arm's, and
            the person's changes to the editable ones.
        reasons: why each locked field is locked (editable fields are absent).
        shown: the reasons already captioned, so a reason shared by many fields shows once.
    """

    lesson: Lesson
    arm: Variant | None
    values: dict[str, Any]
    reasons: dict[str, str]
    shown: set[str] = field(default_factory=set)

    def settings(self, choice: state.ModelChoice) -> dict[str, Any]:
        """The form's values of the Train page's fields, ruled-out options switched off."""
        settings = {name: self.values[name] for name in state.TRAIN_FIELDS}
        for name in blocked_options(choice, settings):
            settings[name] = False
        return settings

    def requested(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The editable settings as the person left them, for `submit_lesson_run`."""
        merged = {**self.values, **settings}
        return {name: merged[name] for name in self.values if name not in self.reasons}

    def caption(self, reason: str) -> None:
        """Caption `reason` under a locked field, unless an earlier field showed it."""
        if reason not in self.shown:
            self.shown.add(reason)
            st.caption(f":material/lock: {escape_markdown(reason)}")


_LOCKS: ContextVar[LessonForm | None] = ContextVar("lesson_form", default=None)


def lesson_form(lesson: Lesson, name: str, arm: Variant | None) -> LessonForm:
    """The lesson's values and locks for `name` training in `arm`, with the changes this
    session made to the editable settings."""
    values = lesson_config(lesson, name, {}, variant=arm).to_json()
    reasons = {}
    for setting in values:
        reason = locked_reason(lesson, setting, arm)
        if reason is None and setting not in LESSON_EDITABLE_FIELDS:
            reason = _NOT_OFFERED  # e.g. the dataset: the lesson's, whatever its file says
        if reason is not None:
            reasons[setting] = reason
        elif state.lesson_value(setting) is not None:
            chosen = state.lesson_value(setting)
            values[setting] = list(chosen) if isinstance(chosen, tuple) else chosen
    return LessonForm(lesson, arm, values, reasons)


def lesson_choice(values: Mapping[str, Any]) -> state.ModelChoice:
    """The model choices a lesson's `values` make, as the form and the estimate read them."""
    spec = get_backbone(values["backbone"])
    weights = values["weights"]
    source = {"imagenet": "imagenet", "none": "scratch"}.get(weights, "file")
    return state.ModelChoice(
        backbone=spec.id,
        weights_source=source,
        weights_auto=False,
        weights_path=weights if source == "file" else None,
        image_size=values["image_size"] or spec.default_input_size,
        image_size_auto=values["image_size"] is None,
        suggested_image_size=spec.default_input_size,
        typical_side=None,
        preset=values["freeze"],
        unfreeze_last=values["unfreeze_last"],
        trainable_blocks=tuple(values["trainable_blocks"]),
        train_bn=values["train_bn"],
    )


def pickable_lessons() -> list[Lesson]:
    """The lessons the Lesson picker offers: the open ones to a student, every lesson to
    the teacher and in single-user mode (a self-learner opens nothing)."""
    actor = current_actor()
    return list_lessons() if actor is None or actor.is_teacher else open_lessons()


def render_lesson_picker() -> Lesson | None:
    """The Lesson picker (only when there are lessons to pick); return the picked lesson.

    The choice is kept in the session and in ``?lesson=``, so a reload keeps it. A lesson
    that closed or went away since is dropped with a sentence saying so.
    """
    lessons = {lesson.lesson_id: lesson for lesson in pickable_lessons()}
    asked = state.lesson_id() or state.lesson_param()
    if asked is not None and asked not in lessons:
        state.clear_lesson_id()
        st.warning(
            "That lesson is not open any more (or was deleted), so the form is the usual one. "
            "Pick another lesson, or ask the teacher to open it.",
            icon=":material/school:",
        )
        asked = None
    if not lessons:
        return None
    if asked is not None and state.lesson_id() != asked:
        state.set_lesson_id(asked)
    st.session_state[LESSON_PICKER] = asked or ""
    st.selectbox(
        "Lesson",
        ["", *lessons],
        key=LESSON_PICKER,
        format_func=lambda lesson_id: _lesson_label(lessons.get(lesson_id)),
        on_change=_store_lesson,
        help="A lesson sets up the run for you: the teacher's dataset, backbone and recipe, "
        "with a question to predict before you train.",
    )
    return lessons.get(asked) if asked else None


def _lesson_label(lesson: Lesson | None) -> str:
    if lesson is None:
        return "No lesson"
    return lesson.title + ("" if lesson.is_open else " (closed)")


def _store_lesson() -> None:
    picked = st.session_state.get(LESSON_PICKER)
    if picked:
        state.set_lesson_id(picked)
    else:
        state.clear_lesson_id()


def render_lesson(lesson: Lesson) -> None:
    """The Train page in a lesson: its page, the person's arm, the locked and editable
    settings, the question with the prediction, and Start (unlocked by a saved prediction).

    Raises `TLError` when the lesson's dataset cannot be loaded.
    """
    actor = current_actor()
    name = actor.name if actor is not None else OPERATOR_NAME
    st.subheader(lesson.title, anchor=False)
    if not lesson.is_open:
        st.caption("Closed to the class: only the teacher (or you, alone) can run it now.")
    if lesson.explanation:
        with st.expander("About this lesson", icon=":material/school:"):
            st.markdown(lesson.explanation)
    arm = _render_arm(lesson, actor, name)
    report = load_dataset(lesson.settings["dataset_id"], actor=actor)
    form = lesson_form(lesson, name, arm)
    choice = lesson_choice(form.values)
    with st.container(border=True):
        st.markdown(":material/school: **The lesson's setup**")
        _render_setup(form, report)
    blocks = catalog.cached_backbone_blocks(choice.backbone, choice.image_size)
    settings = render_form(choice, report, len(blocks) if blocks else None, lesson=form)
    render_time_estimate(choice, report, blocks, settings)
    predicted = _render_prediction(lesson, actor, name)
    limit = run_limit_reached()
    if limit is not None:
        st.info(limit, icon=":material/block:")
    waiting = bool(lesson.question) and predicted is None
    if waiting:
        st.caption(":material/lock: Save your prediction to unlock Start training.")
    if st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        key=LESSON_START,
        disabled=waiting or limit is not None,
    ):
        with user_errors():
            start_lesson_training(form, settings)
            st.rerun()


def _render_arm(lesson: Lesson, actor: Identity | None, name: str) -> Variant | None:
    """Say the student's arm; let the teacher and a self-learner pick one."""
    if not lesson.variants:
        return None
    given = variant_for(lesson, name)
    if actor is not None and not actor.is_teacher:
        st.info(f"Your arm: **{escape_markdown(given.name)}**", icon=":material/call_split:")
        st.caption(
            "The class's arms are handed out in turn, so every arm is run by someone; the "
            "board puts the results side by side."
        )
        return given
    names = [variant.name for variant in lesson.variants]
    picked = st.selectbox(
        "Arm",
        names,
        index=names.index(given.name),
        key=f"{LESSON_ARM_PICK}_{lesson.lesson_id}",
        help="Students get their arm in turn; you can run any of them, one after another.",
    )
    return lesson.variant_named(picked)


def _render_setup(form: LessonForm, report: DatasetReport) -> None:
    """The lesson's model settings: greyed with the teacher's value where locked."""
    token = _LOCKS.set(form)
    try:
        values = form.values
        # Dataset and backbone are the lesson's, always: shown, never offered.
        _field("dataset_id", st.text_input, "Dataset", report.source_name, key="lesson_dataset")
        left, right = st.columns(2)
        with left:
            spec = get_backbone(values["backbone"])
            _field("backbone", st.text_input, "Backbone", spec.keras_name, key="lesson_backbone")
            _setup_field(
                "weights",
                st.selectbox,
                "Weights",
                values["weights"],
                options=list(_WEIGHTS_LABELS)
                if values["weights"] in _WEIGHTS_LABELS
                else [values["weights"]],
                format_func=lambda w: _WEIGHTS_LABELS.get(w, "A weights file"),
            )
            _setup_field(
                "train_fraction",
                st.slider,
                "Share of the training images",
                float(values["train_fraction"]),
                min_value=0.05,
                max_value=1.0,
                step=0.05,
                format="%.2f",
            )
        with right:
            presets = [p for p in FREEZE_PRESETS if p != "custom" or values["freeze"] == "custom"]
            _setup_field(
                "freeze",
                st.selectbox,
                "Freeze plan",
                values["freeze"],
                options=presets,
                format_func=_FREEZE_LABELS.__getitem__,
            )
            if values["freeze"] == "fine-tune":
                _setup_field(
                    "unfreeze_last",
                    st.number_input,
                    "Top blocks that train",
                    values["unfreeze_last"],
                    min_value=0,
                    max_value=1000,
                    step=1,
                )
            _setup_field(
                "train_bn",
                st.toggle,
                "Let BatchNorm train",
                values["train_bn"],
                help_text="On: BatchNorm in the trainable blocks uses each batch's "
                "statistics and updates its running averages.",
            )
            _setup_field(
                "image_size",
                st.number_input,
                "Image size (px)",
                values["image_size"] or get_backbone(values["backbone"]).default_input_size,
                min_value=32,
                max_value=512,
                step=1,
            )
    finally:
        _LOCKS.reset(token)


def _setup_field(
    name: str,
    widget: Callable[..., Any],
    label: str,
    value: Any,
    *,
    help_text: str = "",
    **options: Any,
) -> None:
    if help_text and name not in _current_form().reasons:
        options["help"] = help_text
    _field(name, widget, label, value, key=f"lesson_{name}_input", **options)


def _current_form() -> LessonForm:
    form = _LOCKS.get()
    if form is None:
        raise RuntimeError("lesson fields are drawn inside a lesson only")
    return form


def _render_prediction(lesson: Lesson, actor: Identity | None, name: str) -> str | None:
    """The lesson's question, the prediction input and Save prediction; return the saved
    prediction (``None`` before one is saved, or when the lesson asks nothing)."""
    if not lesson.question:
        return None
    saved = prediction_for(lesson.lesson_id, name)
    with st.container(border=True):
        st.markdown(f":material/help: **{escape_markdown(lesson.question)}**")
        key = f"lesson_prediction_{lesson.lesson_id}"
        if lesson.prediction_choices:
            choices = list(lesson.prediction_choices)
            text = st.selectbox(
                "Your prediction",
                choices,
                index=choices.index(saved) if saved in choices else None,
                placeholder="Pick what you expect",
                key=key,
            )
        else:
            text = st.text_area(
                "Your prediction",
                value=saved or "",
                placeholder="What do you expect, and why? A sentence is enough.",
                key=key,
            )
        if st.button("Save prediction", icon=":material/edit_note:", key=f"{key}_save"):
            with user_errors():
                record_prediction(actor, lesson.lesson_id, text or "")
                st.rerun()
        if saved is not None:
            st.caption(f"Saved prediction: {escape_markdown(saved)}")
    return saved


def start_lesson_training(form: LessonForm, settings: Mapping[str, Any]) -> str:
    """Queue the session's run in the lesson (`submit_lesson_run`) and show it.

    Returns the new run id. Raises `TLError` (`AccessDenied` for a closed lesson, a missing
    prediction, a locked setting, or the class's limits) and leaves the session as it was.
    """
    actor = current_actor()
    chooses = actor is None or actor.is_teacher
    run_id = submit_lesson_run(
        actor,
        form.lesson.lesson_id,
        form.requested(settings),
        variant=form.arm.name if chooses and form.arm is not None else None,
    )
    state.set_run_id(run_id)
    return run_id
