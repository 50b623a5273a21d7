"""Widgets of the Backbone step: the backbone table and picker, weights, image size.

Each picker mirrors the resolved choice (`ui.state.model_choice`) into its widget before
drawing it and writes the user's pick back through `ui.state` in its ``on_change``
callback, so a choice survives visits to other pages.
"""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from tl_core import DatasetReport, tl_home
from tl_core.errors import ConfigError
from tl_core.jobs.runs import run_path
from tl_core.models import catalog
from tl_core.models.backbones import (
    BackboneSpec,
    get_backbone,
    keras_models_dir,
    list_backbones,
    weights_cached,
)
from tl_core.models.estimate import relative_speed
from tl_core.viz.markdown import escape_markdown
from ui import datasets, state
from ui.analysis import await_analysis
from ui.errors import user_errors
from ui.predict_export_view import BACKBONE_TARGET, export_args
from ui.trained_runs import run_label, trained_runs

#: Largest input side offered; `RunConfig` accepts 32–512.
MAX_IMAGE_SIZE = 512

WEIGHTS_LABELS = {
    "imagenet": "ImageNet (pretrained)",
    "scratch": "From scratch",
    "file": "A weights file",
}
_WEIGHTS_CAPTIONS = (
    "Starts out knowing edges, textures and shapes from 1.3 million photos.",
    "Random weights: everything is learned from your images.",
    "Uploaded, or the backbone of a run you trained: offline, a run from scratch becomes "
    "the pretrained start of the next.",
)
#: The backbone table's column saying whether ImageNet weights are on this machine.
READY_OFFLINE = "Ready offline"
READY_MARK = "✓"
NEEDS_DOWNLOAD = "needs download"
_SELECTED_ROW_COLOR = "background-color: rgba(37, 99, 235, 0.12)"
_TABLE_ROW_PX = 35


def sync_backbone_with_url() -> None:
    """Keep the chosen backbone and ``?backbone=`` in step; call before reading the choice.

    A fresh session (a reload, a shared link) takes its backbone from the URL; an unknown
    id there gets a friendly warning and is dropped. Within a session the session's
    choice wins and is written back, since switching pages drops the query string.
    """
    chosen = state.backbone_id()
    asked = state.backbone_param()
    if chosen is not None:
        if asked != chosen:
            state.set_backbone_id(chosen)
        return
    if asked is None:
        return
    try:
        spec = get_backbone(asked)
    except ConfigError:
        state.clear_backbone_param()
        default = get_backbone(catalog.DEFAULT_BACKBONE).keras_name
        st.warning(
            f"The backbone named in this link ({escape_markdown(repr(asked))}) is not one "
            f"the studio knows, so {default} is shown instead. Pick another one in the list.",
            icon=":material/link_off:",
        )
        return
    state.set_backbone_id(spec.id)


def resolve_model_choice() -> tuple[DatasetReport | None, state.ModelChoice]:
    """Return the session's dataset and its resolved model choice, for a page to start from.

    Takes the backbone from the URL first (`sync_backbone_with_url`). A dataset that
    cannot be opened is explained on the page, which goes on without it.
    """
    sync_backbone_with_url()
    report = None
    with user_errors():
        report = datasets.current_dataset()
    return report, state.model_choice(report)


def render_backbone_table(selected: str) -> None:
    """Show every backbone side by side, the `selected` one highlighted.

    Below it, when some backbone's ImageNet weights are missing, how to fetch them for
    offline use.
    """
    st.dataframe(
        _backbones_styler(selected),
        hide_index=True,
        width="stretch",
        # Every row in view: the point of the table is to compare them all at a glance.
        height=_TABLE_ROW_PX * (len(list_backbones()) + 1) + 3,
        column_config={
            "Backbone": st.column_config.TextColumn(width=150),
            "Family": st.column_config.TextColumn(width=105),
            "Params": st.column_config.NumberColumn(
                format="%.1f M",
                width=75,
                help="Millions of weights, without the classifier head.",
            ),
            "Size": st.column_config.NumberColumn(
                format="%d px",
                width=70,
                help="Default image side: the one its ImageNet weights were trained at.",
            ),
            "Speed": st.column_config.NumberColumn(
                format="%.2g×",
                width=70,
                help="Training speed compared with MobileNetV2 at the same image size "
                "(from published compute; an estimate).",
            ),
            READY_OFFLINE: st.column_config.TextColumn(
                width=115,
                help="Whether its ImageNet weights file is on this machine already, so it "
                "trains pretrained without internet.",
            ),
            "About": st.column_config.TextColumn(width="large"),
        },
    )
    if not all(weights_cached(spec) for spec in list_backbones()):
        _offline_caption()


