"""Zip → training batches: tl_core's ingest + pipeline vs Keras on the same images.

Ours: ``ingest_archive`` (validate, decode, normalise, store) and then ``make_batches``
for every epoch. Plain Keras: the same zip extracted (extraction not timed), then
``keras.utils.image_dataset_from_directory`` for every epoch. Both produce float32
batches of the same size; both are timed in this process, one after the other.
``ratio`` is our images/s over Keras's, so above 1.0 means faster than plain Keras.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circles", "squares", "stripes", "noise")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench ingest``."""
    parser.add_argument("--images", type=int, default=400, help="images in the archive")
    parser.add_argument("--source-size", type=int, default=640, help="side of the JPEGs")
    parser.add_argument("--image-size", type=int, default=160, help="training input side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)


def build_archive(path: Path, images: int, size: int, seed: int = 0) -> None:
    """Write a zip of `images` camera-like JPEGs (``size`` px) in four class folders."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(images):
            label = CLASSES[i % len(CLASSES)]
            base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
            picture = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)
            draw = ImageDraw.Draw(picture)
            x, y = rng.integers(0, size // 2, 2)
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            if label == "circles":
                draw.ellipse((x, y, x + size // 3, y + size // 3), fill=colour)
            elif label == "squares":
                draw.rectangle((x, y, x + size // 3, y + size // 3), fill=colour)
            elif label == "stripes":
                for k in range(0, size, 24):
                    draw.rectangle((k, 0, k + 8, size), fill=colour)
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=90)
            zf.writestr(f"photos/{label}/{i:05d}.jpg", buffer.getvalue())


def _consume(dataset: Any, epochs: int, batches: int | None = None) -> tuple[int, list[float]]:
    """Iterate `epochs` epochs; with `batches`, the dataset holds all epochs back to back."""
    seen = 0
    per_epoch = []
    iterator = iter(dataset)
    for _ in range(epochs):
        start = time.perf_counter()
        for step, (images, _labels) in enumerate(dataset if batches is None else iterator):
            seen += int(images.shape[0])
            if batches is not None and step + 1 == batches:
                break
        per_epoch.append(time.perf_counter() - start)
    return seen, per_epoch


def _ours(archive: Path, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tl_core.data import ingest_archive
    from tl_core.data.dataset import make_batches, steps_per_epoch

    start = time.perf_counter()
    report = ingest_archive(archive, home=home)
    ingest_seconds = time.perf_counter() - start
    records = tuple(report.images)
    batches_per_epoch = steps_per_epoch(len(records), args.batch_size)
    dataset = make_batches(
        report,
        records,
        class_names=report.class_names,
        image_size=args.image_size,
        batch_size=args.batch_size,
        shuffle_epochs=(0, args.epochs),
    )
    seen, per_epoch = _consume(dataset, args.epochs, batches_per_epoch)
    return {"ingest_seconds": ingest_seconds, "epoch_seconds": per_epoch, "images": seen}


def _keras(archive: Path, extracted: Path, args: argparse.Namespace) -> dict[str, Any]:
    import keras

    with zipfile.ZipFile(archive) as zf:
        zf.extractall(extracted)  # the baseline's own preparation; trusted bench data
    dataset = keras.utils.image_dataset_from_directory(
        extracted / "photos",
        image_size=(args.image_size, args.image_size),
        batch_size=args.batch_size,
        shuffle=True,
        seed=0,
        verbose=False,
    )
    seen, per_epoch = _consume(dataset, args.epochs)
    return {"epoch_seconds": per_epoch, "images": seen}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure both pipelines on one archive and return throughputs and their ratios."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        archive = root / "photos.zip"
        build_archive(archive, args.images, args.source_size)
        import tensorflow as tf

        tf.constant(0)  # start TensorFlow before the clocks run, for both sides alike
        keras_side = _keras(archive, root / "extracted", args)
        ours = _ours(archive, root / "home", args)
    ours_total = ours["ingest_seconds"] + sum(ours["epoch_seconds"])
    keras_total = sum(keras_side["epoch_seconds"])
    first_ours = ours["ingest_seconds"] + ours["epoch_seconds"][0]
    first_keras = keras_side["epoch_seconds"][0]
    return {
        "bench": "ingest",
        "setup": {
            "images": args.images,
            "source_size": args.source_size,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "cpus": os.cpu_count(),
        },
        "ours": ours | {"images_per_s": ours["images"] / ours_total},
        "keras": keras_side | {"images_per_s": keras_side["images"] / keras_total},
        "ratio": round(keras_total / ours_total, 3),
        "ratio_first_epoch": round(first_keras / first_ours, 3),
        "ratio_later_epochs": round(
            sum(keras_side["epoch_seconds"][1:]) / max(sum(ours["epoch_seconds"][1:]), 1e-9), 3
        )
        if args.epochs > 1
        else None,
        "note": "ratio > 1.0: zip → batches faster than keras image_dataset_from_directory "
        "on the extracted images (extraction not counted for Keras; ingest counted for us).",
    }
