"""Widgets of the Layers step: the block list, freeze presets, the strip and the cost.

The freeze plan itself is `ui.state.ModelChoice.trainable` (`tl_core.models.classifier`'s
`plan_trainable_blocks`); these helpers only draw it and record what the user changes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import fields
from typing import Any

import pandas as pd
import streamlit as st

from tl_core import DatasetReport, TLError
from tl_core.config import RunConfig
from tl_core.jobs.devices import DeviceInfo, probe_devices
from tl_core.models import catalog
from tl_core.models.backbones import BackboneSpec, get_backbone
from tl_core.models.blocks import BlockInfo
from tl_core.models.estimate import (
    PhasePlan,
    RunEstimate,
    describe_seconds,
    estimate_cost,
    estimate_run,
)
from tl_core.viz.plots import freeze_strip_figure
from ui import state

PRESET_LABELS = {
    "feature-extraction": "Feature extraction",
    "fine-tune": "Fine-tune top N",
    "full": "Full fine-tune",
    "scratch": "From scratch",
    "custom": "Custom",
}
_PRESET_HELP = {
    "feature-extraction": "Only the new head learns; the backbone is used as it is. The "
    "fastest choice, and the safest with few images.",
    "fine-tune": "The head and the top blocks learn, so the most specific features adapt "
    "to your images. Slower; worth it with a few hundred images per class.",
    "full": "Every block adjusts its pretrained weights. The slowest; needs the most data "
    "and a low learning rate.",
    "scratch": "Every block learns, starting from random weights. Needs far more images "
    "than fine-tuning; no ImageNet weights needed.",
    "custom": "Exactly the blocks ticked in the table below learn.",
}
#: Rows of the block table shown without scrolling; more rows scroll.
_TABLE_ROWS_SHOWN = 20
_ROW_PX = 35
_VAL_FRACTION = next(f.default for f in fields(RunConfig) if f.name == "val_fraction")


def load_blocks(spec: BackboneSpec, image_size: int) -> list[BlockInfo]:
    """Return the backbone's blocks, with a spinner while they are listed the first time.

    Raises `TLError` when they cannot be listed.
    """
    cached = catalog.cached_backbone_blocks(spec.id, image_size)
    if cached is not None:
        return cached
    with st.spinner(
        f"Reading the blocks of {spec.keras_name} at {image_size} px. This happens once "
        "per backbone and size and takes a few seconds…",
        show_time=True,
    ):
        return catalog.backbone_blocks(spec.id, image_size)


def pick_preset(choice: state.ModelChoice, blocks: Sequence[BlockInfo]) -> None:
    """Draw the preset picker, and the "top N" slider when fine-tuning the top blocks."""
    st.session_state[state.PRESET_PICKER] = choice.preset
    st.radio(
        "What learns",
        state.FREEZE_CHOICES,
        format_func=PRESET_LABELS.__getitem__,
        horizontal=True,
        key=state.PRESET_PICKER,
        on_change=state.store_widget(state.PRESET_PICKER, state.set_freeze_preset),
    )
    st.caption(_PRESET_HELP[choice.preset])
    if choice.preset == "fine-tune":
        st.session_state[state.UNFREEZE_SLIDER] = min(max(choice.unfreeze_last, 1), len(blocks))
        st.slider(
            "Blocks that train, counted from the top",
            min_value=1,
            max_value=len(blocks),
            key=state.UNFREEZE_SLIDER,
            on_change=state.store_widget(state.UNFREEZE_SLIDER, state.set_unfreeze_last),
        )


def warn_about_random_frozen_blocks(
    choice: state.ModelChoice, blocks: Sequence[BlockInfo], trainable: Collection[str]
) -> None:
    """Explain the from-scratch preset, and warn when random weights stay frozen."""
    if choice.preset == "scratch":
        st.info(
            "From scratch: every block learns, starting from random weights, so the "
            "weights source on the Backbone page is now **From scratch**. BatchNorm "
            "learns too: random weights have no statistics worth keeping.",
            icon=":material/restart_alt:",
        )
    if choice.pretrained:
        return
    frozen = len(blocks) - len(trainable)
    if frozen == len(blocks):
        st.warning(
            "A frozen random backbone passes almost nothing through: train it, or use "
            "pretrained weights. Choose *From scratch* here, or ImageNet weights on the "
            "Backbone page.",
            icon=":material/warning:",
        )
    elif frozen:
        st.warning(
            f"Frozen blocks with random weights ({frozen} of {len(blocks)}) only pass noise "
            "on to the blocks above them. With random weights, train every block (*From "
            "scratch*), or use pretrained weights.",
            icon=":material/warning:",
        )


def render_strip(blocks: Sequence[BlockInfo], trainable: Collection[str]) -> None:
    """Draw the freeze strip: the backbone from input to output, trainable blocks orange."""
    st.plotly_chart(
        freeze_strip_figure(blocks, set(trainable)),
        key="freeze_strip",
        config={"displayModeBar": False},
    )
    st.caption(
        ":orange[■ trainable] · :gray[■ frozen] · Each segment is a block, input on the "
        "left; wider segments hold more weights (square-root scale, so small blocks stay "
        "visible). Hover for details."
    )


def render_cost(
    choice: state.ModelChoice,
    blocks: Sequence[BlockInfo],
    trainable: Collection[str],
    report: DatasetReport | None,
) -> None:
    """Show trainable and frozen parameters, the estimated time and memory per epoch, and
    the whole run's time with cached activations and without."""
    spec = get_backbone(choice.backbone)
    head = (int(blocks[-1].output_shape[-1] or 0) + 1) * len(report.classes) if report else 0
    total = sum(block.params for block in blocks) + head
    learning = sum(block.params for block in blocks if block.name in trainable) + head
    columns = st.columns(4)
    columns[0].metric(
        "Trainable parameters",
        f"{learning:,}",
        border=True,
        help=f"Whole blocks plus the new head ({head:,}). The few BatchNorm weights "
        "inside trainable blocks stay frozen, so the real number is a little lower.",
    )
    columns[1].metric("Frozen parameters", f"{total - learning:,}", border=True)
    if report is None:
        st.caption("Choose a dataset on the Data page to estimate the training time.")
        return
    images = training_images(report)
    batch = state.batch_size()
    device = current_device()
    cost = estimate_cost(spec, choice.image_size, images, learning, total, batch, device)
    columns[2].metric(
        "Time per epoch (estimate)",
        describe_seconds(cost.seconds_per_epoch),
        border=True,
        help=f"About {cost.images_per_second:,.0f} images per second.",
    )
    columns[3].metric(
        "Memory (estimate)",
        _describe_mb(cost.memory_mb),
        border=True,
        help="Weights, optimizer state and the activations of one batch.",
    )
    fast = _setting("fast")
    run = estimate_run_time(
        spec,
        choice.image_size,
        blocks,
        report,
        [PhasePlan(_setting("epochs"), tuple(trainable))],
        fast=fast,
        augmentation=_setting("augmentation"),
        batch_size=batch,
    )
    st.markdown(f":material/timer: {describe_run_time(run, fast=fast)}")
    fits = "" if cost.fits_in_memory in (None, True) else " That may not fit this GPU."
    st.caption(
        f"Estimates, not measurements, for {images:,} training images at batch size {batch} "
        f"on {cost.device}, scaled from MobileNetV2 measured on a 2-core CPU: expect them to "
        f"be off by a factor of 2 or 3. Training shows the real time per epoch.{fits}"
    )


