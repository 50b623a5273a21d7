"""Every pretrained backbone computes exactly what Keras's own ``weights="imagenet"`` build does.

Keras's applications build part of their graph differently when ``weights == "imagenet"``
(EfficientNet adds a variance fix after its input normalisation), so loading ImageNet weights
into a ``weights=None`` build is not enough. The real ImageNet files cannot be downloaded
here: each test gives Keras's build random weights in place of the download, saves them
under the ImageNet file name, and compares our build with Keras's on one random image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from tl_core.models.backbones import BackboneSpec, build_backbone, get_backbone, list_backbones

FAST_IDS = {
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_b0",
}

# Raw pixels 0-255 mapped to the range each preprocessing mode produces, near enough for
# the backbone to see realistic inputs.
TO_BACKBONE_INPUT = {
    "none": lambda x: x,
    "tf": lambda x: x / 127.5 - 1.0,
    "torch": lambda x: (x / 255.0 - 0.45) / 0.225,
    "caffe": lambda x: x[..., ::-1] - 117.0,
}


def backbone_params() -> list:
    """Every registered id; the big ones are marked slow (they still run in `make test`)."""
    return [
        pytest.param(spec.id, marks=() if spec.id in FAST_IDS else pytest.mark.slow)
        for spec in list_backbones()
    ]


def random_images(spec: BackboneSpec, size: int, count: int) -> np.ndarray:
    """`count` random images in the input range of `spec`."""
    pixels = np.random.default_rng(7).uniform(0, 255, (count, size, size, 3))
    return TO_BACKBONE_INPUT[spec.preprocess](pixels).astype("float32")


def keras_imagenet_build(
    spec: BackboneSpec, size: int, weights_file: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[keras.Model, dict]:
    """Keras's own ``weights="imagenet"`` build, given `weights_file` instead of a download.

    Returns the model and what Keras asked for: ``fname`` and ``file_hash``.
    """
    requested: dict = {}

    def answer_with_file(fname, origin=None, **kwargs):
        requested.update(fname=fname, file_hash=kwargs.get("file_hash"))
        return str(weights_file)

    with monkeypatch.context() as patch, warnings.catch_warnings():
        # The applications fetch through this module; `keras.utils.get_file` is the same
        # function under another name and is not what they call.
        patch.setattr(file_utils, "get_file", answer_with_file)
        # MobileNet warns that sizes other than 224 get the 224 weights; expected here.
        warnings.simplefilter("ignore", UserWarning)
        model = spec.constructor()(
            include_top=False, weights="imagenet", input_shape=(size, size, 3)
        )
    return model, requested


def calibrate_batch_norm(model: keras.Model, images: np.ndarray) -> None:
    """Set every BatchNorm's statistics to those its inputs have on `images`.

    A freshly initialised network passes almost nothing through (outputs around 1e-11,
    where a 2x input error would hide below any absolute tolerance); calibrated, every
    layer sees inputs of unit scale, as with real weights. Dropout is off meanwhile, or
    inference (without it) would drift from those statistics block after block.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    model(images, training=True)


def keras_imagenet_stand_in(
    spec: BackboneSpec, size: int, keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[keras.Model, dict, Path]:
    """Keras's ImageNet build of `spec` with calibrated random weights, and their file.

    The file is saved under the ImageNet file name in ``keras_home/models``, in the
    format of Keras's ImageNet files: weights-only legacy H5, read by layer order. The
    calibration runs on the ImageNet build itself: its graph is not the ``weights=None``
    one (that is the point of these tests). Returns the model, what it asked Keras's
    `get_file` for, and the file, which holds the model's weights.
    """
    stand_in = keras_home / "models" / spec.weights_file_for(size)
    stand_in.parent.mkdir(parents=True)
    scratch = spec.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))
    initial = keras_home / "initial.weights.h5"
    scratch.save_weights(initial)
    model, requested = keras_imagenet_build(spec, size, initial, monkeypatch)
    calibrate_batch_norm(model, random_images(spec, size, 4))
    with h5py.File(stand_in, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)
    return model, requested, stand_in


def md5(path: Path) -> str:
    """The md5 hash of a file, as Keras writes the hashes of its weights files."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def assert_same_outputs(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Equal up to 1e-4 of the output scale.

    Both sides run the same graph with the same weights, so they agree to float32
    rounding (exactly, on this machine); the defects this guards against move the outputs
    by more than their whole scale (EfficientNet without its variance fix: 7e5 times it,
    with these calibrated random weights).
    """
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours - theirs).max())
    assert 0.0 < scale < np.inf
    # A NaN difference fails this comparison too.
    assert diff <= 1e-4 * scale, f"{what}: max abs diff {diff:.3g}, output scale {scale:.3g}"


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_pretrained_backbone_computes_what_the_keras_imagenet_build_computes(
    backbone_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spec = get_backbone(backbone_id)
    size = spec.min_input_size
    keras_home = tmp_path / "keras_home"
    theirs, requested, stand_in = keras_imagenet_stand_in(spec, size, keras_home, monkeypatch)
    assert requested == {"fname": spec.weights_file_for(size), "file_hash": spec.weights_hash}

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    # The stand-in is not Keras's file: our build checks it against its own hash instead.
    stand_in_spec = dataclasses.replace(spec, weights_hash=md5(stand_in))
    ours = build_backbone(stand_in_spec, size, "imagenet", download=False)

    assert ours.name == theirs.name
    assert [type(layer).__name__ for layer in ours.layers] == [
        type(layer).__name__ for layer in theirs.layers
    ]
    image = random_images(spec, size, 1)
    expected = np.asarray(theirs(image))
    assert_same_outputs(np.asarray(ours(image)), expected, "weights='imagenet'")

    # A user's weights file saved from the pretrained build behaves the same way.
    user_file = tmp_path / "mine.weights.h5"
    theirs.save_weights(user_file)
    from_file = build_backbone(spec, size, user_file)
    assert_same_outputs(np.asarray(from_file(image)), expected, "weights=PATH")
