"""Content-keyed caches under ``TL_HOME/cache/<key>/``: pooled backbone features.

When a phase trains only the head (the backbone is frozen), the backbone's output for an
image never changes, so it is computed once and the head trains on the stored features;
FIELD_NOTES measured about 140× the throughput of a frozen ``fit`` on a CPU. The key is
a hash of everything the features depend on: the images (by stored path and dataset),
the backbone, its weights (a file's content hash; the seed for random weights) and the
input size. A different choice is a different key, never a stale hit.

```
cache/<key>/features.npy   float32, one row per image, in the order of the records
cache/<key>/meta.json      what the key was computed from, and when
```
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tl_core.workspace import tl_home

__all__ = ["cache_dir", "feature_key", "load_or_compute_features", "weights_identity"]

#: Bump when the way features are computed changes, so old entries are not reused.
FEATURES_VERSION = 1


def cache_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/cache``, created when missing."""
    path = (home or tl_home()) / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_identity(weights: str, seed: int) -> str:
    """Name the backbone weights by content: ``imagenet``, ``none:<seed>`` or ``file:<sha>``.

    Random weights depend on the seed; a weights file is hashed, so a changed file with the
    same name gets a new key.
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


def feature_key(
    *,
    dataset_id: str,
    backbone: str,
    weights: str,
    image_size: int,
    paths: Sequence[str],
) -> str:
    """Return the cache key of pooled features for these images and this backbone.

    Example:
        >>> feature_key(dataset_id="0" * 12, backbone="mobilenet_v2", weights="none:0",
        ...             image_size=64, paths=["images/all/a/000001.jpg"])[:8]  # doctest: +SKIP
        '3f1c9a0b'
    """
    doc = {
        "kind": "pooled-features",
        "version": FEATURES_VERSION,
        "dataset_id": dataset_id,
        "backbone": backbone,
        "weights": weights,
        "image_size": image_size,
        "paths": list(paths),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def load_or_compute_features(
    key: str,
    compute: Callable[[], np.ndarray],
    *,
    meta: dict[str, Any] | None = None,
    home: Path | None = None,
) -> tuple[np.ndarray, bool]:
    """Return the features stored under `key`, computing and storing them when missing.

    Args:
        key: from `feature_key`.
        compute: returns the features (float32, one row per image) when not cached.
        meta: facts stored next to the features (for people reading the cache).
        home: workspace root (default ``TL_HOME``).

    Returns:
        ``(features, hit)``: ``hit`` is True when they came from the cache.
    """
    root = cache_dir(home)
    target = root / key
    stored = target / "features.npy"
    if stored.is_file():
        return np.load(stored), True
    features = np.ascontiguousarray(compute(), dtype=np.float32)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        np.save(staging / "features.npy", features)
        (staging / "meta.json").write_text(
            json.dumps(
                (meta or {}) | {"shape": list(features.shape), "created": time.time()}, indent=1
            )
        )
        try:
            os.rename(staging, target)
        except OSError:
            # Another worker stored the same key first; its features are the same.
            if not stored.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return features, False
