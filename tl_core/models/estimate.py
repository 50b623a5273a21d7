"""A rough training cost, before training: time per epoch and memory, without TensorFlow.

Everything is scaled from one measurement (2 CPU cores, no GPU,
Keras 3 / TensorFlow 2.21): MobileNetV2 at 160 px trains at 78 images/s with the backbone
frozen and at 21 images/s fully fine-tuned. Another case is scaled

- by compute: the backbone's published GFLOPs per image (`GFLOPS`), times
  ``(image_size / size)²`` since convolutions cost in proportion to the pixels;
- by how much trains: the time per image is interpolated between frozen and full
  fine-tune by the share of parameters that train (a frozen part only runs forward);
- by the device: more CPU cores help sub-linearly, a GPU is taken as ~30× the reference CPU;
- plus a fixed cost per batch (Python, data pipeline), which makes tiny models and tiny
  batches slower than their GFLOPs say.

`estimate_run` prices a whole run both ways, with the frozen part's activations cached
(`tl_core.models.caching`: one extraction pass, then each epoch only the part above the
boundary) and without. It splits the per-image cost over the blocks by a FLOP-ish proxy,
each block's parameters times the positions of its output (a convolution's weights run
once per output position), and scales the split to the per-image time above, so the plain
figure is `estimate_cost`'s.

Memory counts float32 weights, a gradient and two Adam moments per trainable parameter,
and activations kept for the backward pass (a rule of thumb per image, ∝ √GFLOPs).

Expect the right order of magnitude, not more: within a factor of 2–3 of what the training
run measures. The UI says so next to every number.

Example:
    >>> from tl_core.models.backbones import get_backbone
    >>> from tl_core.jobs.devices import DeviceInfo
    >>> cost = estimate_cost(get_backbone("mobilenet_v2"), 160, 640, 2_300_000, 2_300_000,
    ...                      32, DeviceInfo("cpu", cpu_count=2))
    >>> round(cost.images_per_second)  # the measurement it is scaled from: 21 images/s
    21
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tl_core.errors import ConfigError
from tl_core.jobs.devices import DeviceInfo
from tl_core.models.backbones import BackboneSpec
from tl_core.models.blocks import BlockInfo
from tl_core.models.caching import HEAD_FEATURES, boundary_of

__all__ = [
    "GFLOPS",
    "CostEstimate",
    "PhasePlan",
    "RunEstimate",
    "describe_seconds",
    "estimate_cost",
    "estimate_run",
    "gflops",
    "relative_speed",
]

#: Published compute per image (GFLOPs, counted as multiply-adds as the papers do) and the
#: input side it was measured at, per backbone id.
GFLOPS: dict[str, tuple[float, int]] = {
    "mobilenet_v2": (0.30, 224),
    "mobilenet_v3_small": (0.06, 224),
    "mobilenet_v3_large": (0.22, 224),
    "resnet50": (4.1, 224),
    "resnet50_v2": (4.1, 224),
    "resnet101": (7.8, 224),
    "efficientnet_b0": (0.39, 224),
    "efficientnet_b3": (1.8, 300),
    "efficientnet_v2_b0": (0.72, 224),
    "efficientnet_v2_s": (8.8, 384),
    "vgg16": (15.5, 224),
    "vgg19": (19.6, 224),
    "xception": (8.4, 299),
    "inception_v3": (5.7, 299),
    "inception_resnet_v2": (13.2, 299),
    "densenet121": (2.9, 224),
    "densenet169": (3.4, 224),
    "convnext_tiny": (4.5, 224),
    "convnext_small": (8.7, 224),
}

# The measurement everything is scaled from: MobileNetV2 at 160 px on 640 images, 2 cores.
_REFERENCE_ID, _REFERENCE_SIZE, _REFERENCE_CORES = "mobilenet_v2", 160, 2
_FROZEN_IMAGES_PER_S = 78.0
_FULL_IMAGES_PER_S = 21.0
#: A GPU against the 2-core reference CPU, for the compute part of a step.
_GPU_SPEEDUP = 30.0
#: Cores beyond the reference help less than linearly (memory bandwidth, Python overhead).
_CORE_EXPONENT = 0.7
#: Fixed seconds per training step (one batch), on each kind of device.
_STEP_OVERHEAD_S = {"cpu": 0.02, "gpu": 0.005}
#: Training activations per image at 224 px, in MB per √GFLOP: ~16 MB for MobileNetV2,
#: ~60 MB for ResNet50, in line with the batch sizes that fit on common GPUs.
_ACTIVATION_MB_PER_SQRT_GFLOP = 30.0
#: A frozen part keeps no activations for a backward pass, only the layer in flight.
_FROZEN_ACTIVATION_SHARE = 0.15
#: Share of a GPU's memory a run can count on (the runtime and cuDNN take the rest).
_USABLE_GPU_MEMORY = 0.8
_BYTES_PER_FLOAT = 4
_MB = 1024 * 1024


@dataclass(frozen=True)
class CostEstimate:
    """What one epoch of training is expected to cost on a device.

    Attributes:
        seconds_per_epoch: wall time of one pass over the training images.
        images_per_second: training throughput, per-batch overhead included.
        memory_mb: weights, optimizer state and activations of one batch, in MiB.
        device: the device in words (`DeviceInfo.describe`).
        fits_in_memory: on a GPU, whether `memory_mb` fits the smallest GPU's memory;
            ``None`` on the CPU or when the GPU memory is unknown.
    """

    seconds_per_epoch: float
    images_per_second: float
    memory_mb: float
    device: str
    fits_in_memory: bool | None


def gflops(backbone_id: str, image_size: int) -> float:
    """Return the GFLOPs one image costs `backbone_id` at `image_size` px (forward pass).

    Example:
        >>> round(gflops("mobilenet_v2", 112), 3)
        0.075
    """
    try:
        value, measured_at = GFLOPS[backbone_id]
    except KeyError:
        raise ConfigError(
            f"Expected `backbone_id` to be one of {sorted(GFLOPS)}. Received: "
            f"backbone_id={backbone_id!r}. A new backbone needs its row in estimate.GFLOPS."
        ) from None
    return value * (image_size / measured_at) ** 2


def relative_speed(backbone_id: str) -> float:
    """Return how many times faster than MobileNetV2 `backbone_id` trains at the same size.

    Example:
        >>> relative_speed("mobilenet_v2")
        1.0
        >>> relative_speed("mobilenet_v3_small")
        5.0
    """
    size = _REFERENCE_SIZE
    return round(gflops(_REFERENCE_ID, size) / gflops(backbone_id, size), 3)


def estimate_cost(
    spec: BackboneSpec,
    image_size: int,
    num_train_images: int,
    trainable_params: int,
    total_params: int,
    batch_size: int,
    device: DeviceInfo,
) -> CostEstimate:
    """Estimate the time per epoch and the memory of training on `device`.

    Args:
        spec: the backbone.
        image_size: input side in pixels.
        num_train_images: images in one epoch (the training split).
        trainable_params: parameters that train, the head included.
        total_params: all parameters of the classifier, trainable or not.
        batch_size: images per training step.
        device: where training runs (from `tl_core.jobs.devices.probe_devices`).

    Returns:
        A `CostEstimate`. More trainable parameters, bigger images or smaller batches
        make it slower; a GPU makes it faster.

    Raises:
        ConfigError: an argument out of range, or a backbone without a `GFLOPS` row.
    """
    if total_params <= 0 or not 0 <= trainable_params <= total_params:
        raise ConfigError(
            "Expected 0 <= `trainable_params` <= `total_params` and `total_params` > 0. "
            f"Received: trainable_params={trainable_params}, total_params={total_params}"
        )
    if batch_size < 1 or num_train_images < 0 or image_size < 1:
        raise ConfigError(
            "Expected `batch_size` and `image_size` of at least 1 and `num_train_images` of "
            f"at least 0. Received: batch_size={batch_size}, image_size={image_size}, "
            f"num_train_images={num_train_images}"
        )
    share = trainable_params / total_params
    seconds_per_image = _seconds_per_image(spec, image_size, share, device)
    step_overhead = _step_overhead(device)
    seconds = _pass_seconds(num_train_images, batch_size, seconds_per_image, device)
    per_full_batch = batch_size * seconds_per_image + step_overhead
    memory = _memory_mb(spec.id, image_size, trainable_params, total_params, batch_size, share)
    return CostEstimate(
        seconds_per_epoch=seconds,
        images_per_second=batch_size / per_full_batch,
        memory_mb=memory,
        device=device.describe(),
        fits_in_memory=_fits(memory, device),
    )


@dataclass(frozen=True)
class PhasePlan:
    """One phase of a run as the estimate needs it.

    Attributes:
        epochs: epochs of the phase.
        trainable: the names of the blocks that train (the head always trains).
    """

    epochs: int
    trainable: tuple[str, ...]


@dataclass(frozen=True)
class RunEstimate:
    """What a whole run is expected to cost with cached activations and without.

    Attributes:
        epochs: epochs over all phases.
        plain_seconds: the run without caching: every epoch runs the whole network.
        cached_seconds: the run with caching, the extraction pass included; equal to
            `plain_seconds` when no phase can be cached.
        plain_seconds_per_epoch: `plain_seconds` per epoch.
        cached_seconds_per_epoch: training time per epoch with caching, the extraction
            pass left out (it is paid once, in `extraction_seconds`).
        extraction_seconds: the one forward pass over the frozen part, per cached phase.
        caches: whether some phase trains from cached activations.
    """

    epochs: int
    plain_seconds: float
    cached_seconds: float
    plain_seconds_per_epoch: float
    cached_seconds_per_epoch: float
    extraction_seconds: float
    caches: bool


def estimate_run(
    spec: BackboneSpec,
    image_size: int,
    blocks: Sequence[BlockInfo],
    head_params: int,
    phases: Sequence[PhasePlan],
    *,
    num_train_images: int,
    num_val_images: int,
    batch_size: int,
    device: DeviceInfo,
    fast: bool = True,
    views: int = 1,
) -> RunEstimate:
    """Estimate a whole run with the frozen part's activations cached and without.

    Without caching, every epoch runs the whole network forward over the training images
    and the trainable part backward (`estimate_cost`). With caching (`fast`, in each
    phase whose bottom block is frozen), one pass runs the frozen part up to the boundary
    over ``num_train_images * views + num_val_images`` images, then each epoch runs only
    the blocks above the boundary and the head. Validation, the same both ways apart from
    the extraction, is left out, as in `estimate_cost`.

    Args:
        spec: the backbone.
        image_size: input side in pixels.
        blocks: the backbone's blocks at `image_size`, input side first.
        head_params: parameters of the new head.
        phases: the run's phases, in order (one, or head then fine-tune).
        num_train_images: images in one epoch.
        num_val_images: validation images, extracted once with the training images.
        batch_size: images per step.
        device: where training runs.
        fast: whether caching is on (default True, `RunConfig.fast`).
        views: augmented views cached per training image (default 1: no augmentation).

    Example:
        >>> from tl_core.models.backbones import get_backbone
        >>> blocks = [BlockInfo("stem", (), 1000, (None, 8, 8, 16)),
        ...           BlockInfo("top", (), 4000, (None, 4, 4, 64))]
        >>> run = estimate_run(get_backbone("mobilenet_v2"), 160, blocks, 260,
        ...                    [PhasePlan(10, ())], num_train_images=320, num_val_images=80,
        ...                    batch_size=32, device=DeviceInfo("cpu", cpu_count=2))
        >>> run.caches, run.cached_seconds < run.plain_seconds
        (True, True)
    """
    if not blocks or head_params < 0 or views < 1 or not phases:
        raise ConfigError(
            "Expected at least one block and one phase, `head_params` >= 0 and `views` >= 1. "
            f"Received: {len(blocks)} blocks, {len(phases)} phases, head_params={head_params}, "
            f"views={views}"
        )
    names = [block.name for block in blocks]
    *weights, head_weight = _compute_weights(blocks, head_params)
    total_params = sum(block.params for block in blocks) + head_params
    plain = cached = extraction = 0.0
    caches = False
    for phase in phases:
        trains = set(phase.trainable)
        learning = sum(b.params for b in blocks if b.name in trains) + head_params
        per_image = _seconds_per_image(spec, image_size, learning / max(total_params, 1), device)
        # Cost units per image: 1 per forward unit, the measured backward ratio on top
        # where weights train; the split then prices parts of the plain per-image time.
        ratio = _FROZEN_IMAGES_PER_S / _FULL_IMAGES_PER_S
        units = [ratio * w if n in trains else w for n, w in zip(names, weights, strict=True)]
        head_units = ratio * head_weight
        plain_units = sum(units) + head_units
        plain_epoch = _pass_seconds(num_train_images, batch_size, per_image, device)
        plain += phase.epochs * plain_epoch
        boundary = boundary_of(names, trains) if fast else None
        if boundary is None:
            cached += phase.epochs * plain_epoch
            continue
        caches = True
        cut = len(names) if boundary == HEAD_FEATURES else names.index(boundary) + 1
        upper = (sum(units[cut:]) + head_units) / plain_units
        lower = sum(weights[:cut]) / plain_units
        extracted = num_train_images * views + num_val_images
        extraction += _pass_seconds(extracted, batch_size, per_image * lower, device)
        cached += phase.epochs * _pass_seconds(
            num_train_images, batch_size, per_image * upper, device
        )
    epochs = max(sum(phase.epochs for phase in phases), 1)
    return RunEstimate(
        epochs=epochs,
        plain_seconds=plain,
        cached_seconds=cached + extraction,
        plain_seconds_per_epoch=plain / epochs,
        cached_seconds_per_epoch=cached / epochs,
        extraction_seconds=extraction,
        caches=caches,
    )


def describe_seconds(seconds: float) -> str:
    """Say a duration the way a person would: ``"about 40 s"``, ``"about 3 min"``.

    Example:
        >>> describe_seconds(42), describe_seconds(200), describe_seconds(9000)
        ('about 40 s', 'about 3 min', 'about 2.5 h')
    """
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"about {_round_nicely(seconds)} s"
    if seconds < 3600:
        return f"about {_round_nicely(seconds / 60)} min"
    return f"about {seconds / 3600:.2g} h"


def _round_nicely(value: float) -> int:
    """Whole units below 10, multiples of 5 above: no estimate should look precise."""
    return max(1, round(value)) if value < 10 else 5 * round(value / 5)


def _seconds_per_image(
    spec: BackboneSpec, image_size: int, share: float, device: DeviceInfo
) -> float:
    """Compute seconds per training image when `share` of the parameters train."""
    compute = gflops(spec.id, image_size) / gflops(_REFERENCE_ID, _REFERENCE_SIZE)
    reference_seconds = (1 - share) / _FROZEN_IMAGES_PER_S + share / _FULL_IMAGES_PER_S
    return reference_seconds * compute / _device_speedup(device)


def _step_overhead(device: DeviceInfo) -> float:
    return _STEP_OVERHEAD_S["gpu" if device.count else "cpu"]


def _pass_seconds(
    images: int, batch_size: int, seconds_per_image: float, device: DeviceInfo
) -> float:
    """One pass over `images` in batches: compute plus the fixed cost of each step."""
    return images * seconds_per_image + math.ceil(images / batch_size) * _step_overhead(device)


def _compute_weights(blocks: Sequence[BlockInfo], head_params: int) -> list[float]:
    """Each block's share of a forward pass, then the head's: parameters × output
    positions, since a convolution's weights run once per position. Blocks without
    parameters or shapes fall back to parameters, then to equal shares."""
    proxy = [float(b.params * _positions(b.output_shape)) for b in blocks] + [float(head_params)]
    if sum(proxy) <= 0:
        proxy = [float(b.params) for b in blocks] + [float(head_params)]
    if sum(proxy) <= 0:
        proxy = [1.0] * (len(blocks) + 1)
    total = sum(proxy)
    return [value / total for value in proxy]


def _positions(shape: Sequence[int | None]) -> int:
    """Spatial positions of a block output ``(batch, height, width, channels)``; 1 for a
    flat output."""
    return math.prod(dim or 1 for dim in shape[1:-1])


def _device_speedup(device: DeviceInfo) -> float:
    if device.count:
        return _GPU_SPEEDUP * device.count
    return (max(device.cpu_count, 1) / _REFERENCE_CORES) ** _CORE_EXPONENT


def _memory_mb(
    backbone_id: str,
    image_size: int,
    trainable_params: int,
    total_params: int,
    batch_size: int,
    share: float,
) -> float:
    weights = total_params * _BYTES_PER_FLOAT
    # Adam keeps a gradient and two moments for each trainable parameter.
    optimizer = 3 * trainable_params * _BYTES_PER_FLOAT
    per_image = (
        _ACTIVATION_MB_PER_SQRT_GFLOP
        * math.sqrt(gflops(backbone_id, 224))
        * (image_size / 224) ** 2
    )
    kept = _FROZEN_ACTIVATION_SHARE + (1 - _FROZEN_ACTIVATION_SHARE) * share
    return (weights + optimizer) / _MB + batch_size * per_image * kept


def _fits(memory_mb: float, device: DeviceInfo) -> bool | None:
    known = [m for m in device.memory_mb if m] if device.count else []
    if not known:
        return None
    return memory_mb <= _USABLE_GPU_MEMORY * min(known)
