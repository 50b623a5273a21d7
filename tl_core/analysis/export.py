"""Export a trained run: ``.keras``, ``.tflite`` for phones, ``labels.json``, a model card.

Both model formats take what ``model.keras`` takes: raw RGB pixels 0–255, float32, shape
``(batch, size, size, 3)``; the preprocessing is inside (built-in Keras layers only), so
the exported ``.keras`` loads in plain Keras without `tl_core`. ``labels.json`` says how to
read the output (class names in index order) and what to feed in.

Every export (``.keras``, TFLite, the backbone's weights) is made from the run's inference
graph (`tl_core.models.inference.inference_model`): the augmentation layers, which act only
in training, are left out. TFLite has no kernels for their random ops, and the ``model.keras``
of older runs still holds them.

TFLite goes through a SavedModel (``model.export(…, verbose=False)`` then
``TFLiteConverter.from_saved_model``), which keeps the batch dimension dynamic and prints
nothing on stdout; anything the converter writes on file descriptor 1 is sent to stderr,
so ``--json`` output stays one document. ``int8`` quantizes weights and activations,
calibrated on up to `representative_images` training images; inputs and outputs stay
float32. Before a ``.tflite`` file is written, its outputs are compared with the Keras
model's on a few images: a conversion has produced NaN outputs before.

Error messages name files by their base name and a run by its id, never by a path on the
server: the web app shows them to its users as they are.

Only models our own worker wrote are loaded here, never an uploaded file: loading a
``.keras`` file can run code (Keras has had many ``safe_mode`` bypasses).

Example:
    >>> export_model("runs/r1", fmt="tflite", out="exports/pets.tflite")  # doctest: +SKIP
    {'path': '…/exports/pets.tflite', 'format': 'tflite', 'bytes': 2300000, 'labels': '…'}
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import require_run_control
from tl_core.errors import ExportError
from tl_core.fsutil import atomic_write
from tl_core.jobs.runs import RunFiles, best_epoch, read_json, read_metrics, read_status
from tl_core.models.inference import inference_model
from tl_core.viz.markdown import escape_markdown

__all__ = [
    "FORMATS",
    "export_backbone",
    "export_keras",
    "export_labels",
    "export_model",
    "export_tflite",
    "model_card",
    "predict_tflite",
]

#: Export formats and the file suffix each one needs. ``backbone`` is the trained backbone
#: alone, as a weights file that ``--weights PATH`` (or the Backbone page's weights upload)
#: starts another run from: offline, a run trained from scratch becomes the pretrained
#: start of the next.
FORMATS: dict[str, str] = {"keras": ".keras", "tflite": ".tflite", "backbone": ".weights.h5"}

Quantize = Literal["float32", "int8"]

#: Largest difference in any class probability allowed between a ``.tflite`` file and the
#: Keras model on the check images. float32 differs by rounding only. int8 rounds every
#: activation to 256 levels, which moved a probability by 0.59 on training images of a
#: small MobileNetV3 trained from scratch, so int8 is held to sane probabilities only
#: (no NaN, nothing outside [0, 1]); how much accuracy it loses is for the user to check.
TFLITE_TOLERANCE: dict[str, float] = {"float32": 1e-3, "int8": 1.0}

#: How many images the TFLite check runs.
_CHECK_IMAGES = 4

_PREPROCESS_WORDS = {
    "tf": "scaled to [-1, 1]",
    "torch": "scaled to [0, 1], then normalised with the ImageNet mean and std per channel",
    "caffe": "flipped to BGR, then the ImageNet mean subtracted per channel",
    "none": "done by the backbone's own layers",
}


def _read_run(run_dir: Path, action: str) -> dict[str, Any]:
    """Return ``run.json`` of `run_dir`, refusing a folder that holds no run."""
    doc = read_json(RunFiles(run_dir).config)
    if not isinstance(doc, dict) or "config" not in doc:
        raise ExportError(
            f"Cannot {action} {run_dir.name!r}: it is not a run folder (no readable run.json). "
            "Pick a run from the runs list, or pass the --out folder of `train`."
        )
    return doc


def _run_doc(run_dir: Path) -> dict[str, Any]:
    """Return ``run.json`` of a run with a trained model."""
    doc = _read_run(run_dir, "export")
    if not RunFiles(run_dir).model.is_file() or "class_names" not in doc:
        raise ExportError(
            f"Cannot export run {run_dir.name!r}: it has no trained model yet (model.keras is "
            "missing). Wait for the run to finish, or resume it if it was interrupted."
        )
    return doc


def _load_inference_model(run_dir: Path) -> Any:
    """Load the run's ``model.keras`` and return its inference graph (no augmentation)."""
    import keras

    _run_doc(run_dir)
    try:
        # compile=False: no optimizer comes along.
        model = keras.saving.load_model(RunFiles(run_dir).model, compile=False)
    except Exception as exc:
        # The library's message is left out: it names paths on the server.
        raise ExportError(
            f"Cannot export run {run_dir.name!r}: its model.keras does not load "
            f"({type(exc).__name__}). The file is damaged or from another version; train "
            "the run again."
        ) from exc
    return inference_model(model)


