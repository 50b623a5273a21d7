"""``model.keras`` is the float32 inference graph, whatever policy the run trained under."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.unit.engine_helpers import tiny_config
from tl_core.engine.saving import has_mixed_policy, save_inference_model
from tl_core.models.classifier import build_classifier


@pytest.fixture
def mixed_policy() -> Iterator[None]:
    """mixed_float16 as the global policy (allowed on a CPU: only the save path is tested)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_mixed_precision_classifier_saves_as_float32_without_augmentation(
    mixed_policy: None, tmp_path: Path
) -> None:
    config = tiny_config("0" * 12, backbone="vgg16", augmentation=("flip", "contrast"))
    classifier = build_classifier(config, ["a", "b", "c"])
    assert classifier.model.get_layer("pool").dtype_policy.name == "mixed_float16"

    save_inference_model(classifier.model, tmp_path / "model.keras")

    keras.mixed_precision.set_global_policy("float32")  # what a CPU-only analysis runs under
    model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    layers = [layer for top in model.layers for layer in [top, *getattr(top, "layers", [])]]
    assert {layer.dtype_policy.name for layer in layers} == {"float32"}
    assert not any(layer.name == "augmentation" for layer in layers)
    assert not any(type(layer).__name__.startswith("Random") for layer in layers)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(classifier.model(images, training=False))
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=2e-3)


def test_a_float32_compiled_classifier_saves_its_inference_graph_without_optimizer(
    tmp_path: Path,
) -> None:
    config = tiny_config("0" * 12, backbone="vgg16", augmentation=())
    classifier = build_classifier(config, ["a", "b", "c"])
    classifier.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert not has_mixed_policy(classifier.model)

    save_inference_model(classifier.model, tmp_path / "model.keras")

    model = keras.saving.load_model(tmp_path / "model.keras")
    assert not model.compiled  # no compile settings saved, so no optimizer either
    assert [layer.name for layer in model.layers] == [
        layer.name for layer in classifier.model.layers
    ]
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(classifier.model(images, training=False))
    np.testing.assert_array_equal(model.predict(images, verbose=0), expected)
