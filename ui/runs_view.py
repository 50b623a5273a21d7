"""The runs list: every run on this server in a table, and a picker that opens one.

Runs are read from their directories (`tl_core.jobs.runs.list_runs`), so they outlive restarts
of the app. The state shown follows `tl_core.jobs.queue.shown_state`: the queue says whether a
run is queued or claimed, and once a worker holds the run's writer lock, the run's own
``status.json`` says how it goes and how it ended.
"""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
import streamlit as st

from tl_core.jobs.progress import describe_duration
from tl_core.jobs.queue import list_jobs, shown_state, writer_alive
from tl_core.jobs.runs import RunStatus, RunSummary, list_runs, run_path
from ui import state

#: Widget key of the run picker.
RUN_PICKER = "runs_picker"
_ROW_PX = 35
_ROWS_SHOWN = 12
#: Plain symbols (no emoji), so that they show with any font.
_STATE_ICONS = {
    "queued": "◌",
    "running": "▶",
    "completed": "✓",
    "stopped": "■",
    "interrupted": "⚠",
    "failed": "✗",
}


def load_runs() -> list[RunSummary]:
    """Every run on disk, newest first, in the state `tl_core.jobs.queue.shown_state` gives.

    The run's own final state wins: a worker writes it just before its process ends,
    a few seconds before the scheduler settles the job; and a run a worker still writes
    shows as running, whatever the queue says. Raises `JobError` when the queue cannot be
    read.
    """
    jobs = {job.run_id: job.state for job in list_jobs()}
    return [
        dataclasses.replace(
            run,
            state=shown_state(
                jobs.get(run.run_id),
                RunStatus(state=run.state),
                writing=writer_alive(run_path(run.run_id)),
            ),
        )
        for run in list_runs()
    ]


def runs_table(runs: list[RunSummary], now: float | None = None) -> pd.DataFrame:
    """The runs as table rows: one per run, in the order given."""
    now = now if now is not None else time.time()
    return pd.DataFrame(
        {
            "Run": [run.run_id for run in runs],
            "State": [f"{_STATE_ICONS.get(run.state, '')} {run.state}" for run in runs],
            "Best val. accuracy": [run.best_val_accuracy for run in runs],
            "Backbone": [run.backbone or "" for run in runs],
            "Layers": [run.freeze_summary for run in runs],
            "Epochs": [f"{run.epochs_done}/{run.total_epochs}" for run in runs],
            "Duration": [_duration(run, now) for run in runs],
            "Created": [_created(run.created_at, now) for run in runs],
        }
    )


def render_table(runs: list[RunSummary]) -> None:
    """Show the runs table."""
    st.dataframe(
        runs_table(runs),
        hide_index=True,
        width="stretch",
        height=_ROW_PX * (min(len(runs), _ROWS_SHOWN) + 1) + 3,
        column_config={
            "Best val. accuracy": st.column_config.ProgressColumn(
                format="percent",
                min_value=0.0,
                max_value=1.0,
                help="The highest validation accuracy of any epoch so far.",
            ),
            "Layers": st.column_config.TextColumn(
                help="Backbone blocks that trained (in the last phase of a two-phase run)."
            ),
        },
    )


def pick_run(runs: list[RunSummary]) -> str | None:
    """Draw the run picker (the session's run preselected); return the picked run id."""
    ids = [run.run_id for run in runs]
    by_id = {run.run_id: run for run in runs}
    current = state.run_id()
    st.session_state[RUN_PICKER] = current if current in by_id else None
    return st.selectbox(
        "Open a run",
        ids,
        format_func=lambda run_id: _picker_label(by_id[run_id]),
        placeholder="Choose a run to see its curves",
        key=RUN_PICKER,
        on_change=_run_picked,
    )


def _run_picked() -> None:
    picked = st.session_state.get(RUN_PICKER)
    if isinstance(picked, str):
        state.set_run_id(picked)


def _picker_label(run: RunSummary) -> str:
    parts = [run.run_id, run.backbone or "?", run.state]
    if run.best_val_accuracy is not None:
        parts.append(f"best {run.best_val_accuracy:.1%}")
    return " · ".join(parts)


def _duration(run: RunSummary, now: float) -> str:
    seconds = run.duration(now)
    return describe_duration(seconds) if seconds is not None else ""


def _created(created_at: float, now: float) -> str:
    created = time.localtime(created_at)
    if created[:3] == time.localtime(now)[:3]:
        return time.strftime("today %H:%M", created)
    return time.strftime("%Y-%m-%d %H:%M", created)
