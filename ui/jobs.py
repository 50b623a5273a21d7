"""The training queue as the web server sees it: one scheduler per server process.

The scheduler (`tl_core.jobs.scheduler.Scheduler`) ticks in a background thread: it starts
queued runs in worker subprocesses and settles the ones that ended. Its first tick, when the
server starts, re-attaches the runs whose worker outlived the previous server and removes
what killed writers left half written (`tl_core.workspace.clean_staging`). Pages never
train; they call `tl_core.jobs.queue` (``submit``, ``request_stop``, ``resume``) and read run
files. A second server on the same ``TL_HOME`` gets a passive scheduler that takes over when
the first one goes (the lock in ``TL_HOME/scheduler.lock``).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from tl_core.jobs.queue import list_jobs, shown_state, writer_alive
from tl_core.jobs.runners import scheduler_from_env
from tl_core.jobs.runs import read_status, run_path
from tl_core.jobs.scheduler import Scheduler, warm_workers_enabled

#: Seconds between scheduler ticks: how soon a queued run starts and an ended one settles.
TICK_SECONDS = 1.0


@st.cache_resource(show_spinner=False, on_release=lambda scheduler: scheduler.stop())
def scheduler() -> Scheduler:
    """Return this server's scheduler, started on first use (``app.py`` calls it).

    Clearing Streamlit's resource cache stops it (running workers carry on), so that a
    new one can take over the lock. Jobs start in warm workers (TensorFlow imported before
    the click) unless ``TL_WARM_WORKERS=0``; with ``TL_RUNNER=ray`` they train on the Ray
    cluster at ``RAY_ADDRESS`` instead (`tl_core.jobs.runners`).
    """
    running = scheduler_from_env(warm=warm_workers_enabled())
    running.start_background(interval=TICK_SECONDS)
    return running


@dataclass(frozen=True)
class QueueSummary:
    """How many runs are training now and how many wait."""

    running: int
    queued: int

    def describe(self) -> str:
        """``"1 training · 2 waiting"``, or ``"No run training"``."""
        if not self.running and not self.queued:
            return "No run training"
        parts = [f"{self.running} training"] if self.running else []
        if self.queued:
            parts.append(f"{self.queued} waiting")
        return " · ".join(parts)


def queue_summary() -> QueueSummary:
    """Count the running and queued jobs. Raises `JobError` when the queue is unreadable.

    A running job whose worker has already written its final state (its process is
    ending; the scheduler settles it a moment later) no longer counts as training.
    """
    jobs = list_jobs()
    training = sum(
        job.state == "running"
        and shown_state(
            job.state,
            read_status(root := run_path(job.run_id)),
            writing=writer_alive(root),
        )
        == "running"
        for job in jobs
    )
    return QueueSummary(running=training, queued=sum(job.state == "queued" for job in jobs))


@dataclass(frozen=True)
class ClusterView:
    """Where runs train when the studio drives a Ray cluster (``TL_RUNNER=ray``).

    ``slots`` describes the cluster's free slots (``"1 of 2 cluster slots free"``);
    ``nodes`` maps each training run's id to its node (``"10.0.0.7 (3ca7cab5)"``).
    """

    slots: str
    nodes: dict[str, str]


def cluster_view() -> ClusterView | None:
    """The cluster's free slots and each training run's node; ``None`` when runs train on
    this machine. The sidebar and the Runs page can show it under the queue summary.

    Example:
        >>> view = cluster_view()  # doctest: +SKIP
        >>> view.slots if view else "this machine"  # doctest: +SKIP
        '1 of 2 cluster slots free'
    """
    runner = scheduler().runner
    describe = getattr(runner, "cluster_slots", None)
    if describe is None:
        return None
    return ClusterView(slots=describe().describe(), nodes=runner.training_nodes())
