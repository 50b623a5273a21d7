"""Preparing an offline machine: the ImageNet weights files in the Keras cache.

A lab box without internet cannot download pretrained weights when a run starts. While it
is online, `fetch_weights` downloads the files of the backbones asked for (through the
same hash-checked path as training); a file carried over on a stick is added with
`import_weights`, which recognises it by its published file name and checks it against the
hash Keras publishes for that name; `weights_status` says which files are present and sound.

Every backbone has one weights file (no top) per input size its weights depend on: one for
most, one per size for MobileNetV2 (see `BackboneSpec.weights_sizes`). Keras publishes no
hash for the MobileNetV2 files; they are accepted when they are HDF5 files, and their rows
say ``hash_ok: None`` (not checkable).

Importing this module does not import TensorFlow.

Example:
    >>> [row["file"] for row in weights_status(["resnet50"])]  # doctest: +SKIP
    ['resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5']
    >>> copied = Path("/media/stick/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    >>> import_weights(copied)["id"]  # doctest: +SKIP
    'vgg16'
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.errors import WeightsUnavailable
from tl_core.fsutil import atomic_write
from tl_core.models.backbones import (
    BackboneSpec,
    _imagenet_file,
    get_backbone,
    keras_models_dir,
    list_backbones,
)

__all__ = [
    "WeightsFile",
    "fetch_weights",
    "import_weights",
    "weights_files",
    "weights_status",
]

#: The first bytes of every HDF5 file (Keras ``.h5`` weights are HDF5).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_IMPORT_HINT = "python -m tl_core weights import FILE"


@dataclass(frozen=True)
class WeightsFile:
    """One ImageNet weights file Keras publishes for a registered backbone.

    Attributes:
        backbone_id: The backbone it belongs to, e.g. ``"resnet50"``.
        input_size: The input side it was trained at.
        file: Its file name in the Keras cache (how Keras finds it).
        url: Where Keras downloads it from.
        expected_hash: md5, or sha256 when 64 hex digits long; ``None`` where Keras has none.
    """

    backbone_id: str
    input_size: int
    file: str
    url: str
    expected_hash: str | None

    @property
    def path(self) -> Path:
        """Where Keras looks for it: ``keras_models_dir() / file``."""
        return keras_models_dir() / self.file


def weights_files(spec: BackboneSpec) -> list[WeightsFile]:
    """Return every ImageNet weights file of `spec`: its default size first, then per size.

    Example:
        >>> [f.input_size for f in weights_files(get_backbone("mobilenet_v2"))]
        [224, 96, 128, 160, 192]
        >>> weights_files(get_backbone("vgg16"))[0].file
        'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
    """
    sizes = [spec.default_input_size]
    sizes += [size for size in spec.weights_sizes if size != spec.default_input_size]
    files = []
    for size in sizes:
        name = spec.weights_file_for(size)
        files.append(
            WeightsFile(spec.id, size, name, spec.weights_origin + name, spec.weights_hash)
        )
    return files


def weights_status(backbone_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Return one row per weights file: is it in the Keras cache, and is it sound?

    Checking a hash reads the whole file (up to a few hundred MB for the large backbones).

    Args:
        backbone_ids: The backbones to report (default ``None``: every registered one).

    Returns:
        Rows with ``id``, ``input_size``, ``file``, ``present``, ``bytes`` (``None`` when
        absent) and ``hash_ok`` (``None`` when absent or when Keras publishes no hash).

    Raises:
        ConfigError: For an unknown backbone id.

    Example:
        >>> weights_status(["vgg16"])[0]["present"]  # doctest: +SKIP
        False
    """
    specs = _specs(backbone_ids)
    return [_file_row(weights_file) for spec in specs for weights_file in weights_files(spec)]