def _target(out: Path | str, suffix: str) -> Path:
    """Check the output path and create its folder."""
    path = Path(out).expanduser()
    if not path.name.lower().endswith(suffix) or path.name.lower() == suffix:
        raise ExportError(
            f"Expected `out` to end with {suffix}. Received: out={path.name!r}. "
            f"Name the file like model{suffix}."
        )
    if path.is_dir():
        raise ExportError(
            f"Cannot write {path.name!r}: it is a folder. Give the name of a file inside "
            f"it instead, like model{suffix}."
        )
    _make_folder(path.parent)
    return path


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"Cannot create the folder {folder.name!r}: {exc.strerror}. Choose another --out."
        ) from exc


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (Python and file descriptor 1) to stderr."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded): Python-level redirection is all we can do
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp)`` for a temporary file next to `path`, then move it into place."""
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise ExportError(
            f"Cannot write {path.name!r}: {exc.strerror or type(exc).__name__}. Check the "
            "folder's permissions and free space, or choose another --out."
        ) from exc


def export_keras(run_dir: Path | str, out: Path | str) -> Path:
    """Save the run's inference model as a ``.keras`` file: no augmentation, no optimizer.

    The file takes raw RGB 0–255 (preprocessing inside) and loads with plain Keras:
    ``keras.saving.load_model(path)``, no `tl_core` needed.

    Args:
        run_dir: a trained run directory.
        out: the file to write; must end with ``.keras``. Folders are created.

    Returns:
        The path written.

    Raises:
        ExportError: no trained model, a bad `out`, or a write failure.

    Example:
        >>> export_keras("runs/r1", "exports/pets.keras")  # doctest: +SKIP
        PosixPath('exports/pets.keras')
    """
    run = Path(run_dir)
    path = _target(out, FORMATS["keras"])
    model = _load_inference_model(run)
    _write_atomic(path, model.save)
    return path


def export_backbone(run_dir: Path | str, out: Path | str) -> Path:
    """Save the run's trained backbone (without preprocessing, pooling or head) as weights.

    The file loads into the same backbone built fresh, at any input size it accepts, so it
    can be a run's ``weights`` (``--weights PATH``): the way to a pretrained start when
    ImageNet weights cannot be downloaded.

    Args:
        run_dir: a trained run directory.
        out: the file to write; must end with ``.weights.h5``. Folders are created.

    Returns:
        The path written.

    Raises:
        ExportError: no trained model, a model without a nested backbone, a bad `out`, or
            a write failure.

    Example:
        >>> export_backbone("runs/r1", "weights/shapes-mobilenet_v2.weights.h5")  # doctest: +SKIP
        PosixPath('weights/shapes-mobilenet_v2.weights.h5')
    """
    import keras

    run = Path(run_dir)
    path = _target(out, FORMATS["backbone"])
    model = _load_inference_model(run)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ExportError(
            f"Cannot find the backbone in the model of run {run.name!r}: expected one nested "
            f"model, found {len(nested)}. Only classifiers trained by tl_core can be "
            "exported so."
        )
    _write_atomic(path, nested[0].save_weights)
    return path


def export_tflite(
    run_dir: Path | str,
    out: Path | str,
    *,
    quantize: Quantize = "float32",
    representative_images: int = 100,
) -> Path:
    """Convert the run's model to TensorFlow Lite.

    Args:
        run_dir: a trained run directory.
        out: the file to write; must end with ``.tflite``. Folders are created.
        quantize: ``"float32"`` (default; same numbers as Keras within rounding) or
            ``"int8"`` (weights and activations quantized, about 4× smaller; float32 in
            and out).
        representative_images: for ``int8``, how many training images calibrate the
            activation ranges (default 100, spread over the training split).

    Returns:
        The path written.

    Raises:
        ExportError: no trained model, a bad `out` or `quantize`, ``int8`` without the
            training images, or a conversion failure.

    Example:
        >>> export_tflite("runs/r1", "exports/pets.tflite", quantize="int8")  # doctest: +SKIP
        PosixPath('exports/pets.tflite')
    """
    if quantize not in ("float32", "int8"):
        raise ExportError(
            f"Expected `quantize` to be 'float32' or 'int8'. Received: quantize={quantize!r}"
        )
    if quantize == "int8" and (
        isinstance(representative_images, bool)
        or not isinstance(representative_images, int)
        or representative_images < 1
    ):
        raise ExportError(
            "Expected `representative_images` to be a positive integer. "
            f"Received: representative_images={representative_images!r}"
        )
    run = Path(run_dir)
    path = _target(out, FORMATS["tflite"])
    model = _load_inference_model(run)
    calibration = (
        _representative_dataset(run, representative_images) if quantize == "int8" else None
    )
    with _stdout_to_stderr():
        blob = _convert(run, model, calibration)
        _check_tflite(blob, model, _check_batch(model, calibration), quantize)
    _write_atomic(path, lambda tmp: tmp.write_bytes(blob))
    return path


def _convert(run: Path, model: Any, calibration: Any) -> bytes:
    """Convert `model` through a SavedModel; quantize to int8 when `calibration` is given."""
    import tensorflow as tf

    try:
        with tempfile.TemporaryDirectory(prefix="tl-export-") as tmp:
            saved = Path(tmp) / "saved_model"
            model.export(str(saved), verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            if calibration is not None:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = calibration
            return bytes(converter.convert())
    except Exception as exc:
        # The converter's own message goes to stderr (the log); it names graph nodes and
        # server paths, so the user's message keeps only its kind.
        raise ExportError(
            f"The TFLite conversion of run {run.name!r} failed ({type(exc).__name__}). "
            + (
                "Try float32 (--format tflite without --int8), or "
                if calibration is not None
                else "Export the .keras format instead, or "
            )
            + "report it with the run's backbone."
        ) from exc


def _check_batch(model: Any, calibration: Any) -> Any:
    """Images to compare TFLite with Keras on: the first calibration images for int8 (the
    ranges were fitted to such pictures), fixed random pixels for float32."""
    import numpy as np

    if calibration is not None:
        images = [batch[0] for _, batch in zip(range(_CHECK_IMAGES), calibration(), strict=False)]
        if images:
            return np.concatenate(images).astype(np.float32)
    shape = (_CHECK_IMAGES, *tuple(model.inputs[0].shape[1:]))
    return np.random.default_rng(0).uniform(0.0, 255.0, shape).astype(np.float32)


def _check_tflite(blob: bytes, model: Any, images: Any, quantize: str) -> None:
    """Refuse a TFLite model whose outputs differ from the Keras model's beyond tolerance."""
    import numpy as np

    expected = np.asarray(model(images, training=False), dtype=np.float32)
    got = _run_tflite(_interpreter(model_content=blob), images)
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("nan")
    tolerance = TFLITE_TOLERANCE[quantize]
    if not diff <= tolerance:  # written so that NaN fails too
        raise ExportError(
            f"The {quantize} TFLite model does not match the Keras model: on {len(images)} "
            f"check images the probabilities differ by up to {diff:.3g} (allowed "
            f"{tolerance:g}). Nothing was written. Export the .keras format instead, or "
            "report it with the run's backbone."
        )


