"""IngestLimits and DatasetReport: validation, environment overrides, the JSON document."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from tests.helpers import REPORT_JSON_KEYS
from tl_core.data.report import (
    SPLIT_FOLDERS,
    DatasetReport,
    ImageRecord,
    IngestLimits,
    MiB,
    SkippedFile,
)
from tl_core.errors import ConfigError


def a_report(**changes: object) -> DatasetReport:
    values: dict[str, object] = {
        "dataset_id": "0123456789ab",
        "source_name": "pets.zip",
        "classes": {"café": 2, "dog": 1},
        "split": {"train": 2, "val": 1},
        "skipped": (SkippedFile("cat/x.txt", "not an image"),),
        "warnings": ("Tiny dataset: 3 images in all.",),
        "junk_ignored": 4,
        "images": (
            ImageRecord("images/train/café/000001.jpg", "café", "train", "train/café/a.png"),
            ImageRecord("images/train/dog/000001.jpg", "dog", "train", "train/dog/b.png"),
            ImageRecord("images/val/café/000001.jpg", "café", "val", "val/café/c.png"),
        ),
    }
    return DatasetReport(**(values | changes))  # type: ignore[arg-type]


# --- IngestLimits --------------------------------------------------------------------


def test_the_default_limits_are_valid_and_positive() -> None:
    limits = IngestLimits()

    assert all(getattr(limits, f.name) > 0 for f in fields(limits))
    assert limits.max_entry_bytes <= limits.max_total_bytes


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan"), True, "5", None])
@pytest.mark.parametrize("name", ["max_entries", "max_ratio", "stored_max_side"])
def test_a_limit_that_is_not_a_positive_number_is_a_config_error(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        IngestLimits(**{name: value})  # type: ignore[arg-type]

    assert str(caught.value) == (
        f"Expected `{name}` to be a positive number. Received: {name}={value!r}"
    )


def test_every_limit_can_be_overridden() -> None:
    custom = {f.name: 7 for f in fields(IngestLimits)}

    limits = IngestLimits(**custom)

    assert all(getattr(limits, name) == 7 for name in custom)


def test_from_env_without_variables_gives_the_defaults() -> None:
    assert IngestLimits.from_env() == IngestLimits()


def test_from_env_reads_sizes_in_megabytes_and_the_entry_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TL_MAX_ARCHIVE_MB", "1.5")
    monkeypatch.setenv("TL_MAX_TOTAL_MB", "100")
    monkeypatch.setenv("TL_MAX_ENTRY_MB", "2")
    monkeypatch.setenv("TL_MAX_ENTRIES", "7")

    limits = IngestLimits.from_env()

    assert limits.max_archive_bytes == int(1.5 * MiB)
    assert limits.max_total_bytes == 100 * MiB
    assert limits.max_entry_bytes == 2 * MiB
    assert limits.max_entries == 7
    assert limits.max_ratio == IngestLimits().max_ratio


def test_from_env_ignores_an_empty_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_MAX_ENTRIES", "")

    assert IngestLimits.from_env().max_entries == IngestLimits().max_entries


@pytest.mark.parametrize("raw", ["lots", "12 MB", "nan", "inf", "-inf"])
def test_from_env_with_a_non_number_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TL_MAX_ENTRY_MB", raw)

    with pytest.raises(ConfigError) as caught:
        IngestLimits.from_env()

    assert str(caught.value) == (
        f"Expected `TL_MAX_ENTRY_MB` to be a number. Received: TL_MAX_ENTRY_MB={raw!r}"
    )


@pytest.mark.parametrize("raw", ["0", "-5", "0.1"])
def test_from_env_with_a_non_positive_count_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TL_MAX_ENTRIES", raw)

    with pytest.raises(ConfigError, match="Expected `max_entries` to be a positive number"):
        IngestLimits.from_env()


def test_split_folder_names_map_to_train_val_and_test() -> None:
    assert set(SPLIT_FOLDERS.values()) == {"train", "val", "test"}
    assert SPLIT_FOLDERS["validation"] == "val"
    assert all(name == name.lower() for name in SPLIT_FOLDERS)


# --- DatasetReport -------------------------------------------------------------------


def test_num_images_and_class_names_come_from_the_class_counts() -> None:
    report = a_report(classes={"zebra": 4, "ant": 2, "Bee": 1})

    assert report.num_images == 7
    assert report.class_names == ["Bee", "ant", "zebra"]


def test_to_json_has_exactly_the_contract_keys_and_the_extras() -> None:
    doc = a_report().to_json()

    assert set(doc) == REPORT_JSON_KEYS
    assert doc == {
        "dataset_id": "0123456789ab",
        "source_name": "pets.zip",
        "classes": {"café": 2, "dog": 1},
        "num_images": 3,
        "split": {"train": 2, "val": 1},
        "skipped": [{"path": "cat/x.txt", "reason": "not an image"}],
        "warnings": ["Tiny dataset: 3 images in all."],
        "junk_ignored": 4,
    }


def test_to_json_is_serialisable_and_has_a_null_split_without_split_folders() -> None:
    doc = a_report(split=None).to_json()

    text = json.dumps(doc, ensure_ascii=False)

    assert json.loads(text) == doc
    assert doc["split"] is None
    assert '"café"' in text


def test_to_json_does_not_expose_the_image_index_or_share_state() -> None:
    report = a_report()

    doc = report.to_json()
    doc["classes"]["dog"] = 99

    assert "images" not in doc
    assert report.classes["dog"] == 1


def test_a_saved_report_loads_back_equal_with_its_root(tmp_path: Path) -> None:
    report = a_report()

    report.save(tmp_path)
    loaded = DatasetReport.load(tmp_path)

    assert loaded == report
    assert loaded.images == report.images
    assert loaded.root == tmp_path
    assert "images" not in json.loads((tmp_path / "report.json").read_text())
    assert json.loads((tmp_path / "images.json").read_text())[0] == {
        "path": "images/train/café/000001.jpg",
        "label": "café",
        "split": "train",
        "source": "train/café/a.png",
    }


def test_loading_without_the_image_index_keeps_the_summary(tmp_path: Path) -> None:
    report = a_report()
    report.save(tmp_path)

    summary = DatasetReport.load(tmp_path, images=False)

    assert summary.images == ()
    assert (summary.classes, summary.num_images) == (report.classes, report.num_images)


def test_a_report_without_split_round_trips(tmp_path: Path) -> None:
    report = a_report(split=None)

    report.save(tmp_path)

    assert DatasetReport.load(tmp_path).split is None


def test_a_report_written_before_the_optional_fields_existed_still_loads(tmp_path: Path) -> None:
    minimal = {
        "dataset_id": "0123456789ab",
        "classes": {"cat": 1, "dog": 1},
        "split": None,
        "skipped": [],
        "warnings": [],
    }
    (tmp_path / "report.json").write_text(json.dumps(minimal))

    loaded = DatasetReport.load(tmp_path)

    assert (loaded.source_name, loaded.junk_ignored, loaded.images) == ("", 0, ())
    assert loaded.num_images == 2
