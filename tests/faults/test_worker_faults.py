"""SIGKILL of the training worker at five points; each run resumes and loses nothing.

The points: mid-epoch (after a batch), mid-checkpoint write (a complete temporary not yet
renamed into place), between two phases, while ``model.keras`` is saved, and during the
export of a background analysis. After each kill the run reads ``interrupted`` (the pages
offer Resume), a resume finishes it, and every epoch appears exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    KILLED,
    digest,
    new_run,
    resumed_to_the_end,
    worker,
)
from tl_core.analysis.background import Analysis, forget_analysis, request_analysis
from tl_core.data import DatasetReport
from tl_core.fsutil import lock_held
from tl_core.jobs.queue import run_shown_state
from tl_core.jobs.runs import read_status
from tl_core.workspace import clean_staging


def _killed_then_resumed(home: Path, root: Path, fault: str, total: int) -> None:
    killed = worker(home, root, fault=fault)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert not lock_held(root)
    assert run_shown_state(root.name, home=home) == "interrupted"

    resumed_to_the_end(home, root, total)
    assert read_status(root).state == "completed"
    assert root.joinpath("model.keras").is_file()


def test_a_worker_killed_mid_epoch_resumes_and_records_each_epoch_once(
    home: Path, dataset: DatasetReport
) -> None:
    root = new_run(home, dataset.dataset_id, epochs=2)

    _killed_then_resumed(home, root, "batch@4", total=2)


def test_a_worker_killed_while_writing_a_checkpoint_keeps_the_committed_one(
    home: Path, dataset: DatasetReport
) -> None:
    root = new_run(home, dataset.dataset_id, epochs=3)

    _killed_then_resumed(home, root, "before-rename:epoch-*.npz@2", total=3)


def test_a_worker_killed_between_phases_resumes_into_the_second_phase(
    home: Path, dataset: DatasetReport, backbone_weights: Path
) -> None:
    root = new_run(
        home,
        dataset.dataset_id,
        weights=str(backbone_weights),
        two_phase=True,
        epochs=1,
        fine_tune_epochs=1,
        fine_tune_blocks=2,
    )

    _killed_then_resumed(home, root, "phase-end@1", total=2)


def test_a_worker_killed_while_saving_the_model_finishes_it_on_resume(
    home: Path, dataset: DatasetReport
) -> None:
    root = new_run(home, dataset.dataset_id, epochs=1)

    _killed_then_resumed(home, root, "before-rename:model.keras", total=1)


def _settle(root: Path, args: list[str], timeout: float = 180) -> Analysis:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        analysis = request_analysis(root, args, start=False)
        if analysis.state != "running":
            return analysis
        time.sleep(0.3)
    raise AssertionError(f"the analysis {args[0]} did not settle in {timeout} s")


def test_a_background_export_killed_midway_reads_as_failed_and_leaves_the_run_intact(
    home: Path, dataset: DatasetReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = new_run(home, dataset.dataset_id, epochs=1)
    assert worker(home, root).returncode == 0
    before = digest(root, skip=("analysis", "export"))
    export = root / "export" / "model.tflite"
    args = ["export", str(root), "--format", "tflite", "--out", str(export)]

    monkeypatch.setenv("TL_FAULT_AT", "before-rename:*.tflite")
    request_analysis(root, args)
    killed = _settle(root, args)
    monkeypatch.delenv("TL_FAULT_AT")
    removed = clean_staging(home)
    forget_analysis(root, args)
    request_analysis(root, args)
    again = _settle(root, args)

    assert killed.state == "failed" and killed.internal
    assert "/" not in (killed.error or "")
    assert any(".tmp." in name for name in removed)
    assert again.state == "ready", again.error
    assert digest(root, skip=("analysis", "export")) == before
    assert sorted(p.name for p in export.parent.iterdir()) == ["labels.json", "model.tflite"]
