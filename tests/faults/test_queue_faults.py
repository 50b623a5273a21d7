"""The web server killed between claim and spawn, and a second writer knocking at the door.

A run has exactly one writer: the process that holds its folder lock. A server killed after
it claimed a job but before it started the worker must not leave a job that nobody runs,
nor one that two workers run; a second `resume` is refused while the first one trains.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.faults.harness import (
    KILLED,
    digest,
    epochs_once,
    killed_mid_epoch,
    tl_core,
)
from tests.lock_support import lock_held_elsewhere
from tests.unit.engine_helpers import ROOT, cli_env, tiny_config, tl_core_command
from tl_core.data import DatasetReport
from tl_core.errors import JobError
from tl_core.fsutil import lock_held
from tl_core.jobs import queue
from tl_core.jobs.queue import run_shown_state
from tl_core.jobs.runs import read_status, run_path


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_a_server_killed_between_claim_and_spawn_leaves_a_job_that_runs_once(
    home: Path, dataset: DatasetReport
) -> None:
    run_id = queue.submit(tiny_config(dataset.dataset_id, epochs=2), home=home)
    root = run_path(run_id, home)

    killed = tl_core(home, "scheduler", "--once", fault="claimed")
    assert killed.returncode == KILLED
    assert not lock_held(root)
    # The claim reads "running" until the next server finds no worker behind it.
    assert run_shown_state(run_id, home=home) in {"queued", "running", "interrupted"}

    server = subprocess.Popen(
        tl_core_command("scheduler", "--interval", "0.2"),
        env=cli_env(home),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: read_status(root).state == "completed", 240, "the run's completion")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    epochs_once(root, 2)
    assert run_shown_state(run_id, home=home) == "completed"


def test_resume_of_a_run_that_still_has_its_writer_is_refused_and_changes_nothing(
    home: Path, dataset: DatasetReport
) -> None:
    root = killed_mid_epoch(home, dataset.dataset_id)
    before = digest(root)
    with lock_held_elsewhere(root):
        refused = tl_core(home, "resume", str(root))
        try:
            queue.resume(root.name, home=home)
        except JobError as exc:
            queue_refusal = str(exc)
        else:
            queue_refusal = ""

    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in refused.stderr
    assert "writer" in queue_refusal or "training" in queue_refusal
    assert digest(root) == before


def test_two_resumes_at_once_give_one_writer_and_each_epoch_once(
    home: Path, dataset: DatasetReport
) -> None:
    root = killed_mid_epoch(home, dataset.dataset_id)

    resumes = [
        subprocess.Popen(
            tl_core_command("resume", str(root)),
            env=cli_env(home),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=240) for p in resumes)
    errors = [p.stderr.read() for p in resumes if p.stderr is not None]
    for p in resumes:
        assert p.stderr is not None
        p.stderr.close()

    assert codes == [0, 2], errors
    assert read_status(root).state == "completed"
    epochs_once(root, 2)
