"""The Ray runner's cost: the same small jobs through the local runner and through Ray.

Four runs of the tiny settings (MobileNetV2 from scratch, 32 px, the easy dataset of 3 × 16
images) go through the app's queue and scheduler twice, on two slots each time: once with
`LocalProcessRunner` (cold workers: each job imports TensorFlow) and once with `RayRunner`
on a Ray cluster started on this machine (a head and two one-slot worker nodes, all on
127.0.0.1, each node with its own workspace). For each it reports the wall time from the
first submit until all four completed, and each job's *Start → first point* latency: from
the moment its worker started (``status.json``'s ``started_at``) to the first line of its
``metrics.jsonl`` on the server (the first point of the live chart). ``overhead`` is the
Ray wall time over the local one (goal: at most 1.15). The cluster's own start is reported
apart (``cluster_start_s``): a server connects to a running cluster.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.unit.engine_helpers import tiny_config, tl_home_set
from tests.unit.jobs.ray_support import SLOT, local_cluster, loopback_ray, write_easy_dataset
from tl_core.jobs.queue import get, submit
from tl_core.jobs.runs import read_status, run_path
from tl_core.jobs.scheduler import LocalProcessRunner, Runner, Scheduler

JOBS = 4
SLOTS = 2
GOAL = 1.15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench runner``."""
    parser.add_argument("--jobs", type=int, default=JOBS, help="runs per runner")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--json", action="store_true", help="(the output is always JSON)")


def _first_point(root: Path) -> bool:
    metrics = root / "metrics.jsonl"
    return metrics.is_file() and metrics.stat().st_size > 0


def _through(runner: Runner, home: Path, dataset_id: str, args: argparse.Namespace) -> dict:
    """Train `args.jobs` runs through `runner`; their wall time and first-point latencies."""
    scheduler = Scheduler(home, runner=runner, slots=SLOTS)
    started = time.time()
    with tl_home_set(home):
        run_ids = [
            submit(tiny_config(dataset_id, epochs=args.epochs), home=home) for _ in range(args.jobs)
        ]
    seen: dict[str, float] = {}
    try:
        while not all(get(r, home=home).state in ("completed", "failed") for r in run_ids):
            scheduler.tick()
            for run_id in run_ids:
                if run_id not in seen and _first_point(run_path(run_id, home)):
                    seen[run_id] = time.time()
            time.sleep(0.2)
    finally:
        scheduler.stop()
    wall = time.time() - started
    latencies = []
    for run_id in run_ids:
        status = read_status(run_path(run_id, home))
        if status is not None and status.started_at and run_id in seen:
            latencies.append(round(seen[run_id] - status.started_at, 2))
    states = [get(r, home=home).state for r in run_ids]
    return {
        "wall_s": round(wall, 1),
        "completed": states.count("completed"),
        "start_to_first_point_s": latencies,
        "start_to_first_point_median_s": statistics.median(latencies) if latencies else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the jobs through both runners and compare them."""
    ray = loopback_ray()
    from tl_core.jobs.ray_runner import RayRunner

    with tempfile.TemporaryDirectory(prefix="bench-runner-") as scratch:
        folder = Path(scratch)
        local_home = folder / "local"
        local_home.mkdir()
        dataset_id = write_easy_dataset(local_home, folder)
        local = _through(LocalProcessRunner(local_home, gpus=0), local_home, dataset_id, args)

        ray_home = folder / "server"
        ray_home.mkdir()
        write_easy_dataset(ray_home, folder)
        began = time.time()
        with local_cluster(folder / "nodes", workers=SLOTS):
            cluster_start = time.time() - began
            remote = _through(RayRunner(ray_home, resource=SLOT), ray_home, dataset_id, args)
            addresses = sorted({node["NodeManagerAddress"] for node in ray.nodes()})
    overhead = remote["wall_s"] / local["wall_s"] if local["wall_s"] else None
    return {
        "bench": "runner",
        "jobs": args.jobs,
        "slots": SLOTS,
        "local": local,
        "ray": remote,
        "overhead": round(overhead, 3) if overhead else None,
        "goal": GOAL,
        "within_goal": overhead is not None and overhead <= GOAL,
        "cluster_start_s": round(cluster_start, 1),
        "ray_node_addresses": addresses,
    }
