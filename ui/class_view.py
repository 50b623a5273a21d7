"""The teacher's Class page: who joined and what they run, the queue, the quotas, sharing.

Everything is read and changed through the core (`tl_core.classroom`, `tl_core.jobs`), which
also checks that the actor is the teacher; this module only draws. `load_overview` reads the
class once per script run, and each ``render_*`` draws one tab from it. An action changes
something, leaves a sentence for the next run (`render_notice`) and reruns the page, so every
tab shows the new state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import streamlit as st

from tl_core.classroom import (
    ClassSettings,
    Identity,
    list_students,
    read_class_settings,
    release_name,
    share_run,
    shared_runs,
    update_class_settings,
)
from tl_core.classroom.identity import same_name
from tl_core.classroom.roster import Student
from tl_core.jobs import fairshare
from tl_core.jobs import queue as job_queue
from tl_core.jobs.queue import Job, list_jobs
from tl_core.jobs.runs import RunSummary
from tl_core.models.estimate import describe_seconds
from tl_core.viz.markdown import escape_markdown
from ui import runs_view
from ui.errors import user_errors

#: Widget keys, stable so that a rerun keeps the teacher's picks.
RELEASE_PICK = "class_release_pick"
QUEUE_PICK = "class_queue_pick"
SHARE_PICK = "class_share_pick"
MAX_ACTIVE_RUNS = "class_max_active_runs"
MAX_UPLOAD_MB = "class_max_upload_mb"
#: Session-state keys: the name waiting for the release confirmation, the last action's sentence.
_RELEASE_PENDING = "class_release_pending"
_NOTICE = "class_notice"

#: Run states counted per student, as the table's columns name them.
_STATE_COLUMNS = {
    "queued": "Waiting",
    "running": "Training",
    "completed": "Done",
    "failed": "Failed",
}


@dataclass(frozen=True)
class ClassOverview:
    """The class as read once for one script run.

    Attributes:
        students: everyone who joined, in the order they joined.
        runs: every run, newest first, in the state the pages show.
        running: the jobs training now.
        queued: the queued jobs, in the order they will start.
        settings: the teacher's quotas and whether the class is paused.
        shared: the ids of the runs shared with the class.
    """

    students: list[Student]
    runs: list[RunSummary]
    running: list[Job]
    queued: list[Job]
    settings: ClassSettings
    shared: frozenset[str]


def load_overview() -> ClassOverview:
    """Read the class from the core. Raises `JobError` when the queue cannot be read.

    Example:
        >>> [student.name for student in load_overview().students]  # doctest: +SKIP
        ['Ada', 'Grace']
    """
    return ClassOverview(
        students=list_students(),
        runs=runs_view.load_runs(),
        running=[job for job in list_jobs() if job.state == "running"],
        queued=fairshare.queue_order(),
        settings=read_class_settings(),
        shared=shared_runs(),
    )


def render_notice() -> None:
    """Show the sentence the last action left (once)."""
    notice = st.session_state.pop(_NOTICE, None)
    if notice:
        st.success(notice, icon=":material/check_circle:")


def _act(action: Callable[[], str]) -> None:
    """Run `action` (which returns a sentence in Markdown); on success keep its sentence for
    the next run and rerun, so that every tab shows the change; a refusal shows in place."""
    with user_errors():
        st.session_state[_NOTICE] = action()
        st.rerun()


# --- students --------------------------------------------------------------------------------


def students_table(overview: ClassOverview) -> pd.DataFrame:
    """One row per student: when they joined, their runs by state, their best accuracy."""
    rows = []
    for student in overview.students:
        runs = [run for run in overview.runs if run.owner and same_name(run.owner, student.name)]
        scores = [run.best_val_accuracy for run in runs if run.best_val_accuracy is not None]
        row = {
            "Student": student.name,
            "Joined": datetime.fromtimestamp(student.joined_at).strftime("%d %b %H:%M"),
            "Runs": len(runs),
        }
        for state, column in _STATE_COLUMNS.items():
            row[column] = sum(1 for run in runs if run.state == state)
        row["Best val. accuracy"] = max(scores, default=None)
        rows.append(row)
    columns = ["Student", "Joined", "Runs", *_STATE_COLUMNS.values(), "Best val. accuracy"]
    return pd.DataFrame(rows, columns=columns)


def render_students(overview: ClassOverview, actor: Identity | None) -> None:
    """The students table and the Release name action (with a confirmation)."""
    if not overview.students:
        st.info(
            "No student has joined yet: they open this server's address and join with their "
            "name and the class code.",
            icon=":material/info:",
        )
        return
    st.dataframe(
        students_table(overview),
        hide_index=True,
        width="stretch",
        column_config={
            "Best val. accuracy": st.column_config.ProgressColumn(
                format="percent", min_value=0.0, max_value=1.0
            ),
            "Waiting": st.column_config.NumberColumn(help="Runs queued, not started yet."),
        },
    )
    _render_release(overview, actor)


def _render_release(overview: ClassOverview, actor: Identity | None) -> None:
    """Release a name: the student signs out everywhere and can join again with it."""
    st.subheader("Release a name", anchor=False)
    st.caption(
        "For a student who lost their sign-in (another browser, cleared cookies): releasing "
        "their name signs them out and lets them join again with it. Their runs keep it."
    )
    names = [student.name for student in overview.students]
    pending = st.session_state.get(_RELEASE_PENDING)
    if pending in names:
        st.warning(
            f"Release the name **{escape_markdown(pending)}**? Whoever is signed in with it "
            "is signed out.",
            icon=":material/warning:",
        )
        confirm, keep = st.columns(2)
        if confirm.button("Yes, release it", key="class_release_confirm", type="primary"):
            st.session_state.pop(_RELEASE_PENDING, None)
            _act(lambda: _release(actor, pending))
        if keep.button("Keep it", key="class_release_keep"):
            st.session_state.pop(_RELEASE_PENDING, None)
            st.rerun()
        return
    name = st.selectbox("Student", names, key=RELEASE_PICK)
    if st.button("Release name", key="class_release", icon=":material/person_remove:"):
        st.session_state[_RELEASE_PENDING] = name
        st.rerun()


def _release(actor: Identity | None, name: str) -> str:
    release_name(actor, name)
    return f"Released the name **{escape_markdown(name)}**: it can join the class again."


# --- the queue -------------------------------------------------------------------------------


def queue_table(overview: ClassOverview) -> pd.DataFrame:
    """The running jobs, then the queued ones in the order they will start."""
    rows = [
        {"Position": None, "Run": job.run_id, "Owner": job.owner or "—", "State": "training"}
        | {"Estimated wait": "", "Order set by you": False}
        for job in overview.running
    ]
    for position, job in enumerate(overview.queued, start=1):
        wait = fairshare.queue_wait(job.run_id)
        rows.append(
            {
                "Position": position,
                "Run": job.run_id,
                "Owner": job.owner or "—",
                "State": "waiting",
                "Estimated wait": _describe_wait(wait.wait_s if wait is not None else None),
                "Order set by you": job.rank is not None,
            }
        )
    columns = ["Position", "Run", "Owner", "State", "Estimated wait", "Order set by you"]
    return pd.DataFrame(rows, columns=columns)


def _describe_wait(seconds: float | None) -> str:
    # The core estimates no wait for a student's run while the class is paused.
    if seconds is None:
        return "when the class resumes"
    return "starts next" if seconds < 1 else describe_seconds(seconds)


def render_queue(overview: ClassOverview, actor: Identity | None) -> None:
    """The queue table, the per-job actions, and the Pause class / Resume class toggle."""
    _render_pause(overview.settings, actor)
    if not overview.running and not overview.queued:
        st.info("Nothing is training or waiting.", icon=":material/info:")
        return
    st.dataframe(queue_table(overview), hide_index=True, width="stretch")
    if overview.queued:
        _render_queue_actions(overview, actor)


def _render_pause(settings: ClassSettings, actor: Identity | None) -> None:
    if settings.paused:
        st.warning("The class is paused: no student's run starts.", icon=":material/pause_circle:")
        if st.button("Resume class", key="class_resume", icon=":material/play_arrow:"):
            _act(lambda: _set_paused(actor, False))
    elif st.button("Pause class", key="class_pause", icon=":material/pause:"):
        _act(lambda: _set_paused(actor, True))
    st.caption(
        "Pausing starts no new student run: their queued runs wait, running ones continue, "
        "and your own runs still start."
    )


def _set_paused(actor: Identity | None, paused: bool) -> str:
    update_class_settings(actor, paused=paused)
    if paused:
        return "The class is paused: students' queued runs wait until you resume it."
    return "The class runs again: students' queued runs start in their turn."


def _render_queue_actions(overview: ClassOverview, actor: Identity | None) -> None:
    """Pick a queued run, then move it, start it next, or cancel it."""
    order = [job.run_id for job in overview.queued]
    owners = {job.run_id: job.owner or "—" for job in overview.queued}
    picked = st.selectbox(
        "Queued run",
        order,
        format_func=lambda run_id: f"#{order.index(run_id) + 1} · {run_id} · {owners[run_id]}",
        key=QUEUE_PICK,
    )
    if picked is None:
        return
    position = order.index(picked)
    up, down, first, cancel = st.columns(4)
    if up.button("Move up", key="class_move_up", disabled=position == 0, width="stretch"):
        _act(lambda: _reorder(actor, _moved(order, picked, position - 1), picked))
    if down.button(
        "Move down", key="class_move_down", disabled=position == len(order) - 1, width="stretch"
    ):
        _act(lambda: _reorder(actor, _moved(order, picked, position + 1), picked))
    if first.button("Start next", key="class_start_next", disabled=position == 0, width="stretch"):
        _act(lambda: _reorder(actor, _moved(order, picked, 0), picked))
    if cancel.button("Cancel", key="class_cancel", icon=":material/cancel:", width="stretch"):
        _act(lambda: escape_markdown(job_queue.request_stop(picked, actor=actor)))


def _moved(order: list[str], run_id: str, index: int) -> list[str]:
    """`order` with `run_id` moved to `index`."""
    rest = [item for item in order if item != run_id]
    return [*rest[:index], run_id, *rest[index:]]


def _reorder(actor: Identity | None, order: list[str], run_id: str) -> str:
    job_queue.reorder_queue(actor, order)
    return f"Run {run_id} is now number {order.index(run_id) + 1} in the queue."


# --- quotas ----------------------------------------------------------------------------------


def render_quotas(settings: ClassSettings, actor: Identity | None) -> None:
    """The per-student limits, saved together with Save limits."""
    st.markdown(
        f"Now: each student may have **{settings.max_active_runs}** runs waiting or training, "
        f"and upload archives of up to **{settings.max_upload_mb} MB**. Your own runs and "
        "uploads have no limit."
    )
    max_runs = st.number_input(
        "Runs waiting or training per student",
        min_value=1,
        max_value=50,
        value=settings.max_active_runs,
        step=1,
        key=MAX_ACTIVE_RUNS,
        help="A student's next run is refused while this many of theirs wait or train.",
    )
    max_mb = st.number_input(
        "Upload size limit (MB)",
        min_value=1,
        max_value=10_000,
        value=settings.max_upload_mb,
        step=50,
        key=MAX_UPLOAD_MB,
        help="A student's dataset archive larger than this is refused.",
    )
    if st.button("Save limits", key="class_save_limits", icon=":material/save:"):
        _act(lambda: _save_limits(actor, int(max_runs), int(max_mb)))


def _save_limits(actor: Identity | None, max_runs: int, max_mb: int) -> str:
    saved = update_class_settings(actor, max_active_runs=max_runs, max_upload_mb=max_mb)
    return (
        f"Saved: {saved.max_active_runs} runs waiting or training per student, uploads up to "
        f"{saved.max_upload_mb} MB."
    )


# --- sharing ---------------------------------------------------------------------------------


def shared_table(overview: ClassOverview) -> pd.DataFrame:
    """The shared runs that still exist, newest first."""
    runs = [run for run in overview.runs if run.run_id in overview.shared]
    return pd.DataFrame(
        {
            "Run": [run.run_id for run in runs],
            "Owner": [run.owner or "—" for run in runs],
            "Backbone": [run.backbone or "" for run in runs],
            "Best val. accuracy": [run.best_val_accuracy for run in runs],
        }
    )


def render_share(overview: ClassOverview, actor: Identity | None) -> None:
    """Share a run with the class (every student sees and analyses it), or stop sharing it."""
    if not overview.runs:
        st.info("No runs yet: share one once someone has trained it.", icon=":material/info:")
        return
    st.caption(
        "A shared run shows in every student's runs list; they can evaluate it and predict "
        "with it, but not stop, resume, delete or export it."
    )
    by_id = {run.run_id: run for run in overview.runs}
    picked = st.selectbox(
        "Run",
        list(by_id),
        format_func=lambda run_id: _share_label(by_id[run_id], run_id in overview.shared),
        key=SHARE_PICK,
    )
    if picked in overview.shared:
        if st.button("Stop sharing", key="class_unshare", icon=":material/link_off:"):
            _act(lambda: _share(actor, picked, False))
    elif picked is not None and st.button(
        "Share with the class", key="class_share", icon=":material/share:"
    ):
        _act(lambda: _share(actor, picked, True))
    st.subheader("Shared with the class", anchor=False)
    table = shared_table(overview)
    if table.empty:
        st.caption("No run is shared.")
        return
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "Best val. accuracy": st.column_config.ProgressColumn(
                format="percent", min_value=0.0, max_value=1.0
            )
        },
    )


def _share_label(run: RunSummary, shared: bool) -> str:
    parts = [run.run_id, run.owner or "—", run.backbone or "?", run.state]
    return " · ".join(parts) + (" · shared" if shared else "")


def _share(actor: Identity | None, run_id: str, shared: bool) -> str:
    share_run(actor, run_id, shared)
    if shared:
        return f"Run {run_id} is shared with the class."
    return f"Run {run_id} is no longer shared."


def now_label() -> str:
    """The time the page was read, for its caption (the page does not refresh by itself)."""
    return time.strftime("%H:%M:%S")
