"""The Ray runner on a cluster of three Ray nodes on this machine, all on loopback.

One cluster serves the module: a head and two worker nodes with one training slot each
and their own node-local workspaces. Jobs go through the app's queue and scheduler
(`submit`, `Scheduler.tick`, `request_stop`, `resume`); the server's run folders are
checked as a user would find them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.engine_helpers import epoch_lines, run_tl_core, tiny_config, tl_home_set
from tests.unit.jobs.ray_support import (
    LOOPBACK,
    SLOT,
    LocalCluster,
    local_cluster,
    loopback_ray,
    network_address_in_logs,
    tick_until,
    write_easy_dataset,
)
from tl_core.jobs.queue import get, request_stop, resume, submit
from tl_core.jobs.runs import read_status, run_path
from tl_core.jobs.scheduler import Scheduler

ray = loopback_ray()

from tl_core.jobs.ray_runner import RayRunner  # noqa: E402  (after ray's loopback switch)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: Epochs of a run a node dies under, and of a run stopped after a server restart. They
#: train on images (``fast=False``): cached head epochs take milliseconds, so such a run
#: could end before the node dies or the stop arrives.
LONG_EPOCHS = 40
STOPPED_EPOCHS = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The module's cluster: a head and two one-slot worker nodes."""
    with local_cluster(tmp_path_factory.mktemp("ray-nodes")) as handle:
        yield handle


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The server's ``TL_HOME`` with the easy dataset ingested: (home, dataset id)."""
    home = tmp_path_factory.mktemp("server-home")
    return home, write_easy_dataset(home, tmp_path_factory.mktemp("archive"))


def _scheduler(home: Path) -> Scheduler:
    runner = RayRunner(home, resource=SLOT)
    return Scheduler(home, runner=runner, slots=runner.slots)


def _state(home: Path, run_id: str) -> str:
    return get(run_id, home=home).state


def _node_lines(root: Path) -> list[str]:
    return [
        line for line in (root / "log.txt").read_text().splitlines() if "training on node" in line
    ]


def _files(root: Path) -> set[str]:
    """The run folder's files as a user sees them (not TensorBoard's host-named logs)."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "tensorboard"
    }


@pytest.fixture(scope="module")
def two_runs(cluster: LocalCluster, server: tuple[Path, str]) -> list[Path]:
    """Two runs of the tiny settings trained through the queue on the cluster."""
    home, dataset_id = server
    with tl_home_set(home):
        run_ids = [submit(tiny_config(dataset_id, epochs=2), home=home) for _ in range(2)]
        scheduler = _scheduler(home)
        try:
            tick_until(scheduler, lambda: all(_state(home, r) == "completed" for r in run_ids))
        finally:
            scheduler.stop()
    return [run_path(run_id, home) for run_id in run_ids]


def test_the_cluster_asks_for_one_slot_per_job_and_counts_its_slots(
    cluster: LocalCluster, server: tuple[Path, str]
) -> None:
    runner = RayRunner(server[0], resource=SLOT)

    assert runner.slots == 2
    assert runner.cluster_slots().describe() == "2 of 2 cluster slots free"


def test_two_jobs_train_on_two_nodes_and_the_server_gets_every_epoch(
    two_runs: list[Path], cluster: LocalCluster
) -> None:
    nodes = {_node_lines(root)[0].split("node ", 1)[1] for root in two_runs}
    dataset_copies = cluster.scratch.glob("node-*/datasets/*/report.json")

    assert len(nodes) == 2, nodes
    assert sorted(path.parts[-4] for path in dataset_copies) == ["node-0", "node-1"]
    assert not list(cluster.scratch.glob("node-*/runs/*/run.json"))  # nodes cleaned up
    for root in two_runs:
        assert [line["epoch"] for line in epoch_lines(root)] == [1, 2]
        assert read_status(root).state == "completed"
        assert (root / "model.keras").is_file()
        assert (root / "checkpoints" / "last.json").is_file()


def test_a_run_trained_through_ray_has_the_files_of_a_local_run(
    two_runs: list[Path], server: tuple[Path, str]
) -> None:
    home, dataset_id = server
    with tl_home_set(home):
        local_id = submit(tiny_config(dataset_id, epochs=2), home=home)
    local = run_tl_core("worker", local_id, home=home)
    assert local.returncode == 0, local.stderr[-2000:]

    assert _files(two_runs[0]) == _files(run_path(local_id, home))


def test_a_run_trained_through_ray_exports_and_evaluates_like_a_local_one(
    two_runs: list[Path], tmp_path: Path, server: tuple[Path, str]
) -> None:
    home, _ = server
    root = two_runs[0]

    evaluated = run_tl_core("evaluate", str(root), "--json", home=home)
    exported = run_tl_core(
        "export", str(root), "--format", "keras", "--out", str(tmp_path / "m.keras"), home=home
    )

    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert 0.0 <= json.loads(evaluated.stdout)["accuracy"] <= 1.0
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / "m.keras").is_file() and (tmp_path / "labels.json").is_file()


def test_a_killed_node_interrupts_its_run_and_resume_records_every_epoch_once(
    cluster: LocalCluster, server: tuple[Path, str], two_runs: list[Path]
) -> None:
    home, dataset_id = server
    with tl_home_set(home):
        # Trained on images (no cached features): long enough that the node dies mid-run.
        run_id = submit(tiny_config(dataset_id, epochs=LONG_EPOCHS, fast=False), home=home)
        root = run_path(run_id, home)
        scheduler = _scheduler(home)
        try:
            tick_until(scheduler, lambda: (root / "checkpoints" / "last.json").is_file())
            dead = _node_lines(root)[-1].rsplit("(", 1)[1].rstrip(")")
            cluster.kill_node_of(dead)
            tick_until(scheduler, lambda: _state(home, run_id) == "interrupted")
            resume(run_id, home=home)
            tick_until(scheduler, lambda: _state(home, run_id) == "completed")
        finally:
            scheduler.stop()
        cluster.add_worker()  # back to two slots for the next cases

    assert [line["epoch"] for line in epoch_lines(root)] == list(range(1, LONG_EPOCHS + 1))
    assert dead not in _node_lines(root)[-1]
    assert read_status(root).state == "completed"


def test_a_restarted_server_reattaches_to_a_training_run_and_stops_it(
    cluster: LocalCluster, server: tuple[Path, str]
) -> None:
    home, dataset_id = server
    with tl_home_set(home):
        run_id = submit(tiny_config(dataset_id, epochs=STOPPED_EPOCHS, fast=False), home=home)
        root = run_path(run_id, home)
        first = _scheduler(home)
        tick_until(first, lambda: (root / "metrics.jsonl").is_file())
        first.stop()  # the server goes; the run trains on in the cluster

        second = _scheduler(home)
        try:
            second.tick()
            assert "re-attached" in (get(run_id, home=home).note or "")
            request_stop(run_id, home=home)
            tick_until(second, lambda: _state(home, run_id) == "stopped")
        finally:
            second.stop()

    assert read_status(root).state == "stopped"
    assert len(epoch_lines(root)) < STOPPED_EPOCHS


def test_the_cluster_kept_its_traffic_on_loopback(cluster: LocalCluster) -> None:
    session = Path(cluster.cluster.head_node.get_session_dir_path())

    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {LOOPBACK}
    assert network_address_in_logs(session) == []
