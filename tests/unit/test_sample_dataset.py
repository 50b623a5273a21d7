"""Tests of `scripts/make_sample_dataset.py` and the committed `assets/sample_shapes.zip`."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "make_sample_dataset.py"
ASSET = REPO_ROOT / "assets" / "sample_shapes.zip"
REGENERATE_HINT = "Regenerate it with `python scripts/make_sample_dataset.py` and commit it."


def _load_script() -> ModuleType:
    # `scripts/` is not a package, so the script is loaded from its path.
    spec = importlib.util.spec_from_file_location("make_sample_dataset", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


msd = _load_script()


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return msd.build_sample_archive(tmp_path_factory.mktemp("fresh") / "sample_shapes.zip")


def _decoded_entries(archive_path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(archive_path) as archive:
        return {
            name: np.asarray(Image.open(io.BytesIO(archive.read(name))))
            for name in archive.namelist()
        }


def test_building_twice_with_the_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = msd.build_sample_archive(tmp_path / "first.zip", per_class=6, seed=7)
    second = msd.build_sample_archive(tmp_path / "second.zip", per_class=6, seed=7)

    assert first.read_bytes() == second.read_bytes()


def test_a_different_seed_draws_different_images(tmp_path: Path) -> None:
    seed_0 = _decoded_entries(msd.build_sample_archive(tmp_path / "a.zip", per_class=3, seed=0))
    seed_1 = _decoded_entries(msd.build_sample_archive(tmp_path / "b.zip", per_class=3, seed=1))

    assert seed_0.keys() == seed_1.keys()
    assert all(not np.array_equal(seed_0[name], seed_1[name]) for name in seed_0)


def test_committed_asset_matches_what_the_script_builds(fresh_build: Path) -> None:
    # Pixels, not zip bytes, are compared: a Pillow built against another zlib compresses the
    # same pixels differently, and that is not drift.
    committed = _decoded_entries(ASSET)
    rebuilt = _decoded_entries(fresh_build)

    assert committed.keys() == rebuilt.keys(), REGENERATE_HINT
    changed = [name for name in rebuilt if not np.array_equal(committed[name], rebuilt[name])]
    assert not changed, f"{len(changed)} images differ, e.g. {changed[0]}. {REGENERATE_HINT}"


def test_archive_holds_the_documented_classes_and_counts(fresh_build: Path) -> None:
    classes = ("circle", "square", "triangle", "star")
    expected = {
        f"sample_shapes/{shape}/{shape}_{index:03d}.png" for shape in classes for index in range(80)
    }

    assert classes == msd.CLASS_NAMES
    assert msd.DEFAULT_PER_CLASS == 80
    with zipfile.ZipFile(fresh_build) as archive:
        assert set(archive.namelist()) == expected


def test_entries_are_sorted_deflated_and_carry_a_fixed_timestamp(fresh_build: Path) -> None:
    with zipfile.ZipFile(fresh_build) as archive:
        infos = archive.infolist()

    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}


def test_committed_asset_is_under_5_mb() -> None:
    assert ASSET.stat().st_size < 5 * 1024 * 1024


def test_every_image_is_a_valid_64x64_rgb_png() -> None:
    with zipfile.ZipFile(ASSET) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            Image.open(io.BytesIO(data)).verify()
            with Image.open(io.BytesIO(data)) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64)), name


def test_images_of_a_class_are_not_identical() -> None:
    circles = [pixels for name, pixels in _decoded_entries(ASSET).items() if "/circle/" in name]

    assert len({pixels.tobytes() for pixels in circles}) == len(circles)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"per_class": 0}, "per_class=0"), ({"size": 8}, "size=8")],
)
def test_invalid_arguments_are_named_in_the_error(
    tmp_path: Path, arguments: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        msd.build_sample_archive(tmp_path / "bad.zip", **arguments)


def test_command_line_writes_the_archive_it_is_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "shapes.zip"

    msd.main(["--out", str(out), "--per-class", "2", "--size", "32", "--seed", "3"])

    images = _decoded_entries(out)
    assert len(images) == 2 * len(msd.CLASS_NAMES)
    assert {pixels.shape for pixels in images.values()} == {(32, 32, 3)}
