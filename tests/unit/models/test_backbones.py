"""The backbone registry: a consistent table, Keras-style errors, weights without network."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from functools import cache

import keras
import numpy as np
import pytest

from tl_core.errors import ConfigError, WeightsUnavailable
from tl_core.models.backbones import (
    BackboneSpec,
    backbones_table,
    build_backbone,
    get_backbone,
    keras_models_dir,
    list_backbones,
    weights_cached,
)

CONTRACT_IDS = {
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet50",
    "resnet50_v2",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "vgg16",
    "xception",
    "inception_v3",
    "densenet121",
    "convnext_tiny",
}
FAST_IDS = {"mobilenet_v2", "mobilenet_v3_small"}


def backbone_params() -> list:
    """Every registered id; all but the small MobileNets are marked slow."""
    return [
        pytest.param(spec.id, marks=() if spec.id in FAST_IDS else pytest.mark.slow)
        for spec in list_backbones()
    ]


@cache
def small_backbone() -> keras.Model:
    """MobileNetV3Small from scratch at 32 px, built once for the weights-file tests."""
    return build_backbone(get_backbone("mobilenet_v3_small"), 32)


@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    """Point KERAS_HOME at an empty folder and forbid downloads."""

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(keras.utils, "get_file", no_download)
    return tmp_path / "keras_home"


def test_registry_ids_are_unique_snake_case_and_cover_the_contract():
    ids = [spec.id for spec in list_backbones()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids), ids
    assert set(ids) >= CONTRACT_IDS


@pytest.mark.parametrize("spec", list_backbones(), ids=lambda spec: spec.id)
def test_every_spec_is_consistent(spec: BackboneSpec):
    assert 0 < spec.min_input_size <= spec.default_input_size
    assert spec.preprocess in {"tf", "torch", "caffe", "none"}
    assert spec.params > 0
    assert re.compile(spec.block_rule)
    assert spec.description and "\n" not in spec.description
    assert spec.weights_file.endswith(".h5") and "{" not in spec.weights_file
    assert spec.weights_origin.startswith("https://") and spec.weights_origin.endswith("/")
    assert spec.keras_name in dir(keras.applications)


def test_preprocess_modes_follow_keras():
    expected = {
        "tf": ("mobilenet_v2", "xception", "inception_v3", "resnet50_v2"),
        "caffe": ("resnet50", "vgg16"),
        "torch": ("densenet121",),
        "none": ("mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_b0", "convnext_tiny"),
    }
    for mode, ids in expected.items():
        assert {get_backbone(i).preprocess for i in ids} == {mode}


def test_minimum_input_sizes_follow_keras():
    assert get_backbone("xception").min_input_size == 71
    assert get_backbone("inception_v3").min_input_size == 75
    assert get_backbone("vgg16").min_input_size == get_backbone("resnet50").min_input_size == 32


def test_weights_file_names_match_what_keras_downloads():
    assert get_backbone("resnet50").weights_file == (
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert get_backbone("efficientnet_v2_b0").weights_file == "efficientnetv2-b0_notop.h5"
    assert get_backbone("mobilenet_v3_small").weights_file == (
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    )


def test_mobilenet_v2_weights_depend_on_the_input_size():
    spec = get_backbone("mobilenet_v2")
    assert spec.weights_file == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    )
    assert spec.weights_file_for(160).endswith("_1.0_160_no_top.h5")
    assert spec.weights_file_for(100) == spec.weights_file


def test_unknown_backbone_raises_a_keras_style_config_error():
    with pytest.raises(ConfigError) as info:
        get_backbone("resnet5O")
    message = str(info.value)
    assert message.startswith("Expected `backbone` to be one of [")
    assert "'mobilenet_v2'" in message
    assert message.endswith("Received: backbone='resnet5O'")


def test_importing_the_registry_does_not_import_tensorflow():
    code = (
        "import sys, tl_core.models.backbones, tl_core.models.blocks; "
        "heavy = {'tensorflow', 'keras'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backbones_table_follows_the_cli_contract(empty_keras_home):
    rows = backbones_table()
    assert [row["id"] for row in rows] == [spec.id for spec in list_backbones()]
    for row in rows:
        assert {"id", "input_size", "params", "preprocess", "weights_cached"} <= set(row)
        assert row["weights_cached"] is False
    json.dumps(rows)


def test_weights_cached_reads_keras_home_at_call_time(empty_keras_home):
    spec = get_backbone("vgg16")
    assert keras_models_dir() == empty_keras_home / "models"
    assert not weights_cached(spec)
    (empty_keras_home / "models").mkdir(parents=True)
    (empty_keras_home / "models" / spec.weights_file).write_bytes(b"")
    assert weights_cached(spec)


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_params_literal_matches_the_built_backbone(backbone_id: str):
    spec = get_backbone(backbone_id)
    model = build_backbone(spec, spec.min_input_size)
    assert model.count_params() == spec.params
    size = spec.min_input_size
    assert model.input_shape == (None, size, size, 3)
    assert len(model.output_shape) == 4


def test_input_size_below_the_minimum_raises_a_keras_style_config_error():
    with pytest.raises(ConfigError) as info:
        build_backbone(get_backbone("xception"), 32)
    assert str(info.value) == (
        "Expected `input_size` to be an integer of at least 71 for backbone 'xception'. "
        "Received: input_size=32"
    )


def test_offline_imagenet_names_the_missing_file_and_the_way_out(empty_keras_home):
    spec = get_backbone("mobilenet_v2")
    with pytest.raises(WeightsUnavailable) as info:
        build_backbone(spec, 96, "imagenet", download=False)
    message = str(info.value)
    assert spec.weights_file_for(96) in message
    assert str(empty_keras_home / "models") in message
    assert "'none'" in message


def test_failed_download_raises_weights_unavailable_and_keeps_stdout_clean(
    empty_keras_home, monkeypatch, capsys
):
    def offline_get_file(fname, origin, **kwargs):
        print(f"Downloading data from {origin}")
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] offline")

    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    spec = get_backbone("mobilenet_v3_small")
    with pytest.raises(WeightsUnavailable) as info:
        build_backbone(spec, 32, "imagenet")
    assert spec.weights_file in str(info.value)
    assert "URL fetch failure" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Downloading data from" in captured.err


def test_downloads_ask_keras_to_check_the_hash_it_publishes(empty_keras_home, monkeypatch):
    asked = {}

    def offline_get_file(fname, origin, **kwargs):
        asked.update(kwargs)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] offline")

    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    spec = get_backbone("efficientnet_b0")
    with pytest.raises(WeightsUnavailable):
        build_backbone(spec, 32, "imagenet")
    assert asked["file_hash"] == spec.weights_hash == "50bc09e76180e00e4465e1a485ddc09d"


def test_a_cached_file_with_the_wrong_hash_is_refused_without_downloading(empty_keras_home, capsys):
    spec = get_backbone("mobilenet_v3_small")
    models = empty_keras_home / "models"
    models.mkdir(parents=True)
    cached = models / spec.weights_file
    cached.write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailable) as info:
        build_backbone(spec, 32, "imagenet")
    message = str(info.value)
    assert str(cached) in message
    assert f"md5 hash is {hashlib.md5(b'half a download').hexdigest()}" in message
    assert f"expected {spec.weights_hash}" in message
    assert "Delete it" in message and spec.weights_origin in message and "'none'" in message
    assert cached.read_bytes() == b"half a download"
    assert capsys.readouterr().out == ""


def file_origin_spec(spec: BackboneSpec, folder, content: bytes) -> BackboneSpec:
    """`spec` downloading from a local folder holding `content` as its weights file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spec.weights_file).write_bytes(content)
    return dataclasses.replace(spec, weights_origin=folder.as_uri() + "/")


