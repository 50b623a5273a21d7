"""What the sidebar and the Runs page can show about a cluster (`ui.jobs.cluster_view`)."""

from __future__ import annotations

import pytest

import ui.jobs
from tl_core.jobs.ray_runner import ClusterSlots
from tl_core.jobs.scheduler import LocalProcessRunner, Scheduler


class _ClusterRunner(LocalProcessRunner):
    """A runner that answers like `RayRunner` about slots and nodes (no cluster needed)."""

    def cluster_slots(self) -> ClusterSlots:
        return ClusterSlots(total=2, free=1)

    def training_nodes(self) -> dict[str, str]:
        return {"20261207-120000-a1b2c3": "10.0.0.7 (3ca7cab5)"}


def test_runs_on_this_machine_show_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = Scheduler(runner=LocalProcessRunner(gpus=0))
    monkeypatch.setattr(ui.jobs, "scheduler", lambda: scheduler)

    assert ui.jobs.cluster_view() is None


def test_a_cluster_shows_its_free_slots_and_where_each_run_trains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler = Scheduler(runner=_ClusterRunner(gpus=0))
    monkeypatch.setattr(ui.jobs, "scheduler", lambda: scheduler)

    view = ui.jobs.cluster_view()

    assert view is not None
    assert view.slots == "1 of 2 cluster slots free"
    assert view.nodes == {"20261207-120000-a1b2c3": "10.0.0.7 (3ca7cab5)"}
