"""The backbone registry: what `tl_core` knows about each Keras application, as data.

Each row of `BACKBONES` says how to build a pretrained feature extractor (`keras_name`, the
class in `keras.applications`), which input sizes it accepts, how its input must be
preprocessed, how many parameters it has, how to name its blocks (`block_rule`, used by
`tl_core.models.blocks`) and which ImageNet weights file Keras would download for it, with the
hash Keras checks it against. Adding a backbone means adding a row, not a branch.

A pretrained backbone (ImageNet weights, or a weights file saved from such a backbone) is
Keras's own ``weights="imagenet"`` build: some applications build part of their graph only
for ImageNet weights (EfficientNet's variance fix after its input normalisation), so a
``weights=None`` build given the same weights computes something else, silently.

Importing this module does not import TensorFlow: the constructor is looked up in
`keras.applications` only when a backbone is built.

Preprocessing modes (what the model expects from raw RGB pixels 0-255):

- ``"tf"``: scaled to [-1, 1].
- ``"torch"``: scaled to [0, 1], then normalised with the ImageNet per-channel mean and std.
- ``"caffe"``: RGB flipped to BGR, then the ImageNet per-channel mean subtracted.
- ``"none"``: the model holds its own preprocessing layers and takes raw pixels.

Example:
    >>> spec = get_backbone("mobilenet_v2")
    >>> spec.keras_name, spec.preprocess
    ('MobileNetV2', 'tf')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tl_core.errors import ConfigError, WeightsUnavailable

if TYPE_CHECKING:
    import keras

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "Preprocess",
    "backbones_table",
    "build_backbone",
    "get_backbone",
    "keras_models_dir",
    "list_backbones",
    "weights_cached",
]

Preprocess = Literal["tf", "torch", "caffe", "none"]

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone: how to build it and what to expect from it.

    Attributes:
        id: Snake-case identifier used by the CLI and the UI, e.g. ``"mobilenet_v2"``.
        family: Architecture family shown to users, e.g. ``"MobileNet"``.
        keras_name: Class name in `keras.applications`, e.g. ``"MobileNetV2"``.
        default_input_size: Side in pixels the ImageNet weights were trained at.
        min_input_size: Smallest side Keras accepts for this architecture.
        preprocess: Input preprocessing mode: ``"tf"``, ``"torch"``, ``"caffe"`` or
            ``"none"`` (see the module docstring).
        params: Total parameters without the classification top (``weights=None``).
        description: One plain-language line for someone choosing a backbone.
        block_rule: Regular expression searched in layer names; the matched text labels the
            block a layer belongs to (``conv2_block1`` for ResNet). Layers before the first
            match form the ``"stem"``, layers after the last one the ``"top"``.
        weights_template: File name of the ImageNet weights without the top, as Keras saves
            it under ``$KERAS_HOME/models/``; ``{size}`` stands for the input size when the
            weights depend on it.
        weights_origin: URL of the folder Keras downloads the weights file from.
        weights_hash: Hash Keras checks that file against (md5, or sha256 when 64 hex
            digits long), as published in `keras.applications`; None where Keras has none.
        weights_sizes: Input sizes that have their own weights file (MobileNetV2); any other
            size uses the file of `default_input_size`, as Keras does.
    """

    id: str
    family: str
    keras_name: str
    default_input_size: int
    min_input_size: int
    preprocess: Preprocess
    params: int
    description: str
    block_rule: str
    weights_template: str
    weights_origin: str
    weights_hash: str | None
    weights_sizes: tuple[int, ...] = ()

    @property
    def weights_file(self) -> str:
        """File name of the ImageNet weights (no top) at the default input size."""
        return self.weights_file_for(self.default_input_size)

    def weights_file_for(self, input_size: int) -> str:
        """Return the ImageNet weights file name Keras uses at `input_size`.

        Example:
            >>> get_backbone("mobilenet_v2").weights_file_for(160)
            'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5'
        """
        size = input_size if input_size in self.weights_sizes else self.default_input_size
        return self.weights_template.format(size=size)

    def constructor(self) -> Any:
        """Return the Keras application function (imports Keras on first use)."""
        import keras

        return getattr(keras.applications, self.keras_name)


