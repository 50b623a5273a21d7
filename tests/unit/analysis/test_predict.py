"""Prediction with a run's model.keras: plain Keras loads it, pictures decode as in training."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from tests.helpers import png_bytes
from tests.unit.engine_helpers import EASY_CLASSES, easy_png
from tl_core.analysis.predict import OVERLAY_SIDE, load_run_model, predict_images, prepare_image
from tl_core.errors import DataError, JobError
from tl_core.jobs.runs import prepare_run


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    return [easy_png(label, folder / f"{label}.png", seed=7) for label in EASY_CLASSES]


def test_model_keras_loads_in_plain_keras_and_predicts_like_predict_images(
    trained_run: Path, pictures: list[Path]
) -> None:
    model = keras.saving.load_model(trained_run / "model.keras")
    batch = np.stack([prepare_image(p.read_bytes(), 32) for p in pictures])

    plain = model.predict(batch, verbose=0)
    results = predict_images(trained_run, pictures)

    ours = np.array([[r["probabilities"][c] for c in EASY_CLASSES] for r in results])
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-6)
    assert model.input_shape == (None, 32, 32, 3)


def test_predict_images_gives_the_top_label_and_probabilities_summing_to_one(
    trained_run: Path, pictures: list[Path]
) -> None:
    results = predict_images(trained_run, pictures, top_k=2)

    assert [r["image"] for r in results] == [str(p) for p in pictures]
    for result in results:
        probabilities = result["probabilities"]
        assert list(probabilities) == list(EASY_CLASSES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert result["label"] == max(probabilities, key=probabilities.get)
        assert result["confidence"] == probabilities[result["label"]]
        top = result["top"]
        assert len(top) == 2
        assert top[0] == {"label": result["label"], "probability": result["confidence"]}
        assert top[0]["probability"] >= top[1]["probability"]


def test_gradcam_overlays_are_written_per_picture_at_display_size(
    trained_run: Path, pictures: list[Path], tmp_path: Path
) -> None:
    results = predict_images(trained_run, pictures[:2], gradcam_dir=tmp_path / "cams")

    paths = [Path(r["gradcam"]) for r in results]
    assert [p.parent for p in paths] == [tmp_path / "cams"] * 2
    assert len(set(paths)) == 2  # named by content: two pictures, two files
    for path in paths:
        with Image.open(path) as overlay:
            assert overlay.format == "PNG" and overlay.mode == "RGB"
            assert max(overlay.size) == OVERLAY_SIDE  # 32 px pictures, enlarged to be seen
    assert all(r["gradcam_layer"] for r in results)
    assert not list((tmp_path / "cams").glob("*.part"))


def test_load_run_model_returns_the_class_index_and_image_size(trained_run: Path) -> None:
    model, class_names, size = load_run_model(trained_run)

    assert class_names == list(EASY_CLASSES)
    assert size == 32
    assert model.output_shape == (None, 3)


def test_prepare_image_decodes_and_resizes_to_raw_pixels() -> None:
    image = prepare_image(png_bytes((48, 20), (255, 0, 10)), 32)

    assert image.shape == (32, 32, 3)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image[16, 16], [255.0, 0.0, 10.0], atol=1.0)


def test_bytes_that_are_no_image_are_refused_with_their_name() -> None:
    with pytest.raises(DataError, match=re.escape("'notes.txt' cannot be classified")):
        prepare_image(b"hello, not a picture", 32, name="notes.txt")


def test_a_missing_picture_is_refused(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cannot read"):
        predict_images(trained_run, [tmp_path / "gone.png"])


def test_a_run_without_a_model_cannot_predict(tmp_path: Path) -> None:
    from tests.unit.engine_helpers import tiny_config

    files = prepare_run(tmp_path / "run", tiny_config("0123456789ab"))

    with pytest.raises(JobError, match="has no trained model yet"):
        load_run_model(files.root)
