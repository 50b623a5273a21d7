"""From a stored dataset to training and validation batches.

The class index is the sorted list of class names. Splits come from the archive when it
had ``train/`` and ``val/`` folders; otherwise a stratified validation part is drawn
with a seeded generator, so the same seed always gives the same split. Batches hold raw
RGB pixels 0–255 as float32: preprocessing and augmentation live inside the model, so
validation data is never augmented and an exported model takes plain pictures.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tl_core.data.report import UNSPLIT, DatasetReport, ImageRecord
from tl_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "DatasetSplits",
    "epoch_order",
    "make_array_batches",
    "make_batches",
    "split_dataset",
    "steps_per_epoch",
]

#: Decoded images are cached in memory up to this many bytes; larger datasets re-decode.
MEMORY_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class DatasetSplits:
    """Which stored images train and which validate, with the class index.

    ``train_pool`` is the whole training split when ``train`` is a subsample of it
    (`split_dataset`'s ``train_fraction`` below 1), else empty.
    """

    class_names: tuple[str, ...]
    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]
    test: tuple[ImageRecord, ...] = ()
    val_source: str = "archive"
    train_pool: tuple[ImageRecord, ...] = ()

    def label_of(self, record: ImageRecord) -> int:
        """Return the class index of `record`."""
        return self.class_names.index(record.label)

    def val_examples(self, per_class: int, *, exclude: Collection[str] = ()) -> list[ImageRecord]:
        """Return the first `per_class` validation images of each class, in class order,
        leaving out the paths in `exclude` (images a page already shows)."""
        taken: dict[str, list[ImageRecord]] = {name: [] for name in self.class_names}
        for record in self.val:
            chosen = taken.setdefault(record.label, [])
            if record.path not in exclude and len(chosen) < per_class:
                chosen.append(record)
        return [record for records in taken.values() for record in records]


def split_dataset(
    report: DatasetReport,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    train_fraction: float = 1.0,
) -> DatasetSplits:
    """Decide the train/validation split of a stored dataset.

    Args:
        report: a stored dataset (`ingest_archive` / `load_dataset`).
        val_fraction: share of each class held out for validation when the archive had
            no ``val/`` folder (default 0.2). Every class with two or more images keeps
            at least one image on each side.
        seed: seeds the draw (default 0); the same seed gives the same split.
        train_fraction: share of each class's training images that train (default 1.0:
            all), at least one per class. The validation split does not depend on it, so
            runs at different fractions are judged on the same images; the subsample is
            drawn with a fixed seed, and a smaller fraction takes a subset of a larger one.

    Returns:
        `DatasetSplits`; ``val_source`` is ``"archive"`` or ``"drawn"``.

    Example:
        >>> splits = split_dataset(report, val_fraction=0.25, seed=1)  # doctest: +SKIP
        >>> len(splits.val) / (len(splits.train) + len(splits.val))  # doctest: +SKIP
        0.25
        >>> half = split_dataset(report, val_fraction=0.25, seed=1, train_fraction=0.5)
        ... # doctest: +SKIP
        >>> half.val == splits.val  # doctest: +SKIP
        True
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"Expected `val_fraction` to be between 0 and 1 (exclusive). "
            f"Received: val_fraction={val_fraction!r}"
        )
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError(
            f"Expected `train_fraction` to be greater than 0 and at most 1. "
            f"Received: train_fraction={train_fraction!r}"
        )
    splits = _split(report, val_fraction, seed)
    if train_fraction == 1.0:
        return splits
    train = _subsample(splits.train, train_fraction)
    return replace(splits, train=train, train_pool=splits.train)