def _representative_dataset(run: Path, count: int) -> Any:
    """A generator function over up to `count` training images, one per batch."""
    from tl_core.analysis.evaluate import spread_evenly
    from tl_core.config import RunConfig
    from tl_core.data import load_dataset
    from tl_core.data.dataset import make_batches, split_dataset
    from tl_core.errors import DataError

    doc = _run_doc(run)
    config = RunConfig.from_json(doc["config"])
    try:
        report = load_dataset(config.dataset_id)
    except DataError as exc:
        raise ExportError(
            f"int8 quantization calibrates on the run's training images, and its dataset "
            f"{config.dataset_id} is no longer stored ({exc}). Ingest the archive again, or "
            "export float32."
        ) from exc
    records = split_dataset(report, val_fraction=config.val_fraction, seed=config.seed).train
    batches = make_batches(
        report,
        spread_evenly(records, count),
        class_names=list(doc["class_names"]),
        image_size=int(doc["image_size"]),
        batch_size=1,
        cache=False,
    )

    def generate() -> Iterator[list[Any]]:
        for images, _ in batches:
            yield [images.numpy()]

    return generate


def predict_tflite(path: Path | str, images: Any) -> Any:
    """Run a ``.tflite`` classifier on a batch of raw RGB images; return probabilities.

    Args:
        path: a file from `export_tflite`.
        images: ``(batch, size, size, 3)`` float32, 0–255.

    Returns:
        ``(batch, classes)`` float32 probabilities.

    Example:
        >>> predict_tflite("exports/pets.tflite", batch).argmax(axis=1)  # doctest: +SKIP
        array([0, 2])
    """
    return _run_tflite(_interpreter(model_path=str(path)), images)


