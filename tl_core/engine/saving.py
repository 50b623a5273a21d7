"""The run's ``model.keras``: the inference graph, in float32, without optimizer state.

What the analyses (evaluate, Grad-CAM, predict, export) load, often on a CPU: so it never
holds the augmentation block (`tl_core.models.inference.inference_model`; TFLite cannot
convert Random* layers) and never computes in float16, whatever policy it trained under:
float16 on a CPU is slow and loses small probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from tl_core.fsutil import atomic_write

__all__ = ["float32_config", "float32_copy", "has_mixed_policy", "save_inference_model"]


def float32_config(config: Any) -> Any:
    """Return a copy of a Keras model config with every mixed dtype policy made float32.

    Example:
        >>> policy = {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}
        >>> float32_config({"dtype": policy})["dtype"]["config"]["name"]
        'float32'
    """
    if isinstance(config, list):
        return [float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    copy = {key: float32_config(value) for key, value in config.items()}
    name = copy.get("config", {}).get("name") if isinstance(copy.get("config"), dict) else None
    if str(copy.get("class_name", "")).endswith("DTypePolicy") and str(name).startswith("mixed_"):
        copy["config"] = copy["config"] | {"name": "float32"}
    if str(copy.get("dtype", "")).startswith("mixed_"):
        copy["dtype"] = "float32"
    return copy


def float32_copy(model: keras.Model) -> keras.Model:
    """Rebuild `model` with float32 dtype policies and copy its weights (variables of a
    mixed-precision model are float32 already, so nothing is rounded).

    Built from the config rather than `keras.models.clone_model`: Keras 3.15 compiles the
    clone and builds its optimizer. The global policy is float32 while it builds, so
    layers that take it (inputs) do too.

    Example:
        >>> float32_copy(model).dtype_policy.name  # doctest: +SKIP
        'float32'
    """
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = keras.Model.from_config(float32_config(model.get_config()))
    finally:
        keras.config.set_dtype_policy(saved)
    copy.set_weights(model.get_weights())
    return copy


def has_mixed_policy(model: keras.Model) -> bool:
    """True when a layer of `model`, nested models included, computes under a mixed policy.

    Example:
        >>> has_mixed_policy(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        False
    """
    stack: list[Any] = [model]
    while stack:
        layer = stack.pop()
        if layer.dtype_policy.name.startswith("mixed_"):
            return True
        stack.extend(getattr(layer, "layers", []))
    return False


def save_inference_model(model: keras.Model, path: Path) -> None:
    """Save the float32 inference graph of the classifier `model` at `path`, atomically.

    A graph already free of mixed policies is saved as a new model over the same layers
    (uncompiled, so no optimizer state goes with it): what `float32_copy` would rebuild
    from its config, without the ~0.7 s that rebuild costs a MobileNetV2 at every run end.

    Example:
        >>> save_inference_model(classifier.model, files.model)  # doctest: +SKIP
    """
    from tl_core.models.inference import inference_model

    graph = inference_model(model)
    if has_mixed_policy(graph):
        graph = float32_copy(graph)
    else:
        # `input`/`output`, not the lists: a list input would make the saved model expect
        # a list (Keras warns when a plain tensor is then passed).
        graph = keras.Model(graph.input, graph.output, name=graph.name)
    atomic_write(path, graph.save)
