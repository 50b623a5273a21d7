"""The runs list: every run on this server in a table, a picker that opens one, and Delete.

Runs are read from their directories (`tl_core.jobs.runs.list_runs`), so they outlive restarts
of the app. The state shown follows `tl_core.jobs.queue.shown_state`: the queue says whether a
run is queued or claimed, and once a worker holds the run's writer lock, the run's own
``status.json`` says how it goes and how it ended. In class mode the lists hold what the
person may see (`tl_core.classroom.ownership.may_list_run`: a student's own runs and the
shared ones, everything for the teacher), and the table says whose each run is.
"""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
import streamlit as st

from tl_core.classroom.identity import same_name
from tl_core.classroom.ownership import may_list_run, shared_runs
from tl_core.jobs.progress import describe_duration
from tl_core.jobs.queue import delete_run, list_jobs, run_state, shown_state, writer_alive
from tl_core.jobs.runs import FINAL_STATES, RunStatus, RunSummary, list_runs, run_path
from ui import jobs, state
from ui.errors import user_errors
from ui.identity import current_actor
from ui.run_view import may_control, owner_name

#: Widget key of the run picker.
RUN_PICKER = "runs_picker"
#: Widget key prefix of the "Delete run" button (``runs_delete_<run id>``).
DELETE_BUTTON = "runs_delete"
#: Widget key of the confirmation's "Delete for good" button.
CONFIRM_DELETE = "runs_delete_confirm"
#: Widget key of the confirmation's "Keep it" button.
CANCEL_DELETE = "runs_delete_cancel"
#: Session state: the run whose deletion waits for confirmation.
_DELETE_ASKED = "runs_delete_asked"
#: Session state: what the last deletion said, shown once on the next run.
_DELETED = "runs_deleted"
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


def visible_runs(runs: list[RunSummary]) -> list[RunSummary]:
    """The `runs` the session's person may see listed (all of them in single-user mode).

    Example:
        >>> visible_runs(list_runs())  # doctest: +SKIP
    """
    actor = current_actor()
    if actor is None or actor.is_teacher:
        return runs
    shared = shared_runs()
    return [run for run in runs if may_list_run(actor, run.owner, run.run_id, shared)]


def load_runs() -> list[RunSummary]:
    """Every run on disk the person may see (`visible_runs`), newest first, in the state
    `tl_core.jobs.queue.shown_state` gives.

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
        for run in visible_runs(list_runs())
    ]


def owner_label(owner: str | None, viewer: str | None) -> str:
    """Whose run it is, as the Owner column says it: ``"you"`` for the viewer's own.

    Example:
        >>> owner_label("Ada", "Ada"), owner_label("Grace", "Ada"), owner_label(None, "Ada")
        ('you', 'Grace', 'Teacher')
    """
    name = owner_name(owner)
    return "you" if viewer is not None and same_name(name, viewer) else name


def runs_table(
    runs: list[RunSummary],
    now: float | None = None,
    *,
    viewer: str | None = None,
    nodes: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The runs as table rows: one per run, in the order given.

    Args:
        runs: the runs to show.
        now: the time ages and durations are measured at (default: now).
        viewer: in class mode, the signed-in person's name: adds an "Owner" column, with
            ``"you"`` for their own runs (default ``None``: no such column).
        nodes: with a Ray cluster, the node each training run is on (run id → node): adds
            a "Node" column (default ``None``: runs train on this machine, no such column).
    """
    now = now if now is not None else time.time()
    owners = (
        {"Owner": [owner_label(run.owner, viewer) for run in runs]} if viewer is not None else {}
    )
    where = {"Node": [nodes.get(run.run_id, "") for run in runs]} if nodes is not None else {}
    return pd.DataFrame(
        {
            "Run": [run.run_id for run in runs],
            **owners,
            "State": [f"{_STATE_ICONS.get(run.state, '')} {run.state}" for run in runs],
            "Best val. accuracy": [run.best_val_accuracy for run in runs],
            "Backbone": [run.backbone or "" for run in runs],
            "Layers": [run.freeze_summary for run in runs],
            "Epochs": [f"{run.epochs_done}/{run.total_epochs}" for run in runs],
            "Duration": [_duration(run, now) for run in runs],
            "Created": [_created(run.created_at, now) for run in runs],
            **where,
        }
    )


def render_table(runs: list[RunSummary]) -> None:
    """Show the runs table (with an "Owner" column in class mode)."""
    actor = current_actor()
    cluster = jobs.cluster_view()
    st.dataframe(
        runs_table(
            runs,
            viewer=actor.name if actor is not None else None,
            nodes=cluster.nodes if cluster is not None else None,
        ),
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
    """Draw the run picker (the session's run preselected); return the picked run id.

    The session's run is offered even when it is not among `runs`: someone else's run,
    opened by its link to watch.
    """
    current = state.run_id()
    if current is not None and current not in {run.run_id for run in runs}:
        runs = [*runs, *_opened_run(current)]
    ids = [run.run_id for run in runs]
    by_id = {run.run_id: run for run in runs}
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


def _opened_run(run_id: str) -> list[RunSummary]:
    """The run `run_id` as the list shows runs; empty when it is gone."""
    return [run for run in list_runs() if run.run_id == run_id]


def _picker_label(run: RunSummary) -> str:
    parts = [run.run_id, run.backbone or "?", run.state]
    actor = current_actor()
    if actor is not None and not actor.may_act_for(run.owner):
        parts.insert(1, owner_name(run.owner))
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


def show_deleted() -> None:
    """Say once, on the run after it, that a run was deleted."""
    message = st.session_state.pop(_DELETED, None)
    if isinstance(message, str):
        st.success(message, icon=":material/delete:")


def render_delete(run_id: str) -> None:
    """Offer "Delete run" for an ended run the person controls, then ask to confirm.

    Nothing shows for a run that is queued or running, that a worker still writes, or
    that is someone else's. The deletion itself is `tl_core.jobs.queue.delete_run`, which
    checks all of that again.
    """
    if not may_control(run_id):
        return
    now = run_state(run_id)
    if now.shown not in FINAL_STATES or now.writing:
        return
    if st.session_state.get(_DELETE_ASKED) != run_id:
        st.button(
            "Delete run",
            key=f"{DELETE_BUTTON}_{run_id}",
            icon=":material/delete:",
            help="Removes the run with its checkpoints, metrics, model and analyses.",
            on_click=_ask_delete,
            args=(run_id,),
        )
        return
    with st.container(border=True):
        st.warning(
            f"Delete run {run_id} for good? Its checkpoints, curves, trained model and "
            "analyses go with it; this cannot be undone.",
            icon=":material/warning:",
        )
        keep_col, delete_col = st.columns(2)
        keep_col.button("Keep it", key=CANCEL_DELETE, on_click=_cancel_delete, width="stretch")
        if delete_col.button(
            "Delete for good",
            key=CONFIRM_DELETE,
            type="primary",
            icon=":material/delete_forever:",
            width="stretch",
        ):
            _delete(run_id)


def _ask_delete(run_id: str) -> None:
    st.session_state[_DELETE_ASKED] = run_id


def _cancel_delete() -> None:
    st.session_state.pop(_DELETE_ASKED, None)


def _delete(run_id: str) -> None:
    _cancel_delete()
    with user_errors():
        message = delete_run(run_id, actor=current_actor())
        st.session_state[_DELETED] = message
        state.clear_run_id()
        st.session_state.pop(RUN_PICKER, None)
        st.rerun()
