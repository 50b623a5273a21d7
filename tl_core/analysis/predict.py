"""Classify images with a trained run's ``model.keras``.

Images go through the same decoding as ingest (`tl_core.data.images.decode_image`: content
sniffing, EXIF rotation, transparency on white, 16-bit scaling) and the same resize as the
training pipeline, so a picture is seen at prediction exactly as it was in training.
Only models written by our own worker are loaded here (never a user-uploaded file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tl_core.data.images import ImageRejected, decode_image
from tl_core.errors import DataError, JobError
from tl_core.fsutil import atomic_write
from tl_core.jobs.runs import RunFiles, read_json

__all__ = ["load_run_model", "predict_arrays", "predict_images", "prepare_image"]


def load_run_model(run_dir: Path) -> tuple[Any, list[str], int]:
    """Load ``model.keras`` of a run; return ``(model, class_names, image_size)``.

    Raises:
        JobError: the run has no trained model yet.
    """
    import keras

    files = RunFiles(Path(run_dir))
    doc = read_json(files.config, {})
    if not files.model.is_file() or "class_names" not in doc:
        raise JobError(
            f"Run {files.root.name} has no trained model yet (model.keras is missing). "
            "Wait for the run to finish, or resume it if it was interrupted."
        )
    model = keras.saving.load_model(files.model, compile=False)
    return model, list(doc["class_names"]), int(doc["image_size"])


def prepare_image(data: bytes, image_size: int, *, name: str = "image") -> np.ndarray:
    """Decode image bytes into one ``(image_size, image_size, 3)`` float32 array, 0–255.

    Raises:
        DataError: the bytes are not a usable image (the reason says why).
    """
    import tensorflow as tf

    try:
        decoded = decode_image(data)
    except ImageRejected as exc:
        raise DataError(f"{name!r} cannot be classified: {exc}. Use a JPEG or PNG photo.") from None
    array = np.asarray(decoded.image, dtype=np.uint8)
    resized = tf.image.resize(array, (image_size, image_size), antialias=True)
    return np.clip(resized.numpy(), 0.0, 255.0).astype("float32")


def predict_arrays(model: Any, batch: np.ndarray) -> np.ndarray:
    """Return class probabilities for a batch of prepared images."""
    return np.asarray(model.predict(batch, verbose=0), dtype="float64")


#: Longest side of the pictures Grad-CAM overlays are drawn on: the model's input is
#: often tiny (32–224 px); the overlay is drawn on the picture itself, scaled to this.
OVERLAY_SIDE = 320


def predict_images(
    run_dir: Path, images: list[Path], *, top_k: int = 3, gradcam_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Classify image files with a run's model, optionally with Grad-CAM overlays.

    Args:
        run_dir: a trained run directory.
        images: image files (any format `decode_image` accepts).
        top_k: how many of the most likely classes to list per image (default 3).
        gradcam_dir: when given, write each image's Grad-CAM overlay for its predicted
            class there, as ``<sha12 of the image bytes>.png`` drawn on the picture
            scaled to `OVERLAY_SIDE` (default ``None``: no overlays).

    Returns:
        Per image: ``image``, ``label``, ``confidence``, ``top`` (the `top_k` most likely
        classes with probabilities) and ``probabilities`` (every class); with
        `gradcam_dir`, also ``gradcam`` (the overlay's path) and ``gradcam_layer`` (the
        feature map explained).

    Example:
        >>> predict_images(Path("runs/r1"), [Path("cat.jpg")])[0]["label"]  # doctest: +SKIP
        'cat'
    """
    model, class_names, size = load_run_model(run_dir)
    contents, batch = [], []
    for path in images:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DataError(f"Cannot read {str(path)!r}: {exc.strerror}. Check the path.") from None
        contents.append(data)
        batch.append(prepare_image(data, size, name=str(path)))
    probabilities = predict_arrays(model, np.stack(batch))
    results = []
    for index, (path, probs) in enumerate(zip(images, probabilities, strict=True)):
        order = np.argsort(probs)[::-1]
        extra = {}
        if gradcam_dir is not None:
            extra = _write_overlay(
                model, batch[index], contents[index], int(order[0]), Path(gradcam_dir)
            )
        results.append(
            {
                "image": str(path),
                "label": class_names[int(order[0])],
                "confidence": float(probs[order[0]]),
                "top": [
                    {"label": class_names[int(i)], "probability": float(probs[i])}
                    for i in order[: max(1, top_k)]
                ],
                "probabilities": {c: float(p) for c, p in zip(class_names, probs, strict=True)},
                **extra,
            }
        )
    return results


def _write_overlay(
    model: Any, prepared: np.ndarray, data: bytes, class_index: int, folder: Path
) -> dict[str, str]:
    """Grad-CAM of one prepared image for `class_index`, drawn over the picture itself."""
    import hashlib

    from PIL import Image

    from tl_core.analysis.gradcam import default_layer, grad_cam, overlay

    heatmap = grad_cam(model, prepared, class_index=class_index)
    picture = decode_image(data).image.copy()
    picture.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE), Image.Resampling.LANCZOS)
    if max(picture.size) < OVERLAY_SIDE:  # tiny inputs: enlarge, keeping pixels sharp
        scale = OVERLAY_SIDE / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
            Image.Resampling.NEAREST,
        )
    blended = overlay(np.asarray(picture.convert("RGB"), dtype=np.uint8), heatmap)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:12]}.png"
    atomic_write(path, lambda tmp: Image.fromarray(blended).save(tmp, format="PNG"), durable=False)
    return {"gradcam": str(path.resolve()), "gradcam_layer": default_layer(model)}