def estimate_run_time(
    spec: BackboneSpec,
    image_size: int,
    blocks: Sequence[BlockInfo],
    report: DatasetReport,
    phases: Sequence[PhasePlan],
    *,
    fast: bool,
    augmentation: Sequence[str],
    batch_size: int,
) -> RunEstimate:
    """Estimate the whole run on this machine, with cached activations and without.

    With augmentation, caching extracts `RunConfig.cache_views` views per training image.

    Example:
        >>> estimate_run_time(spec, 64, blocks, report, [PhasePlan(10, ())], fast=True,
        ...                   augmentation=("flip",), batch_size=32).caches  # doctest: +SKIP
        True
    """
    head = (int(blocks[-1].output_shape[-1] or 0) + 1) * len(report.classes)
    return estimate_run(
        spec,
        image_size,
        blocks,
        head,
        phases,
        num_train_images=training_images(report),
        num_val_images=validation_images(report),
        batch_size=batch_size,
        device=current_device(),
        fast=fast,
        views=state.run_config_default("cache_views") if augmentation else 1,
    )


def describe_run_time(run: RunEstimate, *, fast: bool) -> str:
    """One sentence for people: the run with cached activations and without, or, where
    caching does not apply, the run and why in one clause.

    Example:
        >>> describe_run_time(run, fast=True)  # doctest: +SKIP
        'About 40 s with cached activations (about 2 min without) for 10 epochs: ...'
    """
    epochs = f"{run.epochs} epoch{'s' if run.epochs != 1 else ''}"
    if not run.caches:
        why = "caching is switched off" if not fast else "every block trains, so nothing is cached"
        return (
            f"{_capitalised(describe_seconds(run.plain_seconds))} for {epochs} "
            f"({describe_seconds(run.plain_seconds_per_epoch)} per epoch); {why}."
        )
    return (
        f"{_capitalised(describe_seconds(run.cached_seconds))} with cached activations "
        f"({describe_seconds(run.plain_seconds)} without) for {epochs}: one pass of "
        f"{describe_seconds(run.extraction_seconds)} through the frozen blocks, then "
        f"{describe_seconds(run.cached_seconds_per_epoch)} per epoch "
        f"({describe_seconds(run.plain_seconds_per_epoch)} without)."
    )


