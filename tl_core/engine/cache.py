"""The shared, bounded activation cache under ``TL_HOME/cache/<key>/``.

What a frozen part of the network computes for an image never changes while it stays
frozen, so it is computed once and training reads it back: pooled backbone features when
only the head trains, the activations at the frozen boundary when the top blocks train
too. On a 2-core CPU (MobileNetV2 at 160 px, 640 images) a head trained on cached
features ran about 140× the images per second of a frozen ``fit``, and top blocks trained
from activations cached at block_12 about 3.6× a partial fine-tune on pixels.

One entry serves every run and every user with the same key: the key hashes everything
the stored numbers depend on (`activation_key`), so a different choice is a different
key, never a stale hit. Concurrent requests for one key queue on a lock file per key
(``cache/<key>.lock``, an ``flock`` the kernel drops when its holder dies): the first
computes, the others wait and read what it stored. The cache holds at most ``TL_CACHE_MB``
megabytes (default `DEFAULT_CACHE_MB`); after a store, the least recently used entries
go until it fits.

```
cache/<key>/activations.npy   one row per (view, image): shape (views, images, ...)
cache/<key>/meta.json         what the key was computed from, size, compute seconds
cache/<key>.lock              the per-key lock file (empty)
```

An entry is written in a staging folder named by `tl_core.fsutil.temporary_name`
(``.<pid>-<tid>.tmp.<key>``; `tl_core.workspace.clean_staging` removes one whose writer
died) and renamed into place whole, so a reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tl_core.fsutil import FolderLock, temporary_name
from tl_core.workspace import tl_home

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE_MB",
    "CacheEntry",
    "activation_key",
    "cache_dir",
    "cache_limit_bytes",
    "choose_dtype",
    "evict_to_fit",
    "load_or_compute",
    "weights_identity",
]

#: Bump when the way activations are computed changes, so old entries are not reused.
CACHE_FORMAT_VERSION = 2
#: The environment variable that bounds the cache, in megabytes.
CACHE_ENV = "TL_CACHE_MB"
#: The bound when ``TL_CACHE_MB`` is unset: room for the boundary activations of a few
#: datasets of a few thousand images (MobileNetV2 at 160 px, block_12: 38 KB an image).
DEFAULT_CACHE_MB = 2048
#: How long a request waits for another process computing the same key.
WAIT_FOR_OTHER_S = 30 * 60

_STORED = "activations.npy"
_META = "meta.json"


@dataclass(frozen=True)
class CacheEntry:
    """What `load_or_compute` returns: the activations and how they were obtained.

    ``storage``: ``"ram"`` (loaded whole) or ``"disk"`` (memory-mapped, read per batch).
    ``compute_seconds``: what computing them took (now, or when they were stored).
    ``meta``: what was stored next to them (``meta.json``).
    """

    key: str
    activations: np.ndarray
    hit: bool
    storage: str
    compute_seconds: float
    meta: dict[str, Any]


def cache_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/cache``, created when missing."""
    path = (home or tl_home()) / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_limit_bytes() -> int:
    """The cache's bound in bytes: ``TL_CACHE_MB`` megabytes (default `DEFAULT_CACHE_MB`).

    Example:
        >>> cache_limit_bytes() > 0
        True
    """
    text = os.environ.get(CACHE_ENV, "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_CACHE_MB
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return max(0, int(megabytes * 1024 * 1024))


def choose_dtype(values: int, *, limit: int | None = None) -> str | None:
    """The dtype to store `values` numbers in: ``float32`` when they fit the cache bound,
    ``float16`` when only half the size fits, ``None`` when not even that (no cache).

    Example:
        >>> choose_dtype(1000, limit=8000), choose_dtype(1000, limit=2000)
        ('float32', 'float16')
    """
    limit = cache_limit_bytes() if limit is None else limit
    if values * 4 <= limit:
        return "float32"
    if values * 2 <= limit:
        return "float16"
    return None


def weights_identity(weights: str, seed: int) -> str:
    """Name the backbone weights by content: ``imagenet``, ``none:<seed>`` or ``file:<sha>``.

    Random weights depend on the seed; a weights file is hashed, so a changed file with the
    same name gets a new key.

    Example:
        >>> weights_identity("none", 3)
        'none:3'
    """
    if weights == "none":
        return f"none:{seed}"
    if weights == "imagenet":
        return "imagenet"
    digest = hashlib.sha256()
    with Path(weights).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"file:{digest.hexdigest()[:16]}"


def activation_key(
    *,
    dataset_id: str,
    paths: Sequence[str],
    backbone: str,
    weights: str,
    image_size: int,
    boundary: str,
    augmentation: Sequence[str] = (),
    views: int = 1,
    bn_mode: str = "frozen",
    dtype: str = "float32",
    versions: dict[str, str] | None = None,
) -> str:
    """Return the cache key of activations: a hash of everything they depend on.

    Args:
        dataset_id, paths: the images (stored paths, in order).
        backbone, weights: the backbone id and `weights_identity` of its weights.
        image_size: the input side in pixels.
        boundary: ``"pooled"`` (the head's input) or the name of the last frozen block.
        augmentation, views: the augmentations drawn and how many views of each image.
        bn_mode: how the frozen part's BatchNorm runs (``"frozen"``: inference mode).
        dtype: the stored dtype.
        versions: Keras and TensorFlow versions (default: the running ones); kernels and
            random streams change with them.

    Example:
        >>> activation_key(dataset_id="0" * 12, paths=["a.png"], backbone="mobilenet_v2",
        ...                weights="none:0", image_size=32, boundary="pooled",
        ...                versions={"keras": "3", "tensorflow": "2"})[:4]  # doctest: +SKIP
        '9c1f'
    """
    if versions is None:
        from tl_core.engine.checkpoints import framework_versions

        versions = framework_versions()
    doc = {
        "format": CACHE_FORMAT_VERSION,
        "dataset_id": dataset_id,
        "paths": list(paths),
        "backbone": backbone,
        "weights": weights,
        "image_size": image_size,
        "boundary": boundary,
        "augmentation": list(augmentation),
        "views": views,
        "bn_mode": bn_mode,
        "dtype": dtype,
        "versions": dict(sorted(versions.items())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def load_or_compute(
    key: str,
    compute: Callable[[], np.ndarray],
    *,
    dtype: str = "float32",
    ram_bytes: int,
    meta: dict[str, Any] | None = None,
    home: Path | None = None,
) -> CacheEntry:
    """Return the activations stored under `key`, computing and storing them when missing.

    Waits while another process computes the same key, then reads its result.

    Args:
        key: from `activation_key` (with the same `dtype`).
        compute: returns the activations when they are not stored.
        dtype: stored dtype (``float32`` or ``float16``).
        ram_bytes: entries up to this size are loaded whole; larger ones are read from
            disk per batch (memory-mapped).
        meta: facts stored next to them; `compute` may add to it (its own timings).
        home: workspace root (default ``TL_HOME``).

    Example:
        >>> entry = load_or_compute(key, lambda: np.zeros((1, 4, 8)), ram_bytes=1 << 30)
        ... # doctest: +SKIP
        >>> entry.hit, entry.storage  # doctest: +SKIP
        (False, 'ram')
    """
    root = cache_dir(home)
    lock = FolderLock(root, f"{key}.lock")
    if not lock.acquire(timeout=WAIT_FOR_OTHER_S):
        raise TimeoutError(f"waited {WAIT_FOR_OTHER_S} s for another process to cache {key}")
    try:
        hit = (root / key / _STORED).is_file()
        if hit:
            os.utime(root / key)  # the entry's mtime is its last use, for LRU eviction
            stored_meta = _read_meta(root / key)
        else:
            meta = {} if meta is None else meta
            started = time.perf_counter()
            activations = np.ascontiguousarray(compute(), dtype=dtype)
            stored_meta = meta | {"compute_seconds": time.perf_counter() - started}
            _store(root, key, activations, stored_meta)
            evict_to_fit(cache_limit_bytes(), home=home, keep=key)
        stored = root / key / _STORED
        size = stored.stat().st_size
        in_ram = size <= ram_bytes
        activations = np.load(stored, mmap_mode=None if in_ram else "r")
    finally:
        lock.release()
    seconds = float(stored_meta.get("compute_seconds", 0.0))
    return CacheEntry(key, activations, hit, "ram" if in_ram else "disk", seconds, stored_meta)


def _read_meta(entry: Path) -> dict[str, Any]:
    try:
        doc = json.loads((entry / _META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _store(root: Path, key: str, activations: np.ndarray, meta: dict[str, Any]) -> None:
    """Write the entry in a staging folder, then rename it into place whole."""
    staging = temporary_name(root / key)
    staging.mkdir()
    try:
        np.save(staging / _STORED, activations)
        doc = meta | {
            "shape": list(activations.shape),
            "dtype": str(activations.dtype),
            "created": time.time(),
        }
        (staging / _META).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        shutil.rmtree(root / key, ignore_errors=True)  # a damaged entry without its .npy
        os.rename(staging, root / key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _entry_bytes(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())


def evict_to_fit(limit: int, *, home: Path | None = None, keep: str | None = None) -> list[str]:
    """Remove least recently used entries until the cache holds at most `limit` bytes;
    return the removed keys. `keep` (the entry just stored) is never removed.

    Example:
        >>> evict_to_fit(cache_limit_bytes())  # doctest: +SKIP
        []
    """
    root = cache_dir(home)
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: _entry_bytes(p) for p in entries}
    total = sum(sizes.values())
    removed = []
    for entry in sorted(entries, key=lambda p: p.stat().st_mtime):
        if total <= limit:
            break
        if entry.name == keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]
        removed.append(entry.name)
    return removed
