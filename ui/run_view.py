"""One run, live: its state, progress, curves, result, and the Stop and Resume buttons.

Everything shown is read from the run directory (`tl_core.jobs.runs`) and the queue
(`tl_core.jobs.queue`): the worker writes, this module reads, and its buttons only ask the
queue to stop or resume the run. In class mode anyone signed in may watch any run opened
by its URL, but only its owner and the teacher get its buttons (`may_control`); the core
refuses the others anyway.

The page draws the run's header (name, state, Stop or Resume) and its curves. While the run
is queued or running, an ``st.fragment`` between them polls every `POLL_SECONDS` and draws
only the progress (or the queue position): a poll that finds the run's files unchanged
(`tl_core.jobs.runs.run_files_signature`, three ``stat`` calls) reads nothing and redraws
that small part from what it read before. A new epoch line reruns the whole app once, which
draws the curves again; so does a change of the run's state (so the sidebar and the buttons
follow). A run in a final state is drawn once, without polling. On the Train page the
latest earlier runs on its dataset are drawn faintly behind its curves ("ghosts",
`tl_core.analysis.compare.ghost_curves`; a student's own and shared runs only), read at
most every `GHOST_TTL_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from tl_core import TLError, tl_home
from tl_core.analysis.compare import ghost_curves, run_labels
from tl_core.classroom.identity import TEACHER_NAME, Identity
from tl_core.classroom.lessons import OPERATOR_NAME, lesson_of_run, load_lesson, prediction_for
from tl_core.classroom.ownership import may_list_run, run_owner, shared_runs
from tl_core.jobs.fairshare import queue_wait
from tl_core.jobs.progress import describe_duration, training_progress
from tl_core.jobs.queue import (
    list_jobs,
    request_stop,
    resume,
    run_state,
)
from tl_core.jobs.runs import (
    ACTIVE_STATES,
    FINAL_STATES,
    MetricsFollower,
    RunFiles,
    RunStatus,
    RunSummary,
    read_json,
    read_status,
    run_files_signature,
    run_path,
    summarize_run,
)
from tl_core.jobs.scheduler import REATTACHED_NOTE
from tl_core.viz.markdown import escape_markdown
from tl_core.viz.plots import training_curves_figure
from ui import state
from ui.errors import user_errors
from ui.identity import current_actor

#: Seconds between polls of a queued or running run whose files changed within the last
#: `IDLE_AFTER_SECONDS`. Half a second brings a new epoch from the metrics file to the
#: screen within a second (``python -m bench ui``).
POLL_SECONDS = 0.5
#: Seconds between polls of a queued or running run whose files have not changed for
#: `IDLE_AFTER_SECONDS` (a worker loading TensorFlow, a stalled worker, a queued run): a
#: poll that reads nothing still costs the server ~9 ms of CPU on a 2-core machine. A
#: worker writes batch lines at up to 2 Hz during an epoch, so the view is back to
#: `POLL_SECONDS` before the epoch's own line arrives.
IDLE_POLL_SECONDS = 2.0
IDLE_AFTER_SECONDS = 10.0
#: Seconds between full checks of the run's state (its status, the queue, the writer lock)
#: while its files do not change: the queue and the lock change without a write to them.
STATE_CHECK_SECONDS = 2.0
#: Seconds for which the earlier runs drawn behind a training run are reused before
#: they are read again (a run elsewhere may have finished an epoch meanwhile).
GHOST_TTL_SECONDS = 10
#: States from which the Resume button continues the run from its last checkpoint.
RESUMABLE_STATES = frozenset({"stopped", "interrupted"})

STATE_COLORS = {
    "queued": "gray",
    "running": "blue",
    "completed": "green",
    "stopped": "orange",
    "interrupted": "orange",
    "failed": "red",
}
_PHASE_LABELS = {
    "head": "Phase 1 of 2: training the new head, backbone frozen",
    "fine-tune": "Phase 2 of 2: fine-tuning the top blocks at a lower learning rate",
}


def sync_run_with_url() -> None:
    """Keep the shown run and ``?run=`` in step; call before reading `state.run_id`.

    A fresh session (a reload, a shared link) takes its run from the URL. An id there
    that is malformed or names no run gets a friendly warning and is dropped. Within a
    session, the session's run wins and is written back into the URL.
    """
    chosen = state.run_id()
    asked = state.run_param()
    if chosen is not None:
        if asked != chosen:
            state.set_run_id(chosen)
        return
    if asked is None:
        return
    try:
        summarize_run(asked)
    except TLError as exc:
        state.clear_run_id()
        st.warning(
            "The run named in this link cannot be opened. " + escape_markdown(str(exc)),
            icon=":material/link_off:",
        )
        return
    state.set_run_id(asked)


def shown_run_status() -> RunStatus | None:
    """The ``status.json`` of the session's run; ``None`` without a run or a status."""
    run_id = state.run_id()
    if run_id is None:
        return None
    try:
        return read_status(run_path(run_id))
    except TLError:
        return None