def _offline_caption() -> None:
    """Say how to make the backbones marked "needs download" ready for an offline machine."""
    st.caption(
        f"**{READY_OFFLINE}**: “{NEEDS_DOWNLOAD}” means its ImageNet weights are fetched the "
        "first time it trains, which needs internet. To prepare a machine that will be "
        "offline, run `python -m tl_core weights fetch ID` (or `--all`) while it is online, "
        "or copy the files over and run `python -m tl_core weights import FILE`."
    )


def _offline_label(spec: BackboneSpec) -> str:
    return READY_MARK if weights_cached(spec) else NEEDS_DOWNLOAD


def _backbones_styler(selected: str) -> Styler:
    specs = list_backbones()
    frame = pd.DataFrame(
        {
            "Backbone": [spec.keras_name for spec in specs],
            "Family": [spec.family for spec in specs],
            "Params": [spec.params / 1e6 for spec in specs],
            "Size": [spec.default_input_size for spec in specs],
            "Speed": [relative_speed(spec.id) for spec in specs],
            READY_OFFLINE: [_offline_label(spec) for spec in specs],
            "About": [spec.description for spec in specs],
        }
    )
    chosen = [spec.id == selected for spec in specs]
    return frame.style.apply(
        lambda row: [_SELECTED_ROW_COLOR if chosen[row.name] else ""] * len(row), axis=1
    )


def pick_backbone(choice: state.ModelChoice) -> None:
    """Draw the backbone picker and what the chosen one is good for."""
    labels = {spec.id: _backbone_label(spec) for spec in list_backbones()}
    st.session_state[state.BACKBONE_PICKER] = choice.backbone
    st.selectbox(
        "Backbone",
        list(labels),
        format_func=labels.__getitem__,
        key=state.BACKBONE_PICKER,
        on_change=state.store_widget(state.BACKBONE_PICKER, state.set_backbone_id),
    )
    st.caption(get_backbone(choice.backbone).description)


def _backbone_label(spec: BackboneSpec) -> str:
    return f"{spec.keras_name} · {spec.family} · {spec.params / 1e6:.1f} M parameters"


def pick_weights(choice: state.ModelChoice, spec: BackboneSpec) -> None:
    """Draw the weights-source picker, what it means here, and the weights uploader."""
    st.session_state[state.WEIGHTS_PICKER] = choice.weights_source
    st.radio(
        "Starting weights",
        state.WEIGHTS_SOURCES,
        format_func=WEIGHTS_LABELS.__getitem__,
        captions=_WEIGHTS_CAPTIONS,
        key=state.WEIGHTS_PICKER,
        on_change=_weights_picked,
    )
    cached = weights_cached(spec, choice.image_size)
    if not cached and choice.weights_source != "file":
        _explain_missing_imagenet(choice, spec)
    elif cached and choice.weights_source == "imagenet":
        st.caption(f":material/check_circle: ImageNet weights for {spec.keras_name} are here.")
    if choice.weights_source == "file":
        _upload_weights(spec)


def _weights_picked() -> None:
    if state.set_weights_source(st.session_state[state.WEIGHTS_PICKER]):
        st.toast(
            "The Layers preset is now *Full fine-tune*: “From scratch” means random weights.",
            icon=":material/info:",
        )


def _explain_missing_imagenet(choice: state.ModelChoice, spec: BackboneSpec) -> None:
    file_name = spec.weights_file_for(choice.image_size)
    message = (
        f"ImageNet weights for {spec.keras_name} are not on this machine and cannot be "
        f"downloaded here: put `{file_name}` into `{keras_models_dir()}`, upload a "
        "weights file, or train from scratch; training will try to download them if this "
        "machine is online."
    )
    if choice.weights_source == "scratch" and choice.weights_auto:
        st.info(
            "**From scratch is preselected** so that you can train at once. " + message,
            icon=":material/cloud_off:",
        )
    elif choice.weights_source == "imagenet":
        st.warning(message, icon=":material/cloud_off:")
    else:
        st.caption(message)


