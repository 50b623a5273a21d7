"""RunConfig: Keras-style validation messages, a JSON round trip, unknown keys refused,
and the cross-field rules (`validate_for`) that the CLI, the queue and the pages share."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from tl_core.config import FREEZE_PRESETS, RunConfig, check_runnable, unavailable_options
from tl_core.errors import ConfigError
from tl_core.models.catalog import blocks_cache_path

DATASET = "0123456789ab"


def test_the_defaults_make_a_valid_config_that_trains_from_imagenet_weights() -> None:
    config = RunConfig(dataset_id=DATASET)

    assert config.weights == "imagenet"
    assert not config.from_scratch
    assert config.freeze == "feature-extraction"
    assert config.total_epochs == config.epochs


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("dataset_id", "xyz", "12 hex digits"),
        ("dataset_id", "0123456789AB", "12 hex digits"),
        ("backbone", "", "a backbone id"),
        ("weights", "", "'imagenet', 'none' or the path"),
        ("image_size", 8, "None or an integer between 32 and 512"),
        ("image_size", 513, "None or an integer between 32 and 512"),
        ("image_size", 64.0, "None or an integer between 32 and 512"),
        ("freeze", "partial", "one of ['feature-extraction', 'fine-tune', 'full', 'custom']"),
        ("unfreeze_last", -1, "an integer between 0 and 1000"),
        ("train_bn", 1, "True or False"),
        ("two_phase", "yes", "True or False"),
        ("epochs", 0, "an integer between 1 and 1000"),
        ("epochs", 1001, "an integer between 1 and 1000"),
        ("epochs", True, "an integer between 1 and 1000"),
        ("batch_size", 0, "an integer between 1 and 1024"),
        ("optimizer", "rmsprop", "one of ['adam', 'sgd']"),
        ("learning_rate", 0.0, "a number in (0, 1]"),
        ("learning_rate", math.nan, "a number in (0, 1]"),
        ("learning_rate", 2.0, "a number in (0, 1]"),
        ("schedule", "step", "one of ['constant', 'cosine', 'plateau']"),
        ("fine_tune_epochs", 0, "an integer between 1 and 1000"),
        ("fine_tune_blocks", 0, "an integer between 1 and 1000"),
        ("fine_tune_lr_factor", 0, "a number in (0, 1]"),
        ("patience", 0, "an integer between 1 and 100"),
        ("augmentation", ("flip", "blur"), "distinct names from"),
        ("augmentation", ("flip", "flip"), "distinct names from"),
        ("label_smoothing", 1.0, "a number in [0, 1)"),
        ("dropout", -0.1, "a number in [0, 1)"),
        ("val_fraction", 0.9, "a number between 0.05 and 0.5"),
        ("seed", -1, "an integer between 0 and 2**31 - 1"),
    ],
)
def test_an_invalid_value_is_refused_with_a_keras_style_message(
    field: str, value: object, expected: str
) -> None:
    settings = {"dataset_id": DATASET, field: value}

    with pytest.raises(ConfigError) as caught:
        RunConfig(**settings)

    message = str(caught.value)
    assert message.startswith(f"Expected `{field}` to be {expected}")
    assert message.endswith(f"Received: {field}={value!r}")


def test_the_epochs_message_reads_exactly_like_keras() -> None:
    with pytest.raises(ConfigError, match=re.escape("Received: epochs=0")) as caught:
        RunConfig(dataset_id=DATASET, epochs=0)

    assert str(caught.value) == (
        "Expected `epochs` to be an integer between 1 and 1000. Received: epochs=0"
    )


def test_custom_freeze_needs_at_least_one_block_name() -> None:
    with pytest.raises(ConfigError, match="at least one block name when freeze='custom'"):
        RunConfig(dataset_id=DATASET, freeze="custom")


def test_a_config_round_trips_through_json_dicts_and_strings() -> None:
    config = RunConfig(
        dataset_id=DATASET,
        backbone="resnet50",
        weights="none",
        image_size=64,
        freeze="custom",
        trainable_blocks=("conv5_block3", "top"),
        augmentation=("flip", "zoom"),
        two_phase=True,
        learning_rate=3e-4,
        seed=7,
    )

    doc = config.to_json()

    assert doc["trainable_blocks"] == ["conv5_block3", "top"]
    assert RunConfig.from_json(doc) == config
    assert RunConfig.from_json(json.loads(json.dumps(doc))) == config
    assert RunConfig.from_json(config.dumps()) == config


def test_lists_from_json_or_the_ui_are_stored_as_tuples() -> None:
    config = RunConfig(dataset_id=DATASET, augmentation=["flip"], trainable_blocks=["top"])

    assert config.augmentation == ("flip",)
    assert config.trainable_blocks == ("top",)
    same = RunConfig(dataset_id=DATASET, augmentation=("flip",), trainable_blocks=("top",))
    assert len({config, same}) == 1  # equal and hashable, so usable as a cache key


def test_unknown_keys_are_refused_and_named() -> None:
    doc = RunConfig(dataset_id=DATASET).to_json() | {"epochz": 3, "colour": "red"}

    expected = "Unknown run config keys ['colour', 'epochz']"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        RunConfig.from_json(doc)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "Expected the run config to be a JSON object"),
        ({"epochs": 3}, "no `dataset_id`"),
        ({"dataset_id": DATASET, "epochs": 0}, "Received: epochs=0"),
    ],
)
def test_unreadable_json_configs_raise_config_error(doc: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        RunConfig.from_json(doc)  # type: ignore[arg-type]


def test_with_changes_returns_a_validated_copy_and_the_config_is_frozen() -> None:
    config = RunConfig(dataset_id=DATASET)

    changed = config.with_changes(epochs=3, two_phase=True, fine_tune_epochs=2)

    assert (changed.epochs, changed.total_epochs, config.epochs) == (3, 5, 10)
    with pytest.raises(ConfigError, match="Received: batch_size=0"):
        config.with_changes(batch_size=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_every_freeze_preset_is_accepted() -> None:
    for preset in FREEZE_PRESETS:
        blocks = ("top",) if preset == "custom" else ()
        config = RunConfig(dataset_id=DATASET, freeze=preset, trainable_blocks=blocks)
        assert config.freeze == preset


def test_weights_none_means_from_scratch() -> None:
    assert RunConfig(dataset_id=DATASET, weights="none").from_scratch


MOBILENET_V2_BLOCKS = ["stem", "expanded_conv", *(f"block_{i}" for i in range(1, 17)), "top"]


@pytest.mark.parametrize(
    ("settings", "gpu", "message"),
    [
        (
            {"weights": "none", "two_phase": True},
            None,
            "Expected `two_phase` to be False when training from scratch (weights='none'). "
            "Received: two_phase=True. Two phases need pretrained weights",
        ),
        (
            {"mixed_precision": True},
            False,
            "Expected `mixed_precision` to be False on a machine without a GPU. "
            "Received: mixed_precision=True. Mixed precision needs a GPU",
        ),
    ],
)
def test_every_cross_field_rule_is_refused_with_its_message(
    settings: dict[str, object], gpu: bool | None, message: str
) -> None:
    config = RunConfig(dataset_id=DATASET, **settings)

    with pytest.raises(ConfigError) as caught:
        config.validate_for(gpu=gpu)

    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "settings",
    [
        {"fast": True},
        {"freeze": "fine-tune", "unfreeze_last": 0, "fast": True},
        {"freeze": "fine-tune", "unfreeze_last": 2, "fast": True},
        {"freeze": "full", "fast": True},
        {"freeze": "full", "two_phase": True, "fast": True},
        {"weights": "none", "freeze": "full"},
        {"mixed_precision": True},
    ],
)
def test_settings_that_fit_together_pass(settings: dict[str, object]) -> None:
    RunConfig(dataset_id=DATASET, **settings).validate_for(blocks=MOBILENET_V2_BLOCKS, gpu=True)


def test_mixed_precision_is_not_judged_when_the_device_is_unknown() -> None:
    RunConfig(dataset_id=DATASET, mixed_precision=True).validate_for(gpu=None)


def test_an_out_of_range_unfreeze_last_names_the_backbone_and_its_block_count() -> None:
    config = RunConfig(dataset_id=DATASET, freeze="fine-tune", unfreeze_last=999)

    with pytest.raises(ConfigError) as caught:
        config.validate_for(blocks=MOBILENET_V2_BLOCKS)

    assert str(caught.value) == (
        "Expected `unfreeze_last` to be between 0 and 19 for mobilenet_v2 (its block count). "
        "Received: unfreeze_last=999"
    )


def test_unfreezing_every_block_by_count_is_allowed() -> None:
    config = RunConfig(dataset_id=DATASET, freeze="fine-tune", unfreeze_last=19)

    config.validate_for(blocks=MOBILENET_V2_BLOCKS)


def test_two_phases_check_fine_tune_blocks_against_the_block_count() -> None:
    config = RunConfig(dataset_id=DATASET, two_phase=True, fine_tune_blocks=20)

    with pytest.raises(ConfigError, match=re.escape("Received: fine_tune_blocks=20")):
        config.validate_for(blocks=MOBILENET_V2_BLOCKS)


def test_unknown_trainable_blocks_are_named_with_the_valid_ones() -> None:
    config = RunConfig(dataset_id=DATASET, freeze="custom", trainable_blocks=("top", "block_99"))

    with pytest.raises(ConfigError) as caught:
        config.validate_for(blocks=MOBILENET_V2_BLOCKS)

    message = str(caught.value)
    assert message.startswith("Expected `trainable_blocks` to name blocks of mobilenet_v2 (stem,")
    assert "Received unknown blocks: ['block_99']" in message


def test_unavailable_options_say_what_the_page_must_switch_off() -> None:
    scratch = unavailable_options({"weights": "none", "freeze": "full"}, gpu=False)
    pretrained = unavailable_options({"weights": "imagenet", "freeze": "feature-extraction"})

    assert sorted(scratch) == ["fast", "mixed_precision", "two_phase"]
    assert pretrained == {}


def _cache_blocks(names: list[str], image_size: int = 64) -> None:
    """Write a block list where `tl_core.models.catalog` keeps it, as `blocks --json` would."""
    path = blocks_cache_path("mobilenet_v2", image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"name": n, "layers": [n], "params": 1, "output_shape": [None, 2, 2, 8]} for n in names]
    path.write_text(json.dumps(rows))


def test_check_runnable_uses_the_cached_block_list(tl_home: Path) -> None:
    _cache_blocks(MOBILENET_V2_BLOCKS)
    config = RunConfig(dataset_id=DATASET, image_size=64, freeze="fine-tune", unfreeze_last=999)

    with pytest.raises(ConfigError, match="between 0 and 19 for mobilenet_v2"):
        check_runnable(config)


def test_check_runnable_leaves_the_blocks_to_the_worker_when_none_are_cached(
    tl_home: Path,
) -> None:
    config = RunConfig(dataset_id=DATASET, image_size=64, freeze="fine-tune", unfreeze_last=999)

    check_runnable(config)


def test_submit_refuses_a_config_that_does_not_fit_and_queues_nothing(tl_home: Path) -> None:
    from tl_core.jobs.queue import list_jobs, submit

    _cache_blocks(MOBILENET_V2_BLOCKS)
    config = RunConfig(dataset_id=DATASET, image_size=64, freeze="fine-tune", unfreeze_last=999)

    with pytest.raises(ConfigError, match=re.escape("Received: unfreeze_last=999")):
        submit(config)

    assert list_jobs() == []
    assert not (tl_home / "runs").exists() or not any((tl_home / "runs").iterdir())
