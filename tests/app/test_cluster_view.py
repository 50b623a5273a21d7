"""What the sidebar and the Runs page can show about a cluster (`ui.jobs.cluster_view`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.jobs
from tests.app.run_support import fabricate_run
from tests.app.wizard_support import offline_app
from tl_core.jobs.ray_runner import ClusterSlots
from tl_core.jobs.scheduler import LocalProcessRunner, Scheduler

RUN = "20261207-120000-a1b2c3"


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


@pytest.mark.usefixtures("queue")
def test_the_runs_page_and_the_sidebar_show_where_runs_train_on_a_cluster(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    offline_app(monkeypatch, tmp_path)
    fabricate_run(RUN, state="running", val_accuracies=(0.5,))
    view = ui.jobs.ClusterView(slots="1 of 2 cluster slots free", nodes={RUN: "10.0.0.7 (3ca7)"})
    monkeypatch.setattr(ui.jobs, "cluster_view", lambda: view)

    app.switch_page("pages/runs.py")
    app.run()

    table = app.dataframe[0].value
    assert list(table["Node"]) == ["10.0.0.7 (3ca7)"]
    assert any("1 of 2 cluster slots free" in block.value for block in app.sidebar.markdown)
