"""Checkpoints a killed worker can always resume from, with variables matched by object.

A checkpoint is one ``.npz`` holding the model's variables and the optimizer's, each
stored under an *object key*: the path of layer names from the model down to the
variable (``mobilenet_v2/block_1_expand/kernel``, ``head/bias``). Layers Keras named
itself (``random_flip_3``: numbered per process) are keyed by their class and their
place among their siblings instead (``augmentation/random_flip``), so the same
architecture built in another process, or after other models, gets the same keys. An
optimizer slot is keyed by the variable it follows (``head/kernel:momentum``).
Restoring goes key by key: a different order of variables restores the right values,
and a different model is refused with a `JobError`.

The commit protocol (``checkpoints/``)::

    epoch-0004.007.npz     written first, under a name never used before (serial 7)
    last.json              then replaced atomically: the commit pointer
    epoch-0003.006.npz     then deleted, with anything else the pointer no longer names

A file the committed pointer names is never overwritten, so a process killed at any
moment leaves a checkpoint that is whole and consistent.

A *lean* checkpoint holds only what can move: every variable outside the backbone (head,
random-generator states) and the backbone layers of the blocks some phase trains
(`only_blocks`). The frozen blocks are bit-identical to their source (the pretrained
weights, or the seeded initialisation), so a resume rebuilds them from it and restores
the rest with the same filter. The pointer also records the
Keras and TensorFlow versions: resuming under other versions is refused (`check_versions`).

Example:
    >>> commit_checkpoint(files, model, {"epoch": 4, "phase_index": 0})  # doctest: +SKIP
    >>> load_variables(model, files.checkpoints / read_last_checkpoint(files)["file"])
    ... # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tl_core.errors import JobError
from tl_core.fsutil import atomic_write
from tl_core.jobs.runs import RunFiles, read_json, write_json_atomic

__all__ = [
    "check_versions",
    "commit_checkpoint",
    "framework_versions",
    "load_optimizer",
    "load_variables",
    "only_blocks",
    "optimizer_keys",
    "read_last_checkpoint",
    "save_variables",
    "saved_keys",
    "variable_keys",
]

POINTER = "last.json"
_MODEL = "model:"
_OPTIMIZER = "optimizer:"
#: Files the commit protocol owns (and deletes once no pointer names them).
_OWNED = re.compile(r"^(epoch-\d{4}\.\d{3,}|best-epoch-\d{4})\.npz$")


def _snake_case(name: str) -> str:
    """Keras's rule for naming a layer after its class: ``RandomFlip`` → ``random_flip``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_key(layer: keras.layers.Layer, seen: Counter[str]) -> str:
    """A layer's key among its siblings: its name, unless Keras made the name up."""
    base = _snake_case(type(layer).__name__)
    if not re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name):
        return layer.name
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}_{seen[base] - 1}"


def _sublayer_key(layer: keras.layers.Layer, seen: Counter[str]) -> str:
    """`_layer_key`, except for a nested functional model: the backbone.

    A Keras application names itself after its input size and weights
    ("mobilenetv2_1.00_224" when built to load a weights file, "mobilenetv2_1.00_32" when
    built empty for a resume), so the same run would not find its own variables again.
    """
    if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
        seen["<backbone>"] += 1
        return "backbone" if seen["<backbone>"] == 1 else f"backbone_{seen['<backbone>'] - 1}"
    return _layer_key(layer, seen)


def _unique(key: str, keys: dict[str, keras.Variable]) -> str:
    """`key`, or ``key#n`` when a sibling already took it."""
    n, candidate = 1, key
    while candidate in keys:
        candidate, n = f"{key}#{n}", n + 1
    return candidate


def variable_keys(model: keras.Model) -> dict[str, keras.Variable]:
    """Map each variable of `model` (weights, BatchNorm statistics, random-generator
    state) to its object key.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> list(variable_keys(model))
        ['dense/kernel', 'dense/bias']
    """
    keys: dict[str, keras.Variable] = {}

    def visit(layer: keras.layers.Layer, prefix: str) -> None:
        if isinstance(layer, keras.Model):
            seen: Counter[str] = Counter()
            for sublayer in layer.layers:
                visit(sublayer, f"{prefix}{_sublayer_key(sublayer, seen)}/")
            return
        for variable in layer.variables:
            keys[_unique(prefix + variable.name, keys)] = variable

    visit(model, "")
    return keys


