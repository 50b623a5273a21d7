"""A Ray cluster on this machine for the runner tests: a head and worker nodes, all on
loopback, each worker node with one training slot and its own node-local workspace.

Ray swaps a loopback address for the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before ray is imported; `loopback_ray`
sets it, and `network_address_in_logs` checks that the cluster kept to loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tl_core.jobs.scheduler import Scheduler

LOOPBACK = "127.0.0.1"
#: The custom resource that marks a training slot on the test nodes.
SLOT = "tl_slot"
_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_ray() -> Any:
    """Import ray so that it keeps 127.0.0.1 (skip without ray; fail when ray was imported
    before the switch, rather than wait minutes for a cluster it cannot reach)."""
    os.environ.setdefault(_SWITCH, "0")
    ray = pytest.importorskip("ray")
    from ray._private.services import get_node_ip_address

    assert get_node_ip_address() == LOOPBACK, "ray was imported before its loopback switch"
    return ray


@dataclass
class LocalCluster:
    """A `ray.cluster_utils.Cluster` with worker nodes that have a slot and a scratch
    folder each."""

    cluster: Any
    scratch: Path
    nodes: list[Any] = field(default_factory=list)

    def add_worker(self) -> Any:
        """Start one more worker node (one slot, its own ``TL_RAY_SCRATCH``)."""
        folder = self.scratch / f"node-{len(self.nodes)}"
        node = self.cluster.add_node(
            num_cpus=1,
            node_ip_address=LOOPBACK,
            resources={SLOT: 1},
            env_vars={"TL_RAY_SCRATCH": str(folder)},
        )
        self.nodes.append(node)
        self.cluster.wait_for_nodes()
        return node

    def kill_node_of(self, node_id_start: str) -> None:
        """Kill (no grace) the worker node whose Ray id starts with `node_id_start`."""
        node = next(n for n in self.nodes if n.node_id.startswith(node_id_start))
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)


@contextlib.contextmanager
def local_cluster(scratch: Path, workers: int = 2) -> Iterator[LocalCluster]:
    """A head (no slot) and `workers` worker nodes, with this process connected."""
    ray = loopback_ray()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK, "include_dashboard": False},
    )
    handle = LocalCluster(cluster, scratch)
    try:
        for _ in range(workers):
            handle.add_worker()
        ray.init(address=cluster.address, log_to_driver=False)
        yield handle
    finally:
        ray.shutdown()
        cluster.shutdown()


def network_address() -> str | None:
    """This machine's outward address (no packet is sent), or ``None`` without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return probe.getsockname()[0]
        except OSError:
            return None


def network_address_in_logs(session_dir: Path) -> list[str]:
    """The Ray log files that name this machine's network address (should be none)."""
    address = network_address()
    if address is None or address == LOOPBACK:
        return []
    return [
        path.name
        for path in (session_dir / "logs").rglob("*")
        if path.is_file() and address.encode() in path.read_bytes()
    ]


def write_easy_dataset(home: Path, folder: Path) -> str:
    """Ingest the easy dataset (3 classes x 16 images of 32 px) into `home`; its id."""
    from tests.unit.engine_helpers import tl_home_set, write_easy_archive
    from tl_core.data import ingest_archive

    archive = write_easy_archive(folder / "easy.zip", per_class=16)
    with tl_home_set(home):
        return ingest_archive(archive).dataset_id


def tick_until(
    scheduler: Scheduler, done: Callable[[], bool], *, timeout: float = 240, every: float = 0.5
) -> None:
    """Tick `scheduler` until `done()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the scheduler did not get there in time")
        scheduler.tick()
        time.sleep(every)