def _interpreter(**source: Any) -> Any:
    """A TFLite interpreter over ``model_path=`` or ``model_content=``."""
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that LiteRT will replace it; it still works in TF 2.21.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return tf.lite.Interpreter(**source)


def _run_tflite(interpreter: Any, images: Any) -> Any:
    """Run a TFLite classifier on a batch of raw RGB images; return its first output."""
    import numpy as np

    batch = np.asarray(images, dtype=np.float32)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], list(batch.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], batch)
    interpreter.invoke()
    target = interpreter.get_output_details()[0]
    return np.array(interpreter.get_tensor(target["index"]), dtype=np.float32)


def export_labels(run_dir: Path | str, out: Path | str) -> Path:
    """Write ``labels.json``: class names in index order, the input the model takes.

    Args:
        run_dir: a trained run directory.
        out: the file to write (conventionally ``labels.json`` next to the model).

    Returns:
        The path written. Its content: ``{"class_names": [...], "image_size": N,
        "input": {"name", "shape", "dtype", "color", "range", "layout", "preprocessing"},
        "output": {"shape", "activation", "meaning"}, "backbone", "run_id"}``.

    Example:
        >>> path = export_labels("runs/r1", "exports/labels.json")  # doctest: +SKIP
        >>> json.loads(path.read_text())["class_names"]  # doctest: +SKIP
        ['cat', 'dog']
    """
    run = Path(run_dir)
    doc = _run_doc(run)
    path = Path(out).expanduser()
    if path.is_dir():
        path = path / "labels.json"
    _make_folder(path.parent)
    document = json.dumps(labels_document(doc), indent=1, ensure_ascii=False)
    _write_atomic(path, lambda tmp: tmp.write_text(document + "\n", encoding="utf-8"))
    return path


