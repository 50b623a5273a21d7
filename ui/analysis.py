"""Show the result of a background analysis on a page, waiting politely.

The analyses run in `tl_core.analysis.background`.

A page asks for an analysis of a run with `await_analysis` and gets its JSON result, or
``None`` while it runs or after it failed; in the meantime this module draws a status
line that a fragment refreshes every `POLL_SECONDS`, and reruns the page once the result
is there. A failure shows its message (bad input as it is; a bug as a reference to its
log, never a server path) and a "Try again" button. The script thread never waits on the
process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from tl_core.analysis.background import Analysis, forget_analysis, request_analysis
from tl_core.viz.markdown import escape_markdown
from ui.errors import user_errors
from ui.identity import current_actor

#: Seconds between two looks at a running analysis.
POLL_SECONDS = 1.0


def await_analysis(
    run_dir: Path | str, args: Sequence[str], *, waiting: str, key: str
) -> Any | None:
    """Return the result of ``python -m tl_core ARGS --json`` for a run, or ``None`` for now.

    Starts the analysis when nobody has yet (`tl_core.analysis.background.request_analysis`),
    as the session's person (in class mode the core refuses a run they may not analyse).

    Args:
        run_dir: the run the analysis belongs to.
        args: the CLI command and its arguments without ``--json``.
        waiting: what the user is waiting for, shown while it runs ("Evaluating the model").
        key: a widget key prefix unique on the page (for the fragment and the retry button).

    Example:
        >>> args = ["evaluate", str(run)]
        >>> doc = await_analysis(run, args, waiting="Evaluating", key="ev")  # doctest: +SKIP
    """
    analysis = None
    with user_errors():
        analysis = request_analysis(run_dir, args, actor=current_actor())
    if analysis is None:
        return None
    if analysis.state == "ready":
        return analysis.result
    if analysis.state == "failed":
        _render_failure(analysis, run_dir, args, key)
        return None
    st.fragment(_poll, run_every=POLL_SECONDS)(str(run_dir), tuple(args), waiting)
    return None


def _poll(run_dir: str, args: tuple[str, ...], waiting: str) -> None:
    analysis = request_analysis(run_dir, args, start=False, actor=current_actor())
    if analysis.state != "running":
        st.rerun()
    elapsed = time.time() - (analysis.started_at or time.time())
    if analysis.waiting:
        st.info(
            f"{waiting}: waiting for other analyses on this machine to finish first "
            f"({elapsed:.0f} s). Each loads TensorFlow and a model, so only a few run at "
            "once; this one starts as soon as one ends.",
            icon=":material/pending:",
        )
        return
    st.info(
        f"{waiting} in a background process… {elapsed:.0f} s. The first analysis of a run "
        "loads TensorFlow and the model (usually 5–30 s); the result is kept for next time.",
        icon=":material/hourglass_top:",
    )


def _render_failure(analysis: Analysis, run_dir: Path | str, args: Sequence[str], key: str) -> None:
    if analysis.internal:
        # A crash's own text can hold server paths and library internals: the page shows
        # a reference instead, the name of the analysis's log (its .error.json is beside it).
        ref = analysis.log.stem if analysis.log is not None else "unknown"
        st.error(
            f"The analysis stopped on an internal error (ref {ref}). This is a bug, not "
            "something you did; try again, and quote the reference if it keeps happening.",
            icon=":material/bug_report:",
        )
    else:
        st.error(escape_markdown(analysis.error or ""), icon=":material/error:")
    if st.button("Try again", key=f"{key}_retry", icon=":material/refresh:"):
        forget_analysis(run_dir, args)
        st.rerun()