def _capitalised(words: str) -> str:
    return words[:1].upper() + words[1:]


def _setting(name: str) -> Any:
    """The Train page's value of `name`, or its `RunConfig` default before a visit there."""
    value = state.train_setting(name)
    return state.run_config_default(name) if value is None else value


def validation_images(report: DatasetReport) -> int:
    """Images held out for validation: the val split, or the rest after training."""
    if report.split is not None and "val" in report.split:
        return report.split["val"]
    return report.num_images - training_images(report)


def training_images(report: DatasetReport) -> int:
    """Images in one training epoch: the train split, or the part left after validation."""
    if report.split is not None and "train" in report.split:
        return report.split["train"]
    return round(report.num_images * (1 - _VAL_FRACTION))


@st.cache_data(ttl=600, show_spinner=False)
def current_device() -> DeviceInfo:
    """The device training would use (``nvidia-smi``, no TensorFlow), asked every 10 min."""
    return probe_devices()


def _describe_mb(mb: float) -> str:
    return f"about {mb / 1024:.1f} GB" if mb >= 1024 else f"about {mb:,.0f} MB"


def block_table(blocks: Sequence[BlockInfo], trainable: Collection[str]) -> set[str]:
    """Draw the blocks, input side first, with a "Trainable" tick box each.

    Returns the names of the ticked blocks, which differ from `trainable` right after
    the user changed a box.
    """
    frame = pd.DataFrame(
        {
            "#": range(1, len(blocks) + 1),
            "Block": [block.name for block in blocks],
            "Layers": [len(block.layers) for block in blocks],
            "Parameters": [block.params for block in blocks],
            "Output": [_shape(block.output_shape) for block in blocks],
            "Trainable": [block.name in trainable for block in blocks],
        }
    )
    edited = st.data_editor(
        frame,
        key=state.block_table_key(),
        hide_index=True,
        width="stretch",
        height=_ROW_PX * (min(len(blocks), _TABLE_ROWS_SHOWN) + 1) + 3,
        disabled=[name for name in frame.columns if name != "Trainable"],
        column_config={
            "#": st.column_config.NumberColumn(width=40),
            "Parameters": st.column_config.NumberColumn(format="localized"),
            "Output": st.column_config.TextColumn(
                help="Height × width × channels of what the block hands on."
            ),
            "Trainable": st.column_config.CheckboxColumn(
                help="Ticked blocks learn; the others keep their weights."
            ),
        },
    )
    return set(edited.loc[edited["Trainable"], "Block"])


def _shape(shape: Sequence[int | None]) -> str:
    return " × ".join(str(dim) for dim in shape[1:])


def render_block_layers(blocks: Sequence[BlockInfo]) -> None:
    """Let the user pick a block and list its Keras layers, in graph order."""
    names = [block.name for block in blocks]
    picked = st.selectbox("Show the layers of", names, key="block_layers_picker")
    block = blocks[names.index(picked)]
    st.dataframe(
        pd.DataFrame({"Layer": block.layers}),
        hide_index=True,
        width="stretch",
        height=min(len(block.layers), 12) * _ROW_PX + 38,
    )


def render_batchnorm_note(choice: state.ModelChoice) -> None:
    """Explain why BatchNorm stays frozen, with the toggle that lets it train."""
    with st.expander("Why BatchNorm layers stay frozen", icon=":material/info:"):
        st.markdown(
            "BatchNorm layers normalise with averages they collected on ImageNet. "
            "Training them on a few small batches of your images replaces those averages "
            "with noisy ones, and a fine-tuned model can suddenly do worse than the one "
            "you started from: the classic fine-tuning pitfall. So with pretrained "
            "weights, BatchNorm stays frozen in every block, trainable or not. From "
            "scratch there is nothing worth keeping, and it trains."
        )
        st.session_state[state.TRAIN_BN_TOGGLE] = choice.train_bn
        st.toggle(
            "Let BatchNorm train (advanced — shows the classic pitfall)",
            key=state.TRAIN_BN_TOGGLE,
            on_change=state.store_widget(state.TRAIN_BN_TOGGLE, state.set_train_bn),
            disabled=not choice.pretrained,
            help="Only with pretrained weights; from scratch it trains anyway.",
        )


def describe_freeze(choice: state.ModelChoice) -> str:
    """One line for the sidebar: the preset, and how many blocks train when known."""
    label = PRESET_LABELS[choice.preset]
    if choice.preset == "fine-tune":
        label = f"Fine-tune top {choice.unfreeze_last}"
    try:
        blocks = catalog.cached_backbone_blocks(choice.backbone, choice.image_size)
        if blocks is None:
            return label
        trained = choice.trainable([block.name for block in blocks])
    except TLError:
        return label
    return f"{label} · {len(trained)} of {len(blocks)} blocks trainable"
