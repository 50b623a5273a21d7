"""Builders for test inputs: tiny images and zip archives, made in memory.

Shared by the unit tests and the app tests. Everything here is deterministic, small and
independent of `tl_core`, so a test states its input in a line or two:

    make_zip(tmp_path / "pets.zip", class_folders({"cat": 3, "dog": 3}))
    make_zip(tmp_path / "odd.zip", [ZipEntry("cat/x.png", png_bytes(), flag_bits=ENCRYPTED_FLAG)])

Hostile archives need what `zipfile` will not write by itself (it resets the flag bits,
always flags non-ASCII names as UTF-8 and refuses unknown compression methods):
`ZipEntry` describes such an entry, and `zip_bytes` patches the headers after writing.
The same bytes always give the same archive, so dataset ids are stable across runs.
"""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: ``external_attr`` of a Unix symbolic link entry (``lrwxrwxrwx``).
SYMLINK_ATTR = (stat.S_IFLNK | 0o777) << 16

#: General-purpose flag bit of an encrypted entry.
ENCRYPTED_FLAG = 0x1

#: The keys of ``inspect-data --json`` (`DatasetReport.to_json`): the contract, then extras.
REPORT_JSON_KEYS = frozenset(
    {"classes", "num_images", "skipped", "warnings", "split"}
    | {"dataset_id", "source_name", "junk_ignored"}
)

_WRITABLE_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = b"PK\x05\x06"

Size = tuple[int, int]
Color = int | tuple[int, ...]


def image_bytes(image: Image.Image, fmt: str, **save_options: object) -> bytes:
    """Return `image` saved in format `fmt` (``"PNG"``, ``"JPEG"``, ``"ICO"``, …)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def png_bytes(size: Size = (24, 24), color: Color = (200, 40, 40), mode: str = "RGB") -> bytes:
    """Return a PNG of one colour, e.g. ``png_bytes((32, 16), (0, 0, 0, 0), "RGBA")``."""
    return image_bytes(Image.new(mode, size, color), "PNG")


def jpeg_bytes(
    size: Size = (24, 24),
    color: Color = (40, 120, 200),
    mode: str = "RGB",
    *,
    orientation: int | None = None,
    quality: int = 95,
) -> bytes:
    """Return a JPEG of one colour; `orientation` sets the EXIF Orientation tag (1–8)."""
    options: dict[str, object] = {"quality": quality}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    return image_bytes(Image.new(mode, size, color), "JPEG", **options)


def picture(key: object, size: Size = (24, 24), fmt: str = "PNG") -> bytes:
    """Return a small image whose pixels are distinct for each `key` (a name or a number).

    Use it wherever two entries must not count as duplicates of each other.
    """
    digest = hashlib.blake2b(repr(key).encode(), digest_size=3).digest()
    image = Image.new("RGB", size, tuple(digest))
    image.putpixel((0, 0), (255 - digest[0], 255 - digest[1], 255 - digest[2]))
    return image_bytes(image, fmt)


def noise_bytes(size: Size = (48, 48), fmt: str = "PNG", *, seed: int = 0) -> bytes:
    """Return an image of random pixels: it does not compress, so its size is its content."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image_bytes(Image.fromarray(pixels), fmt)


def mistyped_exif_jpeg() -> bytes:
    """Return a rotated JPEG whose EXIF stores text in XPosition, a RATIONAL tag.

    Pillow opens it, but rewriting the EXIF while applying the orientation raises
    TypeError, not an OSError: an input that must be skipped, never crash an ingest.
    """
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"  # Make, type 2 (ASCII)
    raw = exif.tobytes()  # big-endian ("MM"): the entry starts with tag and type
    assert raw.count(b"\x01\x0f\x00\x02") == 1
    raw = raw.replace(b"\x01\x0f\x00\x02", b"\x01\x1e\x00\x02")  # Make → XPosition
    return image_bytes(Image.new("RGB", (24, 24), (9, 9, 9)), "JPEG", exif=raw)


def class_folders(
    counts: Mapping[str, int], *, prefix: str = "", size: Size = (24, 24), fmt: str = "PNG"
) -> dict[str, bytes]:
    """Return entries ``{prefix}{class}/{n:03d}.{ext}`` with a distinct picture each.

    Example: ``class_folders({"cat": 2, "dog": 2}, prefix="train/")`` gives
    ``train/cat/000.png``, ``train/cat/001.png``, ``train/dog/000.png``, ``train/dog/001.png``.
    """
    ext = "jpg" if fmt == "JPEG" else fmt.lower()
    return {
        name: picture(name, size, fmt)
        for label, count in counts.items()
        for name in (f"{prefix}{label}/{n:03d}.{ext}" for n in range(count))
    }