def train_step_done() -> bool:
    """Whether the session's run has completed: the wizard's Train step is done."""
    status = shown_run_status()
    return status is not None and status.state == "completed"


def render_run(run_id: str, *, ghosts: bool = False) -> None:
    """Draw the run `run_id`, live while it is queued or running.

    Args:
        run_id: the run.
        ghosts: draw the latest earlier runs on its dataset faintly behind its curves
            (default False; the Train page's yardstick).

    Raises `TLError` when the id is malformed or names no run.

    Example:
        >>> render_run("20261123-131500-a1b2c3", ghosts=True)  # doctest: +SKIP
    """
    summarize_run(run_id)  # raises for an id that names no run
    _freeze_long_lived_objects()
    states = _states(run_id)
    active = states.shown in ACTIVE_STATES or states.job in ACTIVE_STATES or states.writing
    epochs, _ = _follower(run_id, str(tl_home())).read()
    summary = dataclasses.replace(summarize_run(run_id, epochs=epochs), state=states.shown)
    _render_header(run_id, summary, states, controls=may_control(run_id))
    _render_lesson(run_id, summary.owner)
    st.session_state.pop(_seen_key(run_id), None)  # a full run draws everything again
    poll = _poll_seconds(run_id) if active else None
    st.fragment(_live_run, run_every=poll)(run_id, states, _epochs_key(epochs), poll)
    _render_curves(run_id, summary, epochs, with_ghosts=ghosts)


@functools.cache
def _freeze_long_lived_objects() -> None:
    """Exempt the server's long-lived objects from garbage collection, once per process.

    Streamlit calls ``gc.collect(2)`` after every script run, each poll of a fragment
    included (its ``runner.postScriptGC`` option). With streamlit, plotly and pandas
    loaded (~120k objects) one collection took 40-70 ms on a 2-core machine: more than
    all the rest of a poll, ~0.13 of a core per watching tab at two polls a second. Frozen
    objects (modules, registries, caches: they live as long as the process) are skipped,
    and a collection takes well under a millisecond. The first collection keeps garbage
    from being frozen.
    """
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class _States:
    """What decides how a run is drawn; a change makes the page redraw whole.

    ``shown``: the state to show (`tl_core.jobs.queue.shown_state`); ``job`` and ``note``:
    the queue's state and note (``None``: not a queued job); ``writing``: a worker holds the
    run's writer lock; ``stopping``: a stop was asked for (the stop flag is up).
    """

    shown: str
    job: str | None
    note: str | None
    writing: bool
    stopping: bool


def _states(run_id: str) -> _States:
    """Read how the run stands (`tl_core.jobs.queue.run_state`) and whether a stop was asked.

    The worker writes its final state a moment before the scheduler settles the job, so
    both are watched: the buttons follow the queue and the lock, the rest follows the
    run's files.
    """
    now = run_state(run_id)
    stopping = RunFiles(run_path(run_id)).stop_flag.exists()
    return _States(now.shown, now.job, now.note, now.writing, stopping)


