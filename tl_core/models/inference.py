"""The inference graph of a classifier: the same layers, without augmentation.

A classifier from `tl_core.models.classifier.build_classifier` is a chain::

    image → augmentation (optional) → preprocess (optional) → backbone → pool
          → dropout (optional) → head

Keras's Random* layers act only in training, yet they stay in the graph: exported to
TFLite they become ``StatelessRandomGetKeyCounter`` / ``StatelessRandomUniformV2``, ops
the TFLite runtime does not have, and the conversion fails. `inference_model` rebuilds the
chain without them, over the very same layer objects (weights shared, nothing copied), so
every export and the saved ``model.keras`` hold only what inference needs.

Keras is imported inside the function: this module is safe for the web process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.errors import ExportError

if TYPE_CHECKING:
    import keras

__all__ = ["AUGMENTATION_NAME", "inference_model", "is_augmentation"]

#: Name of the Sequential that holds a classifier's augmentation layers.
AUGMENTATION_NAME = "augmentation"


def is_augmentation(layer: Any) -> bool:
    """Whether `layer` only matters in training: the ``augmentation`` block, a Keras
    Random* preprocessing layer, or a Sequential made of those alone.

    Example:
        >>> is_augmentation(keras.layers.RandomFlip("horizontal"))  # doctest: +SKIP
        True
    """
    if layer.name == AUGMENTATION_NAME or _is_random_layer(layer):
        return True
    if type(layer).__name__ != "Sequential":
        return False
    inner = layer.layers
    return bool(inner) and all(map(_is_random_layer, inner))


def _is_random_layer(layer: Any) -> bool:
    kind = type(layer)
    return kind.__name__.startswith("Random") and kind.__module__.startswith("keras.")


def inference_model(model: keras.Model) -> keras.Model:
    """Return `model` without its augmentation layers, sharing every other layer.

    The result takes what the classifier takes: float32 raw RGB pixels 0–255 under the
    same input name (``"image"``) and shape; preprocessing stays inside. A model without
    augmentation and with a float32 input is returned as it is, so calling this twice is
    the same as calling it once. Models loaded from the ``model.keras`` of older runs,
    which hold the augmentation block, work the same way.

    Args:
        model: a classifier built by `build_classifier`, or loaded from a run's
            ``model.keras``.

    Returns:
        A functional model over the same layer objects (no weights copied), named like
        `model`, uncompiled when rebuilt.

    Raises:
        ExportError: `model` is not a chain of layers from one input to one output.

    Example:
        >>> model = keras.saving.load_model("runs/r1/model.keras", compile=False)  # doctest: +SKIP
        >>> [layer.name for layer in inference_model(model).layers]  # doctest: +SKIP
        ['image', 'preprocess', 'mobilenetv2_1.00_160', 'pool', 'dropout', 'head']
    """
    import keras

    chain = _layer_chain(model)
    kept = [layer for layer in chain if not is_augmentation(layer)]
    source = model.inputs[0]
    if len(kept) == len(chain) and source.dtype == "float32":
        return model
    inputs = keras.Input(tuple(source.shape[1:]), dtype="float32", name=source.name)
    x = inputs
    for layer in kept:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _layer_chain(model: Any) -> list[Any]:
    """The layers from `model`'s output back to its input, returned input side first."""
    if len(getattr(model, "inputs", None) or ()) != 1 or len(model.outputs) != 1:
        raise _not_a_chain(model, "it does not have exactly one input and one output")
    source = model.inputs[0]
    tensor = model.outputs[0]
    chain: list[Any] = []
    # Follow the output back through each layer's call in this model; a layer shared
    # with another model (the backbone is, with `Classifier.features`) has more calls,
    # and `_keras_history` names the one that made this tensor.
    while tensor is not source:
        layer, node_index, _ = tensor._keras_history
        if type(layer).__name__ == "InputLayer":
            raise _not_a_chain(model, f"its input {layer.name!r} is not the model's input")
        parents = layer._inbound_nodes[node_index].input_tensors
        if len(parents) != 1:
            raise _not_a_chain(model, f"layer {layer.name!r} takes {len(parents)} inputs")
        chain.append(layer)
        tensor = parents[0]
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if len(chain) != len(layers):
        raise _not_a_chain(model, "some of its layers are off the path from input to output")
    return chain[::-1]


def _not_a_chain(model: Any, why: str) -> ExportError:
    return ExportError(
        f"Cannot make an inference model of {model.name!r}: {why}. Only classifiers "
        "trained by tl_core (one chain from the image to the head) can be exported; "
        "train the model in this studio, or export it with Keras directly."
    )
