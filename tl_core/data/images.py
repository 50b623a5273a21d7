"""Decode one image from bytes into a normalised RGB picture, or say why it cannot be used.

Rules, each for a measured reason (a 9000×9000 PNG of 9.9 KB opens without a warning at
Pillow's default limits; ``verify()`` passes a truncated JPEG; ``convert("RGB")`` clips
16-bit ``I;16`` pixels to white):
- the format is decided by content, not by the file name, and must be in `ALLOWED_FORMATS`;
- the pixel count is checked from the header before anything is decoded, and Pillow's
  decompression-bomb warning is an error;
- images are fully decoded (``load()``), because ``verify()`` passes truncated files;
- EXIF orientation is applied, transparency is composited on white, 16-bit and float
  images are scaled (not clipped) to 8 bits, every mode ends as RGB, animations give
  their first frame.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Pillow formats we decode (camera MPO files open as JPEG). Anything else (PSD, EPS, ICO,
#: …) is skipped with a reason.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

_BACKGROUND = (255, 255, 255)


class ImageRejected(Exception):
    """An image cannot be used; ``str(exc)`` is a short reason for the dataset report."""


_EXIF_ORIENTATION = 0x0112

# Installed once, process-wide: `warnings.catch_warnings` is process-wide too and not
# thread-safe, and ingest decodes on several threads. A decompression bomb is an error
# (a 9.9 KB PNG can declare 81 megapixels); Pillow's notes about damaged EXIF are noise:
# the picture itself still decodes, or fails on its own.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", message=r"(Possibly )?[Cc]orrupt EXIF", category=UserWarning)


@dataclass(frozen=True)
class DecodedImage:
    """A normalised RGB image with the facts the ingest report needs.

    ``keep_original`` is true when the source bytes are already a plain RGB JPEG within
    the size limit, upright: storing them as they are loses nothing and costs nothing.
    """

    image: Image.Image
    source_format: str
    original_size: tuple[int, int]
    pixel_hash: str
    keep_original: bool = False


def decode_image(
    data: bytes,
    *,
    max_pixels: int = 25_000_000,
    min_side: int = 16,
    max_side: int = 1024,
) -> DecodedImage:
    """Decode `data` into an RGB image that is safe to store and train on.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this (default 25 MP).
        min_side: refuse images whose shorter side is below this (default 16 px).
        max_side: the returned image is at most this long on its longest side (default
            1024); large JPEGs are decoded at a reduced scale directly, which is much faster.

    Returns:
        A `DecodedImage`; ``pixel_hash`` identifies identical pictures stored in the
        same format.

    Raises:
        ImageRejected: with a short reason (not an image, format not allowed, too large,
            too small, truncated or corrupt).

    Example:
        >>> decoded = decode_image(png_bytes)  # doctest: +SKIP
        >>> decoded.image.mode
        'RGB'
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(_unidentified_reason(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"too many pixels (over {max_pixels:,})") from None
    except Exception as exc:  # noqa: BLE001 - hostile headers make Pillow raise anything
        raise ImageRejected(f"corrupt image header ({exc})") from None
    source_format = image.format or "unknown"
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(f"too many pixels ({width}×{height} is over {max_pixels:,})")
    if min(width, height) < min_side:
        raise ImageRejected(
            f"too small ({width}×{height}; the shorter side must be at least {min_side} px)"
        )
    try:
        upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        keep_original = (
            source_format == "JPEG"
            and image.mode == "RGB"
            and upright
            and max(width, height) <= max_side
        )
        if source_format == "JPEG" and max(width, height) > max_side:
            # DCT scaling decodes at 1/2, 1/4 or 1/8 size directly: with a target of half
            # the limit, most photos land between max_side/2 and max_side and need no
            # resampling at all. It still reads every byte, so truncation is still caught.
            image.draft(image.mode, (max_side // 2, max_side // 2))
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) if not upright else image
        rgb = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"too many pixels (over {max_pixels:,})") from None
    except Exception as exc:  # noqa: BLE001 - e.g. TypeError from a mistyped EXIF tag
        raise ImageRejected(f"truncated or corrupt image data ({exc})") from None
    pixel_hash = hashlib.blake2b(rgb.tobytes(), digest_size=16, person=b"tl-pixels").hexdigest()
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return DecodedImage(
        rgb, source_format, (width, height), f"{pixel_hash}-{width}x{height}", keep_original
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or losing transparency."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's convert("RGB") clips 16-bit values at 255; scale by the bit depth.
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
        array = np.nan_to_num(array)
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale + 0.5).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        # A colour key (PNG tRNS) makes one palette index, grey level or RGB colour transparent.
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "nested archive (zip); not opened, unpack it into the class folders"),
    (b"\x1f\x8b", "nested archive (gzip); not opened, unpack it into the class folders"),
    (b"Rar!", "nested archive (rar); not opened, unpack it into the class folders"),
    (b"7z\xbc\xaf\x27\x1c", "nested archive (7z); not opened, unpack it into the class folders"),
    (b"8BPS", "image format not supported (PSD); save it as PNG or JPEG"),
    (b"%PDF", "not an image (PDF document)"),
)


def _unidentified_reason(data: bytes) -> str:
    """Explain why Pillow could not identify `data` as an allowed image."""
    for signature, reason in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return reason
    if data[257:262] == b"ustar":
        return "nested archive (tar); not opened, unpack it into the class folders"
    try:
        with Image.open(io.BytesIO(data)) as other:
            return f"image format not supported ({other.format}); save it as PNG or JPEG"
    except Exception:  # noqa: BLE001 - any failure here just means "not an image"
        return "not an image (content is not a recognised picture format)"


def encode_stored(image: Image.Image) -> bytes:
    """Return the stored form of a normalised image: JPEG, quality 95, no chroma subsampling."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()
