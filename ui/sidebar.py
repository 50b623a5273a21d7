"""The sidebar under the navigation: the session's dataset and model, the wizard's progress."""

from __future__ import annotations

import streamlit as st

from tl_core import DatasetReport, TLError
from tl_core.models.backbones import get_backbone
from tl_core.viz.markdown import escape_markdown
from ui import backbone_view, datasets, jobs, layers_view, run_view, state
from ui.wizard import STEPS

#: Class names listed by name in the sidebar before it says "and N more".
CLASSES_SHOWN = 6


def render() -> None:
    """Draw the sidebar; call it after the page ran, so it shows what the page chose."""
    with st.sidebar:
        st.subheader("Dataset", anchor=False)
        try:
            report = datasets.current_dataset()
        except TLError:
            # The page has already said what is wrong with it; the sidebar stays quiet.
            report = None
        if report is None:
            st.caption("None chosen yet.")
        else:
            _render_dataset(report)
        st.subheader("Model", anchor=False)
        backbone_view.sync_backbone_with_url()
        _render_model(state.model_choice(report))
        st.subheader("Training", anchor=False)
        run_view.sync_run_with_url()
        _render_training()
        st.subheader("Progress", anchor=False)
        for step in STEPS:
            done = step.is_done()
            icon = ":material/check_circle:" if done else ":material/radio_button_unchecked:"
            st.markdown(f"{icon} {step.title}" + (" · done" if done else ""))


def _render_dataset(report: DatasetReport) -> None:
    names = report.class_names
    listed = ", ".join(escape_markdown(name) for name in names[:CLASSES_SHOWN])
    if len(names) > CLASSES_SHOWN:
        listed += f" and {len(names) - CLASSES_SHOWN} more"
    st.markdown(
        f":material/folder_zip: **{escape_markdown(report.source_name)}**  \n"
        f"{len(names)} classes · {report.num_images:,} images"
    )
    st.caption(listed)


def _render_model(choice: state.ModelChoice) -> None:
    """What would train now: the defaults until the Backbone and Layers pages change them."""
    spec = get_backbone(choice.backbone)
    weights = backbone_view.WEIGHTS_LABELS[choice.weights_source]
    st.markdown(f":material/hub: **{spec.keras_name}**  \n{weights} · {choice.image_size} px")
    st.caption(layers_view.describe_freeze(choice))


def _render_training() -> None:
    """Where training runs, how busy the queue is, and the session's run."""
    device = layers_view.current_device()
    st.markdown(f":material/memory: {escape_markdown(device.describe())}")
    if device.kind != "gpu":
        st.caption("Training on CPU: minutes for the sample, much longer for big datasets.")
    try:
        queue = jobs.queue_summary().describe()
    except TLError:
        queue = "Job queue unreadable: the Runs page says why"
    lines = [f":material/pending_actions: {queue}"]
    cluster = jobs.cluster_view()
    if cluster is not None:
        lines.append(f":material/lan: {escape_markdown(cluster.slots)}")
    run_id = state.run_id()
    status = run_view.shown_run_status()
    if run_id is not None and status is not None:
        lines.append(f":material/model_training: Run {run_id} · {status.state}")
    st.markdown("  \n".join(lines))
