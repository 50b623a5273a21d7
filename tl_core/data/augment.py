"""A preview of training augmentation, drawn with Pillow and numpy instead of Keras.

Training augments inside the model with Keras layers (`tl_core.models.classifier`): ``RandomFlip``
(horizontal), ``RandomRotation(0.08)`` (a fraction of a full turn: ±28.8°),
``RandomZoom(0.15)`` and ``RandomContrast(0.2)``, the geometric ones filling the corners
by reflection. The web process must not import TensorFlow, so `augment_preview`
imitates those layers closely enough to show what the model will see: the same ranges,
the same reflected corners; the random draws and the interpolation differ.

Example:
    >>> from PIL import Image
    >>> import numpy as np
    >>> out = augment_preview(Image.new("RGB", (40, 30)), ["flip", "zoom"],
    ...                       np.random.default_rng(0), size=64)
    >>> out.size
    (64, 64)
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from PIL import Image

__all__ = ["CONTRAST_FACTOR", "ROTATION_FACTOR", "ZOOM_FACTOR", "augment_preview"]

#: ``keras.layers.RandomRotation`` factor: up to this fraction of a full turn either way.
ROTATION_FACTOR = 0.08
#: ``keras.layers.RandomZoom`` factor: zoom in or out by up to this share of the side.
ZOOM_FACTOR = 0.15
#: ``keras.layers.RandomContrast`` factor: contrast scaled by 1 ± this.
CONTRAST_FACTOR = 0.2


def augment_preview(
    image: Image.Image,
    names: Collection[str],
    rng: np.random.Generator,
    *,
    size: int = 128,
) -> Image.Image:
    """Return `image` resized to a `size` square (as the training pipeline resizes it) and
    augmented by the augmentations `names` (of `tl_core.config.AUGMENTATIONS`).

    Args:
        image: any Pillow image; it is converted to RGB.
        names: the augmentations to apply; unknown names are ignored.
        rng: the source of the random draws (seed it for a repeatable preview).
        size: side of the square result in pixels (default 128).
    """
    square = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    flip = "flip" in names and rng.random() < 0.5
    angle = (
        rng.uniform(-ROTATION_FACTOR, ROTATION_FACTOR) * 2 * math.pi if "rotation" in names else 0
    )
    # Keras: a positive zoom value zooms out (shows a larger region), a negative one in.
    scale = 1 + rng.uniform(-ZOOM_FACTOR, ZOOM_FACTOR) if "zoom" in names else 1.0
    if flip:
        square = square.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if angle or scale != 1.0:
        square = _rotate_and_zoom(square, angle, scale)
    if "contrast" in names:
        factor = rng.uniform(1 - CONTRAST_FACTOR, 1 + CONTRAST_FACTOR)
        square = _contrast(square, factor)
    return square


def _rotate_and_zoom(image: Image.Image, angle: float, scale: float) -> Image.Image:
    """Rotate by `angle` (radians) and sample a region `scale` times the side, around the
    centre, with the corners filled by reflection (Keras ``fill_mode="reflect"``)."""
    size = image.width
    # Half a side of reflected border covers a 29° turn of a 15% zoomed-out square.
    pad = size // 2
    padded = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), "reflect"))
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    centre_out = size / 2
    centre_in = pad + size / 2
    # Pillow's affine maps each output pixel (x, y) to the input pixel (a x + b y + c, …).
    matrix = (
        cos,
        -sin,
        centre_in - cos * centre_out + sin * centre_out,
        sin,
        cos,
        centre_in - sin * centre_out - cos * centre_out,
    )
    return padded.transform(
        (size, size), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR
    )


def _contrast(image: Image.Image, factor: float) -> Image.Image:
    """Scale each channel's distance from its mean by `factor`, clipped to 0–255."""
    pixels = np.asarray(image, dtype=np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    adjusted = np.clip((pixels - mean) * factor + mean, 0, 255)
    return Image.fromarray(adjusted.round().astype(np.uint8))
