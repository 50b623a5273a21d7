"""Finished runs made of files alone, with every analysis already kept, for report tests.

`fabricate_runs` writes run folders as a worker and the background analyses leave them:
``run.json`` with its block plan, epoch lines, a completed status, a stand-in
``model.keras``, then ``eval.json``, the embeddings and each validation image's Grad-CAM
kept under the Evaluate page's keys (newer than the model, so they are reused). A report
of them needs no TensorFlow. Names can be hostile (``<script>…``) to test escaping.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers import class_folders, make_zip
from tl_core.analysis.background import result_path
from tl_core.analysis.report import embeddings_args, gradcam_args
from tl_core.config import RunConfig
from tl_core.data import DatasetReport, ingest_archive
from tl_core.data.dataset import split_dataset
from tl_core.jobs.runs import (
    RunStatus,
    append_jsonl,
    prepare_run,
    read_json,
    run_path,
    write_json_atomic,
    write_status,
)
from tl_core.workspace import safe_join

#: A class name and a dataset name that would run code if they reached the page as markup.
HOSTILE = "<script>alert(1)</script>"
#: Blocks of the fabricated backbone, input side first.
BLOCKS = ("stem", *(f"block_{i}" for i in range(1, 18)), "top")

#: Run ids, oldest first.
RUN_IDS = (
    "20261207-090000-aaaaaa",
    "20261207-091000-bbbbbb",
    "20261207-092000-cccccc",
    "20261207-093000-dddddd",
)


def sample_dataset(
    folder: Path,
    *,
    source_name: str = f"{HOSTILE}.zip",
    classes: Sequence[str] = ("cat", "dog"),
) -> DatasetReport:
    """Ingest a small dataset of `classes` (10 images each) named `source_name` (hostile
    by default)."""
    counts = dict.fromkeys(classes, 10)
    archive = make_zip(folder / "pets.zip", class_folders(counts, size=(48, 48)))
    return ingest_archive(archive, source_name=source_name)


def fabricate_runs(
    dataset: DatasetReport,
    accuracies: Sequence[float] = (0.81, 0.93),
    *,
    class_names: Sequence[str] = (HOSTILE, "dog"),
    owner: str | None = None,
    embedding_points: int = 300,
    epochs: int = 6,
    noisy_overlays: bool = False,
) -> list[str]:
    """Write one finished run per accuracy (feature extraction, then fine-tune top 2, 4, …).

    Args:
        dataset: the runs' dataset (its validation images get Grad-CAM overlays).
        accuracies: each run's evaluated accuracy; the first run is the baseline.
        class_names: the classes in the evaluation and embedding documents.
        owner: recorded in ``run.json`` (default ``None``: none).
        embedding_points: points per embedding panel (default 300, the page's default).
        epochs: epoch lines per run (default 6).
        noisy_overlays: draw random noise as overlays, the worst case for the file size
            (default False: one colour).

    Returns:
        The run ids, in the order of `accuracies`.
    """
    ids = []
    for index, accuracy in enumerate(accuracies):
        run_id = RUN_IDS[index]
        root = _run_folder(run_id, dataset.dataset_id, index, owner, epochs)
        names = list(class_names)
        confused = round((1 - accuracy) * 40)
        write_json_atomic(
            root / "eval.json",
            _evaluation(accuracy, names, confused, dataset, run_id),
        )
        (root / "analysis").mkdir()
        write_json_atomic(
            result_path(root, embeddings_args(root)), _embeddings(names, embedding_points)
        )
        _gradcam(root, dataset, names, noisy_overlays)
        ids.append(run_id)
    return ids


def _run_folder(run_id: str, dataset_id: str, index: int, owner: str | None, epochs: int) -> Path:
    freeze: dict[str, Any] = (
        {"freeze": "feature-extraction"}
        if index == 0
        else {"freeze": "fine-tune", "unfreeze_last": 2 * index}
    )
    config = RunConfig(dataset_id=dataset_id, backbone="mobilenet_v2", epochs=epochs, **freeze)
    files = prepare_run(run_path(run_id), config, run_id=run_id)
    depth = 0 if index == 0 else 2 * index
    doc = read_json(files.config) | {
        "class_names": ["cat", "dog"],
        "image_size": 96,
        "trainable_params": 2562 + 40_000 * depth,
        "blocks": [
            {"name": name, "params": 1000 * (i + 1), "trainable": i >= len(BLOCKS) - depth}
            for i, name in enumerate(BLOCKS)
        ],
    }
    if owner is not None:
        doc["owner"] = owner
    write_json_atomic(files.config, doc)
    for epoch in range(1, epochs + 1):
        append_jsonl(
            files.metrics,
            {
                "epoch": epoch,
                "phase": "train",
                "accuracy": min(1.0, 0.5 + 0.08 * epoch + 0.02 * index),
                "val_accuracy": min(1.0, 0.45 + 0.07 * epoch + 0.03 * index),
                "loss": 1.0 / epoch,
                "val_loss": 1.2 / epoch,
                "seconds": 2.0 + index,
            },
        )
        drift = {name: 0.0 for name in BLOCKS}
        drift.update({name: 0.01 * epoch for name in BLOCKS[len(BLOCKS) - depth :]})
        append_jsonl(files.drift_history, {"epoch": epoch, "phase": "train", "drift": drift})
    start = 1_796_000_000.0 + 1000 * index
    write_status(
        files.root,
        RunStatus(
            state="completed",
            epoch=epochs,
            total_epochs=epochs,
            phase="train",
            started_at=start,
            finished_at=start + 60 + 60 * 2 * index,
        ),
    )
    files.model.write_bytes(b"stand-in model")
    # Older than the analyses written next, however coarse the file system's clock.
    os.utime(files.model, (start, start))
    return files.root


def _evaluation(
    accuracy: float, names: list[str], confused: int, dataset: DatasetReport, run_id: str
) -> dict[str, Any]:
    per_class = {
        name: {"precision": accuracy, "recall": accuracy - 0.01 * i, "f1": accuracy, "support": 20}
        for i, name in enumerate(names)
    }
    first_val = split_dataset(dataset).val[0]
    return {
        "accuracy": accuracy,
        "loss": 1 - accuracy,
        "confusion_matrix": [[20 - confused, confused], [1, 19]],
        "per_class": per_class,
        "class_names": names,
        "most_confused": [
            {"true": names[0], "predicted": names[1], "count": confused},
            {"true": names[1], "predicted": names[0], "count": 1},
        ],
        "misclassified": [
            {
                "path": first_val.path,
                "true": first_val.label,
                "predicted": "dog",
                "confidence": 0.9,
                "loss": 2.3,
                "source": first_val.source,
            }
        ],
        "max_misclassified": 50,
        "num_images": 40,
        "run_id": run_id,
        "dataset_id": dataset.dataset_id,
        "val_source": "drawn",
        "evaluated_at": 0.0,
    }


def _embeddings(names: list[str], count: int) -> dict[str, Any]:
    draw = random.Random(count)
    points = [[draw.uniform(-3, 3), draw.uniform(-3, 3)] for _ in range(count)]
    return {
        "before": points,
        "after": [[x * 2, y * 2] for x, y in points],
        "labels": [i % len(names) for i in range(count)],
        "paths": [f"images/all/{names[i % len(names)]}/{i:03d}.png" for i in range(count)],
        "class_names": names,
        "explained_variance": {"before": [0.3, 0.2], "after": [0.6, 0.2]},
        "method": "pca",
        "before_source": "imagenet",
        "before_note": None,
        "num_images": count,
    }


def _gradcam(root: Path, dataset: DatasetReport, names: list[str], noisy: bool) -> None:
    """A kept Grad-CAM prediction of every validation image, with its overlay file."""
    folder = root / "analysis" / "gradcam"
    folder.mkdir(parents=True, exist_ok=True)
    assert dataset.root is not None
    for n, record in enumerate(split_dataset(dataset).val):
        image = safe_join(dataset.root, record.path)
        overlay = folder / f"{n:03d}.png"
        overlay.write_bytes(_overlay_png(n, noisy))
        result = {
            "image": str(image),
            "label": names[n % len(names)],
            "confidence": 0.8,
            "top": [],
            "probabilities": {},
            "gradcam": str(overlay),
            "gradcam_layer": "block_16",
        }
        write_json_atomic(result_path(root, gradcam_args(root, image)), [result])


def _overlay_png(seed: int, noisy: bool) -> bytes:
    if noisy:
        draw = random.Random(seed)
        picture = Image.frombytes("RGB", (320, 320), draw.randbytes(320 * 320 * 3))
    else:
        picture = Image.new("RGB", (320, 320), (200, 60 + seed, 40))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
