"""The ``fast`` path: what the frozen bottom computes is cached once and training runs above
it. It must train the same head as the ordinary path, reuse its cache, and checkpoint
what trains (the frozen blocks come back from their source)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.engine_helpers import ROOT, epoch_lines, read_jsonl, tiny_config
from tl_core.data import DatasetReport
from tl_core.engine.train import plan_phases, train_run
from tl_core.jobs.runs import prepare_run, read_json

# Dropout and augmentation off: with them, the two paths draw different random numbers.
SAME_MATH = {"augmentation": (), "dropout": 0.0, "freeze": "feature-extraction", "epochs": 2}


def _train(dataset: DatasetReport, out: Path, **changes: object) -> Path:
    files = prepare_run(out, tiny_config(dataset.dataset_id, **(SAME_MATH | changes)))
    status = train_run(files.root)
    assert status.state == "completed", status.error
    return files.root


def test_fast_caches_every_phase_whose_bottom_block_is_frozen() -> None:
    config = tiny_config("0" * 12, fast=True, two_phase=True, fine_tune_blocks=1)

    phases = plan_phases(config, ["stem", "block_1", "top"])

    assert [(p.name, p.cached, p.boundary) for p in phases] == [
        ("head", True, "pooled"),
        ("fine-tune", True, "block_1"),
    ]
    full = tiny_config("0" * 12, fast=True, freeze="full")
    assert [(p.cached, p.boundary) for p in plan_phases(full, ["stem", "top"])] == [(False, None)]
    custom = tiny_config("0" * 12, freeze="custom", trainable_blocks=("block_1",))
    assert plan_phases(custom, ["stem", "block_1", "top"])[0].boundary == "stem"


def test_fast_is_on_by_default_and_never_refused() -> None:
    from tl_core.config import RunConfig

    config = RunConfig(dataset_id="0" * 12, freeze="full")

    config.validate_for(blocks=["stem", "top"])
    assert config.fast and config.augmentation == ("flip",) and config.cache_views == 4


@pytest.mark.slow
def test_fast_training_matches_the_full_model_and_reuses_its_cache(
    easy_dataset: DatasetReport, tmp_path: Path
) -> None:
    plain = _train(easy_dataset, tmp_path / "plain", fast=False)
    fast = _train(easy_dataset, tmp_path / "fast", fast=True)
    again = _train(easy_dataset, tmp_path / "again", fast=True)

    plain_lines, fast_lines = epoch_lines(plain), epoch_lines(fast)
    for key in ("loss", "val_loss", "val_accuracy"):
        expected = [line[key] for line in plain_lines]
        np.testing.assert_allclose([line[key] for line in fast_lines], expected, atol=1e-4)
    assert "head-features: computed activations" in (fast / "log.txt").read_text()
    assert "head-features: cached activations" in (again / "log.txt").read_text()
    assert read_json(again / "run.json")["cache"]["phases"]["train"]["hit"] is True
    assert all(
        value == 0.0 for value in read_jsonl(fast / "drift_history.jsonl")[-1]["drift"].values()
    )


@pytest.mark.slow
def test_a_fast_head_run_checkpoints_the_head_and_not_the_frozen_backbone(
    easy_dataset: DatasetReport, tmp_path: Path
) -> None:
    import keras

    from tl_core.engine.checkpoints import load_variables, only_blocks

    run = _train(easy_dataset, tmp_path / "fast", fast=True)
    model = keras.saving.load_model(run / "model.keras", compile=False)
    final_head = [w.copy() for w in model.get_layer("head").get_weights()]
    model.get_layer("head").set_weights([np.zeros_like(w) for w in final_head])
    last = read_json(run / "checkpoints" / "last.json")

    load_variables(model, run / "checkpoints" / last["file"], only=only_blocks(()))

    assert last["lean"] is True
    with np.load(run / "checkpoints" / last["file"]) as saved:
        assert not [name for name in saved.files if name.startswith("model:backbone/")]
    for restored, final in zip(model.get_layer("head").get_weights(), final_head, strict=True):
        np.testing.assert_array_equal(restored, final)


def test_tensorflow_start_up_chatter_stays_off_stderr() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tl_core.engine.device import quiet_tensorflow; quiet_tensorflow()",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )

    assert done.stderr == ""
