"""The data-size curve: its configs, its record on disk, and its results from run folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tl_core.analysis.datasize import (
    DEFAULT_FRACTIONS,
    DataSize,
    DataSizeRun,
    datasize_configs,
    datasize_results,
    datasizes_dir,
    list_datasizes,
    load_datasize,
    submit_datasize,
)
from tl_core.classroom import Identity, update_class_settings
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied, ConfigError, JobError
from tl_core.jobs import queue as jobs
from tl_core.jobs.queue import list_jobs
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    append_jsonl,
    read_json,
    run_path,
    write_json_atomic,
    write_status,
)

BASE = RunConfig(
    dataset_id="0123456789ab",
    weights="imagenet",
    freeze="fine-tune",
    unfreeze_last=2,
    epochs=4,
    seed=7,
)
BASE_RUN = "20261120-090000-aaaaaa"


def _changed(config: RunConfig, base: RunConfig) -> dict[str, Any]:
    before, after = dataclasses.asdict(base), dataclasses.asdict(config)
    return {name: after[name] for name in after if after[name] != before[name]}


def test_each_fraction_gets_a_pretrained_run_and_a_scratch_run() -> None:
    points = datasize_configs(BASE, [0.1, 0.5, 1.0])

    assert [(fraction, arm) for fraction, arm, _ in points] == [
        (0.1, "pretrained"),
        (0.1, "scratch"),
        (0.5, "pretrained"),
        (0.5, "scratch"),
        (1.0, "pretrained"),
        (1.0, "scratch"),
    ]
    pretrained = [config for _, arm, config in points if arm == "pretrained"]
    assert [_changed(config, BASE) for config in pretrained] == [
        {"train_fraction": 0.1},
        {"train_fraction": 0.5},
        {},
    ]


def test_the_scratch_runs_train_every_block_from_random_weights_on_images() -> None:
    _, _, scratch = datasize_configs(BASE, [0.25])[1]

    assert _changed(scratch, BASE) == {
        "weights": "none",
        "freeze": "full",
        "fast": False,
        "train_fraction": 0.25,
    }


def test_without_scratch_only_pretrained_runs_are_made() -> None:
    points = datasize_configs(BASE, DEFAULT_FRACTIONS, compare_scratch=False)

    assert [arm for _, arm, _ in points] == ["pretrained"] * 4
    assert [config.train_fraction for _, _, config in points] == [0.1, 0.25, 0.5, 1.0]


def test_a_base_from_scratch_gets_imagenet_weights_for_its_pretrained_runs() -> None:
    base = BASE.with_changes(weights="none", freeze="full", fast=False)

    (_, _, pretrained), (_, _, scratch) = datasize_configs(base, [1.0])

    assert pretrained.weights == "imagenet"
    assert scratch.weights == "none"


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ([], "at least one share"),
        ([0.0, 0.5], "greater than 0 and at most 1"),
        ([0.5, 1.5], "greater than 0 and at most 1"),
        ([0.5, float("nan")], "greater than 0 and at most 1"),
        ([True], "greater than 0 and at most 1"),
        (["0.5"], "greater than 0 and at most 1"),
        ([0.5, 0.5], "distinct"),
        ([1.0, 0.5], "sorted from small to large"),
    ],
)
def test_bad_fractions_are_refused(fractions: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        datasize_configs(BASE, fractions)


def test_a_run_config_refuses_a_training_fraction_out_of_range() -> None:
    with pytest.raises(ConfigError, match="Received: train_fraction=0"):
        BASE.with_changes(train_fraction=0)
    assert RunConfig.from_json(BASE.to_json()).train_fraction == 1.0


def test_submit_queues_every_run_and_records_the_curve(tl_home: Path) -> None:
    curve = submit_datasize(BASE, [0.25, 1.0], base_run_id=BASE_RUN)

    queued = list_jobs()
    assert [job.run_id for job in queued] == list(curve.run_ids)
    assert {job.state for job in queued} == {"queued"}
    configs = [
        RunConfig.from_json(read_json(RunFiles(run_path(run_id)).config)["config"])
        for run_id in curve.run_ids
    ]
    assert configs == [config for _, _, config in datasize_configs(BASE, [0.25, 1.0])]
    record = json.loads((tl_home / "datasizes" / f"{curve.datasize_id}.json").read_text())
    assert record == {
        "datasize_id": curve.datasize_id,
        "created_at": curve.created_at,
        "base_run_id": BASE_RUN,
        "fractions": [0.25, 1.0],
        "runs": [
            {"fraction": 0.25, "weights": "pretrained", "run_id": curve.run_ids[0]},
            {"fraction": 0.25, "weights": "scratch", "run_id": curve.run_ids[1]},
            {"fraction": 1.0, "weights": "pretrained", "run_id": curve.run_ids[2]},
            {"fraction": 1.0, "weights": "scratch", "run_id": curve.run_ids[3]},
        ],
    }
    assert load_datasize(curve.datasize_id) == curve
    assert not list(datasizes_dir().glob(".*")), "no temporary file is left behind"


def test_the_default_curve_queues_eight_runs() -> None:
    curve = submit_datasize(BASE)

    assert curve.fractions == DEFAULT_FRACTIONS
    assert len(list_jobs()) == 8


def test_bad_fractions_queue_nothing() -> None:
    with pytest.raises(ConfigError):
        submit_datasize(BASE, [0.5, 0.25])

    assert list_jobs() == []
    assert list_datasizes() == []


def test_a_students_curve_beyond_the_class_limit_queues_nothing() -> None:
    ada = Identity.student("Ada")
    update_class_settings(Identity.teacher(), max_active_runs=3)
    jobs.submit(BASE, actor=ada)

    with pytest.raises(AccessDenied, match="queues 4 runs, and you have 1 waiting"):
        submit_datasize(BASE, [0.5, 1.0], actor=ada)

    assert len(list_jobs()) == 1
    curve = submit_datasize(BASE, [0.5, 1.0], compare_scratch=False, actor=ada)
    assert len(curve.runs) == 2


def test_a_queue_failure_part_way_records_the_runs_queued_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_submit = jobs.submit
    calls = []

    def flaky_submit(config: RunConfig, **kwargs: Any) -> str:
        calls.append(config)
        if len(calls) == 3:
            raise JobError("The job queue stayed busy.")
        return real_submit(config, **kwargs)

    monkeypatch.setattr("tl_core.analysis.datasize.submit", flaky_submit)

    with pytest.raises(JobError, match="stayed busy"):
        submit_datasize(BASE, [0.5, 1.0])

    (curve,) = list_datasizes()
    assert curve.fractions == (0.5,)
    assert curve.run_ids == tuple(job.run_id for job in list_jobs())


def test_curves_are_listed_newest_first_and_broken_files_are_skipped() -> None:
    older = submit_datasize(BASE, [1.0], compare_scratch=False)
    newer = submit_datasize(BASE, [0.5], compare_scratch=False)
    write_json_atomic(datasizes_dir() / "20261123-131500-abcdef.json", {"runs": "nope"})
    (datasizes_dir() / "notes.json").write_text("{}")

    assert [curve.datasize_id for curve in list_datasizes()] == [
        newer.datasize_id,
        older.datasize_id,
    ]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261123-131500-abcdef"])
def test_a_curve_id_that_names_no_curve_is_a_job_error(bad: str) -> None:
    with pytest.raises(JobError, match="Pick a curve"):
        load_datasize(bad)


def test_results_read_each_runs_state_accuracy_and_training_images() -> None:
    curve = submit_datasize(BASE, [0.5], base_run_id=BASE_RUN)
    pretrained, scratch = (run_path(run_id) for run_id in curve.run_ids)
    write_status(pretrained, RunStatus(state="completed", epoch=2))
    for accuracy in (0.6, 0.9):
        append_jsonl(RunFiles(pretrained).metrics, {"epoch": 1, "val_accuracy": accuracy})
    doc = read_json(RunFiles(pretrained).config)
    write_json_atomic(RunFiles(pretrained).config, doc | {"num_train": 12})
    write_status(scratch, RunStatus(state="running"))

    rows = datasize_results(curve)

    assert rows == [
        {
            "fraction": 0.5,
            "weights": "pretrained",
            "run_id": curve.run_ids[0],
            "state": "completed",
            "best_val_accuracy": 0.9,
            "train_images": 12,
        },
        {
            "fraction": 0.5,
            "weights": "scratch",
            "run_id": curve.run_ids[1],
            "state": "running",
            "best_val_accuracy": None,
            "train_images": None,
        },
    ]


def test_a_run_whose_folder_is_gone_is_missing() -> None:
    curve = DataSize(
        "20261123-131500-abcdef",
        1.0,
        None,
        (1.0,),
        (DataSizeRun(1.0, "pretrained", "20261123-131500-a1b2c3"),),
    )

    assert datasize_results(curve)[0]["state"] == "missing"
