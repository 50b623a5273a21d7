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
from pathlib import Path

import pandas as pd
import streamlit as st

from tl_core import DatasetReport, list_datasets
from tl_core.classroom import (
    ClassSettings,
    Identity,
    Lesson,
    builtin_lessons,
    delete_lesson,
    export_lesson,
    import_lesson,
    lesson_from_builtin,
    lesson_from_run,
    list_lessons,
    list_students,
    open_lesson,
    read_class_settings,
    release_name,
    share_run,
    shared_runs,
    update_class_settings,
)
from tl_core.classroom.identity import same_name
from tl_core.classroom.lessons import DEFAULT_EDITABLE
from tl_core.classroom.roster import Student
from tl_core.jobs import fairshare
from tl_core.jobs import queue as job_queue
from tl_core.jobs.queue import Job, list_jobs
from tl_core.jobs.runs import RunSummary
from tl_core.models.backbones import list_backbones
from tl_core.models.catalog import DEFAULT_BACKBONE
from tl_core.models.estimate import describe_seconds
from tl_core.viz.markdown import escape_markdown
from ui import runs_view
from ui import state as ui_state
from ui.dataset_view import dataset_label
from ui.errors import user_errors
from ui.identity import current_actor
from ui.training import LESSON_EDITABLE_FIELDS

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
    waits = fairshare.queue_waits()  # one read of the queue for the whole table
    for position, job in enumerate(overview.queued, start=1):
        wait = waits.get(job.run_id)
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


# --- lessons ---------------------------------------------------------------------------------

#: Widget keys of the Lessons tab.
BUILTIN_PICK = "class_lesson_builtin"
BUILTIN_DATASET = "class_lesson_dataset"
BUILTIN_BACKBONE = "class_lesson_backbone"
BUILTIN_WEIGHTS = "class_lesson_weights"
FROM_RUN_PICK = "class_lesson_run"
FROM_RUN_TITLE = "class_lesson_title"
FROM_RUN_QUESTION = "class_lesson_question"
FROM_RUN_CHOICES = "class_lesson_choices"
FROM_RUN_EDITABLE = "class_lesson_editable"
LESSON_PICK = "class_lesson_pick"
LESSON_UPLOAD = "class_lesson_upload"
IMPORT_DATASET = "class_lesson_import_dataset"
#: The class board's page, made by the board's own module; linked when it is there.
BOARD_PAGE = "pages/board.py"
_APP_ROOT = Path(__file__).resolve().parents[1]
_WEIGHT_LABELS = {"imagenet": "ImageNet (pretrained)", "none": "None (from scratch)"}


def lessons_table(lessons: list[Lesson]) -> pd.DataFrame:
    """The lessons, one row each: title, whether open, arms, question."""
    return pd.DataFrame(
        {
            "Lesson": [lesson.title for lesson in lessons],
            "Open": [lesson.is_open for lesson in lessons],
            "Arms": [len(lesson.variants) for lesson in lessons],
            "Question": [lesson.question or "—" for lesson in lessons],
            "Id": [lesson.lesson_id for lesson in lessons],
        }
    )


def render_lessons(overview: ClassOverview, actor: Identity | None) -> None:
    """The Lessons tab: the lessons with Open/Close, Delete and Export; creating one from a
    built-in or a run; importing one; and the link to the class board."""
    lessons = list_lessons()
    if Path(_APP_ROOT, BOARD_PAGE).is_file():
        st.page_link(BOARD_PAGE, label="Open the class board", icon=":material/co_present:")
    if lessons:
        st.dataframe(lessons_table(lessons), hide_index=True, width="stretch")
        _render_lesson_actions(lessons, actor)
    else:
        st.info(
            "No lessons yet. Create one below from a built-in lesson or from a run's settings, "
            "then open it: students then find it in the Lesson picker of the Train page.",
            icon=":material/school:",
        )
    with st.expander("New lesson from a built-in", icon=":material/school:", expanded=not lessons):
        _render_from_builtin(actor)
    with st.expander("New lesson from a run's settings", icon=":material/history:"):
        _render_from_run(overview, actor)
    with st.expander("Import a lesson", icon=":material/upload_file:"):
        _render_import(actor)


def _render_lesson_actions(lessons: list[Lesson], actor: Identity | None) -> None:
    by_id = {lesson.lesson_id: lesson for lesson in lessons}
    picked = st.selectbox(
        "Lesson",
        list(by_id),
        format_func=lambda lesson_id: (
            by_id[lesson_id].title + (" · open" if by_id[lesson_id].is_open else "")
        ),
        key=LESSON_PICK,
    )
    lesson = by_id[picked]
    open_col, export_col, delete_col = st.columns(3)
    with open_col:
        if lesson.is_open:
            if st.button("Close", key="class_lesson_close", icon=":material/lock:"):
                _act(lambda: _set_open(actor, lesson, False))
        elif st.button("Open to the class", key="class_lesson_open", icon=":material/lock_open:"):
            _act(lambda: _set_open(actor, lesson, True))
    with export_col:
        st.download_button(
            "Export",
            data=export_lesson(lesson.lesson_id),
            file_name=f"{lesson.lesson_id}.lesson.json",
            mime="application/json",
            key="class_lesson_export",
            icon=":material/download:",
            help="A JSON file to import next term, or on a colleague's studio.",
        )
    with delete_col:
        if st.button("Delete", key="class_lesson_delete", icon=":material/delete:"):
            _act(lambda: _delete_lesson(actor, lesson))
    st.caption(
        "Deleting a lesson keeps the runs made in it; they still say which lesson they were in."
    )