def optimizer_keys(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> dict[str, Any]:
    """Map each optimizer variable to a key: ``<model variable key>:<slot>`` for the slots
    Keras names after a model variable (``<variable path with _>_<slot>``), the plain
    name for the others (``iteration``, ``learning_rate``).

    Example:
        >>> model.compile(optimizer="adam")  # doctest: +SKIP
        >>> model.optimizer.build(model.trainable_variables)  # doctest: +SKIP
        >>> list(optimizer_keys(model.optimizer, model))[:3]  # doctest: +SKIP
        ['iteration', 'learning_rate', 'dense/kernel:momentum']
    """
    owners = {v.path.replace("/", "_"): key for key, v in variable_keys(model).items()}
    keys: dict[str, keras.Variable] = {}
    for variable in optimizer.variables:
        name = variable.name
        owner = max((o for o in owners if name.startswith(o + "_")), key=len, default=None)
        key = f"{owners[owner]}:{name[len(owner) + 1 :]}" if owner else name
        keys[_unique(key, keys)] = variable
    return keys


#: The key prefix of the backbone's variables (see `_sublayer_key`).
_BACKBONE = "backbone/"


def only_blocks(layers: Iterable[str]) -> Callable[[str], bool]:
    """A key filter for lean checkpoints: the variables outside the backbone, and those of
    the backbone `layers` (the layers of the blocks that train).

    Example:
        >>> keep = only_blocks(["block_16_project"])
        >>> keep("head/kernel"), keep("backbone/block_16_project/kernel")
        (True, True)
        >>> keep("backbone/Conv1/kernel")
        False
    """
    chosen = frozenset(layers)

    def keep(key: str) -> bool:
        if not key.startswith(_BACKBONE):
            return True
        return key[len(_BACKBONE) :].split("/", 1)[0] in chosen

    return keep


def _model_keys(model: keras.Model, only: Callable[[str], bool] | None) -> dict[str, Any]:
    keys = variable_keys(model)
    return keys if only is None else {k: v for k, v in keys.items() if only(k)}


def saved_keys(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer | None = None,
    *,
    only: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """The variables `save_variables` writes, under their names in the file.

    Walking a whole backbone for its keys costs milliseconds; a caller that saves the same
    variables every epoch computes them once and passes them as ``keys``. Take them once
    the optimizer is built: an unbuilt one has no slots yet.

    Example:
        >>> list(saved_keys(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])))
        ['model:dense/kernel', 'model:dense/bias']
    """
    keys = {_MODEL + key: v for key, v in _model_keys(model, only).items()}
    if optimizer is not None:
        keys |= {_OPTIMIZER + key: v for key, v in optimizer_keys(optimizer, model).items()}
    return keys


def save_variables(
    model: keras.Model,
    path: Path,
    optimizer: keras.optimizers.Optimizer | None = None,
    *,
    only: Callable[[str], bool] | None = None,
    keys: dict[str, Any] | None = None,
) -> None:
    """Write the variables of `model` (and of `optimizer`, when given) into one ``.npz``
    keyed by object, atomically; with `only` (from `only_blocks`), the keys it accepts.

    One file of plain arrays: much faster than ``save_weights``, which writes one HDF5
    dataset per weight; the random-generator state is a variable too, so a resumed run
    draws the dropout masks an uninterrupted one would. `keys` (from `saved_keys` with
    the same arguments) skips working them out again.

    Example:
        >>> save_variables(model, folder / "best-epoch-0003.npz")  # doctest: +SKIP
    """
    if keys is None:
        keys = saved_keys(model, optimizer, only=only)
    _write_arrays(path, keys, folder_durable=True)


def _write_arrays(path: Path, keys: dict[str, Any], *, folder_durable: bool) -> None:
    """Write the values of `keys` into the ``.npz`` `path` atomically, its content flushed
    to disk; the folder too unless a later write in it (the commit pointer's) flushes it."""
    arrays = {key: keras.ops.convert_to_numpy(v) for key, v in keys.items()}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write, durable=folder_durable)


def _assign(keys: dict[str, Any], saved: Any, prefix: str, what: str, path: Path) -> None:
    stored = {name[len(prefix) :] for name in saved.files if name.startswith(prefix)}
    missing, extra = sorted(set(keys) - stored), sorted(stored - set(keys))
    wrong = sorted(
        key for key in set(keys) & stored if saved[prefix + key].shape != tuple(keys[key].shape)
    )
    if missing or extra or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
            for label, names in (
                ("not in the file", missing),
                ("not in this model", extra),
                ("other shapes", wrong),
            )
            if names
        )
        raise JobError(
            f"The checkpoint {path.name} holds the {what} of a different model ({detail}). "
            "The run folder was changed or its settings do not build the same model; "
            "start a new run."
        )
    for key, variable in keys.items():
        variable.assign(saved[prefix + key])


