"""The Runs page's demo: a finished comparison on the sample data, prepared in one click.

"Prepare a demo" runs ``python -m tl_core demo --json`` in a background process
(`tl_core.analysis.demo_job`: it trains, so the web process never does it) and, once it
is ready, offers its two runs, Compare, Present and the report. Only the teacher (and the
operator, in single-user mode) gets the section; the core refuses a student anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from tl_core.analysis.demo_job import DEMO_ARGS, demo_folder, forget_demo, request_demo
from tl_core.jobs.runs import list_runs
from ui import compare_view, present, state
from ui.analysis import await_analysis
from ui.errors import user_errors
from ui.identity import current_actor
from ui.report_view import download_name

#: Widget key prefix of the demo's buttons.
DEMO = "runs_demo"
#: Session state: this session asked for the demo.
_ASKED = "runs_demo_asked"


def render_demo(*, expanded: bool = False) -> None:
    """The demo section, for the teacher and the operator only.

    Args:
        expanded: open the section at once (default False), for a page without runs.
    """
    actor = current_actor()
    if actor is not None and not actor.is_teacher:
        return  # a courtesy: the core refuses a student too
    with st.expander("Demo: a finished comparison on the sample data", expanded=expanded):
        st.caption(
            "Trains two small runs on the bundled sample, feature extraction against "
            "fine-tuning the top blocks, and writes their report, so that a demo never "
            "waits for training. It takes a few minutes, once: then it is ready at once."
        )
        with user_errors():
            _render_state()


def _render_state() -> None:
    kept = request_demo(actor=current_actor(), start=False)
    if kept.state == "failed" and not st.session_state.get(_ASKED):
        if st.button("Prepare a demo", key=f"{DEMO}_prepare", icon=":material/auto_awesome:"):
            _prepare()
            st.session_state[_ASKED] = True
            st.rerun()
        return
    doc = await_analysis(demo_folder(), DEMO_ARGS, waiting="Preparing the demo", key=DEMO)
    if isinstance(doc, Mapping):
        _render_prepared(doc)


def _prepare() -> None:
    """Start the demo afresh (an earlier failure or a gone demo is tried again)."""
    forget_demo(actor=current_actor())
    request_demo(actor=current_actor())


def _render_prepared(doc: Mapping[str, Any]) -> None:
    run_ids = [str(run_id) for run_id in doc.get("run_ids") or []]
    report = _report(doc.get("report"))
    known = {run.run_id for run in list_runs()}
    if len(run_ids) < 2 or not set(run_ids) <= known or report is None:
        st.warning(
            "The prepared demo's runs or report were deleted since. Prepare it again.",
            icon=":material/warning:",
        )
        if st.button("Prepare it again", key=f"{DEMO}_again", icon=":material/refresh:"):
            _prepare()
            st.rerun()
        return
    st.success("The demo is ready.", icon=":material/check_circle:")
    with st.container(horizontal=True):
        for run_id in run_ids:
            st.button(
                f"Open {run_id}",
                key=f"{DEMO}_open_{run_id}",
                icon=":material/open_in_new:",
                on_click=state.set_run_id,
                args=(run_id,),
            )
        if st.button("Open Compare", key=f"{DEMO}_compare", icon=":material/compare:"):
            st.session_state[compare_view.RUN_SELECT] = run_ids
            st.switch_page("pages/compare.py")
        st.link_button("Present", present.present_url(run_ids), icon=":material/slideshow:")
        st.download_button(
            "Download report",
            data=report.read_bytes(),
            file_name=download_name(run_ids),
            mime="text/html",
            key=f"{DEMO}_download",
            icon=":material/download:",
        )


def _report(path: object) -> Path | None:
    """The demo's report file: only the one in the demo's folder, while it is there."""
    report = Path(str(path or "")).resolve()
    return report if report.parent == demo_folder().resolve() and report.is_file() else None
