"""Build the offline sample dataset `assets/sample_shapes.zip`: procedurally drawn shapes.

The archive lets the app be tried without downloading anything. Each image is a 64x64 RGB PNG
of one filled shape on a shaded, blotchy background. Position, size, rotation, aspect,
colours, blur and noise are random, and colours are drawn independently of the class, so only
the shape tells the classes apart: circle, square, triangle and star, 80 images each.

Layout inside the zip (one wrapper folder around the class folders)::

    sample_shapes/circle/circle_000.png
    sample_shapes/square/square_000.png
    ...

The archive is byte-for-byte reproducible: every image comes from a numpy Generator seeded
with ``(seed, class index, image index)``, entries are sorted and carry a fixed timestamp, and
the PNGs hold no metadata.

Regenerate the committed asset with::

    python scripts/make_sample_dataset.py
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT_FOLDER = "sample_shapes"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "sample_shapes.zip"
DEFAULT_PER_CLASS = 80
DEFAULT_SIZE = 64
MIN_SIZE = 16
# The earliest timestamp a zip entry can carry; fixed so that rebuilding changes no byte.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Shapes are drawn this many times larger, then shrunk, for anti-aliased edges.
SUPERSAMPLE = 4
# Foreground and background must differ this much in luminance (0-255) so the shape stays
# visible; the check ignores hue, so colour carries no class information.
MIN_LUMINANCE_GAP = 100.0
# Ranges of the random variations, (low, high). They are tuned so that a three-layer CNN
# trained from scratch for five epochs on CPU gets above 0.8 validation accuracy.
RADIUS_FRACTION = (0.28, 0.42)
ASPECT = (0.85, 1.15)
# Beyond +-30 degrees a square (90 degree symmetry) and a star (72) look much the same, while
# a triangle at any angle takes a small CNN far more examples than a sample set holds.
ROTATION_DEGREES = (-30.0, 30.0)
SHADING = (0.0, 30.0)
TEXTURE_AMPLITUDE = (5.0, 15.0)
# Side of the coarse random grid that is smoothed into the background's blotches.
TEXTURE_CELLS = 6
BLUR_RADIUS = (0.0, 0.8)
# Per-pixel noise is kept faint: it costs far more PNG bytes than it adds variety.
NOISE_SIGMA = (0.0, 1.5)


def _regular_polygon(corners: int, phase: float = 0.0) -> np.ndarray:
    """Return `corners` points on the unit circle, starting at angle `phase`."""
    angles = phase + np.linspace(0.0, 2.0 * np.pi, corners, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _circle(rng: np.random.Generator) -> np.ndarray:
    return _regular_polygon(72)


def _square(rng: np.random.Generator) -> np.ndarray:
    # Scaled so that its area is close to the circle's: size alone must not give it away.
    return _regular_polygon(4, np.pi / 4) * 1.2


def _triangle(rng: np.random.Generator) -> np.ndarray:
    points = _regular_polygon(3, -np.pi / 2) * 1.3
    return points + rng.normal(0.0, 0.06, size=points.shape)


def _star(rng: np.random.Generator) -> np.ndarray:
    outer = _regular_polygon(5, -np.pi / 2) * 1.25
    inner = _regular_polygon(5, -np.pi / 2 + np.pi / 5) * 1.25 * rng.uniform(0.38, 0.5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


# Class name -> outline of the shape in unit coordinates (radius about 1, centred on 0). Each
# takes the image's generator, which some use to jitter their outline.
SHAPES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
}
CLASS_NAMES: tuple[str, ...] = tuple(SHAPES)


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a foreground and a background colour that are far enough apart to see."""
    while True:
        foreground, background = rng.uniform(0.0, 255.0, size=(2, 3))
        if abs(_luminance(foreground) - _luminance(background)) >= MIN_LUMINANCE_GAP:
            return foreground, background