def test_a_download_failing_its_hash_is_refused_and_stdout_stays_clean(
    tmp_path, monkeypatch, capsys
):
    # Keras's real `get_file`, reading a file:// origin: it prints "Downloading data from".
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    spec = get_backbone("mobilenet_v3_small")
    served = file_origin_spec(spec, tmp_path / "server", b"not the published file")
    with pytest.raises(WeightsUnavailable) as info:
        build_backbone(served, 32, "imagenet")
    assert "Incomplete or corrupted file detected" in str(info.value)
    assert spec.weights_file in str(info.value)
    captured = capsys.readouterr()
    assert "Downloading data from" not in captured.out
    assert captured.out == ""


def test_a_download_with_the_published_hash_is_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    spec = get_backbone("mobilenet_v3_small")
    source = small_backbone()
    saved = tmp_path / spec.weights_file
    # Keras caches ImageNet weights as legacy H5 files.
    source.save(saved)
    content = saved.read_bytes()
    served = dataclasses.replace(
        file_origin_spec(spec, tmp_path / "server", content),
        weights_hash=hashlib.md5(content).hexdigest(),
    )

    model = build_backbone(served, 32, "imagenet")
    for loaded, expected in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, expected)
    assert weights_cached(spec)
    assert capsys.readouterr().out == ""


def test_cached_imagenet_weights_load_without_network(empty_keras_home):
    spec = get_backbone("mobilenet_v2")
    source = build_backbone(spec, 96)
    models = empty_keras_home / "models"
    models.mkdir(parents=True)
    # Keras caches ImageNet weights as legacy H5 files.
    source.save(models / spec.weights_file_for(96))
    assert weights_cached(spec, 96)

    model = build_backbone(spec, 96, "imagenet")
    for loaded, expected in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, expected)


def test_weights_load_from_a_file_the_user_saved(tmp_path):
    spec = get_backbone("mobilenet_v3_small")
    source = small_backbone()
    path = tmp_path / "x.weights.h5"
    source.save_weights(path)

    model = build_backbone(spec, 64, path)
    for loaded, expected in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, expected)


def test_the_pretrained_architecture_builds_without_any_weights_file(empty_keras_home):
    # A resumed run restores its own variables into the architecture its weights call for:
    # pretrained EfficientNet has a variance-fix Rescaling that a scratch build lacks.
    spec = get_backbone("efficientnet_b0")

    def rescalings(model: keras.Model) -> int:
        return sum(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)

    architecture = build_backbone(spec, 32, "imagenet", load=False)
    assert rescalings(architecture) == rescalings(build_backbone(spec, 32)) + 1 == 2
    assert architecture.count_params() == spec.params
    assert not (empty_keras_home / "models").exists()


def test_weights_from_another_backbone_raise_a_clear_error(tmp_path):
    path = tmp_path / "small.weights.h5"
    small_backbone().save_weights(path)
    with pytest.raises(WeightsUnavailable) as info:
        build_backbone(get_backbone("mobilenet_v2"), 32, str(path))
    message = str(info.value)
    assert "'mobilenet_v2'" in message and str(path) in message
    assert "same backbone" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_a_missing_weights_file_raises_weights_unavailable(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(WeightsUnavailable, match="Expected `weights` to be 'imagenet'"):
        build_backbone(get_backbone("mobilenet_v2"), 32, missing)


def test_scratch_weights_accept_none_in_any_case():
    spec = get_backbone("mobilenet_v3_small")
    assert build_backbone(spec, 32, "None").count_params() == spec.params