def _upload_weights(spec: BackboneSpec) -> None:
    upload = st.file_uploader(
        "Weights file (.h5 or .weights.h5)", type=["h5"], key=state.WEIGHTS_UPLOADER
    )
    # The uploader hands the same file to every rerun; store each upload only once.
    if upload is not None and upload.file_id != state.handled_weights_upload():
        state.set_handled_weights_upload(upload.file_id)
        with user_errors():
            stored = catalog.store_weights_file(upload, upload.name)
            state.set_weights_path(str(stored))
    _weights_from_run(spec)
    path = state.weights_path()
    if path is None:
        st.caption(
            "No weights file yet: upload one, take a trained run's backbone, or choose "
            "another source."
        )
        return
    st.caption(
        f":material/check_circle: Using `{escape_markdown(path)}`. It is loaded "
        f"when training starts, not here; it must hold weights saved from {spec.keras_name} "
        "without its classifier top, and training says so if it does not fit."
    )


def _weights_from_run(spec: BackboneSpec) -> None:
    """Offer the trained backbones of earlier runs on this backbone as the weights file.

    Offline there are no ImageNet weights: a run trained from scratch is then the nearest
    thing to a pretrained start. Its backbone is exported by a background analysis (the
    web process never loads a model), the same one Predict & Export offers for download.
    """
    runs = [run for run in trained_runs() if run.backbone == spec.id]
    if not runs:
        st.caption(
            f"…or start from the backbone of a run you trained: none with {spec.keras_name} "
            "yet. Train one from scratch, then come back."
        )
        return
    by_id = {run.run_id: run for run in runs}
    if st.session_state.get(state.WEIGHTS_RUN_PICKER) not in by_id:
        st.session_state[state.WEIGHTS_RUN_PICKER] = runs[0].run_id
    run_id = st.selectbox(
        f"…or start from the backbone of a trained {spec.keras_name} run",
        list(by_id),
        format_func=lambda run_id: run_label(by_id[run_id]),
        key=state.WEIGHTS_RUN_PICKER,
        help="Its trained backbone (without the head) becomes the weights file: feature "
        "extraction and fine-tuning then start from what that run learned.",
    )
    if st.button("Use its backbone", key=state.WEIGHTS_RUN_BUTTON, icon=":material/input:"):
        st.session_state[state.WEIGHTS_FROM_RUN] = run_id
    asked = st.session_state.get(state.WEIGHTS_FROM_RUN)
    if asked not in by_id:
        return
    run_dir = run_path(asked)
    result = await_analysis(
        run_dir,
        export_args(run_dir, BACKBONE_TARGET),
        waiting="Exporting the run's backbone",
        key="weights_from_run_analysis",
    )
    if result is not None:
        state.set_weights_path(result["path"])
        st.session_state.pop(state.WEIGHTS_FROM_RUN, None)


def pick_image_size(choice: state.ModelChoice, spec: BackboneSpec) -> None:
    """Draw the image-size input and say where the suggested size comes from."""
    st.session_state[state.IMAGE_SIZE_INPUT] = choice.image_size
    st.number_input(
        "Image size (pixels per side)",
        min_value=spec.min_input_size,
        max_value=MAX_IMAGE_SIZE,
        step=16,
        key=state.IMAGE_SIZE_INPUT,
        on_change=state.store_widget(state.IMAGE_SIZE_INPUT, state.set_image_size),
        help="Every image is resized to a square of this side before it enters the model.",
    )
    chosen = state.image_size()
    if chosen is not None and chosen < spec.min_input_size:
        st.caption(f"{spec.keras_name} needs at least {spec.min_input_size} px, so it uses that.")
    suggested = choice.suggested_image_size
    cost = "Larger images show more detail and cost more: time grows with the square of the side."
    typical = choice.typical_side
    if typical is None or suggested == spec.default_input_size:
        st.caption(
            f"Suggested: {suggested} px, the size {spec.keras_name} was pretrained at. {cost}"
        )
        return
    if suggested > typical:
        why = f"so the smallest size {spec.keras_name} takes, {suggested} px, is suggested."
    else:
        why = f"so {suggested} px is suggested: blowing them up adds computation, not detail."
    st.caption(
        f"Your images are about {typical} px on their shorter side, {why} {cost} "
        f"{spec.keras_name} was pretrained at {spec.default_input_size} px."
    )


def prefetch_blocks(backbone_id: str, image_size: int) -> None:
    """Start listing the backbone's blocks in a background thread, so Layers opens at once.

    Does nothing when the list is cached; `catalog.warm_cache` itself skips the work when
    another prefetch is running.
    """
    if catalog.cached_backbone_blocks(backbone_id, image_size) is not None:
        return
    threading.Thread(
        target=catalog.warm_cache,
        args=(backbone_id, image_size),
        kwargs={"home": tl_home()},
        name=f"prefetch-blocks-{backbone_id}",
        daemon=True,
    ).start()
