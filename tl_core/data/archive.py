"""Safe ingest of a labeled image zip into a normalised dataset folder.

An archive is never extracted as it is. Its central directory is checked against
`IngestLimits`, each entry is read through ``ZipFile.open`` while its bytes are counted,
decoded by content (`tl_core.data.images`) and written under a generated name:

```
TL_HOME/datasets/<sha12>/report.json
TL_HOME/datasets/<sha12>/images/<split>/<class>/<000001>.jpg
```

``<sha12>`` is a hash of the archive bytes, so the same archive twice is one dataset.
The folder appears atomically (built aside, then renamed), so a crash or a refused
archive never leaves half a dataset and never touches one that is already stored.
The folder it is built in, ``TL_HOME/datasets/.ingest-<sha12>-<pid>-*``, names the
process that builds it, so the leftovers of a killed ingest can be told from the work
of a live one (`discard_staging`).

Layouts recognised: a folder per class; any number of single wrapper folders around
them (``my data/cat/…``); split folders (``train/``, ``val/``, ``validation/``,
``test/``, …) around class folders. Hidden files and OS metadata (``__MACOSX/``,
``._*``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) are ignored and counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import may_use_dataset, require_dataset
from tl_core.data.images import ImageRejected, decode_image, encode_stored
from tl_core.data.report import (
    SPLIT_FOLDERS,
    UNSPLIT,
    DatasetReport,
    ImageRecord,
    IngestLimits,
    SkippedFile,
)
from tl_core.errors import DataError
from tl_core.workspace import datasets_dir, safe_join

__all__ = ["archive_id", "discard_staging", "ingest_archive", "list_datasets", "load_dataset"]

#: Bump when the stored form of images changes, so old datasets are not reused.
INGEST_VERSION = 3

#: Below this many images per class, the report warns.
MIN_IMAGES_PER_CLASS = 10
#: Below this many images in all, the report calls the dataset tiny.
TINY_DATASET = 50
#: Largest/smallest class ratio from which the report warns about imbalance.
IMBALANCE_RATIO = 3.0
#: How many examples a duplicate or leakage warning names before summarising.
EXAMPLES_PER_WARNING = 3

_JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "ehthumbs.db"})
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_SUPPORTED_COMPRESSION = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATASET_ID = re.compile(r"^[0-9a-f]{12}$")
_CHUNK = 1 << 20

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Stored:
    """An image written to the staging folder, with the hash of its decoded pixels."""

    record: ImageRecord
    pixel_hash: str


@dataclass(frozen=True)
class _Planned:
    """An entry that passed the name and size checks, with the labels its path gives."""

    info: zipfile.ZipInfo
    name: str
    label: str
    split: str


def ingest_archive(
    path: str | os.PathLike[str],
    *,
    home: Path | None = None,
    limits: IngestLimits | None = None,
    source_name: str | None = None,
    progress: Progress | None = None,
) -> DatasetReport:
    """Validate a labeled image zip and store a normalised copy of its usable images.

    Args:
        path: the zip file.
        home: workspace root (default: `tl_core.workspace.tl_home()`).
        limits: caps on sizes and counts (default: `IngestLimits.from_env()`).
        source_name: name to show for the archive (default: the file name).
        progress: called as ``progress(done, total)`` while entries are processed.

    Returns:
        The `DatasetReport`, with ``root`` set to the dataset folder. Ingesting the same
        archive again returns the stored report without a second copy.

    Raises:
        DataError: the archive cannot be used at all (missing, not a zip, truncated,
            encrypted, over a cap, fewer than two classes, no usable images).

    Example:
        >>> report = ingest_archive("assets/sample_shapes.zip")  # doctest: +SKIP
        >>> sorted(report.classes)
        ['circle', 'square', 'star', 'triangle']
    """
    archive = Path(path)
    limits = limits or IngestLimits.from_env()
    source_name = source_name or archive.name
    if not archive.is_file():
        raise DataError(
            f"Cannot read {source_name!r}: the file does not exist. "
            "Check the path, or upload the zip again."
        )
    size = archive.stat().st_size
    if size > limits.max_archive_bytes:
        raise DataError(
            f"{source_name!r} is {_mib(size)}, over the limit of {_mib(limits.max_archive_bytes)}. "
            "Large archives are refused to protect the server; "
            "use fewer or smaller images (about 512 px is plenty), or split the dataset."
        )
    dataset_id = archive_id(archive)
    store = datasets_dir(home)
    root = store / dataset_id
    if (root / "report.json").is_file():
        return DatasetReport.load(root)
    _check_central_directory(archive, source_name, limits)
    with _open_zip(archive, source_name) as zf:
        infos = zf.infolist()
        # zipfile reads the directory by its byte size: the end record's count may lie.
        _check_entry_count(len(infos), source_name, limits)
        planned, skipped, junk = _plan(infos, source_name, limits)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(dataset_id, os.getpid()), dir=store))
        try:
            stored, more_skipped = _store_images(
                zf, planned, staging, source_name, limits, progress
            )
            report = _build_report(dataset_id, source_name, stored, skipped + more_skipped, junk)
            report.save(staging)
            _publish(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return DatasetReport.load(root)


def load_dataset(
    dataset_id: str, *, home: Path | None = None, actor: Identity | None = None
) -> DatasetReport:
    """Return the stored report of `dataset_id` (12 hex digits, as made by `ingest_archive`).

    Args:
        dataset_id: the dataset's id.
        home: workspace root (default `tl_home()`).
        actor: who asks (default ``None``: the operator, who may load every dataset); a
            student may load their own datasets, the teacher's, shared ones and those
            with no recorded uploader (`tl_core.classroom.ownership.may_use_dataset`).

    Raises:
        DataError: the id is malformed or no such dataset is stored.
        AccessDenied: the dataset was uploaded by another student.

    Example:
        >>> load_dataset("c3a2df1541e7").num_images  # doctest: +SKIP
        280
    """
    if not isinstance(dataset_id, str) or not _DATASET_ID.fullmatch(dataset_id):
        raise DataError(
            f"Expected a dataset id of 12 hex digits. Received: dataset_id={dataset_id!r}. "
            "Pick a dataset from the list, or ingest the archive again."
        )
    require_dataset(actor, dataset_id, home=home)
    root = safe_join(datasets_dir(home), dataset_id)
    if not (root / "report.json").is_file():
        raise DataError(
            f"No stored dataset {dataset_id!r}: it was never ingested or has been removed. "
            "Upload the archive again."
        )
    return DatasetReport.load(root)


def list_datasets(
    *, home: Path | None = None, actor: Identity | None = None
) -> list[DatasetReport]:
    """Return the stored datasets `actor` may use, newest first, without their image index
    (``images`` is empty: use `load_dataset` for the dataset you work with).

    Args:
        home: workspace root (default `tl_home()`).
        actor: who asks (default ``None``: the operator, who sees every dataset); a
            student sees only the datasets `load_dataset` would give them.

    Example:
        >>> [report.dataset_id for report in list_datasets()]  # doctest: +SKIP
        ['c3a2df1541e7']
    """
    roots = [
        p
        for p in datasets_dir(home).iterdir()
        # Staging folders of ingests in progress (".ingest-…") hold a report.json too.
        if _DATASET_ID.fullmatch(p.name)
        and (p / "report.json").is_file()
        and may_use_dataset(actor, p.name, home=home)
    ]
    roots.sort(key=lambda p: (p / "report.json").stat().st_mtime, reverse=True)
    return [DatasetReport.load(p, images=False) for p in roots]


def archive_id(path: str | os.PathLike[str]) -> str:
    """Return the dataset id the archive at `path` is stored under (12 hex digits).

    It hashes the archive's bytes (and `INGEST_VERSION`), so the same file always gets
    the same id, whatever its name. Raises `OSError` when the file cannot be read.

    Example:
        >>> archive_id("assets/sample_shapes.zip")  # doctest: +SKIP
        'c3a2df1541e7'
    """
    digest = hashlib.sha256(f"tl-ingest-v{INGEST_VERSION}\n".encode())
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _staging_prefix(dataset_id: str, pid: int) -> str:
    return f".ingest-{dataset_id}-{pid}-"


def discard_staging(dataset_id: str, pid: int, *, home: Path | None = None) -> None:
    """Delete what the ingest of `dataset_id` by the process `pid` left half built.

    Call it only once that process is known to be dead: its folder was never published,
    so it holds no dataset (a published one has been renamed to its id).

    Example:
        >>> discard_staging("c3a2df1541e7", 4242)  # doctest: +SKIP
    """
    for folder in datasets_dir(home).glob(f"{_staging_prefix(dataset_id, pid)}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):,.1f} MB"


def _not_a_zip(source_name: str, why: str) -> DataError:
    return DataError(
        f"{source_name!r} cannot be opened as a zip archive: {why}. "
        "Create it again with your system's 'Compress' / 'Send to → Compressed folder' "
        "(a folder per class inside), and upload the complete file."
    )


def _check_central_directory(archive: Path, source_name: str, limits: IngestLimits) -> None:
    """Refuse an archive with too many entries from its end record, before parsing them."""
    with archive.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        tail_size = min(size, 22 + 65535 + 20)
        fh.seek(size - tail_size)
        tail = fh.read()
    where = tail.rfind(b"PK\x05\x06")
    if where < 0 or len(tail) - where < 22:
        raise _not_a_zip(source_name, "its end record is missing, so it is truncated or not a zip")
    entries = struct.unpack("<H", tail[where + 10 : where + 12])[0]
    locator = tail.rfind(b"PK\x06\x07", 0, where)
    if entries == 0xFFFF and locator >= 0:
        # Zip64: the true count sits in the zip64 end record the locator points at.
        (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        with archive.open("rb") as fh:
            fh.seek(offset)
            record = fh.read(56)
        if record[:4] == b"PK\x06\x06":
            entries = struct.unpack("<Q", record[32:40])[0]
    _check_entry_count(entries, source_name, limits)


def _check_entry_count(entries: int, source_name: str, limits: IngestLimits) -> None:
    if entries > limits.max_entries:
        raise DataError(
            f"{source_name!r} has {entries:,} entries, over the limit of {limits.max_entries:,}. "
            "Archives with that many files are refused to protect the server; "
            "upload fewer images, or raise TL_MAX_ENTRIES if you run your own server."
        )


def _open_zip(archive: Path, source_name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise _not_a_zip(source_name, str(exc).rstrip(".").lower()) from exc
    except (OSError, ValueError, EOFError, struct.error) as exc:
        raise _not_a_zip(source_name, f"its directory is damaged ({exc})") from exc


def _entry_name(info: zipfile.ZipInfo) -> str:
    """Decode an entry name: UTF-8 when flagged or when it decodes cleanly, then NFC."""
    name = info.filename
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return unicodedata.normalize("NFC", name)


def _unsafe_reason(raw: str) -> str | None:
    if "\\" in raw:
        return "unsafe path (backslash in the name); not extracted"
    if raw.startswith("/"):
        return "unsafe path (absolute); not extracted"
    if _DRIVE.match(raw):
        return "unsafe path (drive letter); not extracted"
    if ".." in raw.split("/"):
        return "unsafe path ('..' leaves the archive); not extracted"
    if _CONTROL.search(raw):
        return "unsafe path (control characters in the name); not extracted"
    return None


def _is_junk(parts: list[str]) -> bool:
    return any(p.startswith(".") or p.casefold() in _JUNK_NAMES for p in parts)


def _plan(
    infos: list[zipfile.ZipInfo], source_name: str, limits: IngestLimits
) -> tuple[list[_Planned], list[SkippedFile], int]:
    """Decide for every entry: ignore as junk, skip with a reason, or read as an image."""
    skipped: list[SkippedFile] = []
    junk = 0
    seen: set[str] = set()
    candidates: list[tuple[list[str], str, zipfile.ZipInfo]] = []
    declared_total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise DataError(
                f"{source_name!r} is encrypted (password-protected entries such as "
                f"{_entry_name(info)!r}). Encrypted archives cannot be read here; "
                "create the zip again without a password."
            )
        name = _entry_name(info)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            skipped.append(SkippedFile(name, "symbolic link; links are never followed"))
            continue
        unsafe = _unsafe_reason(name)
        if unsafe:
            skipped.append(SkippedFile(name, unsafe))
            continue
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts or info.is_dir():
            continue
        if _is_junk(parts):
            junk += 1
            continue
        key = "/".join(parts)
        if key in seen:
            skipped.append(
                SkippedFile(name, "duplicate entry name in the archive; only the first is used")
            )
            continue
        seen.add(key)
        reason = _entry_size_reason(info, limits)
        if reason:
            skipped.append(SkippedFile(name, reason))
            continue
        if parts[-1].lower().endswith(_ARCHIVE_SUFFIXES):
            skipped.append(
                SkippedFile(name, "nested archive; not opened, unpack it into the class folders")
            )
            continue
        declared_total += info.file_size
        candidates.append((parts, name, info))
    if declared_total > limits.max_total_bytes:
        raise DataError(
            f"{source_name!r} would unpack to {_mib(declared_total)}, over the limit of "
            f"{_mib(limits.max_total_bytes)}. Use fewer or smaller images (about 512 px is "
            "plenty for training), or split the dataset."
        )
    planned, layout_skipped = _assign_labels(candidates)
    return planned, skipped + layout_skipped, junk


def _entry_size_reason(info: zipfile.ZipInfo, limits: IngestLimits) -> str | None:
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        return f"unsupported compression method ({info.compress_type}); zip it again"
    if info.file_size > limits.max_entry_bytes:
        return (
            f"too large ({_mib(info.file_size)}; the limit per file is "
            f"{_mib(limits.max_entry_bytes)})"
        )
    if info.file_size > limits.ratio_floor_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            return (
                f"suspicious compression ratio ({ratio:,.0f}:1, limit "
                f"{limits.max_ratio:,.0f}:1); looks like a zip bomb"
            )
    return None


def _assign_labels(
    candidates: list[tuple[list[str], str, zipfile.ZipInfo]],
) -> tuple[list[_Planned], list[SkippedFile]]:
    """Strip wrapper folders, recognise split folders and take class names from folders."""
    skipped: list[SkippedFile] = []
    entries = list(candidates)
    while True:
        tops = {parts[0] for parts, _, _ in entries if len(parts) >= 2}
        if len(tops) != 1:
            break
        (top,) = tops
        if top.casefold() in SPLIT_FOLDERS or not any(len(p) >= 3 for p, _, _ in entries):
            break
        # One folder holds everything: a wrapper (a single class is never a dataset).
        kept = []
        for parts, name, info in entries:
            if len(parts) >= 2:
                kept.append((parts[1:], name, info))
            else:
                skipped.append(SkippedFile(name, "not inside a class folder"))
        entries = kept
    split_layout = any(
        len(parts) >= 2 and parts[0].casefold() in SPLIT_FOLDERS for parts, _, _ in entries
    )
    planned: list[_Planned] = []
    for parts, name, info in entries:
        if split_layout:
            split = SPLIT_FOLDERS.get(parts[0].casefold()) if len(parts) >= 2 else None
            if split is None:
                skipped.append(
                    SkippedFile(name, "outside the train/val folders; the split is unknown")
                )
                continue
            parts = parts[1:]
        else:
            split = UNSPLIT
        if len(parts) < 2:
            skipped.append(SkippedFile(name, "not inside a class folder"))
            continue
        label = parts[0]
        bad = _class_name_problem(label)
        if bad:
            skipped.append(SkippedFile(name, bad))
            continue
        planned.append(_Planned(info, name, label, split))
    planned.sort(key=lambda p: (p.split, p.label, p.name))
    return planned, skipped


def _class_name_problem(label: str) -> str | None:
    if len(label) > 100:
        return "class folder name is longer than 100 characters; shorten it"
    if label.casefold() in SPLIT_FOLDERS:
        return f"'{label}' is a split folder inside a class or split folder; it is not a class"
    return None


def _read_entry(
    zf: zipfile.ZipFile, planned: _Planned, limits: IngestLimits, budget: list[int]
) -> bytes:
    """Read one entry, counting real bytes against the per-entry and total caps."""
    chunks: list[bytes] = []
    count = 0
    with zf.open(planned.info) as fh:
        while chunk := fh.read(_CHUNK):
            count += len(chunk)
            budget[0] -= len(chunk)
            if count > limits.max_entry_bytes:
                raise ImageRejected(
                    f"too large (more than {_mib(limits.max_entry_bytes)} when unpacked, "
                    "more than its header declared)"
                )
            if budget[0] < 0:
                raise _TotalExceeded
            chunks.append(chunk)
    return b"".join(chunks)


class _TotalExceeded(Exception):
    """The bytes actually unpacked went over `IngestLimits.max_total_bytes`."""


def _store_images(
    zf: zipfile.ZipFile,
    planned: list[_Planned],
    staging: Path,
    source_name: str,
    limits: IngestLimits,
    progress: Progress | None,
) -> tuple[list[_Stored], list[SkippedFile]]:
    """Read, decode and store every planned entry; decoding runs on a small thread pool."""
    images_root = staging / "images"
    budget = [limits.max_total_bytes]
    results: list[_Stored | SkippedFile | None] = [None] * len(planned)
    counters: dict[tuple[str, str], int] = defaultdict(int)
    workers = max(1, min(4, os.cpu_count() or 1))

    def convert(index: int, item: _Planned, data: bytes, target: Path) -> None:
        try:
            decoded = decode_image(
                data,
                max_pixels=limits.max_image_pixels,
                min_side=limits.min_image_side,
                max_side=limits.stored_max_side,
            )
        except ImageRejected as exc:
            results[index] = SkippedFile(item.name, str(exc))
            return
        target.write_bytes(data if decoded.keep_original else encode_stored(decoded.image))
        record = ImageRecord(
            target.relative_to(staging).as_posix(), item.label, item.split, item.name
        )
        results[index] = _Stored(record, decoded.pixel_hash)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[None]] = []
        for index, item in enumerate(planned):
            try:
                data = _read_entry(zf, item, limits, budget)
            except _TotalExceeded:
                for future in pending:
                    future.cancel()
                raise DataError(
                    f"{source_name!r} unpacks to more than {_mib(limits.max_total_bytes)}, "
                    "more than its headers declared. The archive was refused to protect the "
                    "server; create it again with fewer or smaller images."
                ) from None
            except ImageRejected as exc:
                results[index] = SkippedFile(item.name, str(exc))
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                OSError,
                NotImplementedError,
                RuntimeError,
                ValueError,
            ) as exc:
                results[index] = SkippedFile(item.name, f"corrupt entry in the archive ({exc})")
            else:
                counters[(item.split, item.label)] += 1
                folder = safe_join(images_root, item.split, item.label)
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{counters[(item.split, item.label)]:06d}.jpg"
                pending.append(pool.submit(convert, index, item, data, target))
                pending = _drain(pending, keep=2 * workers)
            if progress:
                progress(index + 1, len(planned))
        _drain(pending, keep=0)
    stored = [r for r in results if isinstance(r, _Stored)]
    skipped = [r for r in results if isinstance(r, SkippedFile)]
    return stored, skipped


def _drain(pending: list[Future[None]], keep: int) -> list[Future[None]]:
    """Wait until at most `keep` conversions are in flight, so memory stays bounded."""
    while len(pending) > keep:
        pending.pop(0).result()
    return pending


def _publish(staging: Path, root: Path) -> None:
    """Move a finished dataset into place; a dataset already there is kept as it is."""
    if root.exists() and not (root / "report.json").is_file():
        # Left by a crash before this version published atomically: nothing usable in it.
        shutil.rmtree(root)
    try:
        os.rename(staging, root)
    except OSError:
        if not (root / "report.json").is_file():
            raise
        # Another ingest of the same archive finished first; its copy is identical.


def _build_report(
    dataset_id: str,
    source_name: str,
    stored: list[_Stored],
    skipped: list[SkippedFile],
    junk: int,
) -> DatasetReport:
    """Count classes and splits, refuse unusable results, and collect the warnings."""
    records = [s.record for s in stored]
    if not records:
        example = f", e.g. {skipped[0].path!r}: {skipped[0].reason}" if skipped else ""
        raise DataError(
            f"{source_name!r} contains no usable images ({len(skipped)} files skipped{example}). "
            "Put JPEG or PNG images into one folder per class, then zip those folders."
        )
    counts: dict[str, int] = defaultdict(int)
    split_counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record.label] += 1
        split_counts[record.split] += 1
    if len(counts) < 2:
        raise DataError(
            f"{source_name!r} has only one class ({next(iter(counts))!r}); a classifier needs "
            "at least two. Put each class in its own folder (e.g. cat/…, dog/…) and zip the "
            "folders together."
        )
    classes = {name: counts[name] for name in sorted(counts)}
    split = None if set(split_counts) == {UNSPLIT} else dict(sorted(split_counts.items()))
    warnings = _balance_warnings(classes) + _split_warnings(classes, split, records)
    warnings += _duplicate_warnings(stored)
    return DatasetReport(
        dataset_id=dataset_id,
        source_name=source_name,
        classes=classes,
        split=split,
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        warnings=tuple(warnings),
        junk_ignored=junk,
        images=tuple(records),
    )


def _balance_warnings(classes: dict[str, int]) -> list[str]:
    warnings: list[str] = []
    total = sum(classes.values())
    if total < TINY_DATASET:
        warnings.append(
            f"Tiny dataset: {total} images in all. Results will be noisy; "
            f"aim for at least {MIN_IMAGES_PER_CLASS * 5} images per class."
        )
    few = [f"'{c}' ({n})" for c, n in classes.items() if n < MIN_IMAGES_PER_CLASS]
    if few:
        warnings.append(
            f"Too few images in {', '.join(few)}: fewer than {MIN_IMAGES_PER_CLASS} per class "
            "cannot be learned or validated reliably; add more images to these classes."
        )
    largest = max(classes, key=classes.__getitem__)
    smallest = min(classes, key=classes.__getitem__)
    if classes[largest] >= IMBALANCE_RATIO * classes[smallest]:
        warnings.append(
            f"Class imbalance: '{largest}' has {classes[largest]} images, '{smallest}' only "
            f"{classes[smallest]} ({classes[largest] / classes[smallest]:.1f}×). The model will "
            f"favour '{largest}'; add images to '{smallest}' or watch its recall."
        )
    return warnings


def _split_warnings(
    classes: dict[str, int], split: dict[str, int] | None, records: list[ImageRecord]
) -> list[str]:
    if split is None:
        return []
    warnings: list[str] = []
    if "train" not in split:
        warnings.append(
            "The archive has split folders but no train/ folder; training needs train/ images."
        )
    if "val" not in split:
        warnings.append(
            "The archive has split folders but no val/ folder; "
            "a validation part will be drawn from train/ instead."
        )
    present: dict[str, set[str]] = defaultdict(set)
    for record in records:
        present[record.split].add(record.label)
    for name, labels in sorted(present.items()):
        missing = sorted(set(classes) - labels)
        if missing:
            warnings.append(
                f"The {name}/ folder has no images of {', '.join(map(repr, missing))}; "
                f"results for those classes cannot be measured on {name}/."
            )
    return warnings


def _duplicate_warnings(stored: list[_Stored]) -> list[str]:
    """Name identical pictures filed under two classes, and train/val leakage."""
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for item in stored:
        by_hash[item.pixel_hash].append(item.record)
    across_classes: list[str] = []
    leaked: list[str] = []
    for group in by_hash.values():
        if len({r.label for r in group}) > 1:
            first = group[0]
            other = next(r for r in group if r.label != first.label)
            across_classes.append(
                f"{first.source!r} ({first.label}) and {other.source!r} ({other.label})"
            )
        splits = {r.split for r in group}
        if "train" in splits and len(splits - {"train"}) > 0:
            other = next(r for r in group if r.split != "train")
            first = next(r for r in group if r.split == "train")
            leaked.append(f"{first.source!r} and {other.source!r}")
    warnings: list[str] = []
    if across_classes:
        warnings.append(
            f"Duplicate images in different classes ({len(across_classes)}): "
            f"{_examples(across_classes)}. The same picture cannot be both; "
            "remove it from the wrong class."
        )
    if leaked:
        warnings.append(
            f"Leakage: {len(leaked)} images appear in train/ and in val/ or test/: "
            f"{_examples(leaked)}. Validation accuracy will look better than it is; "
            "keep each picture in one split only."
        )
    return warnings


def _examples(items: list[str]) -> str:
    shown = "; ".join(items[:EXAMPLES_PER_WARNING])
    extra = len(items) - EXAMPLES_PER_WARNING
    return shown + (f"; and {extra} more" if extra > 0 else "")