def _set_open(actor: Identity | None, lesson: Lesson, is_open: bool) -> str:
    open_lesson(actor, lesson.lesson_id, is_open)
    if is_open:
        return (
            f"**{escape_markdown(lesson.title)}** is open: students find it in the Lesson "
            "picker of the Train page."
        )
    return f"**{escape_markdown(lesson.title)}** is closed: students can no longer run it."


def _delete_lesson(actor: Identity | None, lesson: Lesson) -> str:
    delete_lesson(actor, lesson.lesson_id)
    return f"**{escape_markdown(lesson.title)}** is deleted; its runs stay."


def _render_from_builtin(actor: Identity | None) -> None:
    builtins = {lesson.lesson_id: lesson for lesson in builtin_lessons()}
    picked = st.selectbox(
        "Built-in lesson",
        list(builtins),
        format_func=lambda lesson_id: builtins[lesson_id].title,
        key=BUILTIN_PICK,
    )
    st.caption(f"It asks: {escape_markdown(builtins[picked].question)}")
    reports = _datasets_first_chosen()
    if not reports:
        st.info(
            "A lesson needs a dataset: load the sample or upload an archive on the Data page.",
            icon=":material/info:",
        )
        st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")
        return
    labels = {report.dataset_id: dataset_label(report) for report in reports}
    dataset_id = st.selectbox(
        "Dataset", list(labels), format_func=labels.__getitem__, key=BUILTIN_DATASET
    )
    backbones = [spec.id for spec in list_backbones()]
    backbone_col, weights_col = st.columns(2)
    backbone = backbone_col.selectbox(
        "Backbone",
        backbones,
        index=backbones.index(DEFAULT_BACKBONE),
        key=BUILTIN_BACKBONE,
    )
    weights = weights_col.radio(
        "Weights",
        list(_WEIGHT_LABELS),
        format_func=_WEIGHT_LABELS.__getitem__,
        key=BUILTIN_WEIGHTS,
        horizontal=True,
        help="The from-scratch arms of the data-size lesson start from random weights anyway.",
    )
    if st.button("Create lesson", key="class_lesson_create_builtin", icon=":material/add:"):
        _act(lambda: _create_builtin(actor, picked, dataset_id, backbone, weights))


def _datasets_first_chosen() -> list[DatasetReport]:
    """The datasets the teacher may use, the session's chosen one first."""
    reports = list_datasets(actor=current_actor())
    chosen = ui_state.dataset_id()
    return sorted(reports, key=lambda report: report.dataset_id != chosen)


def _create_builtin(
    actor: Identity | None, builtin_id: str, dataset_id: str, backbone: str, weights: str
) -> str:
    lesson = lesson_from_builtin(
        actor, builtin_id, dataset_id=dataset_id, backbone=backbone, weights=weights
    )
    return (
        f"Lesson **{escape_markdown(lesson.title)}** is ready, closed. Open it when the class "
        "should start."
    )


def _render_from_run(overview: ClassOverview, actor: Identity | None) -> None:
    if not overview.runs:
        st.info(
            "No runs yet: train one, then make a lesson of its settings.", icon=":material/info:"
        )
        return
    by_id = {run.run_id: run for run in overview.runs}
    run_id = st.selectbox(
        "Run",
        list(by_id),
        format_func=lambda run_id: _share_label(by_id[run_id], False),
        key=FROM_RUN_PICK,
    )
    title = st.text_input("Title", key=FROM_RUN_TITLE, max_chars=120)
    question = st.text_area(
        "Question students predict before they run (optional)",
        key=FROM_RUN_QUESTION,
        max_chars=500,
        placeholder="Will more augmentation help here? By how much?",
    )
    choices = st.text_area(
        "Answers to pick from, one per line (optional: empty asks for free text)",
        key=FROM_RUN_CHOICES,
    )
    editable = st.multiselect(
        "Settings students may change (the others are locked to the run's values)",
        list(LESSON_EDITABLE_FIELDS),
        default=[name for name in DEFAULT_EDITABLE if name in LESSON_EDITABLE_FIELDS],
        key=FROM_RUN_EDITABLE,
    )
    if st.button("Create lesson", key="class_lesson_create_run", icon=":material/add:"):
        _act(lambda: _create_from_run(actor, run_id, title, question, choices, editable))


def _create_from_run(
    actor: Identity | None,
    run_id: str,
    title: str,
    question: str,
    choices: str,
    editable: list[str],
) -> str:
    lesson = lesson_from_run(
        actor,
        run_id,
        title=title,
        question=question,
        editable=tuple(editable),
        prediction_choices=tuple(line for line in choices.splitlines() if line.strip()),
    )
    return (
        f"Lesson **{escape_markdown(lesson.title)}** is ready, closed, with run {run_id}'s "
        "settings. Open it when the class should start."
    )


def _render_import(actor: Identity | None) -> None:
    upload = st.file_uploader(
        "A lesson file (from Export)", type=["json"], key=LESSON_UPLOAD, max_upload_size=1
    )
    labels = {report.dataset_id: dataset_label(report) for report in _datasets_first_chosen()}
    dataset_id = st.selectbox(
        "Dataset",
        ["", *labels],
        format_func=lambda key: labels.get(key, "Keep the lesson's own dataset"),
        key=IMPORT_DATASET,
        help="A lesson from another studio names a dataset stored there: pick the same images "
        "here (upload them on the Data page first).",
    )
    if upload is not None and st.button(
        "Import lesson", key="class_lesson_import", icon=":material/upload:"
    ):
        _act(lambda: _import(actor, upload.getvalue(), dataset_id or None))


def _import(actor: Identity | None, data: bytes, dataset_id: str | None) -> str:
    lesson = import_lesson(actor, data, dataset_id=dataset_id)
    return f"Lesson **{escape_markdown(lesson.title)}** is imported, closed. Open it when ready."
