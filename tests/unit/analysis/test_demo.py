"""The demo in one command: two finished runs on the sample and their report, ready."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.analysis.report_helpers import fabricate_runs, sample_dataset
from tl_core import cli
from tl_core.analysis.demo import (
    DEMO_BACKBONE,
    FINE_TUNE_BLOCKS,
    Demo,
    demo_configs,
    prepare_demo,
)
from tl_core.jobs.runs import RunFiles, read_json, read_status, run_path, write_json_atomic


def test_the_demo_compares_feature_extraction_with_fine_tuning_the_top_blocks() -> None:
    features, tuned = demo_configs("0123456789ab", "/w/backbone.weights.h5", 32)

    assert (features.freeze, tuned.freeze, tuned.unfreeze_last) == (
        "feature-extraction",
        "fine-tune",
        FINE_TUNE_BLOCKS,
    )
    for config in (features, tuned):
        assert (config.backbone, config.weights, config.image_size) == (
            DEMO_BACKBONE,
            "/w/backbone.weights.h5",
            32,
        )
        assert config.fast and config.augmentation == ()


def test_a_prepared_demo_is_returned_without_training_again(tmp_path: Path, tl_home: Path) -> None:
    ids = fabricate_runs(sample_dataset(tmp_path), (0.8, 0.9))
    report = tl_home / "demo" / "report.html"
    report.parent.mkdir()
    report.write_text("<!DOCTYPE html>", encoding="utf-8")
    recorded = Demo(ids, report, "imagenet", "0123456789ab")
    write_json_atomic(tl_home / "demo" / "demo.json", recorded.to_json())
    steps: list[str] = []

    assert prepare_demo(progress=steps.append) == recorded
    assert steps == ["a finished demo is already prepared"]


def test_a_recorded_demo_whose_report_is_gone_is_not_reused(tmp_path: Path, tl_home: Path) -> None:
    from tl_core.analysis.demo import _recorded_demo

    ids = fabricate_runs(sample_dataset(tmp_path), (0.8, 0.9))
    (tl_home / "demo").mkdir()
    gone = Demo(ids, tl_home / "demo" / "report.html", "imagenet", "0123456789ab")
    write_json_atomic(tl_home / "demo" / "demo.json", gone.to_json())

    assert _recorded_demo() is None


@pytest.mark.slow
def test_the_demo_command_trains_both_runs_and_writes_a_report_that_names_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["demo", "--json"]) == 0
    demo = json.loads(capsys.readouterr().out)

    assert len(demo["run_ids"]) == 2
    for run_id in demo["run_ids"]:
        status = read_status(run_path(run_id))
        assert status is not None and status.state == "completed"
    configs = [read_json(RunFiles(run_path(r)).config)["config"] for r in demo["run_ids"]]
    assert [c["freeze"] for c in configs] == ["feature-extraction", "fine-tune"]
    assert configs[0]["weights"] == configs[1]["weights"] != "none"
    page = Path(demo["report"]).read_text(encoding="utf-8")
    assert "validation accuracy from" in page and "Grad-CAM: where each run looked" in page

    out = tmp_path / "again.html"
    assert cli.main(["report", *demo["run_ids"], "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["report"] == str(out.resolve()) and written["bytes"] == out.stat().st_size
