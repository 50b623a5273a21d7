"""The cost estimate: it reproduces its measurement and moves the right way with each input."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tl_core.errors import ConfigError
from tl_core.jobs.devices import DeviceInfo
from tl_core.models.backbones import BACKBONES, get_backbone
from tl_core.models.blocks import BlockInfo
from tl_core.models.caching import HEAD_FEATURES, boundary_of
from tl_core.models.estimate import (
    GFLOPS,
    CostEstimate,
    PhasePlan,
    RunEstimate,
    describe_seconds,
    estimate_cost,
    estimate_run,
    relative_speed,
)

CPU = DeviceInfo("cpu", cpu_count=2)
GPU = DeviceInfo("gpu", ("NVIDIA H100",), (81_559,), 16)
MOBILENET_V2 = get_backbone("mobilenet_v2")
PARAMS = MOBILENET_V2.params


def _cost(
    trainable: int = PARAMS,
    size: int = 160,
    device: DeviceInfo = CPU,
    batch: int = 32,
    backbone: str = "mobilenet_v2",
    images: int = 640,
) -> CostEstimate:
    spec = get_backbone(backbone)
    return estimate_cost(
        spec, size, images, min(trainable, spec.params), spec.params, batch, device
    )


def test_every_registered_backbone_has_a_compute_row() -> None:
    assert {spec.id for spec in BACKBONES} <= set(GFLOPS)


@pytest.mark.parametrize(("trainable", "measured"), [(0, 78.0), (PARAMS, 21.0)])
def test_the_reference_case_gives_back_its_measurement(trainable: int, measured: float) -> None:
    cost = _cost(trainable=trainable)

    # The per-batch overhead is on top of the measured compute; it may cost some 10%.
    assert measured * 0.88 <= cost.images_per_second <= measured
    assert cost.seconds_per_epoch == pytest.approx(640 / cost.images_per_second, rel=0.01)


def test_more_trainable_parameters_are_slower_and_need_more_memory() -> None:
    costs = [_cost(trainable=PARAMS * share // 4) for share in range(5)]

    seconds = [cost.seconds_per_epoch for cost in costs]
    memory = [cost.memory_mb for cost in costs]
    assert seconds == sorted(seconds) and len(set(seconds)) == 5
    assert memory == sorted(memory) and len(set(memory)) == 5


def test_bigger_images_are_slower_and_need_more_memory() -> None:
    costs = [_cost(size=size) for size in (32, 64, 128, 224, 512)]

    seconds = [cost.seconds_per_epoch for cost in costs]
    assert seconds == sorted(seconds) and len(set(seconds)) == 5
    assert costs[-1].memory_mb > costs[0].memory_mb
    # Four times the pixels, about four times the compute (plus the same overheads).
    assert 3 < _cost(size=320).seconds_per_epoch / _cost(size=160).seconds_per_epoch <= 4


def test_a_gpu_is_much_faster_than_the_cpu() -> None:
    assert _cost(device=GPU).seconds_per_epoch * 10 < _cost(device=CPU).seconds_per_epoch


def test_more_cores_are_faster_but_not_proportionally() -> None:
    two, eight = _cost(device=CPU), _cost(device=DeviceInfo("cpu", cpu_count=8))

    assert two.seconds_per_epoch / 4 < eight.seconds_per_epoch < two.seconds_per_epoch


def test_bigger_backbones_are_slower() -> None:
    ids = ["mobilenet_v3_small", "mobilenet_v2", "resnet50", "vgg16"]
    seconds = [_cost(backbone=backbone).seconds_per_epoch for backbone in ids]

    assert seconds == sorted(seconds)
    assert [relative_speed(backbone) for backbone in ids] == sorted(
        (relative_speed(backbone) for backbone in ids), reverse=True
    )


def test_bigger_batches_need_more_memory_and_pay_less_overhead() -> None:
    small, big = _cost(batch=8), _cost(batch=64)

    assert big.memory_mb > small.memory_mb
    assert big.seconds_per_epoch < small.seconds_per_epoch


def test_the_memory_is_checked_against_the_gpu_only() -> None:
    tiny_gpu = DeviceInfo("gpu", ("Tiny",), (512,), 4)
    unknown_gpu = DeviceInfo("gpu", ("Mystery",), (None,), 4)

    assert _cost(device=GPU, backbone="vgg16", size=224).fits_in_memory is True
    assert _cost(device=tiny_gpu, backbone="vgg16", size=224).fits_in_memory is False
    assert _cost(device=unknown_gpu).fits_in_memory is None
    assert _cost(device=CPU).fits_in_memory is None
    assert _cost(device=GPU).device == "NVIDIA H100 (80 GB)"


def test_no_training_images_cost_nothing() -> None:
    cost = _cost(images=0)

    assert cost.seconds_per_epoch == 0
    assert cost.images_per_second > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trainable_params": 10, "total_params": 5}, "trainable_params"),
        ({"total_params": 0, "trainable_params": 0}, "total_params"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_train_images": -1}, "num_train_images"),
    ],
)
def test_impossible_arguments_are_refused(changes: dict[str, int], message: str) -> None:
    arguments = {
        "spec": MOBILENET_V2,
        "image_size": 160,
        "num_train_images": 640,
        "trainable_params": 10,
        "total_params": 100,
        "batch_size": 32,
        "device": CPU,
    } | changes

    with pytest.raises(ConfigError, match=message):
        estimate_cost(**arguments)  # type: ignore[arg-type]


def test_an_unknown_backbone_names_the_table_to_extend() -> None:
    spec = replace(MOBILENET_V2, id="resnet9000")

    with pytest.raises(ConfigError, match=r"needs its row in estimate\.GFLOPS"):
        estimate_cost(spec, 160, 640, 1, 1, 32, CPU)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "under 1 s"),
        (3.4, "about 3 s"),
        (42, "about 40 s"),
        (59.9, "about 60 s"),
        (200, "about 3 min"),
        (1490, "about 25 min"),
        (9000, "about 2.5 h"),
    ],
)
def test_durations_are_said_roughly(seconds: float, words: str) -> None:
    assert describe_seconds(seconds) == words


# The whole run with cached activations and without (`estimate_run`, `boundary_of`).

#: A small backbone as the Layers page lists it: blocks input side first, 64 px.
BLOCKS = [
    BlockInfo("stem", ("conv",), 1_000, (None, 32, 32, 32)),
    BlockInfo("block_1", ("conv_1",), 10_000, (None, 16, 16, 64)),
    BlockInfo("block_2", ("conv_2",), 40_000, (None, 8, 8, 128)),
    BlockInfo("top", ("conv_top",), 160_000, (None, 4, 4, 256)),
]
NAMES = [block.name for block in BLOCKS]
HEAD = (256 + 1) * 4


def _run(*trainable: str, fast: bool = True, views: int = 1, epochs: int = 10) -> RunEstimate:
    return estimate_run(
        MOBILENET_V2,
        64,
        BLOCKS,
        HEAD,
        [PhasePlan(epochs, trainable)],
        num_train_images=320,
        num_val_images=80,
        batch_size=32,
        device=CPU,
        fast=fast,
        views=views,
    )


@pytest.mark.parametrize(
    ("trainable", "boundary"),
    [
        ((), HEAD_FEATURES),
        (("top",), "block_2"),
        (("block_1", "block_2", "top"), "stem"),
        (("block_2",), "block_1"),
        (tuple(NAMES), None),
        (("stem", "top"), None),
    ],
)
def test_the_boundary_is_the_last_frozen_block_below_the_first_trainable_one(
    trainable: tuple[str, ...], boundary: str | None
) -> None:
    assert boundary_of(NAMES, trainable) == boundary


def test_the_engine_cuts_where_the_estimate_prices() -> None:
    engine_boundary = pytest.importorskip("tl_core.engine.boundary")

    assert engine_boundary.boundary_of is boundary_of
    assert engine_boundary.HEAD_FEATURES == HEAD_FEATURES


@pytest.mark.parametrize("trainable", [(), ("top",), ("block_1", "block_2", "top")])
def test_caching_a_frozen_bottom_makes_the_run_faster(trainable: tuple[str, ...]) -> None:
    run = _run(*trainable)

    assert run.caches
    assert run.cached_seconds < run.plain_seconds
    assert run.cached_seconds_per_epoch < run.plain_seconds_per_epoch
    assert 0 < run.extraction_seconds < run.cached_seconds


def test_the_plain_run_is_the_per_epoch_estimate_times_the_epochs() -> None:
    run = _run("top")
    trainable = BLOCKS[-1].params + HEAD
    total = sum(block.params for block in BLOCKS) + HEAD
    per_epoch = estimate_cost(MOBILENET_V2, 64, 320, trainable, total, 32, CPU)

    assert run.plain_seconds == pytest.approx(10 * per_epoch.seconds_per_epoch)
    assert run.plain_seconds_per_epoch == pytest.approx(per_epoch.seconds_per_epoch)


def test_the_more_blocks_stay_frozen_the_more_caching_saves() -> None:
    savings = [
        _run(*NAMES[frozen:]).plain_seconds_per_epoch
        / _run(*NAMES[frozen:]).cached_seconds_per_epoch
        for frozen in (1, 2, 3, 4)
    ]

    assert savings == sorted(savings) and len(set(savings)) == 4


@pytest.mark.parametrize(("trainable", "fast"), [(tuple(NAMES), True), ((), False)])
def test_without_a_cache_both_figures_are_the_plain_run(
    trainable: tuple[str, ...], fast: bool
) -> None:
    run = _run(*trainable, fast=fast)

    assert not run.caches
    assert run.extraction_seconds == 0
    assert run.cached_seconds == run.plain_seconds
    assert run.cached_seconds_per_epoch == run.plain_seconds_per_epoch


def test_augmented_views_make_the_extraction_longer_but_not_the_epochs() -> None:
    one, four = _run(views=1), _run(views=4)

    assert four.extraction_seconds > 3 * one.extraction_seconds
    assert four.cached_seconds_per_epoch == one.cached_seconds_per_epoch
    assert four.plain_seconds == one.plain_seconds


def test_two_phases_pay_one_extraction_each_and_add_their_epochs() -> None:
    head, fine_tune = PhasePlan(10, ()), PhasePlan(5, ("top",))
    run = estimate_run(
        MOBILENET_V2, 64, BLOCKS, HEAD, [head, fine_tune],
        num_train_images=320, num_val_images=80, batch_size=32, device=CPU,
    )  # fmt: skip

    assert run.epochs == 15
    assert run.caches and run.cached_seconds < run.plain_seconds
    assert run.plain_seconds == pytest.approx(
        _run(epochs=10).plain_seconds + _run("top", epochs=5).plain_seconds
    )
    assert run.extraction_seconds == pytest.approx(
        _run(epochs=10).extraction_seconds + _run("top", epochs=5).extraction_seconds
    )


def test_a_run_without_blocks_is_refused_with_the_argument_named() -> None:
    with pytest.raises(ConfigError, match="at least one block"):
        estimate_run(
            MOBILENET_V2, 64, [], HEAD, [PhasePlan(1, ())],
            num_train_images=1, num_val_images=0, batch_size=1, device=CPU,
        )  # fmt: skip