def bomb_png(width: int, height: int) -> bytes:
    """Return a valid all-black 1-bit PNG of `width` × `height`, built without Pillow.

    A 9000 × 9000 image is about 10 KB: a decompression bomb that costs the test nothing.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        checksum = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", checksum)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    body = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class ZipEntry:
    """One archive entry, with the header fields a hostile archive may set.

    Args:
        name: the entry name (use ``/`` between folders; a trailing ``/`` is a folder).
        data: the uncompressed bytes.
        compress_type: ``zipfile.ZIP_*``; any other number (9 = Deflate64, 99 = AES) is
            written stored and the method field is patched afterwards.
        external_attr: e.g. `SYMLINK_ATTR` for a symbolic link.
        flag_bits: OR-ed into the header flags after writing, e.g. `ENCRYPTED_FLAG`.
        raw_name: the name's exact bytes, stored without the UTF-8 flag, as old zip tools
            do (``b"caf\\xc3\\xa9/1.png"`` for UTF-8, ``b"caf\\x82/1.png"`` for cp437).
            `name` is then only a placeholder and is ignored.
        declared_size: the uncompressed size the headers claim, instead of the real one.
    """

    name: str
    data: bytes = b""
    compress_type: int | None = None
    external_attr: int | None = None
    flag_bits: int = 0
    raw_name: bytes | None = None
    declared_size: int | None = None

    @property
    def needs_patch(self) -> bool:
        return bool(
            self.flag_bits
            or self.raw_name is not None
            or self.declared_size is not None
            or (self.compress_type is not None and self.compress_type not in _WRITABLE_METHODS)
        )


Entries = Mapping[str, bytes] | Iterable[ZipEntry | tuple[str, bytes]]


def zip_bytes(
    entries: Entries,
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    declared_count: int | None = None,
) -> bytes:
    """Return a zip archive of `entries`, in the order given.

    Args:
        entries: ``{name: data}``, or a sequence of `ZipEntry` or ``(name, data)`` pairs
            (a sequence may repeat a name: a duplicate entry).
        compression: the method of entries that do not set their own.
        declared_count: the entry count the end record claims, instead of the real one.
    """
    items = [_as_entry(e) for e in (entries.items() if isinstance(entries, Mapping) else entries)]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        infos = [_write(zf, entry, compression) for entry in items]
    blob = bytearray(buffer.getvalue())
    end = blob.rfind(_END_RECORD)
    (central,) = struct.unpack_from("<L", blob, end + 16)
    for entry, info in zip(items, infos, strict=True):
        length = _CENTRAL_HEADER.unpack_from(blob, central)[12:15]
        if entry.needs_patch:
            _patch(blob, info.header_offset, _LOCAL_HEADER, entry, flags=3, method=4, size=9)
            _patch(blob, central, _CENTRAL_HEADER, entry, flags=5, method=6, size=11)
        central += _CENTRAL_HEADER.size + sum(length)
    if declared_count is not None:
        struct.pack_into("<HH", blob, end + 8, declared_count, declared_count)
    return bytes(blob)


def make_zip(path: Path, entries: Entries, **options: object) -> Path:
    """Write `zip_bytes(entries, **options)` to `path` and return `path`."""
    path.write_bytes(zip_bytes(entries, **options))
    return path


def _as_entry(item: ZipEntry | tuple[str, bytes]) -> ZipEntry:
    return item if isinstance(item, ZipEntry) else ZipEntry(*item)


def _write(zf: zipfile.ZipFile, entry: ZipEntry, compression: int) -> zipfile.ZipInfo:
    name = entry.name
    if entry.raw_name is not None:
        # Same length as the raw bytes, pure ASCII: zipfile writes it without the UTF-8 flag.
        name = "".join(chr(b) if 32 < b < 127 else "_" for b in entry.raw_name)
    info = zipfile.ZipInfo(name)
    method = entry.compress_type if entry.compress_type is not None else compression
    info.compress_type = method if method in _WRITABLE_METHODS else zipfile.ZIP_STORED
    if entry.external_attr is not None:
        info.external_attr = entry.external_attr
    else:  # what `ZipFile.writestr` sets for a plain name
        info.external_attr = ((0o40775 << 16) | 0x10) if info.is_dir() else 0o600 << 16
    zf.writestr(info, entry.data)
    return info


def _patch(
    blob: bytearray,
    offset: int,
    header: struct.Struct,
    entry: ZipEntry,
    *,
    flags: int,
    method: int,
    size: int,
) -> None:
    """Patch one local or central header in place; field numbers follow `header`."""
    fields = list(header.unpack_from(blob, offset))
    fields[flags] |= entry.flag_bits
    if entry.compress_type is not None and entry.compress_type not in _WRITABLE_METHODS:
        fields[method] = entry.compress_type
    if entry.declared_size is not None:
        fields[size] = entry.declared_size
    header.pack_into(blob, offset, *fields)
    if entry.raw_name is not None:
        start = offset + header.size
        blob[start : start + len(entry.raw_name)] = entry.raw_name
