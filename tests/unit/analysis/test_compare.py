"""Comparing runs from their folders: labels, the settings that differ, results, ghosts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tl_core.analysis.compare import (
    config_diff,
    default_selection,
    describe_freeze,
    ghost_curves,
    load_compared_runs,
    median_epoch_seconds,
    metrics_table,
    run_label,
    run_labels,
    run_numbers,
)
from tl_core.config import RunConfig
from tl_core.errors import JobError
from tl_core.jobs.runs import (
    RunFiles,
    RunSummary,
    append_jsonl,
    prepare_run,
    read_json,
    run_path,
    write_json_atomic,
)

DATASET = "0123456789ab"
OTHER_DATASET = "fedcba987654"


def _run(
    run_id: str,
    *,
    created: float,
    val_accuracies: tuple[float, ...] = (),
    **config: Any,
) -> Path:
    """A run folder as `prepare_run` leaves it, created at `created`, with epoch lines."""
    root = run_path(run_id)
    prepare_run(root, RunConfig(**({"dataset_id": DATASET} | config)), run_id=run_id)
    write_json_atomic(
        RunFiles(root).config, read_json(RunFiles(root).config) | {"created": created}
    )
    for epoch, accuracy in enumerate(val_accuracies, start=1):
        append_jsonl(
            RunFiles(root).metrics,
            {"epoch": epoch, "val_accuracy": accuracy, "val_loss": 1.0 / epoch, "seconds": 2.0},
        )
    return root


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, "feature extraction"),
        ({"freeze": "fine-tune", "unfreeze_last": 3}, "fine-tune top 3"),
        ({"freeze": "fine-tune", "unfreeze_last": 0}, "head only"),
        ({"freeze": "full", "weights": "none"}, "from scratch"),
        ({"freeze": "full"}, "fine-tune all"),
        ({"freeze": "custom", "trainable_blocks": ["a", "b"]}, "custom: 2 blocks"),
        ({"two_phase": True, "fine_tune_blocks": 4}, "two-phase, top 4"),
    ],
)
def test_the_freeze_plan_is_described_in_a_few_words(config: dict[str, Any], words: str) -> None:
    assert describe_freeze(config) == words


def test_runs_are_numbered_in_creation_order_and_labelled() -> None:
    _run("20261123-131500-bbbbbb", created=2.0, backbone="resnet50")
    _run("20261120-090000-aaaaaa", created=1.0, freeze="fine-tune", unfreeze_last=2)
    run_path("20261123-131500-cccccc").mkdir()  # no run.json yet
    (run_path("20261123-131500-cccccc").parent / "not-a-run").mkdir()

    assert run_numbers() == {
        "20261120-090000-aaaaaa": 1,
        "20261123-131500-bbbbbb": 2,
        "20261123-131500-cccccc": 3,
    }
    assert run_labels() == {
        "20261120-090000-aaaaaa": "#1 mobilenet_v2 · fine-tune top 2",
        "20261123-131500-bbbbbb": "#2 resnet50 · feature extraction",
    }
    assert run_label(7, {}) == "#7 unknown backbone · feature extraction"


def test_config_diff_lists_only_the_fields_that_differ_in_config_order() -> None:
    one = RunConfig(dataset_id=DATASET, epochs=5, augmentation=("flip", "zoom")).to_json()
    two = RunConfig(dataset_id=DATASET, epochs=8, learning_rate=1e-4).to_json()
    three = RunConfig(dataset_id=DATASET, epochs=5).to_json()

    diff = config_diff({"#1": one, "#2": two, "#3": three})

    assert list(diff.columns) == ["#1", "#2", "#3"]
    assert diff.index.name == "setting"
    assert diff.to_dict("index") == {
        "epochs": {"#1": "5", "#2": "8", "#3": "5"},
        "learning_rate": {"#1": "0.001", "#2": "0.0001", "#3": "0.001"},
        "augmentation": {"#1": "flip, zoom", "#2": "flip", "#3": "flip"},
    }


def test_config_diff_counts_a_missing_field_as_its_default_and_keeps_unknown_keys() -> None:
    old = {"dataset_id": DATASET, "epochs": 10, "legacy": 1}
    new = RunConfig(dataset_id=DATASET, image_size=None).to_json() | {"trainable_blocks": []}

    diff = config_diff({"old": old, "new": new})

    assert diff.to_dict("index") == {"legacy": {"old": "1", "new": "default"}}
    assert config_diff({"a": new, "b": dict(new)}).empty


def test_median_epoch_seconds_ignores_lines_without_seconds() -> None:
    assert median_epoch_seconds([{"seconds": 4.0}, {"seconds": 2.0}, {"epoch": 3}]) == 3.0
    assert median_epoch_seconds([{"seconds": True}]) is None
    assert median_epoch_seconds([]) is None


def test_load_compared_runs_reads_config_metrics_and_evaluation() -> None:
    root = _run("20261120-090000-aaaaaa", created=1.0, val_accuracies=(0.5, 0.75))
    doc = read_json(RunFiles(root).config) | {"image_size": 224, "trainable_params": 3_845}
    write_json_atomic(RunFiles(root).config, doc)
    write_json_atomic(root / "eval.json", {"accuracy": 0.7})
    _run("20261121-090000-bbbbbb", created=2.0, image_size=96, freeze="full")

    first, second = load_compared_runs(["20261120-090000-aaaaaa", "20261121-090000-bbbbbb"])

    assert (first.number, first.label) == (1, "#1 mobilenet_v2 · feature extraction")
    assert first.config["image_size"] == 224, "the size the backbone chose"
    assert (first.trainable_params, first.eval_accuracy) == (3_845, 0.7)
    assert [line["val_accuracy"] for line in first.epochs] == [0.5, 0.75]
    assert (second.config["image_size"], second.epochs, second.eval_accuracy) == (96, [], None)
    with pytest.raises(JobError):
        load_compared_runs(["../../etc"])


def test_metrics_table_puts_results_side_by_side() -> None:
    _run("20261120-090000-aaaaaa", created=1.0, val_accuracies=(0.5, 0.75, 0.625))
    _run("20261121-090000-bbbbbb", created=2.0, freeze="full")
    runs = load_compared_runs(["20261120-090000-aaaaaa", "20261121-090000-bbbbbb"])

    table = metrics_table(runs)

    assert table.index.name == "metric"
    assert table.to_dict("index") == {
        "Best val. accuracy": {runs[0].label: "75.0%", runs[1].label: "—"},
        "Best epoch": {runs[0].label: "2", runs[1].label: "—"},
        "Final val. accuracy": {runs[0].label: "62.5%", runs[1].label: "—"},
        "Final val. loss": {runs[0].label: "0.333", runs[1].label: "—"},
        "Epochs": {runs[0].label: "0/10", runs[1].label: "0/10"},
        "Median s / epoch": {runs[0].label: "2.0 s", runs[1].label: "—"},
        "Trainable params": {runs[0].label: "—", runs[1].label: "—"},
        "State": {runs[0].label: "queued", runs[1].label: "queued"},
    }


def _summary(run_id: str, state: str, dataset_id: str | None = DATASET) -> RunSummary:
    return RunSummary(run_id=run_id, state=state, created_at=0.0, dataset_id=dataset_id)


def test_the_default_selection_prefers_finished_runs_on_the_sessions_dataset() -> None:
    runs = [
        _summary("e", "running"),
        _summary("d", "completed", OTHER_DATASET),
        _summary("c", "stopped"),
        _summary("b", "queued"),
        _summary("a", "completed"),
    ]

    assert default_selection(runs, DATASET) == ["c", "a"]
    assert default_selection(runs, OTHER_DATASET) == ["d", "c"], "newest finished"
    assert default_selection(runs[:2]) == ["e", "d"], "newest overall"
    assert default_selection(runs[:1]) == ["e"]


def test_ghosts_are_the_latest_earlier_runs_on_the_same_dataset_with_epochs() -> None:
    now = time.time()
    for index in range(7):
        _run(f"20261120-09000{index}-aaaaaa", created=now - 100 + index, val_accuracies=(0.5,))
    _run("20261121-090000-bbbbbb", created=now - 10)  # no epoch yet
    _run("20261121-090001-bbbbbb", created=now - 5, val_accuracies=(0.9,), dataset_id=OTHER_DATASET)
    _run("20261123-131500-cccccc", created=now)
    _run("20261123-131501-dddddd", created=now + 5, val_accuracies=(0.7,))  # a later run

    ghosts = ghost_curves("20261123-131500-cccccc")

    assert [label.split()[0] for label, _ in ghosts] == ["#7", "#6", "#5", "#4", "#3"]
    assert ghosts[0][1][0]["val_accuracy"] == 0.5
    assert len(ghost_curves("20261123-131500-cccccc", limit=2)) == 2
    assert ghost_curves("20261120-090000-aaaaaa") == [], "no run before the first"


def test_the_best_epoch_is_the_highest_val_accuracy_with_ties_to_the_lower_val_loss() -> None:
    # Epoch 3 ties epoch 2 on accuracy; its validation loss (1/3) is the lower one.
    _run("20261120-090000-aaaaaa", created=1.0, val_accuracies=(0.5, 0.75, 0.75))
    (run,) = load_compared_runs(["20261120-090000-aaaaaa"])

    table = metrics_table([run])

    assert table.loc["Best epoch", run.label] == "3"
    assert table.loc["Best val. accuracy", run.label] == "75.0%"