def _split(report: DatasetReport, val_fraction: float, seed: int) -> DatasetSplits:
    """The whole training and validation split (`split_dataset` before subsampling)."""
    by_split: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in report.images:
        by_split[record.split].append(record)
    test = tuple(by_split.get("test", ()))
    if by_split.get("train") and by_split.get("val"):
        return DatasetSplits(
            tuple(report.class_names), tuple(by_split["train"]), tuple(by_split["val"]), test
        )
    pool = by_split.get("train") or by_split.get(UNSPLIT) or []
    if not pool:
        raise DataError(
            f"Dataset {report.dataset_id} has no training images (only "
            f"{', '.join(sorted(by_split)) or 'nothing'}). Add a train/ folder, or zip the "
            "class folders without split folders."
        )
    train, val = _stratified(pool, val_fraction, seed)
    return DatasetSplits(tuple(report.class_names), train, val, test, val_source="drawn")


def _stratified(
    records: list[ImageRecord], fraction: float, seed: int
) -> tuple[tuple[ImageRecord, ...], tuple[ImageRecord, ...]]:
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    rng = random.Random(seed)
    train: list[ImageRecord] = []
    val: list[ImageRecord] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.path)
        rng.shuffle(members)
        count = len(members)
        held = 0 if count < 2 else min(count - 1, max(1, round(count * fraction)))
        val.extend(members[:held])
        train.extend(members[held:])
    return tuple(train), tuple(val)


#: Seeds the training subsample of `split_dataset`: fixed, so that every run at a
#: fraction trains on the same images whatever its own seed, and the curve varies one thing.
_SUBSAMPLE_SEED = 20261207


def _subsample(records: tuple[ImageRecord, ...], fraction: float) -> tuple[ImageRecord, ...]:
    """Keep `fraction` of each class's `records` (at least one), in their original order.

    Each class is shuffled once with `_SUBSAMPLE_SEED` and a prefix kept, so a smaller
    fraction's images are a subset of a larger one's.
    """
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    kept: set[str] = set()
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.path)
        random.Random(f"{_SUBSAMPLE_SEED}:{label}").shuffle(members)
        count = max(1, round(len(members) * fraction))
        kept.update(r.path for r in members[:count])
    return tuple(r for r in records if r.path in kept)


