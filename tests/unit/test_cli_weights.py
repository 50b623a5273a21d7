"""CLI `weights fetch|import|list`: preparing an offline machine, scriptable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from tests.unit.test_cli import assert_one_error_line
from tl_core import cli
from tl_core.engine import device
from tl_core.errors import WeightsUnavailable
from tl_core.models import weights
from tl_core.models.backbones import BackboneSpec, get_backbone, keras_models_dir, list_backbones

CONTENT = b"\x89HDF\r\n\x1a\n" + b"weights" * 100
RESNET = get_backbone("resnet50").weights_file


@pytest.fixture(autouse=True)
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras cache, and no TensorFlow import for `weights fetch`."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(device, "quiet_tensorflow", lambda: None)
    return tmp_path / "keras"


def _download(spec: BackboneSpec, size: int, *, download: bool) -> Path:
    path = keras_models_dir() / spec.weights_file_for(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CONTENT)
    return path


def _offline(spec: BackboneSpec, size: int, *, download: bool) -> Path:
    raise WeightsUnavailable("Cannot download: offline")


def test_fetch_json_reports_each_backbone_and_prints_only_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(weights, "_imagenet_file", _download)

    assert cli.main(["weights", "fetch", "mobilenet_v2", "--json"]) == cli.EXIT_OK

    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [(row["id"], row["status"]) for row in rows] == [("mobilenet_v2", "fetched")]
    assert err == ""


def test_fetch_offline_exits_2_saying_to_import_a_copied_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(weights, "_imagenet_file", _offline)

    assert cli.main(["weights", "fetch", "--all", "--json"]) == cli.EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert len(rows) == len(list_backbones())
    assert {row["status"] for row in rows} == {"failed"}
    assert "weights import FILE" in assert_one_error_line(err)


def test_fetch_needs_ids_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["weights", "fetch"]) == cli.EXIT_BAD_INPUT
    assert cli.main(["weights", "fetch", "vgg16", "--all"]) == cli.EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("error: name the backbones to fetch") == 2


def test_import_then_list_shows_the_file_with_its_hash_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copied = tmp_path / RESNET
    copied.write_bytes(CONTENT)
    # Keras "publishes" CONTENT as ResNet50's weights.
    digest = hashlib.md5(CONTENT).hexdigest()
    specs = [
        dataclasses.replace(spec, weights_hash=digest) if spec.id == "resnet50" else spec
        for spec in list_backbones()
    ]
    monkeypatch.setattr(weights, "list_backbones", lambda: specs)

    assert cli.main(["weights", "import", str(copied), "--json"]) == cli.EXIT_OK
    imported = json.loads(capsys.readouterr().out)
    assert (imported["id"], imported["hash_ok"]) == ("resnet50", True)

    assert cli.main(["weights", "list", "--json"]) == cli.EXIT_OK
    rows = {row["file"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[RESNET]["present"] and rows[RESNET]["hash_ok"]
    assert rows[RESNET]["bytes"] == len(CONTENT)
    assert not rows[get_backbone("vgg16").weights_file]["present"]


def test_import_of_a_file_with_the_wrong_hash_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copied = tmp_path / RESNET
    copied.write_bytes(CONTENT)

    assert cli.main(["weights", "import", str(copied)]) == cli.EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    assert out == ""
    assert "not the file Keras publishes" in assert_one_error_line(err)


def test_list_in_words_says_missing_for_absent_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["weights", "list"]) == cli.EXIT_OK

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == sum(len(weights.weights_files(spec)) for spec in list_backbones())
    assert all(line.endswith("missing") for line in lines)
