"""Boundary caching: a partial fine-tune trains the top blocks from activations cached at
the frozen boundary. It must train what the plain path trains, keep the frozen blocks
bit-identical, save the whole classifier, and draw augmented views deterministically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.faults.conftest import backbone_weights  # noqa: F401  (a fixture)
from tests.unit.engine_helpers import epoch_lines, read_jsonl, tiny_config
from tl_core.config import RunConfig
from tl_core.data import DatasetReport
from tl_core.engine.train import train_run
from tl_core.jobs.runs import prepare_run, read_json
from tl_core.models.backbones import get_backbone
from tl_core.models.blocks import group_blocks

# Dropout and augmentation off: with them, the two paths draw different random numbers.
SAME_MATH = {"augmentation": (), "dropout": 0.0, "epochs": 2}
TOP_TWO = {"freeze": "fine-tune", "unfreeze_last": 2}


def _train(dataset: DatasetReport, out: Path, config: RunConfig) -> Path:
    files = prepare_run(out, config)
    status = train_run(files.root)
    assert status.state == "completed", status.error
    return files.root


def _val_images(dataset: DatasetReport, count: int = 8) -> np.ndarray:
    from PIL import Image

    assert dataset.root is not None
    paths = sorted((dataset.root / "images").rglob("*.*"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in paths])


@pytest.mark.slow
def test_a_boundary_cached_fine_tune_matches_the_plain_path_and_keeps_frozen_blocks_identical(
    easy_dataset: DatasetReport,
    tmp_path: Path,
    backbone_weights: Path,  # noqa: F811
) -> None:
    import keras

    settings = SAME_MATH | TOP_TWO | {"weights": str(backbone_weights)}
    plain_config = tiny_config(easy_dataset.dataset_id, fast=False, **settings)
    plain = _train(easy_dataset, tmp_path / "plain", plain_config)
    cached = _train(
        easy_dataset, tmp_path / "cached", tiny_config(easy_dataset.dataset_id, **settings)
    )

    for key in ("loss", "val_loss", "val_accuracy"):
        expected = [line[key] for line in epoch_lines(plain)]
        np.testing.assert_allclose([line[key] for line in epoch_lines(cached)], expected, atol=1e-4)
    path = read_json(cached / "run.json")["cache"]["phases"]["train"]
    assert (path["path"], path["storage"]) == ("boundary:block_15", "ram")
    assert read_json(plain / "run.json")["cache"]["phases"]["train"]["path"] == "plain"
    plain_model = keras.saving.load_model(plain / "model.keras", compile=False)
    cached_model = keras.saving.load_model(cached / "model.keras", compile=False)
    images = _val_images(easy_dataset)
    np.testing.assert_allclose(
        cached_model.predict(images, verbose=0), plain_model.predict(images, verbose=0), atol=1e-5
    )
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    source.load_weights(backbone_weights)
    trains = {
        block["name"]: block["trainable"] for block in read_json(cached / "run.json")["blocks"]
    }
    frozen = [
        block
        for block in group_blocks(source, get_backbone("mobilenet_v2"))
        if not trains[block.name]
    ]
    assert [block.name for block in frozen][-1] == "block_15"
    saved_backbone = cached_model.get_layer(
        next(x.name for x in cached_model.layers if isinstance(x, keras.Model))
    )
    for name in (layer for block in frozen for layer in block.layers):
        for saved, original in zip(
            saved_backbone.get_layer(name).get_weights(),
            source.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(saved, original)
    drift = read_jsonl(cached / "drift_history.jsonl")[-1]["drift"]
    assert all(drift[block.name] == 0.0 for block in frozen) and drift["block_16"] > 0.0


@pytest.mark.slow
def test_the_defaults_a_user_gets_train_the_head_from_four_flipped_views_and_reuse_them(
    easy_dataset: DatasetReport,
    tmp_path: Path,
    backbone_weights: Path,  # noqa: F811
) -> None:
    config = RunConfig(
        dataset_id=easy_dataset.dataset_id, weights=str(backbone_weights), image_size=32, epochs=2
    )

    first = _train(easy_dataset, tmp_path / "first", config)
    again = _train(easy_dataset, tmp_path / "again", config)

    path = read_json(first / "run.json")["cache"]["phases"]["train"]
    assert (path["path"], path["views"], path["hit"]) == ("head-features", 4, False)
    assert read_json(again / "run.json")["cache"]["phases"]["train"]["hit"] is True
    assert "estimated_seconds_saved" in read_json(again / "run.json")["cache"]
    assert [line["epoch"] for line in epoch_lines(again)] == [1, 2]


@pytest.mark.slow
def test_activations_over_the_cache_bound_train_on_images_and_say_so(
    easy_dataset: DatasetReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_CACHE_MB", "0.001")

    run = _train(
        easy_dataset,
        tmp_path / "bounded",
        tiny_config(easy_dataset.dataset_id, **(SAME_MATH | TOP_TWO | {"epochs": 1})),
    )

    path = read_json(run / "run.json")["cache"]["phases"]["train"]
    assert path == {"path": "plain", "storage": "none", "wanted": "boundary:block_15"}


def test_each_epoch_draws_one_view_per_image_from_the_seed_and_epoch_alone() -> None:
    from tl_core.engine.boundary import view_batches

    views, images = 4, 12
    # Row (view v, image i) holds v * 100 + i, so a batch says what was drawn.
    activations = np.array(
        [[[v * 100.0 + i] for i in range(images)] for v in range(views)], np.float32
    )
    labels = [i % 3 for i in range(images)]

    def drawn(first: int, stop: int) -> list[list[float]]:
        ds = view_batches(
            activations, labels, num_classes=3, batch_size=5, shuffle_epochs=(first, stop), seed=7
        )
        rows = [float(x) for batch, _ in ds for x in np.asarray(batch).ravel()]
        return [rows[k : k + images] for k in range(0, len(rows), images)]

    whole, resumed = drawn(0, 3), drawn(2, 3)

    assert resumed[0] == whole[2], "a resumed epoch draws what the uninterrupted one drew"
    for epoch in whole:
        assert sorted(int(x) % 100 for x in epoch) == list(range(images))
    assert len({int(x) // 100 for epoch in whole for x in epoch}) > 1, "views vary"
    assert whole[0] != whole[1]
    plain = view_batches(activations, labels, num_classes=3, batch_size=5)
    assert [float(x) for batch, _ in plain for x in np.asarray(batch).ravel()] == list(
        map(float, range(images))
    ), "validation reads view 0 in order: never augmented"


def test_augmented_extraction_gives_k_distinct_views_the_same_every_time() -> None:
    from tl_core.engine.boundary import extract_views
    from tl_core.models.classifier import build_classifier

    config = tiny_config("0" * 12, augmentation=("flip",))
    classifier = build_classifier(config, ["a", "b"])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    batches = [(images[:8], None), (images[8:], None)]

    first = extract_views(classifier, "block_3", batches, views=3, augment=True)
    second = extract_views(classifier, "block_3", batches, views=3, augment=True)
    plain = extract_views(classifier, "block_3", batches, views=1, augment=False)

    assert first.shape == (3, 16, 4, 4, 32)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[0], first[1])
    assert not all(np.array_equal(view, plain[0]) for view in first)


def test_views_read_from_disk_give_the_batches_views_in_memory_give(tmp_path: Path) -> None:
    from tl_core.engine.boundary import view_batches

    activations = np.random.default_rng(1).normal(size=(3, 10, 2, 2, 4)).astype(np.float16)
    np.save(tmp_path / "a.npy", activations)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    settings: dict[str, Any] = {"num_classes": 2, "batch_size": 4, "shuffle_epochs": (1, 3)}

    in_memory = view_batches(activations, [0, 1] * 5, **settings)
    on_disk = view_batches(mapped, [0, 1] * 5, **settings)

    for (want, want_labels), (got, got_labels) in zip(in_memory, on_disk, strict=True):
        assert got.dtype == "float32"
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_labels, want_labels)