def make_batches(
    report: DatasetReport,
    records: tuple[ImageRecord, ...] | list[ImageRecord],
    *,
    class_names: tuple[str, ...] | list[str],
    image_size: int,
    batch_size: int,
    shuffle_epochs: tuple[int, int] | None = None,
    seed: int = 0,
    one_hot: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """Return a `tf.data.Dataset` of ``(images, labels)`` batches from stored images.

    Args:
        report: the dataset the records belong to (its ``root`` locates the files).
        records: the images to serve, e.g. ``splits.train``.
        class_names: the class index (``splits.class_names``).
        image_size: images are resized to ``image_size × image_size`` (bilinear).
        batch_size: images per batch; the last batch of an epoch may be smaller.
        shuffle_epochs: for training, ``(first, stop)``: the dataset then holds the
            batches of epochs ``first … stop - 1`` back to back, each epoch shuffled by
            a generator seeded with ``(seed, epoch)``, so a resumed run sees exactly the
            order an uninterrupted one would (pass ``steps_per_epoch`` to ``fit``).
            ``None`` (default) serves the records once, in order.
        seed: shuffle seed (default 0).
        one_hot: labels as one-hot vectors (for label smoothing) instead of indices.
        cache: keep decoded, resized images in memory when they fit in
            `MEMORY_CACHE_BYTES` (default True), so later epochs skip decoding.

    Images are float32 RGB in 0–255; labels are int32 class indices (or float32 one-hot).

    Example:
        >>> ds = make_batches(report, splits.val, class_names=splits.class_names,
        ...                   image_size=64, batch_size=16)  # doctest: +SKIP
    """
    import tensorflow as tf

    if report.root is None:
        raise DataError(
            f"Dataset {report.dataset_id} has no folder on disk; load it with `load_dataset`."
        )
    if not records:
        raise DataError(
            f"Dataset {report.dataset_id} has no images for this split. "
            "Add images, or lower the validation fraction."
        )
    index = {name: i for i, name in enumerate(class_names)}
    paths = tf.constant([str(report.root / r.path) for r in records])
    labels = tf.constant([index[r.label] for r in records], tf.int32)
    depth = len(class_names)

    def decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.clip_by_value(image, 0.0, 255.0)

    def label_of(label: tf.Tensor) -> tf.Tensor:
        return tf.one_hot(label, depth) if one_hot else label

    fits = cache and len(records) * image_size * image_size * 3 * 4 <= MEMORY_CACHE_BYTES
    if shuffle_epochs is None:
        ds = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda p, y: (decode(p), label_of(y)), num_parallel_calls=tf.data.AUTOTUNE
        )
        if fits:
            ds = ds.cache()
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if fits:
        images = _decode_all(paths, decode, tf)

        def fetch(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.gather(images, i), label_of(tf.gather(labels, i))
    else:

        def fetch(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return decode(tf.gather(paths, i)), label_of(tf.gather(labels, i))

    return _shuffled_epochs(fetch, len(records), batch_size, shuffle_epochs, seed)


def epoch_order(count: int, seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The order of `count` training items in `epoch`: a shuffle seeded by (seed, epoch).

    Stateless, so the order depends on (seed, epoch) only, never on what ran before: a
    resumed run sees the epochs an uninterrupted one would, and cached activations are
    drawn in the order the image pipeline uses.

    Example:
        >>> epoch_order(5, 0, tf.constant(3, tf.int64))  # doctest: +SKIP
        <tf.Tensor: shape=(5,), dtype=int32, numpy=array([…])>
    """
    import tensorflow as tf

    seed_pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed_pair)


def _shuffled_epochs(
    fetch: Any, count: int, batch_size: int, shuffle_epochs: tuple[int, int], seed: int
) -> tf.data.Dataset:
    """The batches of epochs ``first … stop - 1``, each in an order seeded by (seed, epoch)."""
    import tensorflow as tf

    first, stop = shuffle_epochs
    if not 0 <= first < stop:
        raise ConfigError(
            f"Expected `shuffle_epochs` to be (first, stop) with 0 <= first < stop. "
            f"Received: shuffle_epochs={shuffle_epochs!r}"
        )

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        return (
            tf.data.Dataset.from_tensor_slices(epoch_order(count, seed, epoch))
            .map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
        )

    return tf.data.Dataset.range(first, stop).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def make_array_batches(
    features: np.ndarray,
    labels: Sequence[int],
    *,
    num_classes: int,
    batch_size: int,
    shuffle_epochs: tuple[int, int] | None = None,
    seed: int = 0,
    one_hot: bool = False,
) -> tf.data.Dataset:
    """Like `make_batches`, for rows of precomputed features (see `tl_core.engine.cache`).

    The order of each shuffled epoch depends on (seed, epoch) only, as in `make_batches`.

    Example:
        >>> ds = make_array_batches(np.zeros((10, 4)), [0] * 5 + [1] * 5, num_classes=2,
        ...                         batch_size=4)  # doctest: +SKIP
    """
    import tensorflow as tf

    rows = tf.constant(np.asarray(features, dtype=np.float32))
    targets = tf.constant(list(labels), tf.int32)

    def fetch(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        label = tf.gather(targets, i)
        return tf.gather(rows, i), tf.one_hot(label, num_classes) if one_hot else label

    if shuffle_epochs is None:
        order = tf.data.Dataset.range(len(labels))
        return order.map(fetch).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return _shuffled_epochs(fetch, len(labels), batch_size, shuffle_epochs, seed)


def _decode_all(paths: tf.Tensor, decode: Any, tf: Any) -> tf.Variable:
    """Decode every image once into a CPU-resident variable (random access per epoch)."""
    ds = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    chunks = [batch for batch in ds.batch(256)]
    with tf.device("/CPU:0"), tf.init_scope():
        return tf.Variable(tf.concat(chunks, axis=0), trainable=False, name="decoded_images")


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    """Number of batches in one epoch of `num_records` images."""
    return -(-num_records // batch_size)
