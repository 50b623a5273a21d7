"""CLI `compare` and `ladder`: what the Compare page shows and queues, scriptable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.run_support import fabricate_run
from tl_core import cli
from tl_core.analysis.ladder import load_ladder
from tl_core.jobs.queue import list_jobs

OLD, NEW = "20261123-100000-aaaaaa", "20261123-110000-bbbbbb"


@pytest.fixture(autouse=True)
def tl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TL_HOME", str(home))
    return home


def test_compare_lists_only_the_differing_settings_and_raw_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fabricate_run(OLD, state="completed", val_accuracies=(0.5, 0.6), created=1.0)
    fabricate_run(NEW, state="stopped", val_accuracies=(0.7,), created=2.0, config={"epochs": 3})

    assert cli.main(["compare", OLD, NEW, "--json"]) == 0

    doc = json.loads(capsys.readouterr().out)
    assert [run["run_id"] for run in doc["runs"]] == [OLD, NEW]
    assert doc["config_diff"] == {"epochs": {OLD: "10", NEW: "3"}}
    assert doc["metrics"][OLD]["best_val_accuracy"] == 0.6
    assert doc["metrics"][OLD]["best_epoch"] == 2
    assert doc["metrics"][NEW]["state"] == "stopped"


def test_compare_needs_two_runs_and_known_ids(capsys: pytest.CaptureFixture[str]) -> None:
    fabricate_run(OLD, state="completed", val_accuracies=(0.5,))

    assert cli.main(["compare", OLD]) == 2
    assert "at least two" in capsys.readouterr().err
    assert cli.main(["compare", OLD, NEW]) == 2
    assert capsys.readouterr().err.startswith(f"error: There is no run {NEW}")


def test_ladder_queues_one_run_per_depth_from_the_base_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fabricate_run(OLD, state="completed", val_accuracies=(0.5,), total_blocks=5)

    assert cli.main(["ladder", OLD, "--depths", "2,0,1", "--json"]) == 0

    doc = json.loads(capsys.readouterr().out)
    assert doc["depths"] == [0, 1, 2]
    assert "random weights" in doc["caveat"]  # the fabricated run starts from scratch
    queued = {job.run_id: job for job in list_jobs()}
    assert set(doc["run_ids"]) == set(queued)
    assert load_ladder(doc["ladder_id"]).run_ids == tuple(doc["run_ids"])


def test_ladder_refuses_depths_beyond_the_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    fabricate_run(OLD, state="completed", val_accuracies=(0.5,), total_blocks=5)

    assert cli.main(["ladder", OLD, "--depths", "0,9"]) == 2
    assert "between 0 and 5" in capsys.readouterr().err
    assert cli.main(["ladder", OLD, "--depths", "zero"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert list_jobs() == []
