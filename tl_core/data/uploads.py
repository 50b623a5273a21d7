"""Keep a picture someone uploaded to be classified: checked with Pillow, stored by content.

The web process never loads a model, but it may look at pictures: `decode_image` decides
from the bytes alone whether they are a usable image (format, pixel count, truncation),
with Pillow only. A usable upload is stored at once as
``TL_HOME/uploads/<sha256[:12]>.<ext>``: the name comes from the content, never from the
user, so no upload names a path of its own choosing, and one picture uploaded twice is
stored once. Formats browsers show (JPEG, PNG, GIF, WebP, BMP) are kept byte for byte;
any other allowed format (TIFF) is stored as its decoded picture in PNG, which decodes
to the same pixels, so the page can show what the model sees.

Example:
    >>> path = store_upload(photo_bytes, name="cat.jpg")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    '3f9a0c1d2e4b.jpg'
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from tl_core.data.images import ImageRejected, decode_image
from tl_core.errors import DataError
from tl_core.fsutil import write_bytes_atomic
from tl_core.workspace import tl_home

__all__ = ["UPLOADS_DIR", "store_upload", "uploads_dir"]

#: Folder of ``TL_HOME`` that holds uploaded pictures.
UPLOADS_DIR = "uploads"

#: Formats kept as uploaded (browsers display them), with the suffix they are stored under.
_KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}


def uploads_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/uploads``, created when missing."""
    path = (home or tl_home()) / UPLOADS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_upload(data: bytes, *, name: str = "image", home: Path | None = None) -> Path:
    """Check that `data` is a usable picture and store it under ``TL_HOME/uploads``.

    Args:
        data: the uploaded file's bytes.
        name: the file's name as the user knows it, for messages only (default
            ``"image"``); it plays no part in where the file goes.
        home: the workspace root (default `tl_home()`).

    Returns:
        The stored file, ``<sha256 of data, 12 hex digits>.<ext>`` with the extension of
        the format found in the content; storing the same bytes again returns the same
        path and writes nothing.

    Raises:
        DataError: the bytes are not a usable picture (the message says why and what to
            upload instead), or the file cannot be written.

    Example:
        >>> store_upload(b"not a picture", name="notes.txt")  # doctest: +SKIP
        DataError: 'notes.txt' cannot be classified: not an image (…). Upload a photo …
    """
    try:
        decoded = decode_image(data)
    except ImageRejected as exc:
        raise DataError(
            f"{name!r} cannot be classified: {exc}. Upload a photo as JPEG, PNG, WebP or "
            "BMP, at least 16 px on its shorter side."
        ) from None
    suffix = _KEPT_FORMATS.get(decoded.source_format)
    if suffix is None:
        suffix = ".png"
        buffer = io.BytesIO()
        decoded.image.save(buffer, format="PNG")
        content = buffer.getvalue()
    else:
        content = data
    folder = uploads_dir(home)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
    if not path.is_file():
        _write_atomic(path, content)
    return path


def _write_atomic(path: Path, content: bytes) -> None:
    # Two sessions (threads of one server) may store the same picture at once: each
    # writes a temporary file of its own, and the rename makes the stored file appear
    # whole or not at all.
    try:
        write_bytes_atomic(path, content, durable=False)
    except OSError as exc:
        raise DataError(
            f"Cannot store the uploaded picture in the workspace: {exc.strerror or exc}. "
            "Free some disk space or check the folder's permissions, then upload it again."
        ) from exc
