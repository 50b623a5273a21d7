"""What the studio knows about backbones beyond the registry, answered without TensorFlow.

The web process must stay light, so nothing here imports TensorFlow or Keras:

- Block lists (`backbone_blocks`): building a backbone to group its layers needs
  TensorFlow, so the CLI does it in a subprocess (``python -m tl_core blocks ID
  --image-size N --json``, random weights) and the answer is kept on disk under
  ``TL_HOME/cache/blocks/<id>-<size>-keras<version>.json``. The Keras version is part of
  the name because a new Keras may name or group layers differently. `warm_cache`
  prefetches a block list in a background thread.
- Image sizes (`typical_image_side`, `suggest_image_size`): a dataset of small pictures
  does not gain from being blown up to a backbone's 224 px.
- Weights files (`store_weights_file`): an uploaded ``.h5`` is stored under
  ``TL_HOME/weights/`` and never loaded here; the training worker loads it and reports a
  mismatch (Keras model files have had many ``safe_mode`` bypasses, CVE-2025-1550
  among them, so the web process never opens one).

Example:
    >>> blocks = backbone_blocks("mobilenet_v2", 64)  # doctest: +SKIP
    >>> [block.name for block in blocks][:3]  # doctest: +SKIP
    ['stem', 'expanded_conv', 'block_1']
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from PIL import Image

from tl_core.data.report import DatasetReport
from tl_core.errors import ConfigError, TLError
from tl_core.fsutil import write_text_atomic
from tl_core.models.backbones import BackboneSpec, get_backbone
from tl_core.models.blocks import BlockInfo
from tl_core.workspace import safe_join, tl_home

__all__ = [
    "BLOCKS_TIMEOUT_S",
    "DEFAULT_BACKBONE",
    "backbone_blocks",
    "blocks_cache_path",
    "cached_backbone_blocks",
    "store_weights_file",
    "suggest_image_size",
    "typical_image_side",
    "warm_cache",
    "weights_dir",
]

log = logging.getLogger(__name__)

#: The backbone a new session starts with, and the one `warm_cache` prefetches by default.
DEFAULT_BACKBONE = "mobilenet_v2"
#: Seconds the block-listing subprocess may take. Importing TensorFlow and building the
#: largest backbone takes well under a minute on 2 CPU cores; a busy machine gets slack.
BLOCKS_TIMEOUT_S = 300

#: Images opened by `typical_image_side` (their headers only).
_SIDE_SAMPLE = 32
#: Every Keras ``.h5`` / ``.weights.h5`` file is HDF5 and starts with this signature.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COPY_CHUNK = 1 << 20
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_CHARS = 80

# One lock per cache file, so that a page asking for a block list that a prefetch is
# computing waits for that result instead of starting a second subprocess.
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()
# At most one prefetch at a time: each one is a TensorFlow process, and someone flipping
# through backbones must not start one per click.
_prefetching = threading.Lock()


def blocks_cache_path(
    backbone_id: str, image_size: int | None = None, *, home: Path | None = None
) -> Path:
    """Return the cache file of a block list: ``<id>-<size>-keras<version>.json``.

    Raises `ConfigError` for an unknown backbone or an image size it cannot take.

    Example:
        >>> blocks_cache_path("vgg16", 96).name  # doctest: +SKIP
        'vgg16-96-keras3.15.1.json'
    """
    spec = get_backbone(backbone_id)
    size = _checked_size(spec, image_size)
    folder = (home or tl_home()) / "cache" / "blocks"
    return folder / f"{spec.id}-{size}-keras{_keras_version()}.json"


def cached_backbone_blocks(
    backbone_id: str, image_size: int | None = None, *, home: Path | None = None
) -> list[BlockInfo] | None:
    """Return the cached block list of `backbone_id`, or ``None`` when it is not cached.

    Never starts a subprocess, so it suits places that only show what is known (the
    sidebar). Raises `ConfigError` like `blocks_cache_path`.
    """
    return _read_cache(blocks_cache_path(backbone_id, image_size, home=home))


def backbone_blocks(
    backbone_id: str,
    image_size: int | None = None,
    *,
    home: Path | None = None,
    timeout: float = BLOCKS_TIMEOUT_S,
) -> list[BlockInfo]:
    """Return the blocks of `backbone_id` at `image_size`, input side first.

    The first call per backbone, size and Keras version runs ``python -m tl_core blocks``
    in a subprocess (seconds: it imports TensorFlow); later calls read the cache.

    Args:
        backbone_id: a registry id such as ``"mobilenet_v2"``.
        image_size: the input side in pixels; ``None`` means the backbone's default.
            Block names and parameters do not depend on it, output shapes do.
        home: the workspace root; defaults to ``TL_HOME``.
        timeout: seconds the subprocess may take (default `BLOCKS_TIMEOUT_S`).

    Raises:
        ConfigError: an unknown backbone or an image size below its minimum.
        TLError: the CLI refused (its ``error:`` line is the message) or timed out.
    """
    path = blocks_cache_path(backbone_id, image_size, home=home)
    with _lock_for(path):
        cached = _read_cache(path)
        if cached is not None:
            return cached
        spec = get_backbone(backbone_id)
        rows = _run_blocks_cli(spec, _checked_size(spec, image_size), timeout)
        _write_atomically(path, json.dumps(rows, indent=1))
        return _parse_rows(rows)


def warm_cache(
    backbone_id: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    *,
    home: Path | None = None,
) -> None:
    """Compute and cache a block list ahead of need; meant as a background thread's target.

    Returns at once when the list is cached or another prefetch is running. Failures are
    logged, never raised: the page that needs the list asks again and shows the error.

    Example:
        >>> threading.Thread(target=warm_cache, daemon=True).start()  # doctest: +SKIP
    """
    try:
        if cached_backbone_blocks(backbone_id, image_size, home=home) is not None:
            return
    except TLError:
        return
    if not _prefetching.acquire(blocking=False):
        return
    try:
        backbone_blocks(backbone_id, image_size, home=home)
    except Exception:
        log.warning("Prefetching the blocks of %s failed", backbone_id, exc_info=True)
    finally:
        _prefetching.release()


def typical_image_side(report: DatasetReport, sample: int = _SIDE_SAMPLE) -> int | None:
    """Return the median shorter side, in pixels, of up to `sample` stored images.

    Only image headers are read. Returns ``None`` when the report has no image index
    (as from `list_datasets`) or no image can be opened.
    """
    if report.root is None or not report.images:
        return None
    step = max(1, len(report.images) // sample)
    sides = []
    for record in report.images[::step][:sample]:
        try:
            with Image.open(report.root / record.path) as image:
                sides.append(min(image.size))
        except OSError:
            continue
    return int(statistics.median(sides)) if sides else None


def suggest_image_size(spec: BackboneSpec, typical_side: int | None) -> int:
    """Return the input size to suggest for images whose shorter side is `typical_side`.

    The backbone's default size, unless the images are smaller: enlarging them adds
    compute, not detail. Never below the backbone's minimum.

    Example:
        >>> suggest_image_size(get_backbone("mobilenet_v2"), 64)
        64
        >>> suggest_image_size(get_backbone("xception"), 64)
        71
        >>> suggest_image_size(get_backbone("resnet50"), None)
        224
    """
    if typical_side is None or typical_side >= spec.default_input_size:
        return spec.default_input_size
    return max(spec.min_input_size, typical_side)


def weights_dir(home: Path | None = None) -> Path:
    """Return ``TL_HOME/weights``, where uploaded weights files are kept; created if missing."""
    path = (home or tl_home()) / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_weights_file(source: BinaryIO, name: str, *, home: Path | None = None) -> Path:
    """Copy an uploaded weights file to ``TL_HOME/weights/<sha12>-<safe name>``.

    The bytes are streamed to disk and hashed on the way; the file is checked to be HDF5
    by its signature only, never loaded (the worker does that, and says if it does not
    fit the backbone). Storing the same bytes twice gives the same path.

    Args:
        source: a binary stream positioned anywhere (it is rewound).
        name: the file name the user gave; must end in ``.h5`` (``.weights.h5`` does).
        home: the workspace root; defaults to ``TL_HOME``.

    Raises:
        ConfigError: the name does not end in ``.h5`` or the content is not HDF5.
    """
    if not name.lower().endswith(".h5"):
        raise ConfigError(
            "Expected a Keras weights file ending in .h5 or .weights.h5. "
            f"Received: {name!r}. Save the weights with `model.save_weights(...)`."
        )
    source.seek(0)
    if source.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
        raise ConfigError(
            f"{name!r} is not an HDF5 file, so it cannot hold Keras weights. Upload the "
            "file written by `model.save_weights('….weights.h5')` or a Keras .h5 file."
        )
    source.seek(0)
    folder = weights_dir(home)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        target = safe_join(folder, f"{digest.hexdigest()[:12]}-{_safe_file_name(name)}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _safe_file_name(name: str) -> str:
    """Keep letters, digits, ``.``, ``_`` and ``-`` of the base name, and its end."""
    safe = _UNSAFE_NAME_CHARS.sub("_", PurePath(name.replace("\\", "/")).name).lstrip(".")
    return safe[-_MAX_NAME_CHARS:] or "weights.h5"


def _checked_size(spec: BackboneSpec, image_size: int | None) -> int:
    size = spec.default_input_size if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < spec.min_input_size:
        raise ConfigError(
            f"Expected `image_size` to be an integer of at least {spec.min_input_size} "
            f"for backbone {spec.id!r}. Received: image_size={size!r}"
        )
    return size


def _keras_version() -> str:
    # Read from the package metadata: importing Keras would import TensorFlow.
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _run_blocks_cli(spec: BackboneSpec, size: int, timeout: float) -> list[dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "tl_core",
        "blocks",
        spec.id,
        "--weights",
        "none",
        "--image-size",
        str(size),
        "--json",
    ]
    # Listing blocks needs no GPU; without this, TensorFlow would reserve GPU memory that
    # a training job may need. The log level hides TensorFlow's start-up chatter.
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TLError(
            f"Listing the blocks of {spec.keras_name} took more than {timeout:g} s and was "
            "stopped. The machine may be busy (a training job?); try again in a moment, or "
            f"run `python -m tl_core blocks {spec.id} --json` in a terminal to see why."
        ) from exc
    if done.returncode != 0:
        raise TLError(
            f"Cannot list the blocks of {spec.keras_name} at {size} px: "
            + _cli_error(done.stderr, done.returncode)
        )
    try:
        rows = json.loads(done.stdout)
        _parse_rows(rows)
    except (ValueError, TypeError, KeyError) as exc:
        raise RuntimeError(
            f"`python -m tl_core blocks {spec.id} --json` printed no valid block list: {exc}"
        ) from exc
    return rows


def _cli_error(stderr: str, returncode: int) -> str:
    """The CLI's ``error:`` line, or what little there is when it died without one."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    last = f" ({lines[-1]})" if lines else ""
    return f"the block listing exited with code {returncode}{last}."


def _parse_rows(rows: Any) -> list[BlockInfo]:
    """Turn ``blocks --json`` rows into `BlockInfo`; raises on anything malformed."""
    if not isinstance(rows, list) or not rows:
        raise ValueError("expected a non-empty list of blocks")
    return [
        BlockInfo(
            name=str(row["name"]),
            layers=tuple(str(layer) for layer in row["layers"]),
            params=int(row["params"]),
            output_shape=tuple(row["output_shape"]),
        )
        for row in rows
    ]


def _read_cache(path: Path) -> list[BlockInfo] | None:
    try:
        return _parse_rows(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        # A damaged cache file is recomputed, not shown as an error.
        log.warning("Ignoring the unreadable block cache %s", path)
        return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text, durable=False)
