"""Storing uploaded pictures: checked with Pillow, named by content, under ``TL_HOME``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import image_bytes, jpeg_bytes, png_bytes
from tl_core.data.uploads import store_upload, uploads_dir
from tl_core.errors import DataError


def test_a_picture_is_stored_as_uploaded_under_a_name_from_its_content(tl_home: Path) -> None:
    data = jpeg_bytes((40, 30))

    path = store_upload(data, name="../../etc/cat.png")

    assert path.parent == tl_home.resolve() / "uploads"
    assert path.name == f"{hashlib.sha256(data).hexdigest()[:12]}.jpg"
    assert path.read_bytes() == data


def test_the_same_picture_twice_is_stored_once() -> None:
    data = png_bytes((20, 20))

    first = store_upload(data, name="a.png")
    second = store_upload(data, name="b.png")

    assert first == second
    assert [p.name for p in uploads_dir().iterdir()] == [first.name]


def test_a_format_browsers_cannot_show_is_stored_as_png_with_the_same_pixels() -> None:
    picture = Image.new("RGB", (24, 18), (10, 200, 30))

    path = store_upload(image_bytes(picture, "TIFF"), name="scan.tif")

    assert path.suffix == ".png"
    with Image.open(path) as stored:
        assert stored.format == "PNG"
        assert stored.tobytes() == picture.tobytes()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"just some text", "not an image"),
        (png_bytes((8, 8)), "too small"),
        (jpeg_bytes((64, 64))[:300], "corrupt"),
    ],
    ids=["not-an-image", "too-small", "truncated"],
)
def test_an_unusable_upload_says_why_and_stores_nothing(data: bytes, reason: str) -> None:
    with pytest.raises(DataError, match=reason) as caught:
        store_upload(data, name="holiday.jpg")

    message = str(caught.value)
    assert message.startswith("'holiday.jpg' cannot be classified")
    assert "Upload a photo as JPEG, PNG" in message
    assert not any(uploads_dir().iterdir())


def test_a_write_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)

    with pytest.raises(DataError, match=r"No space left on device\. Free some disk space"):
        store_upload(png_bytes((20, 20)))
    assert not any(uploads_dir().iterdir())