def _epochs_key(epochs: list[dict[str, Any]]) -> tuple[int, float | None]:
    """What tells the curves apart: the number of epoch lines and the last one's time (a
    resumed run may rewrite its lines)."""
    return len(epochs), epochs[-1].get("time") if epochs else None


@dataclass(frozen=True)
class _Seen:
    """What the live view read at its last full check, redrawn by polls that find the run's
    files unchanged."""

    signature: tuple[Any, ...]
    checked_at: float
    summary: RunSummary
    epochs: list[dict[str, Any]]
    last_batch: dict[str, Any] | None
    batch_size: int | None


def _seen_key(run_id: str) -> str:
    return f"_run_view_seen_{run_id}"


@dataclass(frozen=True)
class _Activity:
    """The run's files as last seen by this session, and when they last changed."""

    signature: tuple[Any, ...]
    changed_at: float


def _activity_key(run_id: str) -> str:
    return f"_run_view_activity_{run_id}"


def _poll_seconds(run_id: str) -> float:
    """`POLL_SECONDS` while the run's files changed lately (or were never seen), else
    `IDLE_POLL_SECONDS`."""
    activity = st.session_state.get(_activity_key(run_id))
    if not isinstance(activity, _Activity):
        return POLL_SECONDS
    idle = time.monotonic() - activity.changed_at >= IDLE_AFTER_SECONDS
    return IDLE_POLL_SECONDS if idle else POLL_SECONDS


def _follow_activity(run_id: str, signature: tuple[Any, ...], poll: float | None) -> None:
    """Note a change of the run's files; rerun the app when the polling should change pace
    (a fragment's ``run_every`` is set by the run of the page that draws it)."""
    key, now = _activity_key(run_id), time.monotonic()
    activity = st.session_state.get(key)
    if not isinstance(activity, _Activity) or activity.signature != signature:
        st.session_state[key] = _Activity(signature, now)
        if poll is not None and poll != POLL_SECONDS:
            st.rerun(scope="app")
    elif poll == POLL_SECONDS and now - activity.changed_at >= IDLE_AFTER_SECONDS:
        st.rerun(scope="app")


def _render_header(run_id: str, summary: RunSummary, states: _States, *, controls: bool) -> None:
    """Name, state badge, Stop or Resume, and why the run looks unusual; all of it changes
    only with `states`, which reruns the page.

    `controls`: the person may stop and resume this run; otherwise a caption says whose
    run it is and that it is shown to watch only.
    """
    name_col, state_col, action_col = st.columns([6, 1, 1.5], vertical_alignment="center")
    name_col.markdown(f"**Run {summary.run_id}** · {escape_markdown(describe_model(summary))}")
    with state_col:
        st.badge(summary.state, color=STATE_COLORS.get(summary.state, "gray"))
    if not controls:
        st.caption(escape_markdown(watch_only_caption(run_owner(run_id))))
        return
    with action_col:
        _render_action(run_id, states, finishing=summary.state in FINAL_STATES)
    _render_writer_facts(states)


def lesson_line(run_id: str, owner: str | None) -> str | None:
    """The lesson a run belongs to, its arm and the prediction made before it started, in
    Markdown; ``None`` for a run made outside lessons.

    Example:
        >>> lesson_line("20261207-204500-a1b2c3", "Ada")  # doctest: +SKIP
        'Lesson **Feature extraction vs fine-tuning** · arm **Fine-tune top 4** · …'
    """
    label = lesson_of_run(run_id)
    if label is None:
        return None
    try:
        title = load_lesson(label["id"]).title
    except TLError:
        title = label["id"]  # the lesson was deleted; its runs keep its id
    prediction = label.get("prediction")
    if not isinstance(prediction, str):
        prediction = prediction_for(label["id"], owner or OPERATOR_NAME)
    parts = [f"Lesson **{escape_markdown(title)}**"]
    if label.get("variant"):
        parts.append(f"arm **{escape_markdown(str(label['variant']))}**")
    if prediction:
        parts.append(f"predicted: *{escape_markdown(prediction)}*")
    return " · ".join(parts)


