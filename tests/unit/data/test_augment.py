"""The augmentation preview: Pillow and numpy imitating the Keras layers that train."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tl_core.data.augment import CONTRAST_FACTOR, ROTATION_FACTOR, ZOOM_FACTOR, augment_preview


def _gradient(size: int = 48) -> Image.Image:
    """Left dark, right bright, with a marker in the top-left corner."""
    ramp = np.tile(np.linspace(0, 255, size, dtype=np.float32), (size, 1))
    pixels = np.stack([ramp, ramp, ramp], axis=-1).astype(np.uint8)
    pixels[:6, :6] = (255, 0, 0)
    return Image.fromarray(pixels)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def test_the_preview_is_a_square_of_the_asked_size_in_rgb() -> None:
    image = Image.new("L", (60, 30), 128)

    preview = augment_preview(image, ["rotation", "zoom"], np.random.default_rng(0), size=40)

    assert (preview.size, preview.mode) == ((40, 40), "RGB")


def test_without_augmentations_the_preview_is_the_resized_image() -> None:
    image = _gradient()

    preview = augment_preview(image, [], np.random.default_rng(0), size=48)

    assert np.array_equal(_pixels(preview), _pixels(image))


def test_a_flip_mirrors_the_image_left_to_right_about_half_the_time() -> None:
    image = _gradient()
    rng = np.random.default_rng(1)
    flipped = 0
    for _ in range(40):
        preview = _pixels(augment_preview(image, ["flip"], rng, size=48))
        mirrored = np.array_equal(preview, _pixels(image)[:, ::-1])
        assert mirrored or np.array_equal(preview, _pixels(image))
        flipped += mirrored
    assert 8 <= flipped <= 32


def test_rotation_and_zoom_fill_the_corners_by_reflection_not_black() -> None:
    image = Image.new("RGB", (48, 48), (200, 180, 160))

    for seed in range(10):
        preview = _pixels(
            augment_preview(image, ["rotation", "zoom"], np.random.default_rng(seed), size=48)
        )
        assert preview.min() >= 150, "a corner was filled with black"


def test_contrast_scales_each_channel_around_its_mean_within_the_factor() -> None:
    image = _gradient()
    original = _pixels(image)

    for seed in range(10):
        rng = np.random.default_rng(seed)
        preview = _pixels(augment_preview(image, ["contrast"], rng, size=48))
        spread = preview[..., 1].std() / original[..., 1].std()
        assert 1 - CONTRAST_FACTOR - 0.02 <= spread <= 1 + CONTRAST_FACTOR + 0.02
        assert preview[..., 1].mean() == pytest.approx(original[..., 1].mean(), abs=2)


def test_the_preview_uses_the_ranges_of_the_layers_that_train() -> None:
    from tl_core.models.classifier import _augmentation

    flip, rotation, zoom, contrast = _augmentation(
        ["flip", "rotation", "zoom", "contrast"], seed=0
    ).layers

    assert flip.mode == "horizontal"
    assert rotation.factor == (-ROTATION_FACTOR, ROTATION_FACTOR)
    assert rotation.fill_mode == zoom.fill_mode == "reflect"
    assert (zoom.height_lower, zoom.height_upper, zoom.width_factor) == (
        -ZOOM_FACTOR,
        ZOOM_FACTOR,
        None,
    )
    assert contrast.factor == (0, CONTRAST_FACTOR)
