"""Grad-CAM heatmaps and their overlay.

Classifiers here are built, not trained (2 classes, weights none): Grad-CAM only needs a
differentiable path from a feature map to a class score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from tl_core.analysis import gradcam
from tl_core.analysis.gradcam import feature_map_layers, grad_cam, jet_colormap, overlay
from tl_core.config import RunConfig
from tl_core.errors import ConfigError
from tl_core.models.backbones import list_backbones
from tl_core.models.classifier import build_classifier


def classifier(backbone: str, size: int, **changes: Any) -> Any:
    config = RunConfig(
        dataset_id="0" * 12, backbone=backbone, weights="none", image_size=size, **changes
    )
    return build_classifier(config, ["a", "b"])


def random_picture(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def mobilenet() -> Any:
    """MobileNetV2 at 32 px with the default flip augmentation in its graph."""
    return classifier("mobilenet_v2", 32)


def assert_heatmap(heatmap: np.ndarray, size: int) -> None:
    assert heatmap.shape == (size, size)
    assert heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0
    assert heatmap.max() == 1.0  # a real map, not all zeros
    assert heatmap.min() < 1.0  # and not flat


def test_grad_cam_of_mobilenet_v2_at_32_px_is_a_map_in_0_1_of_the_input_size(
    mobilenet: Any,
) -> None:
    picture = random_picture(32)

    heatmap = grad_cam(mobilenet.model, picture)

    assert_heatmap(heatmap, 32)
    # The flip augmentation stays off: the same picture gives the same map.
    np.testing.assert_array_equal(grad_cam(mobilenet.model, picture[None]), heatmap)


def test_the_default_feature_map_is_the_last_one_with_at_least_2_by_2_positions(
    mobilenet: Any,
) -> None:
    # At 32 px MobileNetV2 ends at 1 × 1, which could only give a flat map.
    names = feature_map_layers(mobilenet.model)
    backbone = mobilenet.backbone

    assert names[-1] == backbone.name
    assert backbone.output.shape[1:3] == (1, 1)
    assert gradcam._default_target(mobilenet.model).name == "block_13_expand_relu"
    assert backbone.get_layer("block_13_expand_relu").output.shape[1:3] == (2, 2)


def test_each_class_has_its_own_map_and_the_gradient_runner_is_built_once(
    mobilenet: Any,
) -> None:
    picture = random_picture(32, seed=1)
    model = mobilenet.model

    first = grad_cam(model, picture, class_index=0)
    second = grad_cam(model, picture, class_index=1)
    grad_cam(model, picture, layer="block_13_expand_relu")

    assert not np.allclose(first, second)
    assert len(gradcam._RUNNERS[model]) == 1  # one (model, layer): one runner
    grad_cam(model, picture, layer="block_16_project")
    assert len(gradcam._RUNNERS[model]) == 2


def test_a_model_loaded_from_keras_gives_the_same_map(mobilenet: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    mobilenet.model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    picture = random_picture(32, seed=2)

    np.testing.assert_allclose(
        grad_cam(loaded, picture), grad_cam(mobilenet.model, picture), atol=1e-5
    )


def test_a_plain_tensor_op_inside_the_backbone_can_be_the_feature_map() -> None:
    # MobileNetV3's squeeze-excite gates compute `relu6(x + 3) * (1 / 6)` with operations
    # that are no layers; their maps are 1 × 1, so the heatmap is flat.
    clf = classifier("mobilenet_v3_small", 32, augmentation=())
    plain = [
        op
        for op in gradcam._walk_operations(clf.model)
        if not isinstance(op, keras.layers.Layer) and op.name in feature_map_layers(clf.model)
    ]
    assert plain, "expected plain tensor ops with 4-D outputs in MobileNetV3"

    by_name = grad_cam(clf.model, random_picture(32), layer=plain[-1].name)
    by_object = grad_cam(clf.model, random_picture(32), layer=plain[-1])

    assert by_name.shape == (32, 32) and np.isfinite(by_name).all()
    assert by_name.min() == by_name.max()
    assert by_name.max() in (0.0, 1.0)
    np.testing.assert_array_equal(by_name, by_object)


@pytest.mark.slow
def test_convnext_whose_last_maps_are_plain_additions_gives_a_heatmap() -> None:
    clf = classifier("convnext_tiny", 32, augmentation=())

    heatmap = grad_cam(clf.model, random_picture(32))

    assert not isinstance(gradcam._default_target(clf.model), keras.layers.Layer)
    assert_heatmap(heatmap, 32)


def test_bad_arguments_are_refused_with_what_was_expected(mobilenet: Any) -> None:
    picture = random_picture(32)

    with pytest.raises(ConfigError, match="Expected `layer` to name a layer"):
        grad_cam(mobilenet.model, picture, layer="no_such_layer")
    with pytest.raises(ConfigError, match=r"Expected `class_index` to be between 0 and 1"):
        grad_cam(mobilenet.model, picture, class_index=2)
    with pytest.raises(ConfigError, match=r"Received: shape=\(32, 32\)"):
        grad_cam(mobilenet.model, picture[..., 0])
    with pytest.raises(ConfigError, match="Expected `alpha`"):
        overlay(picture.astype(np.uint8), np.zeros((32, 32)), alpha=1.5)


def test_overlay_blends_the_colours_over_the_picture() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    heatmap = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)

    blended = overlay(image, heatmap)

    assert blended.shape == (8, 8, 3) and blended.dtype == np.uint8
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0), image)
    only_colours = overlay(image, heatmap, alpha=1.0)
    np.testing.assert_array_equal(only_colours, np.rint(jet_colormap(heatmap) * 255))
    assert only_colours[0, 0].tolist() == [0, 0, 128]  # cold: dark blue
    assert only_colours[-1, -1].tolist() == [128, 0, 0]  # hot: dark red
    # A heatmap of another size is stretched to the picture; a grey picture becomes RGB.
    assert overlay(image[..., 0], np.ones((2, 2))).shape == (8, 8, 3)


def test_jet_colormap_runs_blue_cyan_yellow_red() -> None:
    colours = jet_colormap(np.array([0.0, 0.375, 0.625, 1.0]))

    np.testing.assert_allclose(
        colours, [[0, 0, 0.5], [0, 1, 1], [1, 1, 0], [0.5, 0, 0]], atol=1e-12
    )


@pytest.mark.slow
@pytest.mark.parametrize("backbone_id", [spec.id for spec in list_backbones()])
def test_every_backbone_gives_a_heatmap_at_its_minimum_input_size(backbone_id: str) -> None:
    spec = next(s for s in list_backbones() if s.id == backbone_id)
    size = max(32, spec.min_input_size)
    clf = classifier(backbone_id, size, augmentation=())

    heatmap = grad_cam(clf.model, random_picture(size))

    assert_heatmap(heatmap, size)
    keras.backend.clear_session()
