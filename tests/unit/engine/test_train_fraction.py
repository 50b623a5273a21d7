"""`train_fraction`: a run trains on part of its training images, judged on the same
validation images, and reads the activations cached for the whole training split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.engine_helpers import epoch_lines, tiny_config
from tl_core.data import DatasetReport
from tl_core.engine.train import train_run
from tl_core.jobs.runs import prepare_run, read_json


def _train(out: Path, dataset: DatasetReport, **changes: Any) -> dict[str, Any]:
    files = prepare_run(out, tiny_config(dataset.dataset_id, **changes))
    status = train_run(files.root)
    assert status.state == "completed", status.error
    assert [line["epoch"] for line in epoch_lines(files.root)] == [1]
    return read_json(files.root / "run.json")


@pytest.mark.slow
def test_half_the_training_images_train_from_the_whole_splits_cached_activations(
    easy_dataset: DatasetReport, tmp_path: Path
) -> None:
    whole = _train(tmp_path / "whole", easy_dataset)
    half = _train(tmp_path / "half", easy_dataset, train_fraction=0.5)

    # 3 classes × 24 images, 20 % held out per class: 19 train per class, 10 at half.
    assert (whole["num_train"], whole["num_val"]) == (57, 15)
    assert (half["num_train"], half["num_val"]) == (30, 15)
    whole_keys = whole["cache"]["phases"]["train"]["keys"]
    half_path = half["cache"]["phases"]["train"]
    assert half_path["path"] == "head-features"
    assert half_path["keys"] == whole_keys
    assert half_path["hit"] is True