def load_variables(
    model: keras.Model, path: Path, *, only: Callable[[str], bool] | None = None
) -> None:
    """Assign the variables `save_variables` wrote back into `model`, key by key; with
    `only`, the file holds (and restores) the keys that filter accepts.

    Raises:
        JobError: the file belongs to a different model (keys or shapes differ).

    Example:
        >>> load_variables(model, folder / "best-epoch-0003.npz")  # doctest: +SKIP
    """
    with np.load(path) as saved:
        _assign(_model_keys(model, only), saved, _MODEL, "variables", path)


def load_optimizer(optimizer: keras.optimizers.Optimizer, model: keras.Model, path: Path) -> None:
    """Assign the optimizer state `save_variables` wrote back into `optimizer`, key by key.

    `model` is the one whose variables were saved with it (it names the slots). Build the
    optimizer first (``optimizer.build(fitted_model.trainable_variables)``): an unbuilt
    one has no slots to receive the state.

    Raises:
        JobError: the state belongs to a different model or optimizer.

    Example:
        >>> load_optimizer(fit_model.optimizer, classifier.model, path)  # doctest: +SKIP
    """
    with np.load(path) as saved:
        _assign(optimizer_keys(optimizer, model), saved, _OPTIMIZER, "optimizer state", path)


def framework_versions() -> dict[str, str]:
    """The versions a checkpoint depends on: variable layout and random streams change
    with them."""
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def check_versions(record: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume from a checkpoint written under other Keras/TensorFlow versions.

    Raises:
        JobError: the versions differ, or the checkpoint records none.

    Example:
        >>> check_versions(read_last_checkpoint(files), files.root)  # doctest: +SKIP
    """
    recorded, current = record.get("versions"), framework_versions()
    if recorded == current:
        return
    written = (
        ", ".join(f"{k} {v}" for k, v in sorted(recorded.items()))
        if isinstance(recorded, dict)
        else "unrecorded versions"
    )
    running = ", ".join(f"{k} {v}" for k, v in sorted(current.items()))
    raise JobError(
        f"The checkpoint of {run_dir} was written with {written}; this worker runs "
        f"{running}. Resuming across versions is refused: the variables and random streams "
        "may not mean the same, so the run would not continue where it stopped. Start a new "
        "run, or resume with the versions recorded in its run.json."
    )


def read_last_checkpoint(files: RunFiles) -> dict[str, Any] | None:
    """Return the committed pointer ``checkpoints/last.json``; ``None`` before the first
    commit.

    Example:
        >>> read_last_checkpoint(files)["epoch"]  # doctest: +SKIP
        4
    """
    record = read_json(files.checkpoints / POINTER)
    return record if isinstance(record, dict) else None


def commit_checkpoint(
    files: RunFiles,
    model: keras.Model,
    record: dict[str, Any],
    *,
    optimizer: keras.optimizers.Optimizer | None = None,
    keep: tuple[str, ...] = (),
    only: Callable[[str], bool] | None = None,
    keys: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a checkpoint of `model` (and `optimizer`) and commit it; return the pointer.

    Args:
        files: the run's files.
        model: whose variables to save.
        record: what the pointer says besides the file: ``epoch`` (1-based, required),
            phase, counters.
        optimizer: whose state to save (default ``None``: none).
        keep: other files in ``checkpoints/`` the pointer refers to (the best weights);
            every other checkpoint file is deleted after the commit.
        only: a key filter (`only_blocks`) for a lean checkpoint; `record` should then
            say so, for the resume to restore with the same filter.
        keys: the variables to save, from `saved_keys` with the same model, optimizer
            and filter (default ``None``: worked out here).

    Example:
        >>> commit_checkpoint(files, model, {"epoch": 4}, optimizer=model.optimizer)
        ... # doctest: +SKIP
    """
    folder = files.checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    serial = int((read_last_checkpoint(files) or {}).get("serial", 0)) + 1
    name = f"epoch-{int(record['epoch']):04d}.{serial:03d}.npz"
    if keys is None:
        keys = saved_keys(model, optimizer, only=only)
    # The pointer's durable write below flushes the folder, and with it this file's name
    # (renamed earlier in the same folder, so a journal that holds the pointer's rename
    # holds this one too): one folder flush per commit instead of two.
    _write_arrays(folder / name, keys, folder_durable=False)
    pointer = record | {
        "file": name,
        "keep": list(keep),
        "serial": serial,
        "versions": framework_versions(),
        "time": time.time(),
    }
    write_json_atomic(folder / POINTER, pointer)
    for path in folder.iterdir():
        if _OWNED.match(path.name) and path.name not in {name, *keep}:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return pointer
