"""Splits and batches: stratified, seeded, resumable shuffles, raw pixels 0–255."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import class_folders
from tl_core.data import DatasetReport, ImageRecord, ingest_archive
from tl_core.data.dataset import make_batches, split_dataset, steps_per_epoch
from tl_core.errors import ConfigError, DataError


def unsplit_report(counts: dict[str, int]) -> DatasetReport:
    """A report of images without split folders (files need not exist for splitting)."""
    images = tuple(
        ImageRecord(f"images/all/{label}/{n:06d}.jpg", label, "all", f"{label}/{n}.png")
        for label, count in counts.items()
        for n in range(count)
    )
    return DatasetReport("0123456789ab", "x.zip", dict(sorted(counts.items())), None, images=images)


def fingerprint(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8).hexdigest()


def epochs_of(dataset: object, steps: int) -> list[list[tuple[str, int]]]:
    """Group a multi-epoch dataset into epochs of ``(image fingerprint, label)``."""
    batches = [(np.asarray(x), np.asarray(y)) for x, y in dataset]  # type: ignore[attr-defined]
    assert len(batches) % steps == 0
    epochs = []
    for start in range(0, len(batches), steps):
        epochs.append(
            [
                (fingerprint(image), int(label))
                for x, y in batches[start : start + steps]
                for image, label in zip(x, y, strict=True)
            ]
        )
    return epochs


# --- split_dataset -----------------------------------------------------------------------


def test_a_drawn_split_keeps_every_class_on_both_sides_in_proportion() -> None:
    report = unsplit_report({"cat": 10, "dog": 5, "emu": 2})

    splits = split_dataset(report, val_fraction=0.2, seed=0)

    assert splits.val_source == "drawn"
    assert splits.class_names == ("cat", "dog", "emu")
    assert Counter(r.label for r in splits.val) == {"cat": 2, "dog": 1, "emu": 1}
    assert Counter(r.label for r in splits.train) == {"cat": 8, "dog": 4, "emu": 1}
    assert set(splits.train).isdisjoint(splits.val)
    assert set(splits.train) | set(splits.val) == set(report.images)


def test_validation_examples_are_the_first_of_each_class_in_class_order() -> None:
    splits = split_dataset(unsplit_report({"cat": 10, "dog": 10, "emu": 1}), val_fraction=0.3)
    cats, dogs = ([r for r in splits.val if r.label == name] for name in ("cat", "dog"))

    assert splits.val_examples(2) == [*cats[:2], *dogs[:2]]  # the emu stays in training
    assert splits.val_examples(1, exclude={cats[0].path}) == [cats[1], dogs[0]]


def test_a_class_with_one_image_stays_in_training() -> None:
    splits = split_dataset(unsplit_report({"cat": 1, "dog": 4}), val_fraction=0.5)

    assert [r.label for r in splits.val] == ["dog", "dog"]
    assert Counter(r.label for r in splits.train) == {"cat": 1, "dog": 2}


def test_the_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    report = unsplit_report({"cat": 30, "dog": 30})

    first = split_dataset(report, val_fraction=0.3, seed=5)
    again = split_dataset(report, val_fraction=0.3, seed=5)
    other = split_dataset(report, val_fraction=0.3, seed=6)

    assert first == again
    assert set(first.val) != set(other.val)


def test_the_split_does_not_depend_on_the_order_of_the_records() -> None:
    report = unsplit_report({"cat": 12, "dog": 12})
    shuffled = DatasetReport(
        report.dataset_id, "x.zip", report.classes, None, images=report.images[::-1]
    )

    assert set(split_dataset(report).val) == set(split_dataset(shuffled).val)


def test_an_archive_train_val_split_is_used_as_is(make_archive, tl_home: Path) -> None:
    entries = class_folders({"cat": 4, "dog": 3}, prefix="train/") | class_folders(
        {"cat": 2, "dog": 1}, prefix="val/"
    )
    report = ingest_archive(make_archive(entries))

    splits = split_dataset(report, val_fraction=0.5, seed=1)

    assert splits.val_source == "archive"
    assert Counter(r.label for r in splits.train) == {"cat": 4, "dog": 3}
    assert Counter(r.label for r in splits.val) == {"cat": 2, "dog": 1}
    assert {r.split for r in splits.train} == {"train"}
    assert {r.split for r in splits.val} == {"val"}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_validation_fraction_outside_0_and_1_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"Received: val_fraction={fraction!r}")):
        split_dataset(unsplit_report({"cat": 3, "dog": 3}), val_fraction=fraction)


def test_a_dataset_with_only_validation_images_cannot_be_split() -> None:
    images = (ImageRecord("images/val/cat/1.jpg", "cat", "val", "val/cat/1.png"),)
    report = DatasetReport("0123456789ab", "x.zip", {"cat": 1}, {"val": 1}, images=images)

    with pytest.raises(DataError, match="has no training images"):
        split_dataset(report)


def test_a_training_fraction_subsamples_each_class_and_leaves_validation_alone() -> None:
    report = unsplit_report({"cat": 50, "dog": 25, "emu": 3})
    whole = split_dataset(report, val_fraction=0.2, seed=3)

    half = split_dataset(report, val_fraction=0.2, seed=3, train_fraction=0.5)

    assert half.val == whole.val
    assert Counter(r.label for r in whole.train) == {"cat": 40, "dog": 20, "emu": 2}
    assert Counter(r.label for r in half.train) == {"cat": 20, "dog": 10, "emu": 1}
    assert set(half.train) <= set(whole.train)
    assert half.train_pool == whole.train
    # The kept images stay in the split's order.
    assert list(half.train) == [r for r in whole.train if r in set(half.train)]


def test_a_tiny_training_fraction_keeps_one_image_of_every_class() -> None:
    splits = split_dataset(unsplit_report({"cat": 10, "dog": 4}), train_fraction=0.01)

    assert Counter(r.label for r in splits.train) == {"cat": 1, "dog": 1}


def test_the_training_subsample_is_deterministic_and_nested() -> None:
    report = unsplit_report({"cat": 40, "dog": 40})

    def draw(fraction: float, seed: int = 0) -> set[ImageRecord]:
        return set(split_dataset(report, seed=seed, train_fraction=fraction).train)

    assert draw(0.25) == draw(0.25)
    assert draw(0.1) <= draw(0.25) <= draw(0.5) <= draw(1.0)


def test_the_whole_training_split_has_no_pool() -> None:
    splits = split_dataset(unsplit_report({"cat": 5, "dog": 5}), train_fraction=1.0)

    assert splits.train_pool == ()
    assert len(splits.train) == 8


def test_a_training_fraction_applies_to_an_archive_train_folder_only(
    make_archive, tl_home: Path
) -> None:
    entries = class_folders({"cat": 8, "dog": 4}, prefix="train/") | class_folders(
        {"cat": 2, "dog": 2}, prefix="val/"
    )
    report = ingest_archive(make_archive(entries))

    splits = split_dataset(report, train_fraction=0.25)

    assert Counter(r.label for r in splits.train) == {"cat": 2, "dog": 1}
    assert Counter(r.label for r in splits.val) == {"cat": 2, "dog": 2}


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.5])
def test_a_training_fraction_outside_0_and_1_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"Received: train_fraction={fraction!r}")):
        split_dataset(unsplit_report({"cat": 3, "dog": 3}), train_fraction=fraction)


# --- make_batches ------------------------------------------------------------------------


@pytest.mark.parametrize(("records", "batch", "steps"), [(57, 16, 4), (48, 16, 3), (1, 16, 1)])
def test_steps_per_epoch_counts_the_last_partial_batch(
    records: int, batch: int, steps: int
) -> None:
    assert steps_per_epoch(records, batch) == steps


def test_batches_hold_raw_pixels_and_class_indices_in_record_order(
    easy_dataset: DatasetReport,
) -> None:
    splits = split_dataset(easy_dataset, val_fraction=0.2, seed=0)

    batches = list(
        make_batches(
            easy_dataset,
            splits.val,
            class_names=splits.class_names,
            image_size=32,
            batch_size=4,
        )
    )

    images = np.concatenate([np.asarray(x) for x, _ in batches])
    labels = np.concatenate([np.asarray(y) for _, y in batches])
    assert images.shape == (len(splits.val), 32, 32, 3)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 200.0
    assert labels.tolist() == [splits.class_names.index(r.label) for r in splits.val]
    assert len(batches) == steps_per_epoch(len(splits.val), 4)


def test_one_hot_labels_match_the_class_indices(easy_dataset: DatasetReport) -> None:
    splits = split_dataset(easy_dataset, seed=0)
    common = {"class_names": splits.class_names, "image_size": 32, "batch_size": 32}

    (_, indices), *_ = make_batches(easy_dataset, splits.val, **common)
    (_, one_hot), *_ = make_batches(easy_dataset, splits.val, one_hot=True, **common)

    assert np.asarray(one_hot).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(one_hot), np.eye(3)[np.asarray(indices)])


def test_shuffled_epochs_depend_only_on_seed_and_epoch_so_a_resume_sees_the_same_order(
    easy_dataset: DatasetReport,
) -> None:
    splits = split_dataset(easy_dataset, seed=0)
    common = {"class_names": splits.class_names, "image_size": 32, "batch_size": 16, "seed": 3}
    steps = steps_per_epoch(len(splits.train), 16)

    whole = epochs_of(
        make_batches(easy_dataset, splits.train, shuffle_epochs=(0, 4), **common), steps
    )
    resumed = epochs_of(
        make_batches(easy_dataset, splits.train, shuffle_epochs=(2, 4), **common), steps
    )
    other_seed = epochs_of(
        make_batches(easy_dataset, splits.train, shuffle_epochs=(0, 1), **(common | {"seed": 4})),
        steps,
    )

    assert len(whole) == 4 and len(resumed) == 2
    assert resumed == whole[2:]
    assert all(sorted(epoch) == sorted(whole[0]) for epoch in whole)  # each epoch: every image
    assert len(set(whole[0])) == len(splits.train)
    assert len({tuple(epoch) for epoch in whole}) == 4  # each epoch in its own order
    assert other_seed[0] != whole[0]


def test_decoding_on_the_fly_serves_the_same_batches_as_the_memory_cache(
    easy_dataset: DatasetReport,
) -> None:
    splits = split_dataset(easy_dataset, seed=0)
    common = {
        "class_names": splits.class_names,
        "image_size": 32,
        "batch_size": 16,
        "shuffle_epochs": (1, 2),
        "seed": 9,
    }
    steps = steps_per_epoch(len(splits.train), 16)

    cached = epochs_of(make_batches(easy_dataset, splits.train, **common), steps)
    streamed = epochs_of(make_batches(easy_dataset, splits.train, cache=False, **common), steps)

    assert cached == streamed


@pytest.mark.parametrize("shuffle_epochs", [(2, 2), (-1, 3), (3, 1)])
def test_an_empty_or_backward_epoch_range_is_refused(
    easy_dataset: DatasetReport, shuffle_epochs: tuple[int, int]
) -> None:
    splits = split_dataset(easy_dataset, seed=0)

    with pytest.raises(ConfigError, match=re.escape(f"Received: shuffle_epochs={shuffle_epochs}")):
        make_batches(
            easy_dataset,
            splits.train,
            class_names=splits.class_names,
            image_size=32,
            batch_size=16,
            shuffle_epochs=shuffle_epochs,
        )


def test_batches_need_records_and_a_dataset_on_disk(easy_dataset: DatasetReport) -> None:
    common = {"class_names": easy_dataset.class_names, "image_size": 32, "batch_size": 4}
    detached = unsplit_report({"cat": 2, "dog": 2})

    with pytest.raises(DataError, match="has no images for this split"):
        make_batches(easy_dataset, (), **common)
    with pytest.raises(DataError, match="has no folder on disk"):
        make_batches(detached, detached.images, **common)


def test_the_stored_easy_dataset_has_three_balanced_classes(easy_dataset: DatasetReport) -> None:
    assert easy_dataset.classes == {"blob": 24, "hstripes": 24, "vstripes": 24}
    assert easy_dataset.split is None
    assert not easy_dataset.skipped
    assert len(easy_dataset.images) == 72
