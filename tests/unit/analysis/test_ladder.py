"""The freeze-depth ladder: its configs, its record on disk, and its results from run folders."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tl_core.analysis.ladder import (
    Ladder,
    ladder_base,
    ladder_caveat,
    ladder_configs,
    ladder_results,
    ladders_dir,
    list_ladders,
    load_ladder,
    submit_ladder,
    suggest_depths,
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
    prepare_run,
    read_json,
    run_path,
    write_json_atomic,
    write_status,
)

BASE = RunConfig(
    dataset_id="0123456789ab",
    weights="imagenet",
    freeze="custom",
    trainable_blocks=("block_16", "top"),
    epochs=4,
    learning_rate=3e-4,
    seed=7,
)
BASE_RUN = "20261120-090000-aaaaaa"


def _changed(config: RunConfig, base: RunConfig) -> dict[str, Any]:
    before, after = dataclasses.asdict(base), dataclasses.asdict(config)
    return {name: after[name] for name in after if after[name] != before[name]}


@pytest.mark.parametrize(
    ("num_blocks", "expected"),
    [
        (19, [0, 1, 2, 4, 19]),
        (63, [0, 1, 2, 4, 63]),
        (5, [0, 1, 2, 4, 5]),
        (4, [0, 1, 2, 4]),
        (3, [0, 1, 2, 3]),
        (1, [0, 1]),
        (0, [0]),
        (None, [0, 1, 2, 4, 8]),
    ],
)
def test_suggested_depths_double_up_to_the_whole_backbone(
    num_blocks: int | None, expected: list[int]
) -> None:
    assert suggest_depths(num_blocks) == expected


def test_suggested_depths_respect_the_run_budget() -> None:
    assert suggest_depths(19, max_runs=3) == [0, 1, 19]


def test_ladder_configs_differ_from_the_base_only_in_how_many_top_blocks_train() -> None:
    configs = ladder_configs(BASE, [0, 1, 4], num_blocks=19)

    assert [_changed(config, BASE) for config in configs] == [
        {"freeze": "fine-tune", "unfreeze_last": depth, "trainable_blocks": ()}
        for depth in (0, 1, 4)
    ]
    assert {name for a in configs for name in _changed(a, configs[0])} == {"unfreeze_last"}


@pytest.mark.parametrize(
    ("depths", "message"),
    [
        ([], "Expected `depths` to hold at least one depth. Received: depths=[]"),
        ([0, 1.5], "Expected `depths` to be whole numbers of blocks. Received: depths=[0, 1.5]"),
        ([0, True], "Expected `depths` to be whole numbers of blocks. Received: depths=[0, True]"),
        ([1, 1], "Expected `depths` to be distinct. Received: depths=[1, 1]"),
        ([2, 1], "Expected `depths` to be sorted from shallow to deep. Received: depths=[2, 1]"),
        (
            [0, 20],
            "Expected every depth to be between 0 and 19 (the backbone's blocks). "
            "Received: depths=[0, 20]",
        ),
        ([-1, 2], "Expected every depth to be between 0 and 19"),
    ],
)
def test_bad_depths_are_refused(depths: list[Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ladder_configs(BASE, depths, num_blocks=19)

    assert str(info.value).startswith(message)


def test_without_a_block_count_only_the_config_limit_applies() -> None:
    assert ladder_configs(BASE, [0, 500])[1].unfreeze_last == 500
    with pytest.raises(
        ConfigError, match=re.escape("between 0 and 1000. Received: depths=[0, 1001]")
    ):
        ladder_configs(BASE, [0, 1001])


def test_a_two_phase_base_is_refused() -> None:
    with pytest.raises(ConfigError, match="Expected `two_phase` to be False for a freeze-depth"):
        ladder_configs(BASE.with_changes(two_phase=True), [0, 1])


def test_a_base_from_scratch_is_accepted_with_a_caveat() -> None:
    scratch = BASE.with_changes(weights="none")

    assert [c.unfreeze_last for c in ladder_configs(scratch, [0, 1])] == [0, 1]
    assert "random weights" in ladder_caveat(scratch)
    assert ladder_caveat(BASE) is None


def test_submit_ladder_queues_one_job_per_depth_and_records_the_ladder(tl_home: Path) -> None:
    ladder = submit_ladder(BASE, [0, 2, 4], base_run_id=BASE_RUN, num_blocks=19)

    queued = list_jobs()
    assert [job.run_id for job in queued] == list(ladder.run_ids)
    assert {job.state for job in queued} == {"queued"}
    configs = [
        RunConfig.from_json(read_json(RunFiles(run_path(run_id)).config)["config"])
        for run_id in ladder.run_ids
    ]
    assert configs == ladder_configs(BASE, [0, 2, 4])
    record = json.loads((tl_home / "ladders" / f"{ladder.ladder_id}.json").read_text())
    assert record == {
        "ladder_id": ladder.ladder_id,
        "created_at": ladder.created_at,
        "base_run_id": BASE_RUN,
        "depths": [0, 2, 4],
        "run_ids": list(ladder.run_ids),
    }
    assert load_ladder(ladder.ladder_id) == ladder
    assert not list(ladders_dir().glob(".*")), "no temporary file is left behind"


def test_bad_depths_queue_nothing() -> None:
    with pytest.raises(ConfigError):
        submit_ladder(BASE, [0, 2, 2])

    assert list_jobs() == []
    assert list_ladders() == []


def test_a_students_ladder_beyond_the_class_limit_queues_nothing() -> None:
    ada = Identity.student("Ada")
    update_class_settings(Identity.teacher(), max_active_runs=3)
    jobs.submit(BASE, actor=ada)

    with pytest.raises(AccessDenied, match="Pick at most 2 depths"):
        submit_ladder(BASE, [0, 1, 2], actor=ada)

    assert len(list_jobs()) == 1
    assert len(submit_ladder(BASE, [0, 1], actor=ada).run_ids) == 2


def test_a_queue_failure_part_way_records_the_runs_queued_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_submit = jobs.submit
    calls = []

    def flaky_submit(config: RunConfig, **kwargs: Any) -> str:
        calls.append(config)
        if len(calls) == 2:
            raise JobError("The job queue stayed busy.")
        return real_submit(config, **kwargs)

    monkeypatch.setattr("tl_core.analysis.ladder.submit", flaky_submit)

    with pytest.raises(JobError, match="stayed busy"):
        submit_ladder(BASE, [0, 1, 2])

    (ladder,) = list_ladders()
    assert ladder.depths == (0,)
    assert ladder.run_ids == tuple(job.run_id for job in list_jobs())


def test_ladders_are_listed_newest_first_and_broken_files_are_skipped(tl_home: Path) -> None:
    first = submit_ladder(BASE, [0, 1])
    second = submit_ladder(BASE, [1, 2])
    (tl_home / "ladders" / "20261123-131500-abcdef.json").write_text("{not json")
    (tl_home / "ladders" / "notes.json").write_text("{}")
    write_json_atomic(
        tl_home / "ladders" / "20261123-131500-fedcba.json",
        {"ladder_id": "20261123-131500-fedcba", "created_at": 1.0, "depths": [0], "run_ids": []},
    )

    assert list_ladders() == [second, first]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261123-131500-a1b2c3"])
def test_a_ladder_id_that_names_no_ladder_is_a_job_error(bad: str) -> None:
    with pytest.raises(JobError, match="Compare page"):
        load_ladder(bad)


def test_the_base_run_gives_its_config_and_block_count() -> None:
    root = run_path(BASE_RUN)
    prepare_run(root, BASE, run_id=BASE_RUN)

    assert ladder_base(BASE_RUN).num_blocks is None, "the model is not built yet"

    doc = read_json(RunFiles(root).config) | {"blocks": [{"name": f"b{i}"} for i in range(19)]}
    write_json_atomic(RunFiles(root).config, doc)
    base = ladder_base(BASE_RUN)

    assert (base.run_id, base.config, base.num_blocks) == (BASE_RUN, BASE, 19)
    with pytest.raises(JobError, match="There is no run"):
        ladder_base("20261123-131500-a1b2c3")


def test_ladder_results_read_each_rungs_state_and_metrics() -> None:
    ladder = submit_ladder(BASE, [0, 2, 4])
    finished, training, _ = (run_path(run_id) for run_id in ladder.run_ids)
    write_status(finished, RunStatus(state="completed", epoch=3))
    for seconds, accuracy in ((9.0, 0.5), (3.0, 0.8), (3.2, 0.7)):
        append_jsonl(
            RunFiles(finished).metrics,
            {"epoch": 1, "val_accuracy": accuracy, "seconds": seconds},
        )
    append_jsonl(RunFiles(finished).metrics, {"type": "batch", "epoch": 4, "seconds": 99.0})
    write_status(training, RunStatus(state="running"))

    rows = ladder_results(ladder)

    assert rows == [
        {
            "depth": 0,
            "run_id": ladder.run_ids[0],
            "state": "completed",
            "best_val_accuracy": 0.8,
            "seconds_per_epoch": 3.2,
        },
        {
            "depth": 2,
            "run_id": ladder.run_ids[1],
            "state": "running",
            "best_val_accuracy": None,
            "seconds_per_epoch": None,
        },
        {
            "depth": 4,
            "run_id": ladder.run_ids[2],
            "state": "queued",
            "best_val_accuracy": None,
            "seconds_per_epoch": None,
        },
    ]


def test_a_rung_whose_run_folder_is_gone_is_missing() -> None:
    ladder = Ladder("20261123-131500-abcdef", 1.0, None, (0,), ("20261123-131500-a1b2c3",))

    assert ladder_results(ladder)[0]["state"] == "missing"


def test_a_fast_base_keeps_caching_on_every_rung_that_leaves_bottom_blocks_frozen() -> None:
    base = RunConfig(dataset_id="0123456789ab", fast=True)

    configs = ladder_configs(base, [0, 2], num_blocks=19)

    assert [config.fast for config in configs] == [True, True]
    for config in configs:
        config.validate_for(blocks=[f"b{i}" for i in range(19)])