BACKBONES: tuple[BackboneSpec, ...] = (
    BackboneSpec(
        id="mobilenet_v2",
        family="MobileNet",
        keras_name="MobileNetV2",
        default_input_size=224,
        min_input_size=32,
        preprocess="tf",
        params=2_257_984,
        description="Small and fast; a good default for laptops and phones.",
        block_rule=r"^(?:block_\d+|expanded_conv)(?=_)",
        weights_template="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        weights_origin=_KERAS_APPS + "mobilenet_v2/",
        # Keras publishes no hash for the MobileNetV2 files.
        weights_hash=None,
        weights_sizes=(96, 128, 160, 192, 224),
    ),
    BackboneSpec(
        id="mobilenet_v3_small",
        family="MobileNet",
        keras_name="MobileNetV3Small",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=939_120,
        description="The smallest and fastest here; for quick trials and weak hardware.",
        block_rule=r"^expanded_conv(?:_\d+)?",
        weights_template="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        weights_origin=_KERAS_APPS + "mobilenet_v3/",
        weights_hash="d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
    BackboneSpec(
        id="mobilenet_v3_large",
        family="MobileNet",
        keras_name="MobileNetV3Large",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=2_996_352,
        description="Fast like MobileNetV2 and usually a little more accurate.",
        block_rule=r"^expanded_conv(?:_\d+)?",
        weights_template="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        weights_origin=_KERAS_APPS + "mobilenet_v3/",
        weights_hash="07fb09a5933dd0c8eaafa16978110389",
    ),
    BackboneSpec(
        id="resnet50",
        family="ResNet",
        keras_name="ResNet50",
        default_input_size=224,
        min_input_size=32,
        preprocess="caffe",
        params=23_587_712,
        description="The classic all-rounder; solid results, needs a GPU to train quickly.",
        block_rule=r"^conv\d_block\d+",
        weights_template="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "resnet/",
        weights_hash="4d473c1dd8becc155b73f8504c6f6626",
    ),
    BackboneSpec(
        id="resnet50_v2",
        family="ResNet",
        keras_name="ResNet50V2",
        default_input_size=224,
        min_input_size=32,
        preprocess="tf",
        params=23_564_800,
        description="ResNet50 with an improved layer order; fine-tunes a little more easily.",
        block_rule=r"^conv\d_block\d+",
        weights_template="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "resnet/",
        weights_hash="fac2f116257151a9d068a22e544a4917",
    ),
    BackboneSpec(
        id="resnet101",
        family="ResNet",
        keras_name="ResNet101",
        default_input_size=224,
        min_input_size=32,
        preprocess="caffe",
        params=42_658_176,
        description="A deeper ResNet; slower, sometimes more accurate on hard images.",
        block_rule=r"^conv\d_block\d+",
        weights_template="resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "resnet/",
        weights_hash="88cf7a10940856eca736dc7b7e228a21",
    ),
    BackboneSpec(
        id="efficientnet_b0",
        family="EfficientNet",
        keras_name="EfficientNetB0",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=4_049_571,
        description="Accurate for its small size; a strong choice when a GPU is available.",
        block_rule=r"^block\d+[a-z]",
        weights_template="efficientnetb0_notop.h5",
        weights_origin="https://storage.googleapis.com/keras-applications/",
        weights_hash="50bc09e76180e00e4465e1a485ddc09d",
    ),
    BackboneSpec(
        id="efficientnet_b3",
        family="EfficientNet",
        keras_name="EfficientNetB3",
        default_input_size=300,
        min_input_size=32,
        preprocess="none",
        params=10_783_535,
        description="A larger EfficientNet made for bigger images; slower to train.",
        block_rule=r"^block\d+[a-z]",
        weights_template="efficientnetb3_notop.h5",
        weights_origin="https://storage.googleapis.com/keras-applications/",
        weights_hash="af6d107764bb5b1abb91932881670226",
    ),
    BackboneSpec(
        id="efficientnet_v2_b0",
        family="EfficientNetV2",
        keras_name="EfficientNetV2B0",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=5_919_312,
        description="A newer EfficientNet that trains faster; good accuracy for its size.",
        block_rule=r"^block\d+[a-z]",
        weights_template="efficientnetv2-b0_notop.h5",
        weights_origin=_KERAS_APPS + "efficientnet_v2/",
        weights_hash="893217f2bb855e2983157299931e43ff",
    ),
    BackboneSpec(
        id="efficientnet_v2_s",
        family="EfficientNetV2",
        keras_name="EfficientNetV2S",
        default_input_size=384,
        min_input_size=32,
        preprocess="none",
        params=20_331_360,
        description="A mid-sized EfficientNetV2 for larger images; needs a GPU.",
        block_rule=r"^block\d+[a-z]",
        weights_template="efficientnetv2-s_notop.h5",
        weights_origin=_KERAS_APPS + "efficientnet_v2/",
        weights_hash="af0682fb74e8c54910f2d4393339c070",
    ),
    BackboneSpec(
        id="vgg16",
        family="VGG",
        keras_name="VGG16",
        default_input_size=224,
        min_input_size=32,
        preprocess="caffe",
        params=14_714_688,
        description="Old and simple, easy to understand; large and slow for its accuracy.",
        block_rule=r"^block\d+",
        weights_template="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "vgg16/",
        weights_hash="6d6bbae143d832006294945121d1f1fc",
    ),
    BackboneSpec(
        id="vgg19",
        family="VGG",
        keras_name="VGG19",
        default_input_size=224,
        min_input_size=32,
        preprocess="caffe",
        params=20_024_384,
        description="VGG16 with three more layers; mostly of historical interest.",
        block_rule=r"^block\d+",
        weights_template="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "vgg19/",
        weights_hash="253f8cb515780f3b799900260a226db6",
    ),
    BackboneSpec(
        id="xception",
        family="Xception",
        keras_name="Xception",
        default_input_size=299,
        min_input_size=71,
        preprocess="tf",
        params=20_861_480,
        description="Accurate on larger images; needs a GPU and at least 71 px input.",
        block_rule=r"^block\d+",
        weights_template="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "xception/",
        weights_hash="b0042744bf5b25fce3cb969f33bebb97",
    ),
    BackboneSpec(
        id="inception_v3",
        family="Inception",
        keras_name="InceptionV3",
        default_input_size=299,
        min_input_size=75,
        preprocess="tf",
        params=21_802_784,
        description="Looks at several scales at once; a well-tested choice for photos.",
        block_rule=r"^mixed\d+$",
        weights_template="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "inception_v3/",
        weights_hash="bcbd6486424b2319ff4ef7d526e38f63",
    ),
    BackboneSpec(
        id="inception_resnet_v2",
        family="Inception",
        keras_name="InceptionResNetV2",
        default_input_size=299,
        min_input_size=75,
        preprocess="tf",
        params=54_336_736,
        description="Inception with shortcuts; very accurate, large and slow.",
        block_rule=r"^(?:block\d+_\d+|mixed_\d[a-z])",
        weights_template="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "inception_resnet_v2/",
        weights_hash="d19885ff4a710c122648d3b5c3b684e4",
    ),
    BackboneSpec(
        id="densenet121",
        family="DenseNet",
        keras_name="DenseNet121",
        default_input_size=224,
        min_input_size=32,
        preprocess="torch",
        params=7_037_504,
        description="Few parameters but many layers; accurate, slower than its size suggests.",
        block_rule=r"^conv\d(?=_block)|^pool\d(?=_)",
        weights_template="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "densenet/",
        weights_hash="30ee3e1110167f948a6b9946edeeb738",
    ),
    BackboneSpec(
        id="densenet169",
        family="DenseNet",
        keras_name="DenseNet169",
        default_input_size=224,
        min_input_size=32,
        preprocess="torch",
        params=12_642_880,
        description="A deeper DenseNet; a little more accurate, noticeably slower.",
        block_rule=r"^conv\d(?=_block)|^pool\d(?=_)",
        weights_template="densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_origin=_KERAS_APPS + "densenet/",
        weights_hash="b8c4d4c20dd625c148057b9ff1c1176b",
    ),
    BackboneSpec(
        id="convnext_tiny",
        family="ConvNeXt",
        keras_name="ConvNeXtTiny",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=27_820_128,
        description="A modern design with top accuracy; large, best trained on a GPU.",
        block_rule=r"stage_\d+_block_\d+|downsampling_block_\d+",
        weights_template="convnext_tiny_notop.h5",
        weights_origin=_KERAS_APPS + "convnext/",
        weights_hash="d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    ),
    BackboneSpec(
        id="convnext_small",
        family="ConvNeXt",
        keras_name="ConvNeXtSmall",
        default_input_size=224,
        min_input_size=32,
        preprocess="none",
        params=49_454_688,
        description="A bigger ConvNeXt; more accurate still, needs a strong GPU.",
        block_rule=r"stage_\d+_block_\d+|downsampling_block_\d+",
        weights_template="convnext_small_notop.h5",
        weights_origin=_KERAS_APPS + "convnext/",
        weights_hash="6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
    ),
)

_BY_ID = {spec.id: spec for spec in BACKBONES}


def list_backbones() -> list[BackboneSpec]:
    """Return every registered backbone, in registry order.

    Example:
        >>> "resnet50" in [spec.id for spec in list_backbones()]
        True
    """
    return list(BACKBONES)


def get_backbone(backbone_id: str) -> BackboneSpec:
    """Return the backbone registered as `backbone_id`.

    Args:
        backbone_id: A registry id such as ``"mobilenet_v2"``.

    Raises:
        ConfigError: When no backbone has that id.

    Example:
        >>> get_backbone("xception").min_input_size
        71
    """
    try:
        return _BY_ID[backbone_id]
    except (KeyError, TypeError):
        raise ConfigError(
            f"Expected `backbone` to be one of {sorted(_BY_ID)}. Received: backbone={backbone_id!r}"
        ) from None


def keras_models_dir() -> Path:
    """Return the folder Keras caches downloaded weights in: ``$KERAS_HOME/models``.

    Without ``KERAS_HOME`` it is ``~/.keras/models``. Keras reads ``KERAS_HOME`` once, when
    it is imported; this reads it at each call, so tests and settings changed later count.

    Example:
        >>> keras_models_dir().name
        'models'
    """
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(home).expanduser() / "models"


def weights_cached(spec: BackboneSpec, input_size: int | None = None) -> bool:
    """Say whether the ImageNet weights of `spec` are already in the Keras cache.

    Args:
        spec: The backbone.
        input_size: Input side the weights are for; defaults to `spec.default_input_size`.
            It matters only for backbones with per-size weights (MobileNetV2).

    It looks for the file only; `build_backbone` also checks its hash (which reads it all).

    Example:
        >>> weights_cached(get_backbone("vgg16"))  # doctest: +SKIP
        False
    """
    size = spec.default_input_size if input_size is None else input_size
    return (keras_models_dir() / spec.weights_file_for(size)).is_file()


def build_backbone(
    spec: BackboneSpec,
    input_size: int | None = None,
    weights: str | Path | None = None,
    *,
    download: bool = True,
    load: bool = True,
) -> keras.Model:
    """Build the feature extractor of `spec`: no classification top, no pooling.

    Args:
        spec: The backbone to build.
        input_size: Side of the square RGB input in pixels; defaults to
            `spec.default_input_size`. Must be at least `spec.min_input_size`.
        weights: ``None`` or ``"none"`` for random initialisation (training from scratch),
            ``"imagenet"`` for the pretrained weights, or the path of a weights file saved
            from the same pretrained backbone (``.weights.h5``, or a Keras ``.h5``).
            Defaults to ``None``.
        download: With ``weights="imagenet"`` and nothing in the cache, whether to
            download the file (progress goes to stderr, never stdout). Defaults to True.
        load: Whether to load `weights`. False builds the architecture they call for with
            random values and reads no file, for a caller that restores its own variables
            (a resumed run): pretrained EfficientNet has one layer more than a scratch one.
            Defaults to True.

    Returns:
        A functional `keras.Model` taking ``(input_size, input_size, 3)`` images,
        preprocessed as `spec.preprocess` says. With weights, it is Keras's own
        ``weights="imagenet"`` build of the application, so it computes what Keras's does.

    Raises:
        ConfigError: When `input_size` is out of range.
        WeightsUnavailable: When the weights cannot be found, downloaded or loaded, or a
            cached ImageNet file does not match the hash Keras publishes for it.

    Example:
        >>> model = build_backbone(get_backbone("mobilenet_v2"), 96)  # doctest: +SKIP
        >>> model.output_shape  # doctest: +SKIP
        (None, 3, 3, 1280)
    """
    size = spec.default_input_size if input_size is None else input_size
    if isinstance(size, bool) or not isinstance(size, int) or size < spec.min_input_size:
        raise ConfigError(
            f"Expected `input_size` to be an integer of at least {spec.min_input_size} "
            f"for backbone {spec.id!r}. Received: input_size={size!r}"
        )
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return spec.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))
    if not load:
        return _pretrained_architecture(spec, size)
    return _build_pretrained(spec, size, _weights_source(spec, size, weights, download=download))