def _render_lesson(run_id: str, owner: str | None) -> None:
    """Show the run's lesson and prediction beside its result (nothing outside lessons)."""
    line = lesson_line(run_id, owner)
    if line is not None:
        st.info(line, icon=":material/school:")


def may_control(run_id: str) -> bool:
    """Whether the session's person may stop, resume, delete or export `run_id`: always in
    single-user mode and for the teacher; in class mode a student only for their own runs."""
    actor = current_actor()
    return actor is None or actor.may_act_for(run_owner(run_id))


def owner_name(owner: str | None) -> str:
    """Who a run belongs to, for people: its owner, or the teacher when it records none."""
    return owner or TEACHER_NAME


def watch_only_caption(owner: str | None) -> str:
    """Why someone else's run shows no buttons.

    Example:
        >>> watch_only_caption("Ada")
        "Ada's run — you can watch it; only Ada or the teacher can stop or export it."
    """
    if owner is None:
        return "The teacher's run — you can watch it; only the teacher can stop or export it."
    return f"{owner}'s run — you can watch it; only {owner} or the teacher can stop or export it."


def _live_run(
    run_id: str, drawn: _States, drawn_epochs: tuple[int, float | None], poll: float | None
) -> None:
    """The fragment's body: the progress, the queue position or the result.

    `poll`: the fragment's ``run_every`` (``None`` for a run in a final state). A poll
    reads the run only when its files changed or `STATE_CHECK_SECONDS` passed; otherwise
    it redraws what the last read found (a fragment run that draws nothing would clear
    what it drew before, even in a container made outside the fragment).
    """
    with user_errors():
        seen = _check(run_id, drawn, drawn_epochs, poll)
        if seen.summary.state == "queued":
            _render_queue(run_id)
        elif seen.summary.state == "running":
            _render_progress(seen)
        else:
            _render_result(seen.summary)


def _check(
    run_id: str, drawn: _States, drawn_epochs: tuple[int, float | None], poll: float | None
) -> _Seen:
    """Return what the run looks like now, read again only when its files changed or
    `STATE_CHECK_SECONDS` passed; rerun the app when its state, its curves or the pace of
    polling (`poll`: the fragment's interval) should change."""
    root = run_path(run_id)
    signature = run_files_signature(root)
    _follow_activity(run_id, signature, poll)
    now = time.monotonic()
    seen = st.session_state.get(_seen_key(run_id))
    if (
        isinstance(seen, _Seen)
        and seen.signature == signature
        and now - seen.checked_at < STATE_CHECK_SECONDS
    ):
        return seen
    if _states(run_id) != drawn:
        # Queued → running → final, or a stop asked for: header, polling and sidebar change.
        st.rerun()
    epochs, last_batch = _follower(run_id, str(tl_home())).read()
    if _epochs_key(epochs) != drawn_epochs:
        # A new epoch line: the curves, drawn by the page outside this fragment, follow.
        st.rerun(scope="app")
    config = (read_json(RunFiles(root).config) or {}).get("config") or {}
    summary = dataclasses.replace(summarize_run(run_id, epochs=epochs), state=drawn.shown)
    seen = _Seen(signature, now, summary, epochs, last_batch, config.get("batch_size"))
    st.session_state[_seen_key(run_id)] = seen
    return seen


def _render_curves(
    run_id: str, summary: RunSummary, epochs: list[dict[str, Any]], *, with_ghosts: bool
) -> None:
    """The curves figure (shared between sessions, built once per epoch line)."""
    ghosts = _ghosts(run_id, str(tl_home()), current_actor()) if with_ghosts else []
    count, last_time = _epochs_key(epochs)
    figure = _curves(
        run_id,
        count,
        last_time,
        summary.total_epochs or None,
        tuple((label, len(lines)) for label, lines in ghosts),
        epochs,
        ghosts,
    )
    st.plotly_chart(figure, key=f"training_curves_{run_id}", config={"displayModeBar": False})
    if not epochs and summary.state in ACTIVE_STATES:
        st.caption("The curves get their first points when epoch 1 ends.")


