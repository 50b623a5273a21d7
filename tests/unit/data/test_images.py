"""decode_image: formats by content, safety checks, and every mode normalised to RGB."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.helpers import (
    bomb_png,
    image_bytes,
    jpeg_bytes,
    mistyped_exif_jpeg,
    noise_bytes,
    png_bytes,
    zip_bytes,
)
from tl_core.data import images
from tl_core.data.images import ALLOWED_FORMATS, ImageRejected, decode_image, encode_stored


def rejection(data: bytes, **options: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, **options)
    return str(caught.value)


def pixel(data: bytes, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    return decode_image(data).image.getpixel(xy)


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 3) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        f"{actual} is not within {tolerance} of {expected}"
    )


# --- formats -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_every_allowed_format_decodes_to_rgb_of_the_same_size(fmt: str) -> None:
    data = image_bytes(Image.new("RGB", (32, 20), (10, 200, 30)), fmt)

    decoded = decode_image(data)

    assert decoded.source_format == fmt
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (32, 20)
    assert decoded.original_size == (32, 20)


def test_format_is_decided_by_content_not_by_name() -> None:
    # decode_image never sees a name: a JPEG is a JPEG whatever the entry was called.
    assert decode_image(jpeg_bytes()).source_format == "JPEG"
    assert decode_image(png_bytes()).source_format == "PNG"


@pytest.mark.parametrize("fmt", ["ICO", "TGA", "PPM", "PCX", "SGI", "QOI"])
def test_formats_pillow_knows_but_we_do_not_allow_are_not_supported(fmt: str) -> None:
    data = image_bytes(Image.new("RGB", (32, 32), (1, 2, 3)), fmt)

    reason = rejection(data)

    assert reason == f"image format not supported ({fmt}); save it as PNG or JPEG"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"8BPS\x00\x01" + bytes(40), "image format not supported (PSD)", id="psd"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\n", "not an image (PDF document)", id="pdf"),
        pytest.param(b"hello, I am a text file\n", "not an image", id="text"),
        pytest.param(b"", "not an image", id="empty"),
        pytest.param(zip_bytes({"a.png": png_bytes()}), "nested archive (zip)", id="zip"),
        pytest.param(gzip.compress(png_bytes(), mtime=0), "nested archive (gzip)", id="gzip"),
        pytest.param(b"Rar!\x1a\x07\x00" + bytes(20), "nested archive (rar)", id="rar"),
        pytest.param(b"7z\xbc\xaf\x27\x1c" + bytes(20), "nested archive (7z)", id="7z"),
    ],
)
def test_content_that_is_not_an_allowed_image_is_named_in_the_reason(
    data: bytes, reason: str
) -> None:
    assert rejection(data).startswith(reason)


def test_a_tar_archive_is_recognised_as_a_nested_archive() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("cat/1.png")
        payload = png_bytes()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))

    assert rejection(buffer.getvalue()).startswith("nested archive (tar)")


# --- safety --------------------------------------------------------------------------


def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bomb_png(9000, 9000)  # 81 MP in about 10 KB
    assert len(data) < 20_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels of a bomb must never be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)

    assert rejection(data) == "too many pixels (9000×9000 is over 25,000,000)"


def test_an_image_beyond_pillows_own_bomb_limit_is_refused_as_too_many_pixels() -> None:
    # Over twice Image.MAX_IMAGE_PIXELS, Pillow raises while opening, before our own check.
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 8

    assert rejection(bomb_png(side, side)).startswith("too many pixels")


def test_max_pixels_is_configurable() -> None:
    assert rejection(png_bytes((40, 40)), max_pixels=1000) == (
        "too many pixels (40×40 is over 1,000)"
    )


@pytest.mark.parametrize("size", [(8, 8), (15, 200), (200, 15)])
def test_an_image_with_a_side_under_min_side_is_too_small(size: tuple[int, int]) -> None:
    width, height = size

    reason = rejection(png_bytes(size))

    assert reason == f"too small ({width}×{height}; the shorter side must be at least 16 px)"


def test_min_side_is_configurable() -> None:
    assert decode_image(png_bytes((8, 8)), min_side=8).image.size == (8, 8)


def test_a_truncated_jpeg_is_refused_although_verify_passes() -> None:
    data = noise_bytes(fmt="JPEG")
    truncated = data[: len(data) // 2]
    Image.open(io.BytesIO(truncated)).verify()  # the trap: verify() finds nothing wrong

    assert rejection(truncated).startswith("truncated or corrupt image data")


def test_a_truncated_large_jpeg_is_refused_even_when_decoded_at_reduced_scale() -> None:
    data = noise_bytes((256, 128), "JPEG")

    assert rejection(data[: len(data) // 2], max_side=32).startswith(
        "truncated or corrupt image data"
    )


def test_a_truncated_png_is_refused() -> None:
    data = noise_bytes()

    assert rejection(data[: len(data) // 2]).startswith("truncated or corrupt image data")


def test_a_png_with_a_damaged_header_is_not_recognised_as_an_image() -> None:
    data = bytearray(png_bytes())
    data[29] ^= 0xFF  # inside the IHDR checksum: Pillow's PNG plugin declines the file

    assert rejection(bytes(data)).startswith("not an image")


def test_an_image_that_makes_pillow_raise_an_unexpected_error_is_refused_not_crashed() -> None:
    # Found by fuzzing: the TypeError it raises used to crash the whole ingest.
    assert rejection(mistyped_exif_jpeg()).startswith("truncated or corrupt image data")


# --- normalisation -------------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    data = jpeg_bytes((40, 20), orientation=6)

    decoded = decode_image(data)

    assert decoded.image.size == (20, 40)
    assert decoded.original_size == (40, 20)
    assert not decoded.keep_original


def test_transparent_pixels_become_white_not_black() -> None:
    image = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    image.putpixel((1, 1), (255, 0, 0, 128))
    data = image_bytes(image, "PNG")

    rgb = decode_image(data).image

    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert_close(rgb.getpixel((1, 1)), (255, 127, 127), tolerance=1)


def test_a_palette_image_with_a_transparent_index_is_composited_on_white() -> None:
    image = Image.new("P", (24, 24), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((5, 5), 1)
    data = image_bytes(image, "PNG", transparency=0)

    rgb = decode_image(data).image

    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((5, 5)) == (0, 0, 255)


@pytest.mark.parametrize(
    ("mode", "color", "key"),
    [("RGB", (10, 20, 30), (10, 20, 30)), ("L", 7, 7)],
    ids=["rgb", "grey"],
)
def test_a_colour_keyed_transparent_png_is_composited_on_white(
    mode: str, color: int | tuple[int, ...], key: int | tuple[int, ...]
) -> None:
    image = Image.new(mode, (24, 24), color)
    image.putpixel((3, 3), 200 if mode == "L" else (200, 100, 50))
    data = image_bytes(image, "PNG", transparency=key)

    rgb = decode_image(data).image

    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((3, 3)) == ((200, 200, 200) if mode == "L" else (200, 100, 50))


def test_grey_with_alpha_is_composited_on_white() -> None:
    image = Image.new("LA", (24, 24), (0, 0))
    image.putpixel((2, 2), (50, 255))
    data = image_bytes(image, "PNG")

    rgb = decode_image(data).image

    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((2, 2)) == (50, 50, 50)


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [((0, 255, 255, 0), (255, 0, 0)), ((255, 0, 255, 0), (0, 255, 0)), ((0, 0, 0, 255), (0, 0, 0))],
    ids=["red", "green", "black"],
)
def test_a_cmyk_jpeg_becomes_rgb_with_the_right_colours(
    cmyk: tuple[int, ...], rgb: tuple[int, int, int]
) -> None:
    data = image_bytes(Image.new("CMYK", (24, 24), cmyk), "JPEG", quality=95)

    assert_close(pixel(data, (12, 12)), rgb, tolerance=4)


def test_a_16_bit_png_is_scaled_not_clipped() -> None:
    image = Image.fromarray(np.full((24, 24), 3000, dtype=np.uint16))
    assert image.mode == "I;16"

    # 3000 / 65535 * 255 = 11.7; Pillow's own convert("RGB") would give 255.
    assert pixel(image_bytes(image, "PNG")) == (12, 12, 12)


def test_a_16_bit_png_with_small_values_stays_dark() -> None:
    image = Image.fromarray(np.full((24, 24), 200, dtype=np.uint16))

    assert pixel(image_bytes(image, "PNG")) == (1, 1, 1)


def test_a_float_tiff_is_stretched_to_the_8_bit_range() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 24, dtype=np.float32), (20, 1))
    data = image_bytes(Image.fromarray(ramp), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"

    rgb = decode_image(data).image

    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((23, 0)) == (255, 255, 255)
    assert 100 < rgb.getpixel((12, 0))[0] < 155


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 3

    assert pixel(data) == (255, 0, 0)


def test_a_one_bit_image_becomes_black_and_white_rgb() -> None:
    image = Image.new("1", (24, 24), 0)
    image.putpixel((4, 4), 1)

    rgb = decode_image(image_bytes(image, "PNG")).image

    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((4, 4)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_large_image_is_downscaled_to_max_side_keeping_its_aspect(fmt: str) -> None:
    data = image_bytes(Image.new("RGB", (200, 100), (90, 90, 90)), fmt)

    decoded = decode_image(data, max_side=32)

    assert decoded.image.size == (32, 16)
    assert decoded.original_size == (200, 100)


def test_the_same_picture_gets_the_same_pixel_hash_and_another_picture_does_not() -> None:
    red = decode_image(png_bytes(color=(255, 0, 0))).pixel_hash

    assert decode_image(png_bytes(color=(255, 0, 0))).pixel_hash == red
    assert decode_image(png_bytes(color=(0, 0, 255))).pixel_hash != red


def test_a_lossless_copy_in_another_format_has_the_same_pixel_hash() -> None:
    as_png = decode_image(noise_bytes((24, 24), "PNG")).pixel_hash

    assert decode_image(noise_bytes((24, 24), "BMP")).pixel_hash == as_png


def test_a_plain_upright_rgb_jpeg_may_be_stored_as_it_is() -> None:
    assert decode_image(jpeg_bytes()).keep_original
    assert not decode_image(png_bytes()).keep_original
    assert not decode_image(jpeg_bytes(mode="L", color=100)).keep_original


def test_the_stored_form_is_a_jpeg_of_the_same_picture() -> None:
    decoded = decode_image(png_bytes((32, 16), (0, 128, 255)))

    stored = Image.open(io.BytesIO(encode_stored(decoded.image)))

    assert stored.format == "JPEG"
    assert stored.size == (32, 16)
    assert_close(stored.getpixel((8, 8)), (0, 128, 255))


# --- warnings: installed once, never toggled per call --------------------------------


def jpeg_with_truncated_exif() -> bytes:
    """A JPEG whose EXIF directory claims three entries but holds one."""
    exif = Image.Exif()
    exif[0x0112] = 1
    raw = exif.tobytes()  # b"Exif\0\0" + "MM" header; the entry count is at bytes 14–15
    return image_bytes(Image.new("RGB", (24, 24)), "JPEG", exif=raw[:14] + b"\x00\x03" + raw[16:])


def test_pillow_notes_about_damaged_metadata_stay_off_stderr(tmp_path: Path) -> None:
    # Under pytest every warning is an error, so check what a CLI user would see.
    sample = tmp_path / "exif.jpg"
    sample.write_bytes(jpeg_with_truncated_exif())
    script = (
        "import sys; from pathlib import Path; from tl_core.data.images import decode_image; "
        "print(decode_image(Path(sys.argv[1]).read_bytes()).image.size)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(sample)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )

    assert done.stdout.strip() == "(24, 24)"
    assert done.stderr == ""


def test_decoding_in_two_threads_leaves_the_warning_filters_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_inside = threading.Event()
    second_inside = threading.Event()
    first_done = threading.Event()
    real_to_rgb = images._to_rgb

    def choreographed(image: Image.Image) -> Image.Image:
        # Both calls are inside decode_image's catch_warnings; the first leaves first.
        if threading.current_thread().name == "first":
            first_inside.set()
            second_inside.wait(5)
        else:
            second_inside.set()
            first_done.wait(5)
        return real_to_rgb(image)

    def first() -> None:
        decode_image(png_bytes())
        first_done.set()

    monkeypatch.setattr(images, "_to_rgb", choreographed)
    before = list(warnings.filters)
    one = threading.Thread(target=first, name="first")
    two = threading.Thread(target=decode_image, args=(png_bytes(),), name="second")
    one.start()
    first_inside.wait(5)
    two.start()
    one.join(5)
    two.join(5)

    assert warnings.filters == before
