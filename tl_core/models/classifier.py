"""Build the classifier around a backbone, apply a freeze plan, compile.

The model takes raw RGB pixels 0–255 and holds everything else::

    image (0–255) → augmentation (training only) → the family's preprocessing
                  → backbone → global average pooling → dropout → softmax head

Preprocessing uses built-in Keras layers only (`Rescaling`, a fixed 1×1 `Conv2D` for the
"caffe" BGR flip and mean subtraction), so a saved model loads in plain Keras.

The freeze plan (`apply_freeze_plan`) follows the studio's contract:
blocks are frozen or trainable as a whole; BatchNormalization is frozen (``trainable=False``,
which also makes it run in inference mode) in every frozen block, and also in trainable
blocks when the weights are pretrained, unless ``train_bn`` asks otherwise; from scratch it
trains. Keras applies a change of ``trainable`` only at ``compile``, so the plan compiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.config import RunConfig, expect_block_depth, expect_block_names
from tl_core.errors import ConfigError
from tl_core.models.backbones import BackboneSpec, build_backbone, get_backbone
from tl_core.models.blocks import BlockInfo, group_blocks

if TYPE_CHECKING:
    import keras

__all__ = [
    "Classifier",
    "FreezeSummary",
    "apply_freeze_plan",
    "batch_norm_layers",
    "build_classifier",
    "compile_classifier",
    "compile_model",
    "head_model",
    "plan_trainable_blocks",
    "pooled_features_model",
    "preprocessing_layer",
    "uses_one_hot_labels",
]

#: BatchNorm momentum used when its statistics are learned from scratch: Keras's 0.99
#: lags far behind on small data and leaves validation at chance (measured: validation
#: 0.25 at every epoch with 0.99, 0.75 with 0.9 on 144 images).
SCRATCH_BN_MOMENTUM = 0.9

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass
class Classifier:
    """A classifier and the pieces the worker needs to freeze, train and inspect it.

    ``features`` shares the classifier's layers: raw pixels → preprocessing → backbone,
    without augmentation (BatchNorm re-estimation, Grad-CAM, embeddings).
    """

    model: keras.Model
    backbone: keras.Model
    features: keras.Model
    blocks: list[BlockInfo]
    spec: BackboneSpec
    image_size: int
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class FreezeSummary:
    """What a freeze plan did: per-block trainability and parameter counts."""

    trainable_blocks: tuple[str, ...]
    block_trainable: dict[str, bool]
    trainable_params: int
    non_trainable_params: int
    bn_trainable: bool


def preprocessing_layer(mode: str) -> keras.layers.Layer | None:
    """Return the built-in Keras layer that turns 0–255 RGB into `mode`'s input range.

    Args:
        mode: ``"tf"`` ([-1, 1]), ``"torch"`` (ImageNet mean/std per channel), ``"caffe"``
            (BGR, ImageNet mean subtracted) or ``"none"`` (the backbone does it itself).

    Returns:
        A layer named ``"preprocess"``, or ``None`` for ``"none"``.

    Example:
        >>> layer = preprocessing_layer("tf")  # doctest: +SKIP
        >>> float(layer(np.full((1, 1, 1, 3), 255.0))[0, 0, 0, 0])  # doctest: +SKIP
        1.0
    """
    import keras
    import numpy as np

    if mode == "none":
        return None
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if mode == "torch":
        std = np.array(_IMAGENET_STD)
        scale = (1.0 / (255.0 * std)).tolist()
        offset = (-np.array(_IMAGENET_MEAN) / std).tolist()
        return keras.layers.Rescaling(scale, offset=offset, name="preprocess")
    if mode == "caffe":
        # RGB → BGR is a permutation; a fixed 1×1 convolution does it and the mean shift.
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel, in_channel in enumerate((2, 1, 0)):
            kernel[0, 0, in_channel, out_channel] = 1.0
        bias = -np.array(_CAFFE_MEAN_BGR, dtype="float32")
        layer = keras.layers.Conv2D(
            3,
            1,
            name="preprocess",
            trainable=False,
            kernel_initializer=keras.initializers.Constant(kernel),
            bias_initializer=keras.initializers.Constant(bias),
        )
        return layer
    raise ConfigError(
        f"Expected `preprocess` to be one of ['tf', 'torch', 'caffe', 'none']. "
        f"Received: preprocess={mode!r}"
    )


def _augmentation(names: Sequence[str], seed: int) -> keras.layers.Layer | None:
    import keras

    makers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: keras.layers.RandomRotation(0.08, seed=seed + 1),
        "zoom": lambda: keras.layers.RandomZoom(0.15, seed=seed + 2),
        "contrast": lambda: keras.layers.RandomContrast(0.2, seed=seed + 3),
    }
    if not names:
        return None
    # Keras preprocessing layers act only when called with training=True.
    return keras.Sequential([makers[name]() for name in names], name="augmentation")


def build_classifier(
    config: RunConfig,
    class_names: Sequence[str],
    *,
    download: bool = True,
    load_weights: bool = True,
) -> Classifier:
    """Build the full classifier for `config` (not compiled, nothing frozen yet).

    Args:
        config: the run's settings (backbone, weights, image size, dropout, augmentation).
        class_names: the class index; the head has one output per class.
        download: allow downloading ImageNet weights when they are not cached.
        load_weights: load `config.weights` (default True). False builds the same
            architecture (BatchNorm settings included) for weights restored afterwards,
            as a resumed run does.

    Returns:
        A `Classifier` whose ``model`` takes ``(image_size, image_size, 3)`` raw pixels.

    Raises:
        ConfigError: an unknown backbone or an image size it cannot take.
        WeightsUnavailable: the requested weights cannot be found or loaded.

    Example:
        >>> clf = build_classifier(RunConfig(dataset_id="0" * 12, weights="none",
        ...                                  image_size=64), ["a", "b"])  # doctest: +SKIP
        >>> clf.model.output_shape  # doctest: +SKIP
        (None, 2)
    """
    import keras

    if len(class_names) < 2:
        raise ConfigError(
            f"Expected at least 2 classes. Received: class_names={list(class_names)!r}"
        )
    spec = get_backbone(config.backbone)
    size = config.image_size or spec.default_input_size
    # Every run, from scratch or resumed, builds the architecture Keras builds for ImageNet
    # weights (EfficientNet adds a fixed input Rescaling only then): a backbone exported
    # from any run then loads as a pretrained start into the same function.
    weights = "imagenet" if config.from_scratch else config.weights
    load = load_weights and not config.from_scratch
    keras.utils.set_random_seed(config.seed)
    backbone = build_backbone(spec, size, weights, download=download, load=load)
    if config.from_scratch:
        for layer in batch_norm_layers(backbone):
            layer.momentum = SCRATCH_BN_MOMENTUM
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    augmentation = _augmentation(config.augmentation, config.seed)
    if augmentation is not None:
        x = augmentation(x)
    preprocess = preprocessing_layer(spec.preprocess)
    if preprocess is not None:
        x = preprocess(x)
    x = backbone(x)
    raw = keras.Input((size, size, 3), name="raw_image")
    feature_map = backbone(preprocess(raw) if preprocess is not None else raw)
    features = keras.Model(raw, feature_map, name=f"{spec.id}_features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    # float32 head: a softmax in float16 under mixed precision loses small probabilities.
    outputs = keras.layers.Dense(
        len(class_names), activation="softmax", dtype="float32", name="head"
    )(x)
    model = keras.Model(inputs, outputs, name=f"{spec.id}_classifier")
    return Classifier(
        model=model,
        backbone=backbone,
        features=features,
        blocks=group_blocks(backbone, spec),
        spec=spec,
        image_size=size,
        class_names=tuple(class_names),
    )


def plan_trainable_blocks(
    block_names: Sequence[str],
    freeze: str,
    *,
    unfreeze_last: int = 0,
    trainable_blocks: Iterable[str] = (),
    backbone: str | None = None,
) -> tuple[str, ...]:
    """Return the names of the blocks a freeze preset makes trainable, input side first.

    Args:
        block_names: the backbone's blocks, input side first.
        freeze: ``"feature-extraction"`` (none), ``"fine-tune"`` (the top `unfreeze_last`),
            ``"full"`` (all) or ``"custom"`` (exactly `trainable_blocks`).
        unfreeze_last: for ``"fine-tune"``; 0 is the same as feature extraction, the block
            count the same as ``"full"``. A number outside that range is refused, never
            clamped: a typo must not turn into a full fine-tune.
        trainable_blocks: for ``"custom"``; every name must be a block of the backbone.
        backbone: the backbone's id, named in error messages (default ``None``: "this
            backbone").

    Raises:
        ConfigError: an unknown preset, a depth outside 0 to the block count, or names
            that are not blocks of the backbone.

    Example:
        >>> plan_trainable_blocks(["stem", "block_1", "top"], "fine-tune", unfreeze_last=2)
        ('block_1', 'top')
    """
    names = list(block_names)
    if freeze == "feature-extraction":
        return ()
    if freeze == "full":
        return tuple(names)
    if freeze == "fine-tune":
        expect_block_depth("unfreeze_last", unfreeze_last, names, backbone=backbone)
        return tuple(names[len(names) - unfreeze_last :])
    if freeze == "custom":
        chosen = set(trainable_blocks)
        expect_block_names(sorted(chosen), names, backbone=backbone)
        return tuple(n for n in names if n in chosen)
    raise ConfigError(
        f"Expected `freeze` to be one of ['feature-extraction', 'fine-tune', 'full', "
        f"'custom']. Received: freeze={freeze!r}"
    )


def batch_norm_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Return every BatchNormalization layer inside `model`, nested models included."""
    import keras

    return [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _walk(layer: Any) -> Iterable[Any]:
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _walk(child)


def apply_freeze_plan(
    classifier: Classifier,
    trainable: Iterable[str],
    *,
    pretrained: bool,
    train_bn: bool = False,
) -> FreezeSummary:
    """Make the named blocks trainable and every other block frozen; the head trains.

    The order matters: ``trainable`` on a layer recurses into its
    sublayers, so it is set backbone → blocks → BatchNorm. Call `compile_classifier`
    afterwards: Keras applies ``trainable`` changes only when compiling.

    Args:
        classifier: from `build_classifier`.
        trainable: names of the blocks that train (see `plan_trainable_blocks`).
        pretrained: whether the backbone's weights are pretrained (ImageNet or a file).
        train_bn: let BatchNorm train inside trainable blocks despite pretrained weights.

    Returns:
        A `FreezeSummary` with per-block trainability and the parameter counts.
    """
    chosen = set(trainable)
    unknown = sorted(chosen - {b.name for b in classifier.blocks})
    if unknown:
        raise ConfigError(
            f"Expected `trainable` to name blocks of {classifier.spec.id}. "
            f"Received unknown blocks: {unknown}"
        )
    bn_trains = (not pretrained) or train_bn
    backbone = classifier.backbone
    backbone.trainable = True
    for block in classifier.blocks:
        block_trains = block.name in chosen
        for name in block.layers:
            layer = backbone.get_layer(name)
            layer.trainable = block_trains
            for inner in batch_norm_layers(layer):
                inner.trainable = block_trains and bn_trains
    for layer in classifier.model.layers:
        if layer is not backbone and layer.name in ("head", "pool", "dropout"):
            layer.trainable = True
    trainable_params = sum(int(_size(w)) for w in classifier.model.trainable_weights)
    non_trainable_params = sum(int(_size(w)) for w in classifier.model.non_trainable_weights)
    return FreezeSummary(
        trainable_blocks=tuple(b.name for b in classifier.blocks if b.name in chosen),
        block_trainable={b.name: b.name in chosen for b in classifier.blocks},
        trainable_params=trainable_params,
        non_trainable_params=non_trainable_params,
        bn_trainable=bn_trains,
    )


def _size(variable: Any) -> int:
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size


def uses_one_hot_labels(config: RunConfig) -> bool:
    """Whether batches must carry one-hot labels: Keras smooths only categorical labels."""
    return config.label_smoothing > 0


def compile_classifier(
    classifier: Classifier,
    config: RunConfig,
    *,
    learning_rate: float | Any,
) -> None:
    """Compile the classifier with the config's optimizer and loss (see `compile_model`)."""
    compile_model(classifier.model, config, learning_rate=learning_rate)


def compile_model(model: keras.Model, config: RunConfig, *, learning_rate: float | Any) -> None:
    """Compile with the config's optimizer and loss; built-in objects only, so saved models
    load in plain Keras.

    Labels are class indices, or one-hot when `uses_one_hot_labels` says so (label
    smoothing). The metric is always named ``accuracy``.

    Args:
        model: the classifier, after `apply_freeze_plan`, or its `head_model`.
        config: supplies ``optimizer`` and ``label_smoothing``.
        learning_rate: a float or a Keras learning-rate schedule.
    """
    import keras

    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if uses_one_hot_labels(config):
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])


def pooled_features_model(classifier: Classifier) -> keras.Model:
    """Raw pixels → the pooled backbone features the head reads (no augmentation)."""
    import keras

    pool = classifier.model.get_layer("pool")
    return keras.Model(classifier.features.input, pool(classifier.features.output))


def head_model(classifier: Classifier, feature_size: int) -> keras.Model:
    """Pooled features → probabilities, sharing the classifier's dropout and head layers.

    Training it trains the classifier's head: with a frozen backbone, that is the whole
    training, on features computed once (`tl_core.engine.cache`).
    """
    import keras

    features = keras.Input((feature_size,), name="pooled_features")
    x = features
    if any(layer.name == "dropout" for layer in classifier.model.layers):
        x = classifier.model.get_layer("dropout")(x)
    outputs = classifier.model.get_layer("head")(x)
    return keras.Model(features, outputs, name=f"{classifier.spec.id}_head")