@st.cache_resource(max_entries=64, show_spinner=False)
def _follower(run_id: str, home: str) -> MetricsFollower:
    """One reader of the run's metrics per server (keyed by workspace too, for tests),
    so that each redraw parses only the lines written since the last one."""
    return MetricsFollower(run_path(run_id, Path(home)))


@st.cache_data(ttl=GHOST_TTL_SECONDS, max_entries=32, show_spinner=False)
def _ghosts(
    run_id: str, home: str, viewer: Identity | None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Earlier runs on the run's dataset (`tl_core.analysis.compare.ghost_curves`), read at most
    once per `GHOST_TTL_SECONDS` rather than on every redraw (keyed by workspace too,
    for tests). A student (`viewer`) gets only those the runs lists show them: their own
    and the shared ones."""
    ghosts = ghost_curves(run_id, home=Path(home))
    if viewer is None or viewer.is_teacher or not ghosts:
        return ghosts
    drawn = {label for label, _ in ghosts}
    ids = {label: other for other, label in run_labels(Path(home)).items() if label in drawn}
    shared = shared_runs(home=Path(home))
    return [
        (label, lines)
        for label, lines in ghosts
        if label in ids
        and may_list_run(viewer, run_owner(ids[label], home=Path(home)), ids[label], shared)
    ]


@st.cache_resource(max_entries=32, show_spinner=False)
def _curves(
    run_id: str,
    epoch_count: int,
    last_time: float | None,
    total_epochs: int | None,
    ghost_key: tuple[tuple[str, int], ...],
    _epochs: list[dict[str, Any]],
    _ghosts: list[tuple[str, list[dict[str, Any]]]],
) -> go.Figure:
    """The curves figure, built once per new epoch line rather than on every redraw.

    Keyed by the run, its number of epoch lines and the last one's time (a resumed run
    may rewrite its lines), and by each ghost's label and epoch count; building a figure
    costs more than all the rest of a redraw. The cached figure is shared and only read
    (``st.plotly_chart`` serialises it).
    """
    return training_curves_figure(_epochs, total_epochs, ghosts=_ghosts)


def _render_action(run_id: str, states: _States, *, finishing: bool) -> None:
    """Stop for a queued or running run, or one a worker still writes; Resume for a stopped
    or interrupted one that no worker writes (as the queue and the lock say, since it is
    the queue that acts on them, and a second writer is never started).

    `finishing`: the worker has written its final state and its process is ending (the
    queue settles the job a few seconds later).
    """
    run_state, stopping = states.job or states.shown, states.stopping
    if run_state in ACTIVE_STATES or states.writing:
        label = "Finishing…" if finishing else "Stopping…" if stopping else "Stop"
        clicked = st.button(
            label,
            key=f"stop_{run_id}",
            icon=":material/stop:",
            disabled=stopping or finishing,
            width="stretch",
            help="Stops after the current batch and keeps the last finished epoch.",
        )
        if clicked:
            with user_errors():
                request_stop(run_id, actor=current_actor())
                st.rerun()
    elif run_state in RESUMABLE_STATES and st.button(
        "Resume",
        key=f"resume_{run_id}",
        icon=":material/play_arrow:",
        width="stretch",
        help="Queues the run again; it continues from its last checkpoint.",
    ):
        with user_errors():
            resume(run_id, actor=current_actor())
            st.rerun()


def _render_writer_facts(states: _States) -> None:
    """Say why a run looks unusual: a worker the queue did not start still writes it (a
    second one is refused), or its worker outlived a server restart and was re-attached."""
    if states.writing and states.job not in ACTIVE_STATES and states.job is not None:
        st.info(
            "A worker process from before a server restart (or a command-line run) is "
            "still training this run, so it cannot be resumed now: a second worker would "
            "overwrite its checkpoints. Wait for it or stop it; Resume comes back when it ends.",
            icon=":material/lock:",
        )
    elif states.job == "queued" and states.writing:
        st.info(
            "Waiting: a worker process from before is still writing this run. It starts "
            "when that process ends; wait for it or stop it.",
            icon=":material/lock:",
        )
    elif states.job == "running" and states.note == REATTACHED_NOTE:
        st.caption("Re-attached after a server restart: the run's worker kept training meanwhile.")


def describe_model(summary: RunSummary) -> str:
    """``"mobilenet_v2 · from scratch · 64 px · 19/19 blocks trainable"``."""
    weights = {"imagenet": "ImageNet weights", "none": "from scratch"}.get(
        summary.weights or "", "weights from a file"
    )
    parts = [summary.backbone or "unknown backbone", weights]
    if summary.image_size:
        parts.append(f"{summary.image_size} px")
    if summary.freeze_summary:
        parts.append(summary.freeze_summary)
    return " · ".join(parts)


def _render_queue(run_id: str) -> None:
    """Where the queued run stands (`tl_core.jobs.fairshare.queue_wait`) and how long it
    should wait."""
    wait = queue_wait(run_id)
    training = any(job.state == "running" for job in list_jobs())
    if wait is None:
        st.info("Waiting for the scheduler…", icon=":material/hourglass_empty:")
    elif training or wait.ahead:
        st.info(
            f"{queue_words(wait.position, wait.wait_s)}. It starts on its own when a slot "
            "is free; you can leave this page.",
            icon=":material/hourglass_empty:",
        )
    else:
        st.info("Starting in a moment…", icon=":material/hourglass_empty:")


def queue_words(position: int, wait_s: float | None) -> str:
    """A queued run's place and expected wait, for people.

    `wait_s` is ``None`` while the teacher has paused the class.

    Example:
        >>> queue_words(3, 240.0)
        '3rd in the queue · about 4 min to wait'
    """
    place = f"{ordinal(position)} in the queue"
    if wait_s is None:
        return f"{place} · the teacher has paused the class, so it waits until they resume it"
    if wait_s < 60:
        return f"{place} · less than a minute to wait"
    # An estimate: whole minutes (or hours and minutes) say as much as it knows.
    return f"{place} · about {describe_duration(round(wait_s / 60) * 60)} to wait"


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, …, ``11th``, ``21st``."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _render_progress(seen: _Seen) -> None:
    summary = seen.summary
    progress = training_progress(
        seen.last_batch, seen.epochs, summary.total_epochs, batch_size=seen.batch_size
    )
    if progress is None:
        st.progress(0.0, text="Preparing: loading TensorFlow and building the model…")
        return
    st.progress(progress.fraction, text=progress.label)
    phase = _PHASE_LABELS.get(progress.phase)
    if phase:
        st.caption(phase)
    if summary.note:
        st.caption(escape_markdown(summary.note))


def _render_result(summary: RunSummary) -> None:
    facts = [f"{summary.epochs_done} of {summary.total_epochs} epochs"]
    if summary.best_val_accuracy is not None:
        facts.insert(
            0,
            f"best validation accuracy **{summary.best_val_accuracy:.1%}** "
            f"(epoch {summary.best_epoch})",
        )
    duration = summary.duration()
    if duration is not None:
        facts.append(f"took {describe_duration(duration)}")
    line = " · ".join(facts)
    if summary.state == "completed":
        st.success(f"Finished: {line}.", icon=":material/check_circle:")
    elif summary.state == "stopped":
        st.info(
            f"Stopped: {line}. Resume continues from the last finished epoch.",
            icon=":material/stop_circle:",
        )
    elif summary.state == "interrupted":
        st.warning(
            escape_markdown(summary.error or "The worker ended before the run finished."),
            icon=":material/warning:",
        )
        st.caption(line)
    else:
        st.error(
            escape_markdown(summary.error or "Training failed; the run's log.txt says why."),
            icon=":material/error:",
        )
        st.caption(line)
    if summary.note:
        st.caption(escape_markdown(summary.note))
