"""Grad-CAM: where in a picture a classifier found the evidence for a class.

``heatmap = ReLU(Σ_k α_k · A_k)`` with ``A`` a 4-D feature map of the model and ``α_k`` the
spatial mean of ``∂ log p_class / ∂ A_k`` (Selvaraju et al., 2017), scaled to [0, 1] and
resized to the input picture.

Our classifiers nest the backbone as one functional model (image → augmentation →
preprocessing → backbone → pool → dropout → head), and the interesting feature maps live
inside it. Keras cannot build a model from an outer input to a tensor inside a nested
model, so the graph is run operation by operation (recursing into nested functional
models, plain tensor ops such as MobileNetV3's ``+`` included), and the target's output is
captured and watched on the way. That runner is traced once per (model, layer) into a
`tf.function` and cached.

The default feature map is the last one of the network with at least 2 × 2 positions: the
backbone's output at usual sizes (7 × 7 at 224 px), an earlier map at tiny sizes where the
backbone ends at 1 × 1 (which could only give a flat map).

Example:
    >>> heatmap = grad_cam(model, image)  # doctest: +SKIP
    >>> Image.fromarray(overlay(image.astype("uint8"), heatmap)).save("cam.png")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tl_core.errors import ConfigError

__all__ = ["default_layer", "feature_map_layers", "grad_cam", "jet_colormap", "overlay"]

#: Gradient runners per model, then per target operation.
_RUNNERS: weakref.WeakKeyDictionary[Any, dict[int, Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


def _walk_operations(model: Any) -> Iterator[Any]:
    """Yield the operations of `model` in execution order; a nested functional model's
    own operations come just before the model itself."""
    import keras

    for op in model.operations:
        if isinstance(op, keras.Function):
            yield from _walk_operations(op)
        yield op


def _output_shape(op: Any) -> tuple[Any, ...] | None:
    import keras

    if isinstance(op, keras.layers.InputLayer):
        return None
    try:
        output = op.output
    except (AttributeError, ValueError):  # shared by several graphs: no single output
        return None
    shape = getattr(output, "shape", None)
    return tuple(shape) if shape is not None else None


def feature_map_layers(model: Any) -> list[str]:
    """Return the names of the operations of `model` with a 4-D output, in execution order.

    Nested models (the backbone) are searched too, so the names include the backbone's
    layers and its plain tensor ops. Any of them can be passed to `grad_cam` as `layer`.

    Example:
        >>> feature_map_layers(model)[-1]  # doctest: +SKIP
        'mobilenetv2_1.00_224'
    """
    return [op.name for op in _walk_operations(model) if _is_feature_map(_output_shape(op))]


def _is_feature_map(shape: tuple[Any, ...] | None) -> bool:
    return shape is not None and len(shape) == 4


def _padding_types() -> tuple[type, ...]:
    import keras

    return (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)


def default_layer(model: Any) -> str:
    """Return the name of the feature map `grad_cam` explains when no `layer` is given.

    Raises:
        ConfigError: the model has no 4-D feature map.
    """
    return str(_default_target(model).name)


def _default_target(model: Any) -> Any:
    candidates = [
        (op, shape) for op in _walk_operations(model) if _is_feature_map(shape := _output_shape(op))
    ]
    if not candidates:
        raise ConfigError(
            f"Grad-CAM needs a 4-D feature map, and model {model.name!r} has none. "
            "Use a convolutional classifier."
        )
    # Padding only frames the previous map with zeros: never a map worth explaining.
    spatial = [
        op
        for op, shape in candidates
        if all((d or 0) >= 2 for d in shape[1:3]) and not isinstance(op, _padding_types())
    ]
    return spatial[-1] if spatial else candidates[-1][0]


def _find_target(model: Any, layer: str | Any) -> Any:
    operations = list(_walk_operations(model))
    if not isinstance(layer, str):
        if any(op is layer for op in operations):
            return layer
        raise ConfigError(
            f"Expected `layer` to be a layer of model {model.name!r}. "
            f"Received: layer={getattr(layer, 'name', layer)!r}"
        )
    # Top-level names first: they are unique there, and nested names rarely clash.
    for op in list(model.operations) + operations:
        if op.name == layer:
            return op
    raise ConfigError(
        f"Expected `layer` to name a layer of model {model.name!r} "
        f"(see `feature_map_layers(model)`). Received: layer={layer!r}"
    )


def _takes_training(op: Any) -> bool:
    try:
        return "training" in inspect.signature(op.call).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def _contains(model: Any, target: Any) -> bool:
    return any(op is target for op in _walk_operations(model))


def _run_capturing(model: Any, inputs: Any, target: Any, on_capture: Callable[[Any], Any]) -> Any:
    """Run `model` on `inputs` in inference mode, passing `target`'s output to `on_capture`.

    `on_capture` returns the tensor that continues through the graph (e.g. the same tensor
    after ``tape.watch``). Nested functional models are run operation by operation when
    they hold the target, so a tensor deep inside the backbone can be reached.
    """
    import keras

    def call(op: Any, *args: Any, **kwargs: Any) -> Any:
        if op is not target and isinstance(op, keras.Function) and _contains(op, target):
            outputs = _run_capturing(op, args[0] if len(args) == 1 else args, target, on_capture)
        else:
            if _takes_training(op):
                kwargs["training"] = False
            outputs = op(*args, **kwargs)
        if op is target:
            outputs = on_capture(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)
        return outputs

    # Keras's own graph runner (what `Functional.call` uses), with our per-operation call.
    return model._run_through_graph(inputs, call_fn=call)


def _gradient_runner(model: Any, target: Any) -> Callable[..., Any]:
    runners = _RUNNERS.setdefault(model, {})
    runner = runners.get(id(target))
    if runner is not None:
        return runner
    import tensorflow as tf

    model_ref = weakref.ref(model)

    @tf.function(reduce_retracing=True, autograph=False)
    def run(images: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, ...]:
        captured: list[tf.Tensor] = []
        with tf.GradientTape() as tape:

            def watch(tensor: tf.Tensor) -> tf.Tensor:
                tape.watch(tensor)
                captured.append(tensor)
                return tensor

            probabilities = _run_capturing(model_ref(), images, target, watch)
            if isinstance(probabilities, (list, tuple)):
                probabilities = probabilities[0]
            probabilities = tf.cast(probabilities, tf.float32)
            chosen = tf.where(
                class_index < 0, tf.argmax(probabilities[0], output_type=tf.int32), class_index
            )
            # log p: same map as p after scaling, without the softmax's vanishing gradient.
            score = tf.math.log(tf.maximum(probabilities[:, chosen], 1e-30))
        feature_map = captured[0]
        gradients = tape.gradient(score, feature_map)
        if gradients is None:
            gradients = tf.zeros_like(feature_map)
        return feature_map, gradients, probabilities, chosen

    runners[id(target)] = run
    return run


def grad_cam(
    model: Any,
    image_array: np.ndarray,
    *,
    class_index: int | None = None,
    layer: str | Any | None = None,
) -> np.ndarray:
    """Return the Grad-CAM heatmap of one picture: float32 ``(H, W)`` in [0, 1].

    Args:
        model: a Keras classifier with probabilities as output, e.g. a run's model.keras
            (raw RGB 0–255 in; preprocessing inside).
        image_array: one picture as the model takes it, ``(H, W, 3)`` or ``(1, H, W, 3)``,
            RGB 0–255 (`tl_core.analysis.predict.prepare_image` makes one).
        class_index: explain this class (default ``None``: the predicted class).
        layer: the feature map to explain, a name from `feature_map_layers` or a layer
            object (default ``None``: the last map with at least 2 × 2 positions).

    Returns:
        The heatmap at the input's spatial size; 1 marks the strongest evidence. Where no
        position supports the class (every weighted sum ≤ 0) but the map still varies, the
        map is the weighted sum scaled to [0, 1] (relative evidence). It is all zeros when
        the gradients are, or when a flat map (1 × 1, as squeeze-excite gates) holds no
        positive evidence.

    Raises:
        ConfigError: an unknown `layer`, a `class_index` out of range, or a picture that is
            not ``(H, W, 3)``.

    Example:
        >>> model, class_names, size = load_run_model(run_dir)  # doctest: +SKIP
        >>> heatmap = grad_cam(model, prepare_image(data, size))  # doctest: +SKIP
        >>> heatmap.shape, float(heatmap.max())  # doctest: +SKIP
        ((160, 160), 1.0)
    """
    import tensorflow as tf

    images = np.asarray(image_array, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[0] != 1 or images.shape[-1] != 3:
        raise ConfigError(
            "Expected `image_array` to be one RGB picture of shape (H, W, 3) or (1, H, W, 3). "
            f"Received: shape={tuple(np.shape(image_array))}"
        )
    classes = int(model.output_shape[-1])
    if class_index is not None and not 0 <= int(class_index) < classes:
        raise ConfigError(
            f"Expected `class_index` to be between 0 and {classes - 1}. "
            f"Received: class_index={class_index!r}"
        )
    target = _default_target(model) if layer is None else _find_target(model, layer)
    runner = _gradient_runner(model, target)
    feature_map, gradients, _, _ = runner(
        tf.constant(images), tf.constant(-1 if class_index is None else int(class_index))
    )
    cam = _weighted_map(np.asarray(feature_map, np.float64), np.asarray(gradients, np.float64))
    height, width = images.shape[1:3]
    resized = tf.image.resize(cam[..., None].astype(np.float32), (height, width), "bilinear")
    heatmap = np.clip(np.nan_to_num(resized.numpy()[..., 0]), 0.0, 1.0)
    # Resizing smooths the peak away from exactly 1; scale it back.
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else heatmap).astype(np.float32)


def _weighted_map(feature_map: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Combine one picture's feature map ``(1, h, w, k)`` and gradients into ``(h, w)``."""
    feature_map = np.nan_to_num(feature_map[0])
    weights = np.nan_to_num(gradients[0]).mean(axis=(0, 1))
    cam = feature_map @ weights
    positive = np.maximum(cam, 0.0)
    if positive.max() > 0:
        return positive / positive.max()
    spread = cam.max() - cam.min()
    if spread > 0:
        return (cam - cam.min()) / spread
    return np.zeros_like(cam)


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB in [0, 1] with a jet-like ramp (blue → cyan → yellow → red).

    Example:
        >>> jet_colormap(np.array([0.0, 1.0])).round(2).tolist()
        [[0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]
    """
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # where red, green and blue peak
    return np.clip(1.5 - np.abs(4.0 * (x - centres)), 0.0, 1.0)


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a heatmap, coloured with `jet_colormap`, over a picture.

    Args:
        image_uint8: the picture, ``(H, W, 3)`` RGB or ``(H, W)`` grey, 0–255.
        heatmap: values in [0, 1], any size (resized bilinearly to the picture's).
        alpha: weight of the colours (default 0.4; 0 keeps the picture, 1 shows only them).

    Returns:
        A ``(H, W, 3)`` uint8 picture.

    Example:
        >>> overlay(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2)), alpha=1.0)[0, 0].tolist()
        [128, 0, 0]
    """
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"Expected `alpha` to be between 0 and 1. Received: alpha={alpha!r}")
    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigError(
            "Expected `image_uint8` to be of shape (H, W, 3) or (H, W). "
            f"Received: shape={tuple(np.shape(image_uint8))}"
        )
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if heat.shape != image.shape[:2]:
        resized = Image.fromarray(heat).resize((image.shape[1], image.shape[0]), Image.BILINEAR)
        heat = np.asarray(resized, dtype=np.float32)
    colours = jet_colormap(heat) * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
