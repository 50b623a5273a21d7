"""Pick a trained run: the shared run picker of the Evaluate and Predict & Export pages.

A run is trained once its worker wrote ``model.keras`` (completed, or stopped and saved).
In class mode the picker offers the runs the person may see (`ui.runs_view.visible_runs`:
a student's own and the shared ones), which are also the runs they may analyse.
The session's run (``?run=``) is preselected when it is trained; picking another makes
it the session's run, so that every page then shows the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from tl_core.jobs.runs import RunFiles, RunSummary, list_runs, run_path
from ui import run_view, state
from ui.errors import user_errors
from ui.runs_view import visible_runs


def trained_runs() -> list[RunSummary]:
    """Every run with a trained model on disk that the person may see, newest first."""
    runs = [run for run in list_runs() if RunFiles(run_path(run.run_id)).model.is_file()]
    return visible_runs(runs)


def require_trained_runs(missing: str) -> list[RunSummary]:
    """Return the trained runs; without any, say `missing`, link to Train and stop the page.

    Also syncs the session's run with the URL (``?run=``) first, so that a shared link
    preselects its run.

    Args:
        missing: what to tell the user when there is no trained run yet.
    """
    run_view.sync_run_with_url()
    runs: list[RunSummary] = []
    with user_errors():
        runs = trained_runs()
    if not runs:
        st.info(missing, icon=":material/info:")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    return runs


def run_label(run: RunSummary) -> str:
    """A run as a person tells it apart: ``"20261123-… · mobilenet_v2 · 2/19 blocks
    trainable · best 81.2%"``."""
    parts = [run.run_id, run.backbone or "?"]
    if run.freeze_summary:
        parts.append(run.freeze_summary)
    if run.best_val_accuracy is not None:
        parts.append(f"best {run.best_val_accuracy:.1%}")
    return " · ".join(parts)


def pick_trained_run(runs: Sequence[RunSummary], *, key: str, label: str) -> RunSummary:
    """Draw a picker over `runs` (not empty), the session's run preselected; return the pick.

    Args:
        runs: trained runs, e.g. `trained_runs()`.
        key: the picker's widget key.
        label: the picker's label.
    """
    by_id = {run.run_id: run for run in runs}
    current = state.run_id()
    if current in by_id:  # the session's run may have changed on another page
        st.session_state[key] = current
    elif st.session_state.get(key) not in by_id:
        st.session_state[key] = runs[0].run_id

    def picked() -> None:
        state.set_run_id(st.session_state[key])

    run_id = st.selectbox(
        label,
        list(by_id),
        format_func=lambda run_id: run_label(by_id[run_id]),
        key=key,
        on_change=picked,
    )
    return by_id[run_id]