def backbones_table() -> list[dict[str, Any]]:
    """Return the registry as plain rows, the contract of ``python -m tl_core backbones --json``.

    Each row has ``id``, ``input_size`` (the default), ``params``, ``preprocess`` and
    ``weights_cached``, plus ``family``, ``keras_name``, ``description``,
    ``min_input_size`` and ``weights_file``.

    Example:
        >>> backbones_table()[0]["id"]
        'mobilenet_v2'
    """
    return [
        {
            "id": spec.id,
            "input_size": spec.default_input_size,
            "params": spec.params,
            "preprocess": spec.preprocess,
            "weights_cached": weights_cached(spec),
            "family": spec.family,
            "keras_name": spec.keras_name,
            "description": spec.description,
            "min_input_size": spec.min_input_size,
            "weights_file": spec.weights_file,
        }
        for spec in BACKBONES
    ]


def _weights_source(spec: BackboneSpec, size: int, weights: str | Path, *, download: bool) -> Path:
    """Resolve pretrained `weights` (``"imagenet"`` or a path) to a local file to load."""
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return _imagenet_file(spec, size, download=download)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"Cannot find the weights file {str(path)!r} for backbone {spec.id!r}. "
            "Expected `weights` to be 'imagenet', 'none' or the path of an existing "
            f"weights file. Received: weights={str(weights)!r}"
        )
    return path


