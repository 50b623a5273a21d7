"""A full disk during a checkpoint, and run files damaged on disk.

A full disk fails the run with a message that says so and what to do, keeps everything
already stored, and a resume after space is freed finishes the run. A corrupt
``status.json`` or a truncated ``metrics.jsonl`` line never breaks a page: the run still
reads as a state the pages explain, and resumes.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

from tests.faults.harness import (
    digest,
    killed_mid_epoch,
    new_run,
    resumed_to_the_end,
)
from tests.unit.engine_helpers import ROOT, cli_env, tl_core_command
from tl_core.data import DatasetReport
from tl_core.jobs.queue import run_shown_state
from tl_core.jobs.runs import list_runs, read_metrics, read_status

_FILE_LIMIT = 4 << 20  # smaller than a MobileNetV2 checkpoint, larger than the run's notes


def _small_disk() -> None:
    # Ignore SIGXFSZ so that a write past the limit fails with EFBIG, as a full disk fails
    # with ENOSPC, instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))


def test_a_full_disk_during_a_checkpoint_fails_clearly_and_resume_finishes_the_run(
    home: Path, dataset: DatasetReport
) -> None:
    root = new_run(home, dataset.dataset_id, epochs=2)
    stored = digest(home / "datasets")

    full = subprocess.run(
        tl_core_command("worker", root.name),
        env=cli_env(home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        preexec_fn=_small_disk,
    )
    status = read_status(root)

    assert full.returncode != 0
    assert status is not None and status.state == "failed"
    assert "space" in (status.error or "").lower() or "large" in (status.error or "").lower()
    assert str(home) not in (status.error or "")
    assert digest(home / "datasets") == stored

    resumed_to_the_end(home, root, 2)


def test_a_corrupt_status_file_reads_as_interrupted_and_the_run_resumes(
    home: Path, dataset: DatasetReport
) -> None:
    root = killed_mid_epoch(home, dataset.dataset_id)
    (root / "status.json").write_text('{"state": "runn')

    assert run_shown_state(root.name, home=home) == "interrupted"
    assert [run.run_id for run in list_runs(home)] == [root.name]

    resumed_to_the_end(home, root, 2)


def test_a_truncated_metrics_line_is_skipped_by_readers_and_dropped_on_resume(
    home: Path, dataset: DatasetReport
) -> None:
    root = killed_mid_epoch(home, dataset.dataset_id)
    with (root / "metrics.jsonl").open("a", encoding="utf-8") as metrics:
        metrics.write('{"epoch": 2, "phase": "train", "loss": 0.')

    epochs, _ = read_metrics(root)
    assert [e["epoch"] for e in epochs] == [1]
    assert run_shown_state(root.name, home=home) == "interrupted"

    resumed_to_the_end(home, root, 2)
