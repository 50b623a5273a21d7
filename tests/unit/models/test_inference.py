"""The inference graph of a classifier: its layers without augmentation, weights shared.

One MobileNetV2 at 32 px with every augmentation is built for the module (building costs
seconds); the tests only read it, except the one that changes the head's bias and puts
it back.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.unit.engine_helpers import tiny_config
from tl_core.config import AUGMENTATIONS
from tl_core.errors import ExportError
from tl_core.models.classifier import Classifier, build_classifier
from tl_core.models.inference import inference_model, is_augmentation

CLASSES = ("blob", "hstripes", "vstripes")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    config = tiny_config("0123456789ab", augmentation=tuple(AUGMENTATIONS), dropout=0.2)
    return build_classifier(config, CLASSES)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, nested models and their layers included."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found += all_layers(layer)
    return found


def test_the_inference_model_has_no_augmentation_layer(classifier: Classifier) -> None:
    model = classifier.model
    assert [layer.name for layer in model.layers][1] == "augmentation"  # the case at hand

    inference = inference_model(model)

    names = [layer.name for layer in inference.layers]
    assert names[0] == "image" and names[-1] == "head"
    assert "augmentation" not in names
    kinds = [type(layer).__name__ for layer in all_layers(inference)]
    assert not [kind for kind in kinds if kind.startswith("Random")]
    assert inference.input.name == "image"
    assert inference.input.dtype == "float32"
    assert inference.input.shape == model.input.shape
    assert inference.name == model.name


def test_it_predicts_what_the_training_model_predicts_in_inference_mode(
    classifier: Classifier, images: np.ndarray
) -> None:
    expected = np.asarray(classifier.model(images, training=False))

    got = np.asarray(inference_model(classifier.model)(images, training=False))

    diff = np.abs(got - expected).max()
    assert diff <= 1e-6, diff  # written so that NaN fails too


def test_it_is_idempotent(classifier: Classifier, images: np.ndarray) -> None:
    once = inference_model(classifier.model)

    twice = inference_model(once)

    assert twice is once
    assert inference_model(twice).layers == once.layers


def test_it_shares_the_weights_of_the_training_model(
    classifier: Classifier, images: np.ndarray
) -> None:
    inference = inference_model(classifier.model)
    head = classifier.model.get_layer("head")
    before = np.asarray(inference(images))

    assert inference.get_layer("head") is head
    assert inference.get_layer("preprocess") is classifier.model.get_layer("preprocess")
    saved = head.bias.numpy()
    try:
        head.bias.assign(saved + np.array([5.0, 0.0, 0.0], dtype="float32"))
        after = np.asarray(inference(images))
    finally:
        head.bias.assign(saved)
    assert (after[:, 0] > before[:, 0]).all(), "changing the training model changed it too"


def test_a_model_loaded_from_an_older_runs_file_loses_its_augmentation(
    classifier: Classifier, images: np.ndarray, tmp_path: Path
) -> None:
    classifier.model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert "augmentation" in [layer.name for layer in loaded.layers]

    inference = inference_model(loaded)

    assert "augmentation" not in [layer.name for layer in inference.layers]
    expected = np.asarray(classifier.model(images, training=False))
    diff = np.abs(np.asarray(inference(images)) - expected).max()
    assert diff <= 1e-6, diff  # written so that NaN fails too


def test_a_bare_random_layer_at_the_top_counts_as_augmentation() -> None:
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.RandomContrast(0.2)(inputs)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)

    inference = inference_model(model)

    kinds = [type(layer).__name__ for layer in inference.layers]
    assert kinds == ["InputLayer", "Flatten", "Dense"]
    assert is_augmentation(keras.Sequential([keras.layers.RandomFlip()], name="jitter"))
    assert not is_augmentation(keras.layers.Rescaling(1 / 255))


def test_a_model_that_is_not_a_chain_is_refused_with_what_to_do() -> None:
    inputs = keras.Input((4,), name="image")
    left = keras.layers.Dense(3, name="left")(inputs)
    right = keras.layers.Dense(3, name="right")(inputs)
    branched = keras.Model(inputs, keras.layers.Add(name="join")([left, right]), name="forked")

    with pytest.raises(ExportError, match=r"'forked'.*'join' takes 2 inputs.*trained by tl_core"):
        inference_model(branched)