def fetch_weights(backbone_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Download the ImageNet weights files of the backbones asked for into the Keras cache.

    A file already present with the right hash is left alone; one with a wrong hash (an
    interrupted download, a damaged copy) is replaced. Downloads go through the path
    training uses (Keras's ``get_file`` with the published hash, progress on stderr), and
    each file's hash is checked again once it is in place.

    Args:
        backbone_ids: The backbones to fetch (default ``None``: every registered one).

    Returns:
        One row per backbone: ``id``, ``status`` (``"fetched"``, ``"present"`` or
        ``"failed"``), ``reason`` (why it failed, else ``None``) and ``files`` (per file:
        ``file``, ``input_size``, ``status``, ``reason``).

    Raises:
        ConfigError: For an unknown backbone id (before anything is downloaded).

    Example:
        >>> [row["status"] for row in fetch_weights(["mobilenet_v2"])]  # doctest: +SKIP
        ['fetched']
    """
    rows = []
    for spec in _specs(backbone_ids):
        files = [_fetch_file(spec, weights_file) for weights_file in weights_files(spec)]
        statuses = {row["status"] for row in files}
        failed = [row for row in files if row["status"] == "failed"]
        status = "failed" if failed else ("fetched" if "fetched" in statuses else "present")
        reason = failed[0]["reason"] if failed else None
        rows.append({"id": spec.id, "status": status, "reason": reason, "files": files})
    return rows


def import_weights(source: Path) -> dict[str, Any]:
    """Copy a weights file carried to this machine into the Keras cache, after checking it.

    The file is recognised by its name (the name Keras publishes it under, which is how
    Keras finds it in the cache) and must have the hash Keras publishes for that name. It
    is copied atomically: a reader never sees half a file.

    Args:
        source: The file to add, e.g. ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``.

    Returns:
        ``id``, ``input_size``, ``file``, ``bytes``, ``hash_ok`` (``None`` where Keras
        publishes no hash) and ``replaced`` (whether a file of that name was there already).

    Raises:
        WeightsUnavailable: When the file is missing, its name is not a published weights
            file name, or its content is not the published file.

    Example:
        >>> copied = Path("/media/stick/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
        >>> import_weights(copied)["hash_ok"]  # doctest: +SKIP
        True
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise WeightsUnavailable(
            f"Cannot find the weights file {source.name!r}: it does not exist or is not a "
            "file. Check the path and run the command again."
        )
    weights_file = _known_files().get(source.name)
    if weights_file is None:
        raise WeightsUnavailable(
            f"{source.name!r} is not the name of an ImageNet weights file the studio knows. "
            "Keras finds its weights by the name they are published under, so the copy must "
            "keep it (e.g. resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, not a "
            "renamed or '(1)' copy). Rename it, or see `python -m tl_core weights list` for "
            "the names."
        )
    hash_ok = _check_content(weights_file, source)
    target = weights_file.path
    replaced = target.is_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    return {
        "id": weights_file.backbone_id,
        "input_size": weights_file.input_size,
        "file": weights_file.file,
        "bytes": target.stat().st_size,
        "hash_ok": hash_ok,
        "replaced": replaced,
    }


def _specs(backbone_ids: Sequence[str] | None) -> list[BackboneSpec]:
    if backbone_ids is None:
        return list_backbones()
    # Every id is resolved first, so a typo is refused before any download starts.
    return [get_backbone(backbone_id) for backbone_id in dict.fromkeys(backbone_ids)]


def _known_files() -> dict[str, WeightsFile]:
    return {f.file: f for spec in list_backbones() for f in weights_files(spec)}


def _file_row(weights_file: WeightsFile) -> dict[str, Any]:
    path = weights_file.path
    present = path.is_file()
    return {
        "id": weights_file.backbone_id,
        "input_size": weights_file.input_size,
        "file": weights_file.file,
        "present": present,
        "bytes": path.stat().st_size if present else None,
        "hash_ok": _hash_matches(weights_file, path) if present else None,
    }


def _hash_matches(weights_file: WeightsFile, path: Path) -> bool | None:
    """Whether `path` has the published hash; ``None`` where Keras publishes none."""
    expected = weights_file.expected_hash
    if expected is None:
        return None
    return _digest(path, expected) == expected


def _digest(path: Path, expected: str) -> str:
    # Keras's rule: a 64-digit hash is sha256, anything else md5.
    algorithm = "sha256" if len(expected) == 64 else "md5"
    with path.open("rb") as file:
        return hashlib.file_digest(file, algorithm).hexdigest()


def _check_content(weights_file: WeightsFile, source: Path) -> bool | None:
    """Refuse `source` unless it is the published file; return `_hash_matches`'s answer."""
    with source.open("rb") as file:
        is_hdf5 = file.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    if not is_hdf5:
        raise WeightsUnavailable(
            f"{source.name!r} is not a Keras weights file (not HDF5): perhaps an error page "
            f"saved under that name, or a broken copy. Download it again from "
            f"{weights_file.url} and import that file."
        )
    hash_ok = _hash_matches(weights_file, source)
    if hash_ok is False:
        raise WeightsUnavailable(
            f"{source.name!r} is not the file Keras publishes under that name: its hash "
            f"differs from {weights_file.expected_hash} (an interrupted download or a damaged "
            f"copy). Download it again from {weights_file.url} and import that file."
        )
    return hash_ok


def _fetch_file(spec: BackboneSpec, weights_file: WeightsFile) -> dict[str, Any]:
    row: dict[str, Any] = {
        "file": weights_file.file,
        "input_size": weights_file.input_size,
        "status": "present",
        "reason": None,
    }
    path = weights_file.path
    if path.is_file():
        if _hash_matches(weights_file, path) is not False:
            return row
        # A damaged copy is what `fetch` exists to repair; Keras would replace it too.
        path.unlink()
    try:
        _imagenet_file(spec, weights_file.input_size, download=True)
    except WeightsUnavailable as exc:
        return row | {"status": "failed", "reason": _download_failure(weights_file, exc)}
    if not path.is_file() or _hash_matches(weights_file, path) is False:
        return row | {
            "status": "failed",
            "reason": f"the downloaded {weights_file.file} does not have the published hash; "
            "run the command again",
        }
    return row | {"status": "fetched"}


def _download_failure(weights_file: WeightsFile, exc: WeightsUnavailable) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0].rstrip(":. ")
    # Keras says "URL fetch failure on <url>: <code> -- <reason>"; the reason is what counts.
    detail = detail.rpartition(" -- ")[2]
    return (
        f"cannot download {weights_file.file} ({detail}). If this machine is offline, "
        f"download {weights_file.url} on one that is online, copy it here and run "
        f"`{_IMPORT_HINT}`"
    )
