"""The shared activation cache: keys name everything the numbers depend on, one request
computes while the others wait, the least recently used entries go first, and a killed
writer's staging folder is recognised as a leftover."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tl_core.engine.cache import (
    DEFAULT_CACHE_MB,
    activation_key,
    cache_dir,
    cache_limit_bytes,
    choose_dtype,
    load_or_compute,
)
from tl_core.fsutil import temporary_name
from tl_core.workspace import clean_staging

KEY_INGREDIENTS: dict[str, Any] = {
    "dataset_id": "0" * 12,
    "paths": ["images/all/a/000001.png", "images/all/b/000002.png"],
    "backbone": "mobilenet_v2",
    "weights": "file:0123456789abcdef",
    "image_size": 32,
    "boundary": "block_12",
    "augmentation": ("flip",),
    "views": 4,
    "bn_mode": "frozen",
    "dtype": "float32",
    "versions": {"keras": "3.15.0", "tensorflow": "2.21.0"},
}

CHANGED: dict[str, Any] = {
    "dataset_id": "1" * 12,
    "paths": ["images/all/a/000001.png"],
    "backbone": "resnet50",
    "weights": "imagenet",
    "image_size": 64,
    "boundary": "block_13",
    "augmentation": ("flip", "zoom"),
    "views": 2,
    "bn_mode": "training",
    "dtype": "float16",
    "versions": {"keras": "3.16.0", "tensorflow": "2.21.0"},
}


@pytest.mark.parametrize("ingredient", sorted(CHANGED))
def test_each_ingredient_of_the_activations_changes_the_cache_key(ingredient: str) -> None:
    base = activation_key(**KEY_INGREDIENTS)

    changed = activation_key(**(KEY_INGREDIENTS | {ingredient: CHANGED[ingredient]}))

    assert changed != base
    assert activation_key(**KEY_INGREDIENTS) == base


def test_the_key_includes_the_running_keras_and_tensorflow_versions() -> None:
    import keras
    import tensorflow as tf

    running = {"keras": keras.__version__, "tensorflow": tf.__version__}
    without = {k: v for k, v in KEY_INGREDIENTS.items() if k != "versions"}

    assert activation_key(**without) == activation_key(**without, versions=running)


def test_the_cache_bound_defaults_and_picks_float16_before_giving_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cache_limit_bytes() == DEFAULT_CACHE_MB * 1024 * 1024
    monkeypatch.setenv("TL_CACHE_MB", "1")

    assert choose_dtype(200_000) == "float32"
    assert choose_dtype(400_000) == "float16"
    assert choose_dtype(600_000) is None


def _rows(value: float, kib: int = 20) -> np.ndarray:
    return np.full((1, kib * 256), value, np.float32)


def test_a_second_request_hits_what_the_first_stored() -> None:
    first = load_or_compute("k1", lambda: _rows(1.0), ram_bytes=1 << 30)
    second = load_or_compute("k1", lambda: _rows(2.0), ram_bytes=1 << 30)

    assert (first.hit, second.hit) == (False, True)
    np.testing.assert_array_equal(second.activations, _rows(1.0))
    assert second.storage == "ram"


def test_an_entry_over_the_ram_budget_is_read_from_disk() -> None:
    entry = load_or_compute("big", lambda: _rows(3.0), ram_bytes=1024)

    assert entry.storage == "disk"
    assert isinstance(entry.activations, np.memmap)


def test_concurrent_requests_for_one_key_compute_once_and_the_others_wait_and_hit() -> None:
    computed: list[int] = []
    started = threading.Event()
    results: dict[str, Any] = {}

    def compute() -> np.ndarray:
        computed.append(threading.get_ident())
        started.set()
        time.sleep(0.5)
        return _rows(4.0)

    def request(name: str) -> None:
        results[name] = load_or_compute("shared", compute, ram_bytes=1 << 30)

    first = threading.Thread(target=request, args=("first",))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=request, args=("second",))
    second.start()
    first.join(30)
    second.join(30)

    assert len(computed) == 1
    assert (results["first"].hit, results["second"].hit) == (False, True)
    np.testing.assert_array_equal(results["second"].activations, _rows(4.0))


def test_least_recently_used_entries_are_evicted_under_the_cache_bound(
    monkeypatch: pytest.MonkeyPatch, tl_home: Path
) -> None:
    monkeypatch.setenv("TL_CACHE_MB", str(50 / 1024))  # room for two 20 KiB entries
    load_or_compute("old", lambda: _rows(1.0), ram_bytes=1 << 30)
    time.sleep(0.05)
    load_or_compute("used", lambda: _rows(2.0), ram_bytes=1 << 30)
    time.sleep(0.05)
    os.utime(cache_dir() / "old", (0, 0))  # "old" was used long ago
    assert load_or_compute("used", lambda: _rows(9.0), ram_bytes=1 << 30).hit

    load_or_compute("new", lambda: _rows(3.0), ram_bytes=1 << 30)

    kept = sorted(p.name for p in cache_dir().iterdir() if p.is_dir())
    assert kept == ["new", "used"]


def test_a_killed_writers_staging_folder_is_removed_by_the_workspace_clean_up(
    tl_home: Path,
) -> None:
    staging = temporary_name(cache_dir() / "abc").with_name(".999999999-1.tmp.abc")
    staging.mkdir()
    (staging / "activations.npy").write_bytes(b"half")
    assert temporary_name(cache_dir() / "abc").name.endswith(".tmp.abc")

    removed = clean_staging()

    assert removed == ["cache/.999999999-1.tmp.abc"]
