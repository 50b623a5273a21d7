"""Plain data that crosses the core/UI boundary for datasets: limits and the ingest report."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tl_core.errors import ConfigError

MiB = 1024 * 1024

#: Names of split folders, lower-cased, and the split each one stands for.
SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

#: Folder used under ``images/`` when the archive has no split folders.
UNSPLIT = "all"


@dataclass(frozen=True)
class IngestLimits:
    """Caps that bound what one archive may cost. Every field can be overridden.

    Args:
        max_archive_bytes: size of the zip file itself (default 500 MiB; the upload
            limit in ``.streamlit/config.toml`` matches it).
        max_total_bytes: bytes actually decompressed over all entries (default 2 GiB).
        max_entry_bytes: bytes actually decompressed for one entry (default 50 MiB).
        max_entries: entries in the central directory (default 50,000).
        max_ratio: uncompressed/compressed ratio allowed for one entry larger than
            ``ratio_floor_bytes`` (default 100; photos compress about 1:1).
        ratio_floor_bytes: entries smaller than this are not ratio-checked (1 MiB).
        max_image_pixels: width × height of one image (default 25 MP).
        min_image_side: images with a shorter side are skipped (default 16 px).
        stored_max_side: the stored copy is at most this long on its longest side (1024 px).

    Environment variables ``TL_MAX_ARCHIVE_MB``, ``TL_MAX_TOTAL_MB``,
    ``TL_MAX_ENTRY_MB``, ``TL_MAX_ENTRIES`` override the defaults in `from_env`.

    Example:
        >>> IngestLimits(max_entries=10).max_entries
        10
    """

    max_archive_bytes: int = 500 * MiB
    max_total_bytes: int = 2048 * MiB
    max_entry_bytes: int = 50 * MiB
    max_entries: int = 50_000
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * MiB
    max_image_pixels: int = 25_000_000
    min_image_side: int = 16
    stored_max_side: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # `not value > 0` also refuses NaN, which compares false with everything.
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(
                    f"Expected `{f.name}` to be a positive number. Received: {f.name}={value!r}"
                )

    @classmethod
    def from_env(cls) -> IngestLimits:
        """Return the defaults, overridden by ``TL_MAX_*`` environment variables."""
        overrides: dict[str, int] = {}
        for env, name, scale in (
            ("TL_MAX_ARCHIVE_MB", "max_archive_bytes", MiB),
            ("TL_MAX_TOTAL_MB", "max_total_bytes", MiB),
            ("TL_MAX_ENTRY_MB", "max_entry_bytes", MiB),
            ("TL_MAX_ENTRIES", "max_entries", 1),
        ):
            raw = os.environ.get(env)
            if raw:
                try:
                    overrides[name] = int(float(raw) * scale)
                except (ValueError, OverflowError) as exc:  # "abc", "nan"; "inf"
                    raise ConfigError(
                        f"Expected `{env}` to be a number. Received: {env}={raw!r}"
                    ) from exc
        return replace(cls(), **overrides)


@dataclass(frozen=True)
class SkippedFile:
    """An archive entry that was not used, and why (``reason`` is one short sentence)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageRecord:
    """One stored image: where it lives (relative to the dataset root) and its labels."""

    path: str
    label: str
    split: str
    source: str


@dataclass(frozen=True)
class DatasetReport:
    """What an archive turned into. Stored as ``report.json`` in the dataset folder.

    ``classes`` maps each class name (NFC-normalised folder name, sorted) to its number
    of usable images over all splits; ``split`` is ``None`` when the archive had no
    ``train/``/``val/`` folders, else the number of images per split.
    """

    dataset_id: str
    source_name: str
    classes: dict[str, int]
    split: dict[str, int] | None
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    junk_ignored: int = 0
    images: tuple[ImageRecord, ...] = field(default=(), repr=False)
    root: Path | None = field(default=None, compare=False)

    @property
    def num_images(self) -> int:
        """Number of usable images over all classes and splits."""
        return sum(self.classes.values())

    @property
    def class_names(self) -> list[str]:
        """Class names in label-index order (sorted)."""
        return sorted(self.classes)

    def to_json(self) -> dict[str, Any]:
        """Return the ``inspect-data --json`` document (contract keys plus the id)."""
        return {
            "dataset_id": self.dataset_id,
            "source_name": self.source_name,
            "classes": dict(self.classes),
            "num_images": self.num_images,
            "split": dict(self.split) if self.split is not None else None,
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": list(self.warnings),
            "junk_ignored": self.junk_ignored,
        }

    def save(self, root: Path) -> None:
        """Write ``report.json`` (the summary) and ``images.json`` (the image index) into `root`."""
        (root / "images.json").write_text(
            json.dumps([asdict(r) for r in self.images], ensure_ascii=False)
        )
        (root / "report.json").write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, root: Path, *, images: bool = True) -> DatasetReport:
        """Read what `save` wrote in `root`; ``images=False`` skips the image index (fast)."""
        doc = json.loads((root / "report.json").read_text())
        records: tuple[ImageRecord, ...] = ()
        index_path = root / "images.json"
        if images and index_path.is_file():
            records = tuple(ImageRecord(**r) for r in json.loads(index_path.read_text()))
        return cls(
            dataset_id=doc["dataset_id"],
            source_name=doc.get("source_name", ""),
            classes=dict(doc["classes"]),
            split=doc["split"],
            skipped=tuple(SkippedFile(**s) for s in doc["skipped"]),
            warnings=tuple(doc["warnings"]),
            junk_ignored=doc.get("junk_ignored", 0),
            images=records,
            root=root,
        )