def _imagenet_file(spec: BackboneSpec, size: int, *, download: bool) -> Path:
    """Return the cached ImageNet weights file, downloading it when allowed.

    A cached file must match the hash Keras publishes for it; Keras itself would silently
    download it again, here it is refused with the way out.
    """
    file_name = spec.weights_file_for(size)
    cached = keras_models_dir() / file_name
    source = f"{spec.weights_origin}{file_name}"
    if cached.is_file():
        _check_weights_hash(spec, cached, source)
        return cached
    advice = (
        f"Put {file_name} (from {source}) in {cached.parent}/, "
        "set KERAS_HOME to a folder whose models/ holds it, or choose weights 'none' "
        "to train from scratch."
    )
    if not download:
        raise WeightsUnavailable(
            f"The ImageNet weights of {spec.id!r} are not cached: {cached} is missing. " + advice
        )
    import keras

    # Keras falls back to /tmp/.keras when the cache folder does not exist yet (not
    # writable), where the file would not be found again.
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Keras prints download progress on stdout, which must stay clean for `--json`.
        with contextlib.redirect_stdout(sys.stderr):
            fetched = keras.utils.get_file(
                file_name,
                source,
                cache_dir=str(cached.parent.parent),
                cache_subdir="models",
                file_hash=spec.weights_hash,
            )
    except Exception as exc:
        # Offline, Keras raises a bare Exception("URL fetch failure ..."); a download that
        # fails its hash, a ValueError.
        raise WeightsUnavailable(
            f"Cannot download the ImageNet weights of {spec.id!r} ({file_name}): {exc}. " + advice
        ) from exc
    return Path(fetched)


