"""ImageNet weights for an offline machine: fetch, import and list, without network."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from tl_core.errors import ConfigError, WeightsUnavailable
from tl_core.models import weights
from tl_core.models.backbones import BackboneSpec, get_backbone, keras_models_dir, list_backbones
from tl_core.models.weights import fetch_weights, import_weights, weights_files, weights_status

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
CONTENT = HDF5_SIGNATURE + b"imagenet weights" * 64
VGG16 = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture(autouse=True)
def keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Keras cache of this test's own."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> str:
    """Keras "publishes" `CONTENT` as VGG16's weights: the registry row gets its md5."""
    digest = hashlib.md5(CONTENT).hexdigest()
    specs = [
        dataclasses.replace(spec, weights_hash=digest) if spec.id == "vgg16" else spec
        for spec in list_backbones()
    ]
    by_id = {spec.id: spec for spec in specs}
    monkeypatch.setattr(weights, "list_backbones", lambda: specs)
    monkeypatch.setattr(weights, "get_backbone", by_id.__getitem__)
    return digest


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A downloader that writes `CONTENT` under the file name asked for, and records it."""
    fetched: list[str] = []

    def download(spec: BackboneSpec, size: int, *, download: bool) -> Path:
        assert download
        path = keras_models_dir() / spec.weights_file_for(size)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENT)
        fetched.append(path.name)
        return path

    monkeypatch.setattr(weights, "_imagenet_file", download)
    return fetched


def _offline(spec: BackboneSpec, size: int, *, download: bool) -> Path:
    error = WeightsUnavailable("Cannot download the ImageNet weights of 'vgg16'")
    error.__cause__ = Exception("URL fetch failure on https://x: None -- Name or service not known")
    raise error


def test_every_backbone_has_a_default_file_and_mobilenet_v2_one_per_size() -> None:
    files = weights_files(get_backbone("mobilenet_v2"))

    assert [f.input_size for f in files] == [224, 96, 128, 160, 192]
    assert files[0].file == get_backbone("mobilenet_v2").weights_file
    assert len(weights_files(get_backbone("resnet50"))) == 1
    assert weights_files(get_backbone("vgg16"))[0].url.endswith("/vgg16/" + VGG16)


def test_fetch_downloads_a_missing_file_and_checks_its_hash(
    published: str, downloads: list[str], keras_home: Path
) -> None:
    rows = fetch_weights(["vgg16"])

    assert rows == [
        {
            "id": "vgg16",
            "status": "fetched",
            "reason": None,
            "files": [{"file": VGG16, "input_size": 224, "status": "fetched", "reason": None}],
        }
    ]
    assert downloads == [VGG16]
    assert (keras_home / "models" / VGG16).read_bytes() == CONTENT


def test_fetch_leaves_a_sound_file_alone(
    published: str, downloads: list[str], keras_home: Path
) -> None:
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / VGG16).write_bytes(CONTENT)

    assert fetch_weights(["vgg16"])[0]["status"] == "present"
    assert downloads == []


def test_fetch_replaces_a_damaged_file(
    published: str, downloads: list[str], keras_home: Path
) -> None:
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / VGG16).write_bytes(CONTENT[:20])

    assert fetch_weights(["vgg16"])[0]["status"] == "fetched"
    assert (keras_home / "models" / VGG16).read_bytes() == CONTENT


def test_fetch_of_mobilenet_v2_gets_every_size(downloads: list[str]) -> None:
    rows = fetch_weights(["mobilenet_v2"])

    assert rows[0]["status"] == "fetched"
    assert len(downloads) == 5
    assert all(f["status"] == "fetched" for f in rows[0]["files"])


def test_a_download_with_the_wrong_hash_is_reported_as_failed(
    downloads: list[str], keras_home: Path
) -> None:
    # The downloader writes CONTENT, which is not VGG16's published file.
    row = fetch_weights(["vgg16"])[0]

    assert row["status"] == "failed"
    assert "does not have the published hash" in row["reason"]


def test_fetch_offline_says_to_copy_the_file_and_import_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(weights, "_imagenet_file", _offline)

    row = fetch_weights(["vgg16"])[0]

    assert row["status"] == "failed"
    assert "Name or service not known" in row["reason"]
    assert "weights import FILE" in row["reason"]
    assert "https://x" not in row["reason"]


def test_fetch_refuses_an_unknown_id_before_downloading_anything(downloads: list[str]) -> None:
    with pytest.raises(ConfigError, match="resnet5"):
        fetch_weights(["vgg16", "resnet5"])

    assert downloads == []


def test_import_copies_a_file_with_the_published_hash(
    published: str, tmp_path: Path, keras_home: Path
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / VGG16).write_bytes(CONTENT)

    result = import_weights(stick / VGG16)

    assert result == {
        "id": "vgg16",
        "input_size": 224,
        "file": VGG16,
        "bytes": len(CONTENT),
        "hash_ok": True,
        "replaced": False,
    }
    assert (keras_home / "models" / VGG16).read_bytes() == CONTENT
    assert [p.name for p in (keras_home / "models").iterdir()] == [VGG16]


def test_import_refuses_a_file_with_another_hash(published: str, tmp_path: Path) -> None:
    (tmp_path / VGG16).write_bytes(CONTENT + b"tampered")

    with pytest.raises(WeightsUnavailable, match="not the file Keras publishes") as caught:
        import_weights(tmp_path / VGG16)

    assert "Download it again from https://" in str(caught.value)
    assert not (keras_models_dir() / VGG16).exists()


def test_import_refuses_a_renamed_file(published: str, tmp_path: Path) -> None:
    copy = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop (1).h5"
    copy.write_bytes(CONTENT)

    with pytest.raises(WeightsUnavailable, match="not the name of an ImageNet weights file"):
        import_weights(copy)

    assert not keras_models_dir().exists()


def test_import_refuses_a_file_that_is_not_hdf5(tmp_path: Path) -> None:
    name = get_backbone("mobilenet_v2").weights_file_for(128)
    (tmp_path / name).write_text("<html>Not found</html>")

    with pytest.raises(WeightsUnavailable, match="not a Keras weights file"):
        import_weights(tmp_path / name)


def test_import_accepts_mobilenet_v2_files_which_have_no_published_hash(tmp_path: Path) -> None:
    name = get_backbone("mobilenet_v2").weights_file_for(160)
    (tmp_path / name).write_bytes(CONTENT)

    result = import_weights(tmp_path / name)

    assert (result["id"], result["input_size"], result["hash_ok"]) == ("mobilenet_v2", 160, None)


def test_import_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        import_weights(tmp_path / VGG16)


def test_status_lists_every_backbone_and_reflects_what_is_present(
    published: str, keras_home: Path
) -> None:
    assert not any(row["present"] for row in weights_status())
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / VGG16).write_bytes(CONTENT)
    resnet = get_backbone("resnet50").weights_file
    (keras_home / "models" / resnet).write_bytes(CONTENT)

    rows = {row["file"]: row for row in weights_status()}

    assert {row["id"] for row in rows.values()} == {spec.id for spec in list_backbones()}
    assert rows[VGG16] == {
        "id": "vgg16",
        "input_size": 224,
        "file": VGG16,
        "present": True,
        "bytes": len(CONTENT),
        "hash_ok": True,
    }
    assert rows[resnet]["hash_ok"] is False
    assert rows[get_backbone("xception").weights_file]["bytes"] is None
