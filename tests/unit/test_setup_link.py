"""A run's setup as a URL parameter and back: round trips, and links that are not trusted."""

from __future__ import annotations

import base64
import json
from typing import Any

from tl_core.config import RunConfig
from tl_core.setup_link import SETUP_PARAM, config_from_params, setup_params

DATASET = "0123456789ab"


def _token(doc: Any) -> str:
    """Encode `doc` as a link would, whatever it holds."""
    raw = json.dumps(doc).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_config_round_trips_through_its_link() -> None:
    config = RunConfig(
        dataset_id=DATASET,
        backbone="mobilenet_v3_small",
        weights="none",
        image_size=32,
        freeze="custom",
        trainable_blocks=("block_1", "top"),
        epochs=3,
        learning_rate=2e-3,
        augmentation=("flip", "zoom"),
        two_phase=False,
        seed=7,
    )

    shared = config_from_params(setup_params(config))

    assert shared.ignored == ()
    assert RunConfig(**shared.settings) == config


def test_the_link_carries_only_the_dataset_and_what_differs_from_the_defaults() -> None:
    shared = config_from_params(setup_params(RunConfig(dataset_id=DATASET, epochs=4)))

    assert shared.settings == {"dataset_id": DATASET, "epochs": 4}


def test_the_token_is_one_url_safe_parameter() -> None:
    params = setup_params(RunConfig(dataset_id=DATASET, augmentation=("flip", "rotation", "zoom")))

    assert list(params) == [SETUP_PARAM]
    assert set(params[SETUP_PARAM]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_a_weights_file_never_travels_in_a_link() -> None:
    params = setup_params(RunConfig(dataset_id=DATASET, weights="/home/ada/secret.weights.h5"))

    assert "weights" not in config_from_params(params).settings


def test_invalid_and_unknown_values_are_dropped_and_named() -> None:
    token = _token(
        {
            "dataset_id": DATASET,
            "epochs": 0,
            "optimizer": "rmsprop",
            "backbone": "no_such_net",
            "weights": "/etc/passwd",
            "owner": "Ada",
            "batch_size": 16,
        }
    )

    shared = config_from_params({SETUP_PARAM: token})

    assert shared.settings == {"dataset_id": DATASET, "batch_size": 16}
    names = [item.split(" ")[0] for item in shared.ignored]
    assert names == ["epochs", "optimizer", "backbone", "weights", "owner"]


def test_a_dataset_id_must_be_twelve_hex_digits_never_a_path() -> None:
    for bad in ("../../etc", "0123456789AB", "0123456789abc", "/tmp/x", 123456789012):
        shared = config_from_params({SETUP_PARAM: _token({"dataset_id": bad, "epochs": 2})})

        assert "dataset_id" not in shared.settings
        assert shared.settings == {"epochs": 2}
        assert shared.ignored == ("dataset_id (not a dataset id)",)


def test_a_custom_plan_without_blocks_is_dropped_with_the_blocks() -> None:
    shared = config_from_params({SETUP_PARAM: _token({"freeze": "custom", "epochs": 2})})

    assert shared.settings == {"epochs": 2}
    assert any(item.startswith("freeze") for item in shared.ignored)


def test_a_damaged_or_foreign_token_gives_no_settings_and_says_so() -> None:
    for token in ("%%%", "bm90IGpzb24", _token([1, 2, 3]), "A" * 5000):
        shared = config_from_params({SETUP_PARAM: token})

        assert shared.settings == {}
        assert len(shared.ignored) == 1
        assert "not a setup link" in shared.ignored[0]


def test_no_setup_parameter_gives_an_empty_setup() -> None:
    shared = config_from_params({"dataset": DATASET})

    assert shared.settings == {} and shared.ignored == ()