def labels_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The content of ``labels.json`` for a run's ``run.json`` document."""
    size = int(doc["image_size"])
    names = list(doc["class_names"])
    preprocess = doc.get("preprocess", "none")
    steps = _PREPROCESS_WORDS.get(preprocess, preprocess)
    return {
        "class_names": names,
        "image_size": size,
        "input": {
            "name": "image",
            "shape": [None, size, size, 3],
            "dtype": "float32",
            "color": "RGB",
            "range": [0, 255],
            "layout": "NHWC (batch, height, width, channels)",
            "preprocessing": f"inside the model ({steps}): resize the picture to "
            f"{size}×{size} and pass raw pixel values",
        },
        "output": {
            "shape": [None, len(names)],
            "activation": "softmax",
            "meaning": "one probability per class, in the order of class_names",
        },
        "backbone": doc["config"].get("backbone"),
        "run_id": doc.get("run_id"),
    }


def export_model(
    run_dir: Path | str,
    *,
    fmt: str,
    out: Path | str,
    int8: bool = False,
    actor: Identity | None = None,
) -> dict[str, Any]:
    """Export the model in `fmt` and write ``labels.json`` next to it (what the CLI does).

    Args:
        run_dir: a trained run directory.
        fmt: ``"keras"``, ``"tflite"`` or ``"backbone"`` (the trained backbone's weights,
            to start another run from; see `export_backbone`).
        out: the file to write (``.keras``, ``.tflite`` or ``.weights.h5``).
        int8: quantize the TFLite model to int8 (default False; only with ``tflite``).
        actor: who exports (default ``None``: the operator, who may export every run);
            in class mode a student exports only their own runs (the run's id is the
            folder's name).

    Returns:
        ``{"path", "format", "bytes", "labels", "quantize"}`` with absolute paths.

    Raises:
        AccessDenied: `actor` is a student and the run is someone else's; nothing is
            written then.
        ExportError: the format or the run cannot be exported.

    Example:
        >>> export_model("runs/r1", fmt="keras", out="pets.keras")["bytes"]  # doctest: +SKIP
        9650000
    """
    require_run_control(actor, Path(run_dir).name, action="export")
    if fmt not in FORMATS:
        raise ExportError(
            f"Expected `format` to be one of {list(FORMATS)}. Received: format={fmt!r}"
        )
    if int8 and fmt != "tflite":
        raise ExportError(
            "int8 quantization applies to TFLite only. Use --format tflite with --int8, or "
            "drop --int8."
        )
    if fmt == "keras":
        path = export_keras(run_dir, out)
    elif fmt == "backbone":
        path = export_backbone(run_dir, out)
    else:
        path = export_tflite(run_dir, out, quantize="int8" if int8 else "float32")
    labels = export_labels(run_dir, path.parent / "labels.json")
    return {
        "path": str(path.resolve()),
        "format": fmt,
        "bytes": path.stat().st_size,
        "labels": str(labels.resolve()),
        "quantize": ("int8" if int8 else "float32") if fmt == "tflite" else None,
    }


