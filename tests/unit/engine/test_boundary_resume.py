"""A boundary-cached partial fine-tune killed mid-epoch resumes from its lean checkpoint
(what trains) and the frozen blocks rebuilt from their source, and ends where an
uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import backbone_weights  # noqa: F401  (a fixture)
from tests.faults.harness import KILLED, epochs_once, new_run, tl_core, worker
from tl_core.data import DatasetReport
from tl_core.jobs.runs import read_json, read_status

SETTINGS = {"freeze": "fine-tune", "unfreeze_last": 2, "epochs": 2, "dropout": 0.0}


@pytest.mark.slow
def test_a_cached_fine_tune_killed_mid_epoch_resumes_exactly_and_records_each_epoch_once(
    tl_home: Path,
    easy_dataset: DatasetReport,
    backbone_weights: Path,  # noqa: F811
) -> None:
    import keras

    settings = SETTINGS | {"weights": str(backbone_weights)}
    whole = new_run(tl_home, easy_dataset.dataset_id, **settings)
    killed = new_run(tl_home, easy_dataset.dataset_id, **settings)
    assert worker(tl_home, whole).returncode == 0

    stopped = worker(tl_home, killed, fault="batch@6")
    assert stopped.returncode == KILLED, stopped.stderr[-2000:]
    checkpoint = read_json(killed / "checkpoints" / "last.json")
    resumed = tl_core(tl_home, "resume", str(killed), "--json")

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_status(killed).state == "completed"
    epochs_once(killed, 2)
    assert (checkpoint["epoch"], checkpoint["lean"]) == (1, True)
    assert read_json(killed / "run.json")["cache"]["phases"]["train"]["path"] == "boundary:block_15"
    expected = keras.saving.load_model(whole / "model.keras", compile=False)
    actual = keras.saving.load_model(killed / "model.keras", compile=False)
    for want, got in zip(expected.get_weights(), actual.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
