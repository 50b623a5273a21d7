"""Training from cached activations: where to cut, the two halves, the batches.

When the bottom blocks of a phase are frozen, the network splits at the frozen boundary
(the output of the last frozen block below the first trainable one; blocks are
single-tensor cuts, see `tl_core.models.blocks`). The lower half (augmentation,
preprocessing, the frozen blocks) runs once per image and view, and its output is cached
(`tl_core.engine.cache`); each epoch fits only the upper half: the trainable blocks and
the head. Both halves share the classifier's layers, so training the upper half trains the
classifier, and the saved model stays the whole classifier.

With augmentation, each training image is cached as `views` augmented views; each epoch
draws one view per image, seeded by ``(seed, epoch)`` alone, so a resumed run draws what an
uninterrupted one would. Validation images are cached once, never augmented.

Example:
    >>> boundary_of(["stem", "block_1", "top"], ("top",))
    'block_1'
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tl_core.data.dataset import epoch_order
from tl_core.models.caching import HEAD_FEATURES, boundary_of

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

    from tl_core.models.classifier import Classifier

__all__ = [
    "HEAD_FEATURES",
    "boundary_of",
    "extract_views",
    "extraction_model",
    "upper_model",
    "view_batches",
]


def _boundary_tensor(classifier: Classifier, boundary: str) -> Any:
    block = next(b for b in classifier.blocks if b.name == boundary)
    return classifier.backbone.get_layer(block.layers[-1]).output


def extraction_model(classifier: Classifier, boundary: str) -> keras.Model:
    """Raw pixels → preprocessing → the frozen blocks up to `boundary` (pooled features
    for `HEAD_FEATURES`), in inference mode; no augmentation.

    Example:
        >>> extraction_model(classifier, "block_12").output_shape  # doctest: +SKIP
        (None, 10, 10, 96)
    """
    import keras

    backbone = classifier.backbone
    if boundary == HEAD_FEATURES:
        lower = keras.Model(
            backbone.input, classifier.model.get_layer("pool")(backbone.output), name="lower"
        )
    else:
        lower = keras.Model(backbone.input, _boundary_tensor(classifier, boundary), name="lower")
    raw = keras.Input((classifier.image_size, classifier.image_size, 3), name="raw_image")
    x = raw
    if any(layer.name == "preprocess" for layer in classifier.model.layers):
        x = classifier.model.get_layer("preprocess")(x)
    return keras.Model(raw, lower(x, training=False), name=f"extract_{boundary}")


def extract_views(
    classifier: Classifier,
    boundary: str,
    batches: Iterable[Any],
    *,
    views: int,
    augment: bool,
    timings: dict[str, Any] | None = None,
) -> np.ndarray:
    """The activations at `boundary` of every image in `batches` (``(images, labels)``),
    `views` times: shape ``(views, images, …)``.

    `timings`, when given, receives ``seconds_per_image``: the frozen part's forward time
    per image once the graph is built (the first batch, which builds it, is left out),
    what the plain path pays per image and epoch.

    With `augment`, each view passes the images through a fresh copy of the classifier's
    augmentation first. The copy's random stream starts from the config's seed, whatever
    the classifier's own augmentation drew before, so the same key always gets the same
    views. It runs eagerly: inside a compiled ``predict`` Keras runs augmentation layers
    in inference mode, which would make every view the unaugmented image.

    Example:
        >>> extract_views(classifier, "block_12", batches, views=4, augment=True).shape
        ... # doctest: +SKIP
        (4, 398, 10, 10, 96)
    """
    import keras
    import numpy as np

    model = extraction_model(classifier, boundary)
    augmentation = None
    if augment and any(layer.name == "augmentation" for layer in classifier.model.layers):
        config = classifier.model.get_layer("augmentation").get_config()
        augmentation = keras.Sequential.from_config(config)
    rows, steady_seconds, steady_images = [], 0.0, 0
    for _ in range(views):
        view = []
        for images, _labels in batches:
            if augmentation is not None:
                images = augmentation(images, training=True)
            started = time.perf_counter()
            view.append(np.asarray(model.predict_on_batch(images)))
            if rows or view[1:]:
                steady_seconds += time.perf_counter() - started
                steady_images += len(view[-1])
        rows.append(np.concatenate(view))
    if timings is not None and steady_images:
        timings["seconds_per_image"] = steady_seconds / steady_images
    return np.stack(rows)


def upper_model(classifier: Classifier, boundary: str, shape: Sequence[int]) -> keras.Model:
    """Cached activations of `shape` (no batch dimension) → probabilities: the blocks
    above `boundary` (none for `HEAD_FEATURES`), pooling, dropout and the head, sharing the
    classifier's layers.

    Example:
        >>> upper_model(classifier, "block_12", (10, 10, 96)).output_shape  # doctest: +SKIP
        (None, 3)
    """
    import keras

    model = classifier.model
    inputs = keras.Input(tuple(shape), name=f"{boundary}_activations")
    x = inputs
    if boundary != HEAD_FEATURES:
        backbone = classifier.backbone
        top = keras.Model(_boundary_tensor(classifier, boundary), backbone.output, name="upper")
        x = model.get_layer("pool")(top(x))
    if any(layer.name == "dropout" for layer in model.layers):
        x = model.get_layer("dropout")(x)
    outputs = model.get_layer("head")(x)
    return keras.Model(inputs, outputs, name=f"{classifier.spec.id}_from_{boundary}")


def view_batches(
    activations: np.ndarray,
    labels: Sequence[int],
    *,
    num_classes: int,
    batch_size: int,
    shuffle_epochs: tuple[int, int] | None = None,
    seed: int = 0,
    one_hot: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(activations, labels)`` from cached views of shape ``(views, images, …)``.

    Training (`shuffle_epochs` = ``(first, stop)``): epochs ``first … stop - 1`` back to
    back, each in the order the image pipeline uses for that ``(seed, epoch)``
    (`tl_core.data.dataset.make_batches`), each image as one of its views drawn from
    ``(seed, epoch)`` too. Otherwise view 0 of every image, in order. A memory-mapped
    array is read batch by batch, never loaded whole.

    Example:
        >>> ds = view_batches(np.zeros((4, 10, 8)), [0] * 5 + [1] * 5, num_classes=2,
        ...                   batch_size=4, shuffle_epochs=(0, 2))  # doctest: +SKIP
    """
    import tensorflow as tf

    views, count = int(activations.shape[0]), int(activations.shape[1])
    targets = tf.constant(list(labels), tf.int32)
    gather = _gatherer(activations)

    def batch_of(view: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        label = tf.gather(targets, index)
        return gather(view * count + index), tf.one_hot(label, num_classes) if one_hot else label

    if shuffle_epochs is None:
        order = tf.data.Dataset.range(count).batch(batch_size)
        return order.map(lambda i: batch_of(tf.zeros_like(i), i)).prefetch(tf.data.AUTOTUNE)
    base_seed = tf.constant(seed, tf.int64)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.cast(epoch_order(count, seed, epoch), tf.int64)
        drawn = tf.random.stateless_uniform(
            [count], seed=tf.stack([epoch, base_seed]), maxval=views, dtype=tf.int64
        )
        return (
            tf.data.Dataset.from_tensor_slices((tf.gather(drawn, order), order))
            .batch(batch_size)
            .map(batch_of)
        )

    first, stop = shuffle_epochs
    epochs = tf.data.Dataset.range(first, stop, output_type=tf.int64)
    return epochs.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def _gatherer(activations: np.ndarray) -> Any:
    """Rows by flat index ``view * images + image`` as float32: from memory for an array
    in RAM, from the file for a memory-mapped one."""
    import numpy as np
    import tensorflow as tf

    flat_shape = (-1, *activations.shape[2:])
    if not isinstance(activations, np.memmap):
        rows = tf.constant(np.asarray(activations).reshape(flat_shape))
        return lambda index: tf.cast(tf.gather(rows, index), tf.float32)
    mapped = activations.reshape(flat_shape)

    def read(index: np.ndarray) -> np.ndarray:
        return np.asarray(mapped[index], dtype=np.float32)

    def gather(index: tf.Tensor) -> tf.Tensor:
        rows = tf.numpy_function(read, [index], tf.float32)
        return tf.ensure_shape(rows, [None, *activations.shape[2:]])

    return gather
