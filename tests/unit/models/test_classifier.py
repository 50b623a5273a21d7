"""The classifier, its freeze plan and the BatchNorm rule of the freeze contract.

One MobileNetV2 at 32 px is built for the whole module (building costs seconds); every
test applies its own freeze plan first, so the tests do not depend on their order.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tests.unit.engine_helpers import tiny_config
from tl_core.errors import ConfigError
from tl_core.models.blocks import BlockInfo
from tl_core.models.classifier import (
    SCRATCH_BN_MOMENTUM,
    Classifier,
    apply_freeze_plan,
    batch_norm_layers,
    build_classifier,
    compile_classifier,
    plan_trainable_blocks,
    preprocessing_layer,
    uses_one_hot_labels,
)

CLASSES = ("blob", "hstripes", "vstripes")
HEAD_PARAMS = 1280 * 3 + 3  # MobileNetV2's 1280 features → 3 classes, with biases
CONFIG = tiny_config("0123456789ab")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return build_classifier(CONFIG, CLASSES)


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    return images, np.arange(16, dtype="int32") % 3


def block_weights(clf: Classifier, block: BlockInfo) -> list[keras.Variable]:
    return [v for name in block.layers for v in clf.backbone.get_layer(name).weights]


def block_bn_layers(clf: Classifier, block: BlockInfo) -> list[keras.layers.Layer]:
    return [
        layer for name in block.layers for layer in batch_norm_layers(clf.backbone.get_layer(name))
    ]


def snapshot(variables: list[keras.Variable]) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in variables}


def expected_trainable_params(clf: Classifier, trainable: set[str], *, bn_trains: bool) -> int:
    """Head + each trainable block's params, less BatchNorm's share that does not train."""
    total = HEAD_PARAMS
    for block in clf.blocks:
        if block.name not in trainable:
            continue
        bn_channels = sum(int(layer.gamma.shape[0]) for layer in block_bn_layers(clf, block))
        # moving mean and variance never train; gamma and beta train only with bn_trains
        total += block.params - bn_channels * (2 if bn_trains else 4)
    return total


# --- plan_trainable_blocks ---------------------------------------------------------------

NAMES = ["stem", "block_1", "block_2", "top"]


@pytest.mark.parametrize(
    ("freeze", "options", "expected"),
    [
        ("feature-extraction", {"unfreeze_last": 3}, ()),
        ("fine-tune", {"unfreeze_last": 0}, ()),
        ("fine-tune", {"unfreeze_last": 1}, ("top",)),
        ("fine-tune", {"unfreeze_last": 3}, ("block_1", "block_2", "top")),
        ("fine-tune", {"unfreeze_last": 4}, tuple(NAMES)),
        ("full", {}, tuple(NAMES)),
        ("custom", {"trainable_blocks": ["top", "stem", "top"]}, ("stem", "top")),
    ],
)
def test_plan_trainable_blocks_picks_blocks_input_side_first(
    freeze: str, options: dict, expected: tuple[str, ...]
) -> None:
    assert plan_trainable_blocks(NAMES, freeze, **options) == expected


@pytest.mark.parametrize(
    ("freeze", "options", "message"),
    [
        ("custom", {"trainable_blocks": ["top", "block_9", "head"]}, "['block_9', 'head']"),
        ("fine-tune", {"unfreeze_last": -1}, "Received: unfreeze_last=-1"),
        (
            "fine-tune",
            {"unfreeze_last": 99},
            "Expected `unfreeze_last` to be between 0 and 4 for this backbone (its block count). "
            "Received: unfreeze_last=99",
        ),
        ("partial", {}, "Received: freeze='partial'"),
    ],
)
def test_plan_trainable_blocks_refuses_what_it_cannot_plan(
    freeze: str, options: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_trainable_blocks(NAMES, freeze, **options)


def test_plan_trainable_blocks_names_the_backbone_it_refuses_a_depth_for() -> None:
    message = "between 0 and 4 for mobilenet_v2 (its block count). Received: unfreeze_last=5"

    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_trainable_blocks(NAMES, "fine-tune", unfreeze_last=5, backbone="mobilenet_v2")


# --- building ----------------------------------------------------------------------------


def test_the_classifier_maps_raw_pixels_to_one_probability_per_class(
    classifier: Classifier, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    probabilities = classifier.model.predict(batch[0][:2], verbose=0)

    assert classifier.model.output_shape == (None, 3)
    assert classifier.image_size == 32
    assert classifier.class_names == CLASSES
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert [b.name for b in classifier.blocks][:2] == ["stem", "expanded_conv"]
    assert sum(b.params for b in classifier.blocks) == classifier.backbone.count_params()


def test_the_features_model_preprocesses_like_keras_applications(
    classifier: Classifier, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    images = batch[0][:2]

    ours = classifier.features(images, training=False)
    reference = classifier.backbone(
        keras.applications.mobilenet_v2.preprocess_input(images.copy()), training=False
    )

    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=1e-4)


def test_scratch_batch_norm_learns_its_statistics_faster(classifier: Classifier) -> None:
    momenta = {layer.momentum for layer in batch_norm_layers(classifier.backbone)}

    assert momenta == {SCRATCH_BN_MOMENTUM}


def test_a_classifier_needs_at_least_two_classes() -> None:
    with pytest.raises(ConfigError, match=re.escape("Expected at least 2 classes")):
        build_classifier(CONFIG, ["only"])


# --- preprocessing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("caffe", keras.applications.resnet50.preprocess_input),
    ],
)
def test_preprocessing_layers_match_keras_applications(mode: str, reference: object) -> None:
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    pixels[0, 0, 0] = (0.0, 127.5, 255.0)

    ours = np.asarray(preprocessing_layer(mode)(pixels))
    expected = np.asarray(reference(pixels.copy()))  # type: ignore[operator]

    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_preprocessing_none_is_no_layer_and_unknown_modes_are_refused() -> None:
    assert preprocessing_layer("none") is None
    with pytest.raises(ConfigError, match=re.escape("Received: preprocess='inception'")):
        preprocessing_layer("inception")


# --- the freeze plan ---------------------------------------------------------------------


def plan(clf: Classifier, preset: str) -> set[str]:
    names = [b.name for b in clf.blocks]
    options = {
        "feature-extraction": {},
        "full": {},
        "fine-tune": {"unfreeze_last": 3},
        "custom": {"trainable_blocks": ["stem", "block_8", "top"]},
    }[preset]
    return set(plan_trainable_blocks(names, preset, **options))


@pytest.mark.parametrize("pretrained", [True, False], ids=["pretrained", "scratch"])
@pytest.mark.parametrize("preset", ["feature-extraction", "fine-tune", "full", "custom"])
def test_trainable_params_per_preset_are_the_head_plus_the_trainable_blocks(
    classifier: Classifier, preset: str, pretrained: bool
) -> None:
    trainable = plan(classifier, preset)

    summary = apply_freeze_plan(classifier, trainable, pretrained=pretrained)
    compile_classifier(classifier, CONFIG, learning_rate=1e-3)

    expected = expected_trainable_params(classifier, trainable, bn_trains=not pretrained)
    counted = sum(int(np.prod(w.shape)) for w in classifier.model.trainable_weights)
    assert summary.trainable_params == counted == expected
    assert summary.trainable_params + summary.non_trainable_params == (
        classifier.model.count_params()
    )
    assert set(summary.trainable_blocks) == trainable
    assert summary.block_trainable == {b.name: b.name in trainable for b in classifier.blocks}
    if preset == "feature-extraction":
        assert summary.trainable_params == HEAD_PARAMS
    if preset == "full" and not pretrained:
        moving_stats = sum(
            2 * int(layer.gamma.shape[0]) for layer in batch_norm_layers(classifier.backbone)
        )
        assert summary.non_trainable_params == moving_stats


@pytest.mark.parametrize(
    ("pretrained", "train_bn", "bn_trains"),
    [
        (True, False, False),
        (True, True, True),
        (False, False, True),
        (False, True, True),
    ],
    ids=["pretrained", "pretrained-train-bn", "scratch", "scratch-train-bn"],
)
def test_batch_norm_rule_in_frozen_and_trainable_blocks(
    classifier: Classifier, pretrained: bool, train_bn: bool, bn_trains: bool
) -> None:
    trainable = plan(classifier, "fine-tune")

    summary = apply_freeze_plan(classifier, trainable, pretrained=pretrained, train_bn=train_bn)

    assert summary.bn_trainable is bn_trains
    for block in classifier.blocks:
        block_trains = block.name in trainable
        bn = block_bn_layers(classifier, block)
        others = [
            classifier.backbone.get_layer(name)
            for name in block.layers
            if classifier.backbone.get_layer(name) not in bn
        ]
        assert {layer.trainable for layer in bn} <= {block_trains and bn_trains}, block.name
        assert {layer.trainable for layer in others} == {block_trains}, block.name
    head = classifier.model.get_layer("head")
    assert head.trainable


def test_an_unknown_block_in_the_plan_is_refused(classifier: Classifier) -> None:
    with pytest.raises(ConfigError, match=re.escape("Received unknown blocks: ['block_99']")):
        apply_freeze_plan(classifier, ["top", "block_99"], pretrained=True)


@pytest.mark.parametrize("pretrained", [True, False], ids=["pretrained", "scratch"])
def test_training_leaves_frozen_blocks_bit_identical_and_changes_trainable_ones(
    classifier: Classifier, batch: tuple[np.ndarray, np.ndarray], pretrained: bool
) -> None:
    trainable = plan(classifier, "fine-tune")
    apply_freeze_plan(classifier, trainable, pretrained=pretrained)
    compile_classifier(classifier, CONFIG, learning_rate=1e-2)
    before = snapshot(classifier.backbone.weights)
    head_before = snapshot(classifier.model.get_layer("head").weights)

    classifier.model.fit(*batch, batch_size=8, epochs=1, shuffle=False, verbose=0)

    after = snapshot(classifier.backbone.weights)
    for block in classifier.blocks:
        bn_paths = {v.path for layer in block_bn_layers(classifier, block) for v in layer.weights}
        for variable in block_weights(classifier, block):
            same = np.array_equal(before[variable.path], after[variable.path])
            if block.name not in trainable:
                assert same, f"frozen {variable.path} changed"
            elif variable.path in bn_paths:
                # pretrained: BatchNorm stays frozen (statistics and scale) even here
                assert same is pretrained, variable.path
            else:
                assert not same, f"trainable {variable.path} did not change"
    head_after = snapshot(classifier.model.get_layer("head").weights)
    assert all(not np.array_equal(head_before[k], head_after[k]) for k in head_before)


def test_a_changed_plan_takes_effect_only_through_the_recompile(
    classifier: Classifier, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    top = classifier.blocks[-1]
    bn = block_bn_layers(classifier, top)
    top_kernels = [
        w
        for name in top.layers
        if (layer := classifier.backbone.get_layer(name)) not in bn
        for w in layer.weights
    ]
    apply_freeze_plan(classifier, [top.name], pretrained=True)
    compile_classifier(classifier, CONFIG, learning_rate=1e-2)
    assert len(classifier.model.trainable_weights) == 2 + len(top_kernels)
    classifier.model.fit(*batch, batch_size=8, epochs=1, shuffle=False, verbose=0)

    apply_freeze_plan(classifier, (), pretrained=True)
    assert len(classifier.model.trainable_weights) == 2  # head kernel and bias
    before = snapshot(top_kernels)
    classifier.model.fit(*batch, batch_size=8, epochs=1, shuffle=False, verbose=0)
    stale = snapshot(top_kernels)
    compile_classifier(classifier, CONFIG, learning_rate=1e-2)
    classifier.model.fit(*batch, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = snapshot(top_kernels)

    # Without the compile the traced train step still updates the old plan's weights.
    assert not all(np.array_equal(before[k], stale[k]) for k in before)
    assert all(np.array_equal(stale[k], after[k]) for k in stale)


# --- compile -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "loss_type", "one_hot"),
    [
        ({}, keras.losses.SparseCategoricalCrossentropy, False),
        ({"label_smoothing": 0.1}, keras.losses.CategoricalCrossentropy, True),
    ],
)
def test_compile_uses_one_hot_labels_only_for_label_smoothing(
    classifier: Classifier, changes: dict, loss_type: type, one_hot: bool
) -> None:
    config = CONFIG.with_changes(optimizer="sgd", **changes)
    apply_freeze_plan(classifier, (), pretrained=True)

    compile_classifier(classifier, config, learning_rate=0.05)

    assert uses_one_hot_labels(config) is one_hot
    assert isinstance(classifier.model.loss, loss_type)
    assert isinstance(classifier.model.optimizer, keras.optimizers.SGD)
    assert float(classifier.model.optimizer.learning_rate) == pytest.approx(0.05)


def test_scratch_pretrained_and_resumed_builds_share_one_architecture() -> None:
    from tl_core.config import RunConfig
    from tl_core.models.classifier import build_classifier

    def layer_classes(weights: str, load_weights: bool) -> list[str]:
        config = RunConfig(
            dataset_id="0" * 12, backbone="efficientnet_b0", weights=weights, image_size=32
        )
        built = build_classifier(config, ["a", "b"], load_weights=load_weights, download=False)
        return [type(layer).__name__ for layer in built.backbone.layers]

    scratch = layer_classes("none", load_weights=True)
    resumed = layer_classes("imagenet", load_weights=False)

    # EfficientNet's ImageNet build rescales its normalised input once more (1/sqrt(std)).
    assert scratch == resumed
    assert scratch[:4].count("Rescaling") == 2
