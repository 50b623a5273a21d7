"""The **Prepare report** / **Download report** pair, shared by Compare, Evaluate and Runs.

A report computes every missing evaluation, Grad-CAM and embedding, which loads
TensorFlow, so the page never writes it itself: "Prepare report" runs the ``report``
command (`tl_core.analysis.report.report_args`) as a background analysis of the first
run (`ui.analysis.await_analysis`), writing the file into that run's ``analysis/``
folder; once it is there, "Download report" hands it over. The core first checks that
the person may analyse every run in it (`require_report_access`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from tl_core.analysis.background import analysis_folder, forget_analysis, request_analysis
from tl_core.analysis.report import report_args, require_report_access
from tl_core.jobs.runs import run_path
from ui.analysis import await_analysis
from ui.identity import current_actor

#: Session state: the reports this session asked for (tuples of run ids).
_ASKED = "report_asked"


def report_file(run_ids: Sequence[str]) -> Path:
    """Where the report of `run_ids` is written: ``FIRST_RUN/analysis/report-IDS.html``.

    Example:
        >>> report_file(["20261207-090000-aaaaaa", "20261207-091000-bbbbbb"]).name
        'report-20261207-090000-aaaaaa_20261207-091000-bbbbbb.html'
    """
    return analysis_folder(run_path(run_ids[0])) / download_name(run_ids)


def download_name(run_ids: Sequence[str]) -> str:
    """The report's file name: ``report-ID1_ID2.html``.

    Example:
        >>> download_name(["a", "b"])
        'report-a_b.html'
    """
    return f"report-{'_'.join(run_ids)}.html"


def render_report_download(run_ids: Sequence[str], *, key: str) -> None:
    """Draw "Prepare report", its progress while it is written, then "Download report".

    Args:
        run_ids: the runs, baseline first.
        key: a widget key prefix unique on the page.

    Raises `AccessDenied` when the person may not analyse one of the runs.
    """
    ids = list(dict.fromkeys(run_ids))
    require_report_access(current_actor(), ids)
    out = report_file(ids)
    args = report_args(ids, out)
    first = run_path(ids[0])
    asked = st.session_state.setdefault(_ASKED, set())
    kept = request_analysis(first, args, start=False, actor=current_actor())
    if kept.state == "ready" and not out.is_file():
        forget_analysis(first, args)  # the file was deleted: write it again on request
        kept = request_analysis(first, args, start=False, actor=current_actor())
    if kept.state == "failed" and tuple(ids) not in asked:
        if st.button(
            "Prepare report",
            key=f"{key}_prepare",
            icon=":material/description:",
            help="Writes one HTML file with every chart and picture of these runs, which "
            "opens offline in any browser. It evaluates any run not evaluated yet, so the "
            "first report of a run takes a while.",
        ):
            forget_analysis(first, args)  # an earlier failure is tried again
            asked.add(tuple(ids))
            st.rerun()
        return
    result = await_analysis(first, args, waiting="Writing the report", key=f"{key}_report")
    if result is None or not out.is_file():
        return
    st.download_button(
        "Download report",
        data=out.read_bytes(),
        file_name=download_name(ids),
        mime="text/html",
        key=f"{key}_download",
        icon=":material/download:",
        type="primary",
    )
