"""How good is a trained run, and what did training change: metrics, errors, embeddings, drift.

- `evaluate_run`: the run's model on its validation split (the same split training used)
  → accuracy, confusion matrix, per-class precision/recall/F1 (scikit-learn), the most
  confused pairs and the misclassified images, worst first. Written to ``RUN_DIR/eval.json``
  and reused while ``model.keras`` is older than it.
- `classification_metrics` / `rank_misclassified`: the same numbers from fixed predictions
  (pure functions, no TensorFlow).
- `embeddings`: validation images as 2-D points (PCA, optionally t-SNE) before training
  (the backbone the run started from) and after (the trained model's pooled features).
- `drift_over_epochs`: ``drift_history.jsonl`` as a blocks × epochs table (plain file
  reading, no TensorFlow).

Grad-CAM lives in `tl_core.analysis.gradcam`.

Example:
    >>> result = evaluate_run(Path("runs/20261123-131500-a1b2c3"))  # doctest: +SKIP
    >>> result["accuracy"], result["most_confused"][0]  # doctest: +SKIP
    (0.92, {'true': 'cat', 'predicted': 'dog', 'count': 3})
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.errors import ConfigError, DataError, JobError, WeightsUnavailable
from tl_core.jobs.runs import RunFiles, read_json, write_json_atomic

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EVAL_FILE",
    "classification_metrics",
    "drift_over_epochs",
    "embeddings",
    "evaluate_run",
    "rank_misclassified",
    "spread_evenly",
]

#: Name of the evaluation file inside a run directory.
EVAL_FILE = "eval.json"

#: Probabilities are clipped to this before the logarithm, as Keras's cross-entropy does.
_EPSILON = 1e-7

#: Keys an ``eval.json`` must hold to be reused.
_EVAL_KEYS = frozenset(
    {
        "accuracy",
        "confusion_matrix",
        "per_class",
        "class_names",
        "most_confused",
        "misclassified",
        "num_images",
        "max_misclassified",
    }
)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Compute the evaluation metrics of fixed predictions with scikit-learn.

    Args:
        y_true: the true class index of each image.
        probabilities: ``(images, classes)`` predicted probabilities; the prediction is
            the most probable class.
        class_names: the class index (names in index order).

    Returns:
        ``accuracy``; ``loss`` (mean cross-entropy); ``confusion_matrix`` (list of lists,
        rows = true class, columns = predicted class, in class-index order); ``per_class``
        (``{class: {"precision", "recall", "f1", "support"}}``, 0.0 where undefined);
        ``class_names``; ``most_confused`` (``[{"true", "predicted", "count"}]``, off-diagonal
        pairs seen at least once, most frequent first); ``num_images``.

    Raises:
        DataError: no images.
        ValueError: shapes or class indices that do not fit together.

    Example:
        >>> doc = classification_metrics([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],
        ...                              ["cat", "dog"])
        >>> doc["accuracy"], doc["confusion_matrix"], doc["most_confused"]
        (0.6666666666666666, [[1, 0], [1, 1]], [{'true': 'dog', 'predicted': 'cat', 'count': 1}])
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    names = list(class_names)
    truth, probs = _checked(y_true, probabilities, names)
    predicted = probs.argmax(axis=1)
    labels = list(range(len(names)))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    pairs = [
        {"true": names[t], "predicted": names[p], "count": int(matrix[t, p])}
        for t in labels
        for p in labels
        if t != p and matrix[t, p] > 0
    ]
    pairs.sort(key=lambda pair: -pair["count"])  # stable: ties stay in class-index order
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "loss": float(np.mean(_losses(truth, probs))),
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "class_names": names,
        "most_confused": pairs,
        "num_images": len(truth),
    }


def rank_misclassified(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str],
    *,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """List the misclassified images, highest cross-entropy loss first.

    Args:
        y_true, probabilities, class_names: as for `classification_metrics`.
        paths: one path per image, reported as given.
        limit: keep at most this many (default 50; ``None`` keeps all).

    Returns:
        ``[{"path", "true", "predicted", "confidence", "loss"}]``: ``confidence`` is the
        probability of the predicted class, ``loss`` is ``-log p(true class)``. Equal
        losses keep the input order.

    Example:
        >>> rank_misclassified([0, 0], [[0.4, 0.6], [0.1, 0.9]], ["cat", "dog"],
        ...                    ["a.jpg", "b.jpg"])[0]["path"]
        'b.jpg'
    """
    import numpy as np

    names = list(class_names)
    truth, probs = _checked(y_true, probabilities, names)
    if len(paths) != len(truth):
        raise ValueError(
            f"Expected one path per image ({len(truth)}). Received: {len(paths)} paths"
        )
    if limit is not None and limit < 0:
        raise ConfigError(f"Expected `limit` to be 0 or more. Received: limit={limit}")
    predicted = probs.argmax(axis=1)
    losses = _losses(truth, probs)
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-losses[wrong], kind="stable")]
    if limit is not None:
        order = order[:limit]
    return [
        {
            "path": str(paths[i]),
            "true": names[truth[i]],
            "predicted": names[predicted[i]],
            "confidence": float(probs[i, predicted[i]]),
            "loss": float(losses[i]),
        }
        for i in order
    ]


def _checked(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    names: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    truth = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    if truth.size == 0:
        raise DataError(
            "There are no images to evaluate. Add validation images (or lower the "
            "validation fraction) and train again."
        )
    if probs.ndim != 2 or probs.shape != (truth.size, len(names)):
        raise ValueError(
            f"Expected `probabilities` of shape ({truth.size}, {len(names)}): one row per "
            f"image, one column per class. Received: shape={probs.shape}"
        )
    if truth.min() < 0 or truth.max() >= len(names):
        raise ValueError(
            f"Expected `y_true` to hold class indices between 0 and {len(names) - 1}. "
            f"Received: values from {truth.min()} to {truth.max()}"
        )
    return truth, probs


def _losses(truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    import numpy as np

    chosen = probs[np.arange(truth.size), truth]
    return -np.log(np.clip(chosen, _EPSILON, 1.0))


def evaluate_run(
    run_dir: Path | str, *, max_misclassified: int = 50, refresh: bool = False
) -> dict[str, Any]:
    """Evaluate a trained run on its validation split and write ``RUN_DIR/eval.json``.

    The split is the one training used: the archive's ``val/`` folder, or the draw made
    with the run's ``val_fraction`` and ``seed``; images go through the training pipeline
    (`tl_core.data.dataset.make_batches`). An ``eval.json`` newer than ``model.keras`` is
    reused instead of predicting again.

    Args:
        run_dir: a run directory holding ``model.keras`` and ``run.json``.
        max_misclassified: list at most this many misclassified images (default 50).
        refresh: predict again even when ``eval.json`` is up to date (default False).

    Returns:
        What `classification_metrics` returns, plus ``misclassified`` (see
        `rank_misclassified`; ``path`` is relative to the dataset folder, ``source`` is
        the name in the uploaded archive), ``run_id``, ``dataset_id``, ``val_source``,
        ``max_misclassified`` and ``evaluated_at`` (Unix time).

    Raises:
        JobError: the run has no trained model yet.
        DataError: its dataset is no longer stored, or has no validation images.

    Example:
        >>> doc = evaluate_run("runs/20261123-131500-a1b2c3")  # doctest: +SKIP
        >>> doc["per_class"]["cat"]["recall"]  # doctest: +SKIP
        0.9
    """
    if isinstance(max_misclassified, bool) or not isinstance(max_misclassified, int):
        raise ConfigError(
            "Expected `max_misclassified` to be an integer. "
            f"Received: max_misclassified={max_misclassified!r}"
        )
    if max_misclassified < 0:
        raise ConfigError(
            "Expected `max_misclassified` to be 0 or more. "
            f"Received: max_misclassified={max_misclassified}"
        )
    files = RunFiles(Path(run_dir))
    if not refresh:
        cached = _cached_evaluation(files, max_misclassified)
        if cached is not None:
            return cached
    import numpy as np

    from tl_core.analysis.predict import load_run_model

    config, report, splits = _run_data(files)
    model, class_names, size = load_run_model(files.root)
    records = splits.val
    if not records:
        raise DataError(
            f"The dataset of {files.root} has no validation images, so there is nothing "
            "to evaluate. Use a dataset with at least two images per class."
        )
    _check_labels(records, class_names, files.root)
    batches = _image_batches(report, records, class_names, size, config.batch_size)
    probabilities = np.asarray(model.predict(batches, verbose=0), dtype=np.float64)
    truth = [class_names.index(r.label) for r in records]
    result = classification_metrics(truth, probabilities, class_names)
    ranked = rank_misclassified(
        truth, probabilities, class_names, [r.path for r in records], limit=max_misclassified
    )
    source_of = {r.path: r.source for r in records}
    for row in ranked:
        row["source"] = source_of[row["path"]]
    result.update(
        {
            "misclassified": ranked,
            "max_misclassified": max_misclassified,
            "run_id": (read_json(files.config, {}) or {}).get("run_id", files.root.name),
            "dataset_id": config.dataset_id,
            "val_source": splits.val_source,
            "evaluated_at": time.time(),
        }
    )
    write_json_atomic(files.root / EVAL_FILE, result)
    return result


def _cached_evaluation(files: RunFiles, max_misclassified: int) -> dict[str, Any] | None:
    """Return ``eval.json`` when it is newer than ``model.keras`` and lists enough images."""
    path = files.root / EVAL_FILE
    try:
        if files.model.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            return None
    except FileNotFoundError:
        return None
    doc = read_json(path)
    if not isinstance(doc, dict) or not doc.keys() >= _EVAL_KEYS:
        return None
    listed = doc["misclassified"]
    complete = len(listed) < doc["max_misclassified"]
    if doc["max_misclassified"] < max_misclassified and not complete:
        return None
    doc["misclassified"] = listed[:max_misclassified]
    doc["max_misclassified"] = max_misclassified
    return doc


def _run_data(files: RunFiles) -> tuple[Any, Any, Any]:
    """Return the run's config, its stored dataset and the split training used.

    Checked before loading the model, so a folder that is no run fails without TensorFlow.
    """
    from tl_core.config import RunConfig
    from tl_core.data import load_dataset
    from tl_core.data.dataset import split_dataset

    doc = read_json(files.config)
    if not isinstance(doc, dict) or "config" not in doc or not files.model.is_file():
        raise JobError(
            f"{files.root} has no trained model yet (no model.keras and run.json). "
            "Wait for the run to finish, resume it if it was interrupted, or pick a "
            "trained run from the runs list."
        )
    config = RunConfig.from_json(doc["config"])
    report = load_dataset(config.dataset_id)
    splits = split_dataset(report, val_fraction=config.val_fraction, seed=config.seed)
    return config, report, splits


def _image_batches(
    report: Any, records: Sequence[Any], class_names: list[str], size: int, batch_size: int
) -> Any:
    """Batches of images only, decoded and resized as the training pipeline does."""
    from tl_core.data.dataset import make_batches

    return make_batches(
        report,
        tuple(records),
        class_names=class_names,
        image_size=size,
        batch_size=batch_size,
        cache=False,
    ).map(lambda images, labels: images)


def _check_labels(records: Sequence[Any], class_names: list[str], root: Path) -> None:
    unknown = sorted({r.label for r in records} - set(class_names))
    if unknown:
        raise DataError(
            f"The validation images of {root} have classes the model does not know "
            f"({', '.join(unknown)}): the stored dataset changed after training. "
            "Train a new run on it."
        )


def embeddings(run_dir: Path | str, *, max_images: int = 300, tsne: bool = False) -> dict[str, Any]:
    """Project validation images to 2-D, with the starting backbone and the trained model.

    "Before" is the backbone the run started from, rebuilt from ``run.json`` with the
    original weights source (ImageNet, the weights file, or, for ``"none"``, the seeded
    random initialisation, which reproduces the run's start exactly); when that source is
    gone, the start weights kept in ``checkpoints/initial.npz`` are used; when both are
    gone, ``before`` is ``None`` and ``before_note`` says why. "After" is the trained
    model's pooled features (the output of its ``pool`` layer). Features are globally
    average-pooled in both cases.

    Args:
        run_dir: a trained run directory.
        max_images: use at most this many validation images, evenly spread over the
            split (default 300).
        tsne: project with t-SNE (scikit-learn, seeded with the run's seed) instead of
            PCA (default False). t-SNE has no explained variance.

    Returns:
        ``{"before": [[x, y], …] | None, "after": [[x, y], …], "labels": [class index, …],
        "paths": [...], "class_names": [...], "explained_variance": {"before": [r1, r2] |
        None, "after": [r1, r2]} | None, "method": "pca" | "tsne", "before_source": str |
        None, "before_note": str | None, "num_images": n}``.

    Raises:
        JobError: no trained model yet, or a model without a ``pool`` layer.
        DataError: the dataset is no longer stored or has fewer than 2 validation images.

    Example:
        >>> doc = embeddings("runs/20261123-131500-a1b2c3", max_images=100)  # doctest: +SKIP
        >>> len(doc["after"]) == len(doc["labels"])  # doctest: +SKIP
        True
    """
    import keras
    import numpy as np

    from tl_core.analysis.predict import load_run_model

    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 2:
        raise ConfigError(
            "Expected `max_images` to be an integer of at least 2. "
            f"Received: max_images={max_images!r}"
        )
    files = RunFiles(Path(run_dir))
    config, report, splits = _run_data(files)
    model, class_names, size = load_run_model(files.root)
    records = spread_evenly(splits.val, max_images)
    if len(records) < 2:
        raise DataError(
            f"Embeddings need at least 2 validation images; {files.root} has {len(records)}. "
            "Use a dataset with more images per class."
        )
    _check_labels(records, class_names, files.root)
    batches = _image_batches(report, records, class_names, size, config.batch_size)
    images = np.concatenate([b.numpy() for b in batches])
    try:
        pool = model.get_layer("pool")
    except ValueError:
        raise JobError(
            f"The model of {files.root} has no layer named 'pool', so its features cannot "
            "be read. Only classifiers trained by tl_core can be inspected."
        ) from None
    pooled = keras.Model(model.inputs, pool.output)
    after = np.asarray(pooled.predict(images, verbose=0), dtype=np.float64)
    before, before_source, before_note = _initial_features(files, config, class_names, images)
    after_points, after_ratio = _project(after, tsne=tsne, seed=config.seed)
    before_points, before_ratio = (
        _project(before, tsne=tsne, seed=config.seed) if before is not None else (None, None)
    )
    return {
        "before": before_points,
        "after": after_points,
        "labels": [class_names.index(r.label) for r in records],
        "paths": [r.path for r in records],
        "class_names": list(class_names),
        "explained_variance": None if tsne else {"before": before_ratio, "after": after_ratio},
        "method": "tsne" if tsne else "pca",
        "before_source": before_source,
        "before_note": before_note,
        "num_images": len(records),
    }


def spread_evenly(records: Sequence[Any], count: int) -> tuple[Any, ...]:
    """Return at most `count` of `records`, evenly spaced, in order.

    Splits are grouped by class, so an even spread keeps every class represented.

    Example:
        >>> spread_evenly(list(range(10)), 4)
        (0, 2, 5, 7)
    """
    if len(records) <= count:
        return tuple(records)
    step = len(records) / count
    return tuple(records[int(i * step)] for i in range(count))


def _initial_features(
    files: RunFiles, config: Any, class_names: list[str], images: np.ndarray
) -> tuple[np.ndarray | None, str | None, str | None]:
    """Pooled features of the backbone the run started from: (features, source, note)."""
    import numpy as np

    from tl_core.models.classifier import build_classifier

    source = {"none": f"random initialisation (seed {config.seed})", "imagenet": "imagenet"}.get(
        config.weights.lower(), f"weights file {config.weights}"
    )
    try:
        classifier = build_classifier(config, class_names, download=False)
    except WeightsUnavailable as exc:
        classifier = build_classifier(config, class_names, load_weights=False)
        if not _restore_initial(files, classifier):
            return (
                None,
                None,
                (
                    f"The starting weights are no longer available ({exc}); the 'before' "
                    "picture cannot be drawn."
                ),
            )
        source = "checkpoints/initial.npz"
    feature_map = classifier.features.predict(images, verbose=0)
    return np.asarray(feature_map, dtype=np.float64).mean(axis=(1, 2)), source, None


def _restore_initial(files: RunFiles, classifier: Any) -> bool:
    """Load ``checkpoints/initial.npz`` (the backbone's start weights) when it fits."""
    import numpy as np

    from tl_core.engine.callbacks import block_variables

    path = files.checkpoints / "initial.npz"
    if not path.is_file():
        return False
    variables = block_variables(classifier.backbone, classifier.blocks)
    with np.load(path) as saved:
        wanted = {f"{name}/{i}": v for name, vs in variables.items() for i, v in enumerate(vs)}
        if set(saved.files) != set(wanted) or any(
            tuple(saved[key].shape) != tuple(v.shape) for key, v in wanted.items()
        ):
            return False
        for key, variable in wanted.items():
            variable.assign(saved[key])
    return True


def _project(
    features: np.ndarray, *, tsne: bool, seed: int
) -> tuple[list[list[float]], list[float] | None]:
    """2-D coordinates of `features` rows, and PCA's explained variance ratios."""
    import numpy as np

    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    count = features.shape[0]
    if not np.any(features.var(axis=0) > 0):  # every image gives the same features
        return [[0.0, 0.0] for _ in range(count)], None if tsne else [0.0, 0.0]
    if tsne:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(1.0, (count - 1) / 3))
        points = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(features)
        return points.tolist(), None
    from sklearn.decomposition import PCA

    components = min(2, count, features.shape[1])
    pca = PCA(n_components=components, svd_solver="full")
    points = pca.fit_transform(features)
    ratio = [float(r) if math.isfinite(r) else 0.0 for r in pca.explained_variance_ratio_]
    if components < 2:
        points = np.pad(points, ((0, 0), (0, 2 - components)))
        ratio += [0.0] * (2 - components)
    return points.tolist(), ratio


def drift_over_epochs(run_dir: Path | str) -> dict[str, Any]:
    """Read ``drift_history.jsonl`` as a table: one row per block, one column per epoch.

    Plain file reading (no TensorFlow), safe to call while the run trains: a half-written
    last line is skipped, and an epoch written twice (a resumed run) keeps its last line.

    Args:
        run_dir: a run directory.

    Returns:
        ``{"epochs": [1, 2, …], "phases": [...], "blocks": [input side first],
        "values": [[drift per epoch] per block]}``; a block missing from an epoch's line
        has ``None`` there. Blocks follow ``run.json``'s order, unknown ones come after.

    Example:
        >>> table = drift_over_epochs("runs/20261123-131500-a1b2c3")  # doctest: +SKIP
        >>> dict(zip(table["blocks"], table["values"]))["top"]  # doctest: +SKIP
        [0.0, 0.012, 0.019]
    """
    files = RunFiles(Path(run_dir))
    by_epoch: dict[int, dict[str, Any]] = {}
    try:
        text = files.drift_history.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("drift"), dict) and "epoch" in doc:
            by_epoch[int(doc["epoch"])] = doc
    epochs = sorted(by_epoch)
    run_doc = read_json(files.config, {}) or {}
    blocks = [b["name"] for b in run_doc.get("blocks", []) if isinstance(b, dict) and "name" in b]
    for epoch in epochs:
        blocks += [name for name in by_epoch[epoch]["drift"] if name not in blocks]
    return {
        "epochs": epochs,
        "phases": [by_epoch[e].get("phase") for e in epochs],
        "blocks": blocks,
        "values": [[by_epoch[e]["drift"].get(name) for e in epochs] for name in blocks],
    }
