"""Builders for the engine tests: an easy synthetic dataset, tiny configs, run-file readers.

The dataset has three classes a small network separates in a few epochs from scratch:
``hstripes`` (horizontal stripes), ``vstripes`` (vertical stripes) and ``blob`` (one
solid disc on a plain background). Each class also leans to its own colour (red, green,
blue), which is what lets a randomly initialised MobileNetV2 see the difference within a
few dozen steps. Shades, stripe periods and positions vary per image, so every image is
distinct (ingest drops duplicates). The same seed always gives the same archive, hence
the same dataset id.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.helpers import image_bytes, make_zip

ROOT = Path(__file__).resolve().parents[2]

EASY_CLASSES = ("blob", "hstripes", "vstripes")

#: Settings that keep a training run to seconds on two CPU cores.
TINY: dict[str, Any] = {
    "backbone": "mobilenet_v2",
    "weights": "none",
    "image_size": 32,
    "batch_size": 16,
    "epochs": 1,
    "augmentation": (),
    "seed": 0,
}

#: The keys of an epoch line of ``metrics.jsonl`` (the run-folder contract).
EPOCH_KEYS = frozenset(
    {"epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
)


def easy_image(label: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Return one ``(size, size, 3)`` uint8 image of class `label`."""
    background = rng.integers(0, 70, 3)
    foreground = rng.integers(60, 140, 3)
    foreground[EASY_CLASSES.index(label)] = rng.integers(200, 256)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = background
    if label == "blob":
        radius = rng.uniform(size * 0.2, size * 0.35)
        cy, cx = rng.uniform(radius, size - radius, 2)
        yy, xx = np.mgrid[:size, :size]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = foreground
    else:
        period = int(rng.integers(4, 9))
        phase = int(rng.integers(0, period))
        lines = (np.arange(size) + phase) % period < period // 2
        if label == "hstripes":
            image[lines, :] = foreground
        else:
            image[:, lines] = foreground
    return image


def easy_entries(per_class: int = 24, size: int = 32, seed: int = 0) -> dict[str, bytes]:
    """Return zip entries ``{class}/{n:03d}.png`` of the easy classes."""
    rng = np.random.default_rng(seed)
    return {
        f"{label}/{n:03d}.png": image_bytes(Image.fromarray(easy_image(label, rng, size)), "PNG")
        for label in EASY_CLASSES
        for n in range(per_class)
    }


def write_easy_archive(path: Path, per_class: int = 24, size: int = 32, seed: int = 0) -> Path:
    """Write the easy dataset as a zip at `path` and return `path`."""
    return make_zip(path, easy_entries(per_class, size, seed))


def easy_png(label: str, path: Path, seed: int = 99) -> Path:
    """Write one fresh image of class `label` (not in the archive) as a PNG at `path`."""
    Image.fromarray(easy_image(label, np.random.default_rng(seed))).save(path, format="PNG")
    return path


def tiny_config(dataset_id: str, **changes: Any) -> Any:
    """Return a `RunConfig` with the `TINY` settings and `changes`."""
    from tl_core.config import RunConfig

    return RunConfig(dataset_id=dataset_id, **(TINY | changes))


@contextlib.contextmanager
def tl_home_set(home: Path) -> Iterator[None]:
    """Point ``TL_HOME`` at `home` for the duration (for module-scoped fixtures)."""
    with _patched_env("TL_HOME", str(home)):
        yield


@contextlib.contextmanager
def _patched_env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Return every JSON line of `path`."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def epoch_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Return the epoch lines (not the batch lines) of a run's ``metrics.jsonl``."""
    return [d for d in read_jsonl(run_dir / "metrics.jsonl") if d.get("type") != "batch"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a ``python -m tl_core`` subprocess working in `home`."""
    env = os.environ | {"TL_HOME": str(home), "PYTHONPATH": str(ROOT), **extra}
    env.pop("TL_DEBUG", None)
    return env


def tl_core_command(*args: str) -> list[str]:
    """Return the argv of ``python -m tl_core ARGS``."""
    return [sys.executable, "-m", "tl_core", *args]


def run_tl_core(
    *args: str, home: Path, timeout: float = 240, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tl_core ARGS`` to the end and return the finished process."""
    return subprocess.run(
        tl_core_command(*args),
        capture_output=True,
        text=True,
        env=cli_env(home, **extra_env),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
