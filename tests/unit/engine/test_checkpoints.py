"""Checkpoints restore variables by object, never overwrite what is committed, and refuse a
resume under other Keras/TensorFlow versions."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.unit.engine_helpers import tiny_config
from tl_core.engine.checkpoints import (
    check_versions,
    commit_checkpoint,
    load_optimizer,
    load_variables,
    read_last_checkpoint,
    save_variables,
    saved_keys,
    variable_keys,
)
from tl_core.engine.train import train_run
from tl_core.errors import JobError
from tl_core.jobs.runs import RunFiles, prepare_run, read_status


def two_branches(left_first: bool, units: int = 3) -> keras.Model:
    """Input(4) → Dense "left" + Dense "right"; `left_first` decides the variable order."""
    inputs = keras.Input((4,))
    left, right = keras.layers.Dense(units, name="left"), keras.layers.Dense(units, name="right")
    first, second = (left, right) if left_first else (right, left)
    a, b = first(inputs), second(inputs)
    return keras.Model(inputs, keras.layers.Add(name="sum")([a, b]), name="branches")


def compiled(model: keras.Model) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_model_whose_variables_come_in_another_order_gets_the_right_values(
    tmp_path: Path,
) -> None:
    saved = compiled(two_branches(left_first=True))
    saved.fit(np.ones((8, 4)), np.zeros((8, 3)), epochs=1, verbose=0)
    save_variables(saved, tmp_path / "c.npz", saved.optimizer)
    restored = compiled(two_branches(left_first=False))
    assert restored.variables[0].path.startswith("right")  # positions differ

    load_variables(restored, tmp_path / "c.npz")
    load_optimizer(restored.optimizer, restored, tmp_path / "c.npz")

    for name in ("left", "right"):
        for mine, theirs in zip(
            restored.get_layer(name).weights, saved.get_layer(name).weights, strict=True
        ):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    slots = {v.name: v.numpy() for v in saved.optimizer.variables}
    for variable in restored.optimizer.variables:
        np.testing.assert_array_equal(variable.numpy(), slots[variable.name])


def test_layers_keras_named_itself_get_the_same_keys_in_every_build() -> None:
    def unnamed() -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])

    first, second = unnamed(), unnamed()

    assert first.layers[0].name != second.layers[0].name  # dense_2 vs dense_4, say
    assert list(variable_keys(first)) == list(variable_keys(second))
    assert list(variable_keys(first)) == [
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
    ]


def test_a_checkpoint_of_a_different_model_is_refused_with_what_differs(tmp_path: Path) -> None:
    save_variables(two_branches(left_first=True), tmp_path / "c.npz")

    with pytest.raises(JobError, match=r"different model \(other shapes: left/bias, left/kernel"):
        load_variables(two_branches(left_first=True, units=5), tmp_path / "c.npz")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="left")])
    with pytest.raises(JobError, match=r"not in this model: right/bias, right/kernel.*new run"):
        load_variables(other, tmp_path / "c.npz")


def test_the_commit_pointer_records_the_framework_versions(tmp_path: Path) -> None:
    import tensorflow as tf

    pointer = commit_checkpoint(RunFiles(tmp_path), two_branches(True), {"epoch": 1})

    assert pointer["versions"] == {"keras": keras.__version__, "tensorflow": tf.__version__}
    assert read_last_checkpoint(RunFiles(tmp_path)) == json.loads(json.dumps(pointer))
    check_versions(pointer, tmp_path)


def test_a_checkpoint_from_another_keras_version_is_refused(tmp_path: Path) -> None:
    files = prepare_run(tmp_path / "run", tiny_config("0123456789ab"))
    pointer = commit_checkpoint(files, two_branches(True), {"epoch": 1, "phase_index": 0})
    pointer["versions"]["keras"] = "3.0.0"
    (files.checkpoints / "last.json").write_text(json.dumps(pointer))

    status = train_run(files.root, resume=True)

    assert (status.state, status.error_kind) == ("failed", "input")
    assert "written with keras 3.0.0" in (status.error or "")
    assert "Start a new run, or resume with the versions recorded in its run.json" in (
        status.error or ""
    )
    assert read_status(files.root) == status


def test_saved_keys_name_what_save_variables_writes_and_can_be_passed_back(
    tmp_path: Path,
) -> None:
    model = compiled(two_branches(left_first=True))
    keys = saved_keys(model, model.optimizer, only=lambda key: key.startswith("left/"))

    save_variables(model, tmp_path / "a.npz", model.optimizer, only=lambda k: k.startswith("left/"))
    model.get_layer("left").kernel.assign(np.ones((4, 3), "float32"))
    pointer = commit_checkpoint(RunFiles(tmp_path), model, {"epoch": 1}, keys=keys)

    with np.load(tmp_path / "a.npz") as saved:
        assert sorted(saved.files) == sorted(keys)
    assert "model:left/kernel" in keys and "model:right/kernel" not in keys
    with np.load(tmp_path / "checkpoints" / pointer["file"]) as committed:
        assert sorted(committed.files) == sorted(keys)
        np.testing.assert_array_equal(committed["model:left/kernel"], np.ones((4, 3)))