def _background(rng: np.random.Generator, colour: np.ndarray, size: int) -> np.ndarray:
    """A colour with a linear shading in a random direction and soft blotches: float HxWx3."""
    axis = np.linspace(-1.0, 1.0, size)
    xx, yy = np.meshgrid(axis, axis)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    shade = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(*SHADING)
    blotches = rng.normal(0.0, 1.0, size=(TEXTURE_CELLS, TEXTURE_CELLS))
    texture = Image.fromarray(blotches.astype(np.float32), "F").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    texture_pixels = np.asarray(texture, dtype=np.float64) * rng.uniform(*TEXTURE_AMPLITUDE)
    return colour[None, None, :] + (shade + texture_pixels)[:, :, None]


def _shape_mask(rng: np.random.Generator, shape: str, size: int) -> np.ndarray:
    """Draw the class's shape at a random place, scale, rotation and aspect: float HxW in 0..1."""
    outline = SHAPES[shape](rng)
    radius = rng.uniform(*RADIUS_FRACTION) * size
    aspect = rng.uniform(*ASPECT)
    angle = np.radians(rng.uniform(*ROTATION_DEGREES))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (outline * [aspect, 1.0 / aspect]) @ rotation.T * radius
    # Keep the whole shape inside the frame: a cropped star can look like a triangle.
    extent = (points.max(axis=0) - points.min(axis=0)).max()
    points *= min(1.0, (size - 2.0) / extent)
    low = -points.min(axis=0) + 1.0
    high = size - points.max(axis=0) - 1.0
    centre = rng.uniform(low, np.maximum(low, high))
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    polygon = [tuple(p) for p in ((points + centre) * SUPERSAMPLE).tolist()]
    ImageDraw.Draw(big).polygon(polygon, fill=255)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def draw_sample(rng: np.random.Generator, shape: str, size: int = DEFAULT_SIZE) -> Image.Image:
    """Draw one sample image of `shape` (a key of `SHAPES`) as a `size` x `size` RGB image.

    Args:
        rng: the random source; the same generator state gives the same pixels.
        shape: the class name, one of `CLASS_NAMES`.
        size: the width and height in pixels, default 64.

    Example:
        >>> draw_sample(np.random.default_rng(0), "star").size
        (64, 64)
    """
    foreground, background = _contrasting_colours(rng)
    mask = _shape_mask(rng, shape, size)[:, :, None]
    pixels = _background(rng, background, size) * (1.0 - mask) + foreground * mask
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_RADIUS)))
    noise = rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=(size, size, 3))
    noisy = np.asarray(image, dtype=np.float64) + noise
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # No pnginfo and a fixed compression level: the bytes depend on the pixels alone.
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def build_sample_archive(
    out: Path,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
) -> Path:
    """Write the sample shapes dataset to the zip `out` and return `out`.

    Args:
        out: where to write the archive; missing parent folders are created.
        per_class: images per class, default 80.
        size: width and height of every image in pixels, default 64.
        seed: the random seed, default 0; the same arguments give a byte-identical archive.

    Example:
        >>> build_sample_archive(Path("/tmp/shapes.zip"), per_class=5)  # doctest: +SKIP
        PosixPath('/tmp/shapes.zip')
    """
    if per_class < 1:
        raise ValueError(f"Expected `per_class` to be at least 1. Received: per_class={per_class}")
    if size < MIN_SIZE:
        raise ValueError(f"Expected `size` to be at least {MIN_SIZE}. Received: size={size}")
    entries: dict[str, bytes] = {}
    for class_index, shape in enumerate(CLASS_NAMES):
        for image_index in range(per_class):
            # One generator per image: an image does not change when counts or classes do.
            rng = np.random.default_rng([seed, class_index, image_index])
            name = f"{ROOT_FOLDER}/{shape}/{shape}_{image_index:03d}.png"
            entries[name] = _png_bytes(draw_sample(rng, shape, size))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # `create_system` defaults to the building platform's: pinned, with the file mode,
            # so that an archive built on Windows has the same bytes.
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: build the archive and print where it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip file to write")
    parser.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS, help="images per class")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image width and height")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    out = build_sample_archive(args.out, per_class=args.per_class, size=args.size, seed=args.seed)
    print(f"Wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
