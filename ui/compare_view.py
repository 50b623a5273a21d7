"""The Compare page's pieces: runs side by side, and the freeze-depth ladder.

Everything is read from run folders and ladder files through `tl_core.analysis.compare` and
`tl_core.analysis.ladder`; the only thing this module changes is the queue, when the "Queue N
runs" button submits a ladder (as the session's person). In class mode a student sees the
runs and ladders they may (`ui.runs_view.visible_runs`). Ladders that are still training
redraw themselves every `LADDER_POLL_SECONDS` (an ``st.fragment``), so their figures fill in
as rungs finish.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import streamlit as st

from tl_core.analysis.compare import (
    config_diff,
    default_selection,
    load_compared_runs,
    metrics_table,
    run_labels,
)
from tl_core.analysis.ladder import (
    Ladder,
    ladder_base,
    ladder_caveat,
    ladder_configs,
    ladder_results,
    list_ladders,
    submit_ladder,
    suggest_depths,
)
from tl_core.errors import ConfigError
from tl_core.jobs.runs import ACTIVE_STATES, FINAL_STATES, RunSummary
from tl_core.viz.markdown import escape_markdown
from tl_core.viz.plots import compare_curves_figure, ladder_figure
from ui import present, state
from ui.errors import user_errors
from ui.identity import current_actor
from ui.report_view import render_report_download

#: Widget key of the runs-to-compare multiselect.
RUN_SELECT = "compare_runs"
#: Widget key of the "Show training curves" toggle.
SHOW_TRAINING = "compare_show_training"
#: Widget key of the ladder's base run picker.
LADDER_BASE = "ladder_base_run"
#: Widget key of the ladder's depths multiselect.
LADDER_DEPTHS = "ladder_depths"
#: Widget key of the "Queue N runs" button.
QUEUE_LADDER = "ladder_queue"
#: Prefix of each listed ladder's "Compare these runs" button key (``ladder_compare_<id>``).
LADDER_COMPARE = "ladder_compare"
#: Widget key prefix of the report's buttons.
REPORT = "compare_report"
#: The id of the ladder this session just queued, to confirm it once after the rerun.
QUEUED_LADDER = "ladder_queued"

#: Seconds between redraws of a ladder whose runs are still queued or training.
LADDER_POLL_SECONDS = 2.0
#: Ladders listed, newest first; older ones are counted, not drawn.
MAX_LADDERS_SHOWN = 5
#: Depths offered while the base run's block count is not known yet.
_UNKNOWN_DEPTHS = tuple(range(33))


def pick_runs(runs: Sequence[RunSummary]) -> list[str]:
    """Draw the runs-to-compare picker and return the chosen run ids.

    It starts with `tl_core.analysis.compare.default_selection` for the session's dataset; ids
    that name no run any more (a stale choice) are dropped before it is drawn.
    """
    ids = [run.run_id for run in runs]
    labels = run_labels()
    chosen = st.session_state.get(RUN_SELECT)
    if not isinstance(chosen, list):
        chosen = default_selection(runs, state.dataset_id())
    st.session_state[RUN_SELECT] = [run_id for run_id in chosen if run_id in ids]
    return st.multiselect(
        "Runs to compare",
        ids,
        format_func=lambda run_id: labels.get(run_id, run_id),
        key=RUN_SELECT,
        placeholder="Choose two or more runs",
        help="Runs are numbered in the order they were created; #1 is the oldest.",
    )


def render_comparison(run_ids: Sequence[str]) -> None:
    """Draw the chosen runs' curves, the settings that differ, and their results.

    Raises `TLError` when a run cannot be read.
    """
    if len(run_ids) < 2:
        st.info("Choose at least two runs to compare.", icon=":material/info:")
        return
    runs = load_compared_runs(run_ids)
    show_training = st.toggle(
        "Show training curves",
        key=SHOW_TRAINING,
        help="Adds each run's training accuracy and loss, dashed and faint.",
    )
    st.plotly_chart(
        compare_curves_figure(
            [(run.label, run.epochs) for run in runs], show_training=show_training
        ),
        key="compare_curves",
        config={"displayModeBar": False},
    )
    if not any(run.epochs for run in runs):
        st.caption("No epoch has ended in these runs yet: their curves appear as they train.")
    st.markdown("**Settings that differ**")
    diff = config_diff({run.label: run.config for run in runs})
    if diff.empty:
        st.caption("These runs share every setting.")
    else:
        st.dataframe(diff, width="stretch")
    st.markdown("**Results**")
    st.dataframe(metrics_table(runs), width="stretch")


def render_share(run_ids: Sequence[str]) -> None:
    """Present the chosen runs as slides, or download them as one report file; the
    oldest run comes first, as the baseline.

    Raises `AccessDenied` when the person may not analyse one of the runs.
    """
    if len(run_ids) < 2:
        return
    # Oldest first: the earlier run is the baseline the later ones are measured against
    # (run ids begin with their creation time).
    run_ids = sorted(run_ids)
    present_column, report_column = st.columns([1, 3], vertical_alignment="top")
    present_column.link_button(
        "Present",
        present.present_url(run_ids),
        icon=":material/slideshow:",
        help="Opens these runs as full-screen slides in a new tab: the arrow keys move "
        "between them.",
    )
    with report_column:
        render_report_download(run_ids, key=REPORT)


def render_ladder_section(runs: Sequence[RunSummary]) -> None:
    """Draw the ladder form (base run, depths, "Queue N runs") and the ladders so far."""
    queued = st.session_state.pop(QUEUED_LADDER, None)
    if isinstance(queued, str):
        st.success(
            "Ladder queued. Its runs train one after another as slots free up; "
            "the figure below fills in as they finish.",
            icon=":material/check_circle:",
        )
    labels = run_labels()
    with user_errors():
        _render_ladder_form(runs, labels)
    ladders = _visible_ladders(list_ladders(), runs)
    if not ladders:
        st.caption("No ladders yet.")
        return
    for ladder in ladders[:MAX_LADDERS_SHOWN]:
        with st.container(border=True):
            _render_ladder(ladder, labels)
    if len(ladders) > MAX_LADDERS_SHOWN:
        st.caption(f"{len(ladders) - MAX_LADDERS_SHOWN} older ladders are not shown.")


def _visible_ladders(ladders: Sequence[Ladder], runs: Sequence[RunSummary]) -> list[Ladder]:
    """The ladders a student may see: those with a rung among their `runs` (their own and
    the shared ones); every ladder for the teacher and in single-user mode."""
    actor = current_actor()
    if actor is None or actor.is_teacher:
        return list(ladders)
    seen = {run.run_id for run in runs}
    return [ladder for ladder in ladders if seen.intersection(ladder.run_ids)]


def _render_ladder_form(runs: Sequence[RunSummary], labels: dict[str, str]) -> None:
    ids = [run.run_id for run in runs]
    if st.session_state.get(LADDER_BASE) not in ids:
        current = state.run_id()
        st.session_state[LADDER_BASE] = current if current in ids else ids[0]
    base_id = st.selectbox(
        "Base run",
        ids,
        format_func=lambda run_id: labels.get(run_id, run_id),
        key=LADDER_BASE,
        # Another base may have fewer blocks: its depths start from the suggestion again.
        on_change=lambda: st.session_state.pop(LADDER_DEPTHS, None),
        help="Every rung copies this run's settings, except how many top blocks train.",
    )
    base = ladder_base(base_id)
    options = (
        list(range(base.num_blocks + 1)) if base.num_blocks is not None else list(_UNKNOWN_DEPTHS)
    )
    if base.num_blocks is None:
        st.caption(
            "This run has not built its model yet, so its block count is unknown: "
            "depths above it train every block."
        )
    chosen = st.session_state.get(LADDER_DEPTHS)
    if not isinstance(chosen, list):
        chosen = suggest_depths(base.num_blocks)
    st.session_state[LADDER_DEPTHS] = [depth for depth in chosen if depth in options]
    picked = st.multiselect(
        "Top blocks to train, one run each",
        options,
        format_func=lambda depth: _depth_label(depth, base.num_blocks),
        key=LADDER_DEPTHS,
        help="0 trains the new head alone (feature extraction); each step up also "
        "fine-tunes one more block from the top.",
    )
    depths = sorted(picked)
    problem = None
    try:
        # Before any depth is chosen, the base alone is checked (depth 0 fits every base).
        ladder_configs(base.config, depths or [0], num_blocks=base.num_blocks)
    except ConfigError as exc:
        problem = str(exc)
    caveat = ladder_caveat(base.config)
    if caveat is not None:
        st.info(caveat, icon=":material/info:")
    if problem is not None:
        st.warning(escape_markdown(problem), icon=":material/warning:")
    elif len(depths) < 2:
        st.caption("Choose at least two depths.")
    else:
        st.caption(
            f"Queues {len(depths)} runs that differ only in how many top blocks train. They "
            "wait in the same queue as every other run and share its GPU slots: with one "
            "slot they train one after another."
        )
    if st.button(
        f"Queue {len(depths)} runs",
        key=QUEUE_LADDER,
        type="primary",
        icon=":material/stacked_line_chart:",
        disabled=problem is not None or len(depths) < 2,
    ):
        ladder = submit_ladder(
            base.config,
            depths,
            base_run_id=base.run_id,
            num_blocks=base.num_blocks,
            actor=current_actor(),
        )
        st.session_state[QUEUED_LADDER] = ladder.ladder_id
        st.rerun()


def _render_ladder(ladder: Ladder, labels: dict[str, str]) -> None:
    rows = ladder_results(ladder)
    active = any(row["state"] in ACTIVE_STATES for row in rows)
    st.fragment(_ladder_body, run_every=LADDER_POLL_SECONDS if active else None)(
        ladder, labels, active
    )


def _ladder_body(ladder: Ladder, labels: dict[str, str], drawn_active: bool) -> None:
    """A ladder's progress, figure and compare button; redrawn while its runs train."""
    with user_errors():
        rows = ladder_results(ladder)
        active = any(row["state"] in ACTIVE_STATES for row in rows)
        if active != drawn_active:
            st.rerun()  # a rung started or the last one ended: poll, or stop polling
        base = labels.get(ladder.base_run_id or "", "a config")
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(ladder.created_at))
        st.markdown(f"**Ladder on {escape_markdown(base)}** · queued {created}")
        finished = sum(row["state"] in FINAL_STATES for row in rows)
        st.progress(finished / len(rows), text=f"{finished} of {len(rows)} runs finished")
        st.plotly_chart(
            ladder_figure(rows),
            key=f"ladder_figure_{ladder.ladder_id}",
            config={"displayModeBar": False},
        )
        if st.button(
            "Compare these runs",
            key=f"{LADDER_COMPARE}_{ladder.ladder_id}",
            icon=":material/compare:",
            on_click=_compare_ladder,
            args=(ladder.run_ids,),
        ):
            st.rerun()  # the comparison above sits outside this fragment


def _compare_ladder(run_ids: Sequence[str]) -> None:
    st.session_state[RUN_SELECT] = list(run_ids)


def _depth_label(depth: int, num_blocks: int | None) -> str:
    if depth == 0:
        return "0 · head only"
    if depth == num_blocks:
        return f"{depth} · every block"
    return str(depth)