def _check_weights_hash(spec: BackboneSpec, path: Path, source: str) -> None:
    """Raise `WeightsUnavailable` unless `path` has the hash Keras publishes for it."""
    expected = spec.weights_hash
    if expected is None:
        return
    # Keras's rule: a 64-digit hash is sha256, anything else md5.
    algorithm = "sha256" if len(expected) == 64 else "md5"
    with path.open("rb") as file:
        found = hashlib.file_digest(file, algorithm).hexdigest()
    if found != expected:
        raise WeightsUnavailable(
            f"The cached ImageNet weights of {spec.id!r} at {path} are not the file Keras "
            f"publishes: its {algorithm} hash is {found}, expected {expected} (an "
            "interrupted download, a damaged copy, or another file under that name). "
            f"Delete it so that it is downloaded again, replace it with {source}, "
            "or choose weights 'none' to train from scratch."
        )


# Serialises the builds that answer Keras's weights request (see `_build_pretrained`).
_WEIGHTS_REQUEST_LOCK = threading.Lock()


def _build_pretrained(spec: BackboneSpec, size: int, path: Path) -> keras.Model:
    """Build Keras's own ``weights="imagenet"`` application of `spec`, loading `path`.

    Keras's applications build part of their graph only when ``weights == "imagenet"``:
    EfficientNet (v1) then adds ``Rescaling(1/sqrt(stddev))`` after its input
    ``Normalization``, as the original weights expect, and a ``weights=None`` build given
    the same file sees inputs about 2x too large, with no error. Rather than copy such
    branches family by family, the application is built with ``weights="imagenet"`` and
    its one request for the weights file (through ``keras.src.utils.file_utils.get_file``,
    which every application calls) is answered with `path`, already resolved and checked.
    The same architecture serves a user's file, saved from a pretrained backbone.

    No ``name=`` is passed: EfficientNet names the weights file after the model and
    ConvNeXt refuses ImageNet weights unless its name holds the variant.

    Example:
        >>> spec = get_backbone("efficientnet_b0")
        >>> model = _build_pretrained(spec, 32, Path("b0.weights.h5"))  # doctest: +SKIP
    """
    from keras.src.utils import file_utils

    expected = spec.weights_file_for(size)
    keras_get_file = file_utils.get_file
    builder = threading.get_ident()
    asked = False

    def answer_with_path(*args: Any, **kwargs: Any) -> str:
        nonlocal asked
        if threading.get_ident() != builder:
            return keras_get_file(*args, **kwargs)
        fname = args[0] if args else kwargs.get("fname")
        if fname != expected:
            raise RuntimeError(
                f"Keras asked for the weights file {fname!r} where the registry row of "
                f"{spec.id!r} says {expected!r}: update its weights_template."
            )
        asked = True
        return str(path)

    with _WEIGHTS_REQUEST_LOCK, warnings.catch_warnings():
        # MobileNet warns that other sizes get the 224 px weights (the registry knows), and
        # a mismatching file warns per layer group; the error raised below says it once.
        warnings.simplefilter("ignore")
        file_utils.get_file = answer_with_path
        try:
            return spec.constructor()(
                include_top=False, weights="imagenet", input_shape=(size, size, 3)
            )
        except Exception as exc:
            if not asked:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":. ")
            raise WeightsUnavailable(
                f"Cannot load the weights file {str(path)!r} into backbone {spec.id!r} "
                f"({spec.keras_name}): {reason}. The file must hold weights saved from the "
                f"same backbone without its top ({spec.keras_name}, include_top=False); "
                "choose that backbone, another file, or weights 'none'."
            ) from exc
        finally:
            file_utils.get_file = keras_get_file


def _pretrained_architecture(spec: BackboneSpec, size: int) -> keras.Model:
    """The pretrained build of `spec` holding random values: nothing is read or downloaded.

    The pretrained graph only adds layers without variables, so a scratch build's weights
    fit it; they are passed through a temporary file because that is what Keras loads.
    """
    import tempfile

    scratch = spec.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))
    with tempfile.TemporaryDirectory(prefix="tl_core_backbone_") as folder:
        path = Path(folder) / "scratch.weights.h5"
        scratch.save_weights(path)
        return _build_pretrained(spec, size, path)