def model_card(run_dir: Path | str) -> str:
    """Describe a trained run as a Markdown model card.

    Sections: Data (dataset source, classes with counts, split), Configuration (backbone,
    weights source, freeze plan, phases, epochs, learning rate, …), Metrics (best and final
    validation accuracy; per-class numbers from ``eval.json`` when `evaluate_run` has run),
    Intended use and limits, Device, Versions, Dates.

    Args:
        run_dir: a run directory (a run still training gives a card of what is known).

    Raises:
        ExportError: the folder holds no run.

    Example:
        >>> print(model_card("runs/r1"))  # doctest: +SKIP
        # Model card: r1
        …
    """
    run = Path(run_dir)
    files = RunFiles(run)
    doc = _read_run(run, "describe")
    config = doc["config"]
    lines = [f"# Model card: {doc.get('run_id', run.name)}", ""]
    lines += _data_section(doc, config)
    lines += _config_section(doc, config)
    lines += _metrics_section(files)
    lines += [
        "## Intended use and limits",
        "",
        f"Classifies pictures into the {len(doc.get('class_names', []))} classes above, "
        "and only those: any picture gets one of them, however unrelated. It was validated "
        "on held-out images of the same dataset only; check it on pictures from where it "
        "will be used before relying on it.",
        "",
    ]
    lines += _device_section(doc)
    lines += _versions_section(doc)
    lines += _dates_section(files, doc)
    return "\n".join(lines).rstrip() + "\n"


def _data_section(doc: dict[str, Any], config: dict[str, Any]) -> list[str]:
    from tl_core.data import load_dataset
    from tl_core.errors import DataError

    lines = ["## Data", ""]
    dataset_id = config.get("dataset_id", "?")
    try:
        report = load_dataset(dataset_id)
        lines.append(f"- Dataset: {escape_markdown(report.source_name)} (id `{dataset_id}`)")
        counts: dict[str, int] = dict(report.classes)
    except DataError:
        lines.append(f"- Dataset: id `{dataset_id}` (no longer stored here)")
        counts = {}
    names = doc.get("class_names", sorted(counts))
    lines.append(f"- Classes ({len(names)}): " + ", ".join(escape_markdown(n) for n in names))
    lines.append("")
    if counts:
        lines += ["| class | images |", "|---|---:|"]
        lines += [f"| {escape_markdown(name)} | {counts.get(name, 0)} |" for name in names]
        lines.append("")
    source = {"archive": "the archive's own val/ folder", "drawn": "a seeded stratified draw"}
    if "num_train" in doc:
        lines.append(
            f"- Split: {doc['num_train']} training / {doc.get('num_val', '?')} validation "
            f"images, validation from {source.get(doc.get('val_source'), 'unknown')} "
            f"(fraction {config.get('val_fraction')}, seed {config.get('seed')})"
        )
    lines.append(f"- Input: {doc.get('image_size', config.get('image_size'))} px square RGB")
    lines.append("")
    return lines


def _config_section(doc: dict[str, Any], config: dict[str, Any]) -> list[str]:
    weights = doc.get("weights_source") or {"kind": config.get("weights")}
    weights_text = {
        "imagenet": "ImageNet (pretrained)",
        "none": "none (trained from scratch)",
    }.get(weights.get("kind"), f"file `{weights.get('path', config.get('weights'))}`")
    blocks = doc.get("blocks", [])
    trainable = [b["name"] for b in blocks if b.get("trainable")]
    freeze = _blocks_words(trainable, len(blocks)) if blocks else config.get("freeze", "?")
    lines = [
        "## Configuration",
        "",
        f"- Backbone: `{config.get('backbone')}`",
        f"- Weights: {weights_text}",
        f"- Trainable in the last phase: {freeze}",
    ]
    if "trainable_params" in doc:
        lines.append(
            f"- Parameters: {doc['trainable_params']:,} trainable, "
            f"{doc.get('non_trainable_params', 0):,} frozen"
        )
    if "bn_trainable" in doc:
        lines.append(f"- BatchNorm trains: {'yes' if doc['bn_trainable'] else 'no'}")
    for phase in doc.get("phases", []):
        lines.append(
            f"- Phase `{phase.get('name')}`: {phase.get('epochs')} epochs at learning rate "
            f"{phase.get('learning_rate'):g}, trainable: "
            + _blocks_words(list(phase.get("trainable", [])), len(blocks))
        )
    lines += [
        f"- Epochs: {config.get('epochs')}"
        + (f" + {config.get('fine_tune_epochs')} fine-tuning" if config.get("two_phase") else ""),
        f"- Optimizer: {config.get('optimizer')}, learning rate {config.get('learning_rate')}, "
        f"schedule {config.get('schedule')}, batch size {config.get('batch_size')}",
        f"- Augmentation: {', '.join(config.get('augmentation') or []) or 'none'}; dropout "
        f"{config.get('dropout')}; label smoothing {config.get('label_smoothing')}",
        "- Early stopping: "
        + (f"yes (patience {config.get('patience')})" if config.get("early_stopping") else "no"),
        f"- Seed: {config.get('seed')}",
        "",
    ]
    return lines


def _blocks_words(trainable: list[str], total: int) -> str:
    if not trainable:
        return f"head only (all {total} backbone blocks frozen)"
    if len(trainable) == total:
        return f"head and all {total} backbone blocks"
    return f"head and {len(trainable)} of {total} blocks ({', '.join(trainable)})"


def _metrics_section(files: RunFiles) -> list[str]:
    lines = ["## Metrics", ""]
    epochs, _ = read_metrics(files.root)
    scored = [e for e in epochs if e.get("val_accuracy") is not None]
    best = best_epoch(epochs)
    if scored and best is not None:
        final = scored[-1]
        lines.append(
            f"- Best validation accuracy: {best['val_accuracy']:.4f} (epoch {best.get('epoch')}; "
            "best epoch: highest validation accuracy, ties to the lower validation loss)"
        )
        lines.append(
            f"- Final validation accuracy: {final['val_accuracy']:.4f} (epoch "
            f"{final.get('epoch')}, validation loss {final.get('val_loss', float('nan')):.4f})"
        )
        if final.get("accuracy") is not None:
            lines.append(f"- Final training accuracy: {final['accuracy']:.4f}")
    else:
        lines.append("- No epoch has finished yet.")
    evaluation = read_json(files.root / "eval.json")
    if isinstance(evaluation, dict) and "per_class" in evaluation:
        lines += [
            "",
            f"Evaluation on {evaluation.get('num_images', '?')} validation images: accuracy "
            f"{evaluation.get('accuracy', float('nan')):.4f}.",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in evaluation["per_class"].items():
            lines.append(
                f"| {escape_markdown(name)} | {row['precision']:.3f} | {row['recall']:.3f} "
                f"| {row['f1']:.3f} | {row['support']} |"
            )
        confused = evaluation.get("most_confused") or []
        if confused:
            top = confused[0]
            lines += [
                "",
                f"Most confused: {escape_markdown(top['true'])} taken for "
                f"{escape_markdown(top['predicted'])} "
                f"({top['count']} {'time' if top['count'] == 1 else 'times'}).",
            ]
    else:
        lines += ["", "No per-class evaluation yet (run `python -m tl_core evaluate RUN_DIR`)."]
    lines.append("")
    return lines


def _device_section(doc: dict[str, Any]) -> list[str]:
    device = doc.get("device")
    if not isinstance(device, dict):
        return ["## Device", "", "- Unknown", ""]
    details = ", ".join(f"{k}: {v}" for k, v in device.items() if v not in (None, "", [], {}))
    return ["## Device", "", f"- {details}", ""]


def _versions_section(doc: dict[str, Any]) -> list[str]:
    versions = doc.get("versions") or {}
    lines = ["## Versions", ""]
    lines += [f"- {name}: {value}" for name, value in versions.items()] or ["- Unknown"]
    lines.append("")
    return lines


def _dates_section(files: RunFiles, doc: dict[str, Any]) -> list[str]:
    def stamp(value: float | None) -> str:
        if value is None:
            return "-"
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))

    status = read_status(files.root)
    lines = ["## Dates", "", f"- Created: {stamp(doc.get('created'))}"]
    if status is not None:
        lines.append(f"- Finished: {stamp(status.finished_at)} ({status.state})")
    lines.append(f"- Card written: {stamp(time.time())}")
    lines.append("")
    return lines
