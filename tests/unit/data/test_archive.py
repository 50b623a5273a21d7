"""ingest_archive: layouts, hostile archives, the stored dataset and its report."""

from __future__ import annotations

import json
import os
import re
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import (
    ENCRYPTED_FLAG,
    REPORT_JSON_KEYS,
    SYMLINK_ATTR,
    Entries,
    ZipEntry,
    bomb_png,
    class_folders,
    image_bytes,
    jpeg_bytes,
    mistyped_exif_jpeg,
    noise_bytes,
    picture,
    png_bytes,
    zip_bytes,
)
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import record_dataset_owner, share_dataset
from tl_core.data.archive import ingest_archive, list_datasets, load_dataset
from tl_core.data.report import DatasetReport, IngestLimits, MiB
from tl_core.errors import AccessDenied, DataError

#: A small valid dataset: two classes of three distinct pictures.
PETS = class_folders({"cat": 3, "dog": 3})

Ingest = Callable[..., DatasetReport]
Refuse = Callable[..., str]


@pytest.fixture
def ingest(make_archive: Callable[..., Path]) -> Ingest:
    """``ingest(entries, name=…, zip_options=…, **ingest_options)`` → the report."""

    def run(
        entries: Entries,
        *,
        name: str = "data.zip",
        zip_options: dict[str, object] | None = None,
        **options: object,
    ) -> DatasetReport:
        return ingest_archive(make_archive(entries, name, **(zip_options or {})), **options)

    return run


@pytest.fixture
def refuse(ingest: Ingest) -> Refuse:
    """Like `ingest`, but the archive must be refused: returns the DataError message."""

    def run(entries: Entries, **options: object) -> str:
        with pytest.raises(DataError) as caught:
            ingest(entries, **options)
        return str(caught.value)

    return run


def skipped(report: DatasetReport) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


def stored_file(report: DatasetReport, source: str) -> Path:
    """The stored copy of the archive entry `source`."""
    (record,) = [r for r in report.images if r.source == source]
    assert report.root is not None
    return report.root / record.path


def archive_with_broken_crc(path: Path, entries: dict[str, bytes], name: str) -> Path:
    """Write `entries` uncompressed to `path`, then flip one byte inside entry `name`."""
    blob = bytearray(zip_bytes(entries, compression=zipfile.ZIP_STORED))
    payload = entries[name]
    blob[blob.index(payload) + len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    return path


def spy_on_entry_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every entry that `ZipFile.open` is asked to read."""
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def recording_open(self: zipfile.ZipFile, name: object, *args: object, **kw: object) -> object:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else str(name))
        return real_open(self, name, *args, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    return opened


def forbid_opening_zips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any `zipfile.ZipFile(...)` fail: the code under test must decide without one."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was opened with zipfile")

    monkeypatch.setattr(zipfile, "ZipFile", forbidden)


# --- layouts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    ["", "my data/", "outer/inner/"],
    ids=["folder per class", "one wrapper folder", "two nested wrappers"],
)
def test_class_folders_are_found_under_any_number_of_wrapper_folders(
    ingest: Ingest, prefix: str
) -> None:
    report = ingest(class_folders({"cat": 2, "dog": 3}, prefix=prefix))

    assert report.classes == {"cat": 2, "dog": 3}
    assert report.split is None
    assert report.skipped == ()
    assert {r.split for r in report.images} == {"all"}


@pytest.mark.parametrize(
    ("folders", "split"),
    [
        ({"train/": 2, "val/": 1}, {"train": 4, "val": 2}),
        ({"train/": 2, "validation/": 1, "test/": 1}, {"test": 2, "train": 4, "val": 2}),
        ({"training/": 2, "valid/": 1, "testing/": 1}, {"test": 2, "train": 4, "val": 2}),
        ({"Train/": 2, "VAL/": 1}, {"train": 4, "val": 2}),
        ({"data/train/": 2, "data/val/": 1}, {"train": 4, "val": 2}),
    ],
    ids=["train and val", "validation and test", "long names", "any case", "wrapper and split"],
)
def test_split_folders_give_the_split_and_are_never_classes(
    ingest: Ingest, folders: dict[str, int], split: dict[str, int]
) -> None:
    entries: dict[str, bytes] = {}
    for prefix, per_class in folders.items():
        entries |= class_folders({"cat": per_class, "dog": per_class}, prefix=prefix)

    report = ingest(entries)

    assert report.classes == {"cat": sum(folders.values()), "dog": sum(folders.values())}
    assert report.split == split
    assert report.skipped == ()


def test_stored_images_follow_the_split_class_and_number_layout(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 1}, prefix="train/") | class_folders(
        {"cat": 1, "dog": 1}, prefix="validation/"
    )

    report = ingest(entries)

    assert report.root is not None
    assert sorted(r.path for r in report.images) == [
        "images/train/cat/000001.jpg",
        "images/train/cat/000002.jpg",
        "images/train/dog/000001.jpg",
        "images/val/cat/000001.jpg",
        "images/val/dog/000001.jpg",
    ]
    assert sorted(r.source for r in report.images) == sorted(entries)
    for record in report.images:
        assert record.path.split("/")[1:3] == [record.split, record.label]
        with Image.open(report.root / record.path) as stored:
            assert stored.format == "JPEG"
            assert stored.size == (24, 24)
    on_disk = sorted(p.relative_to(report.root).as_posix() for p in report.root.rglob("*.jpg"))
    assert on_disk == sorted(r.path for r in report.images)


def test_class_names_are_nfc_normalised(ingest: Ingest) -> None:
    decomposed = "cafe\u0301"
    assert unicodedata.normalize("NFC", decomposed) == "café" != decomposed

    report = ingest({f"{decomposed}/1.png": picture(1), "dog/2.png": picture(2)})

    assert report.classes == {"café": 1, "dog": 1}
    assert report.root is not None
    assert (report.root / "images" / "all" / "café").is_dir()


def test_the_same_folder_in_nfd_and_nfc_is_one_class(ingest: Ingest) -> None:
    report = ingest(
        {"cafe\u0301/1.png": picture(1), "café/2.png": picture(2), "dog/3.png": picture(3)}
    )

    assert report.classes == {"café": 2, "dog": 1}


@pytest.mark.parametrize(
    "raw_name",
    [b"caf\xc3\xa9/1.png", b"caf\x82/1.png"],
    ids=["utf-8 bytes", "cp437 bytes"],
)
def test_names_without_the_utf8_flag_are_decoded(
    ingest: Ingest, make_archive: Callable[..., Path], raw_name: bytes
) -> None:
    entries = [ZipEntry("placeholder", picture(1), raw_name=raw_name), ("dog/2.png", picture(2))]
    with zipfile.ZipFile(make_archive(entries)) as zf:
        assert not zf.infolist()[0].flag_bits & 0x800

    report = ingest(entries)

    assert report.classes == {"café": 1, "dog": 1}


@pytest.mark.parametrize(
    "method",
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "deflated", "bzip2", "lzma"],
)
def test_every_zip_compression_method_python_reads_is_accepted(ingest: Ingest, method: int) -> None:
    report = ingest(PETS, zip_options={"compression": method})

    assert report.classes == {"cat": 3, "dog": 3}


def test_a_folder_inside_a_class_folder_still_belongs_to_the_class(ingest: Ingest) -> None:
    report = ingest(PETS | {"cat/close-ups/9.png": picture(9)})

    assert report.classes == {"cat": 4, "dog": 3}


# --- hostile or awkward entries: skipped, with the reason ----------------------------

SKIPPED_ENTRIES = [
    pytest.param(
        ZipEntry("../x.png", png_bytes()), "unsafe path ('..' leaves the archive)", id="../x.png"
    ),
    pytest.param(
        ZipEntry("cat/../../x.png", png_bytes()),
        "unsafe path ('..' leaves the archive)",
        id="cat/../../x.png",
    ),
    pytest.param(ZipEntry("/etc/x.png", png_bytes()), "unsafe path (absolute)", id="absolute"),
    pytest.param(
        ZipEntry("cat\\x.png", png_bytes()), "unsafe path (backslash in the name)", id="backslash"
    ),
    pytest.param(ZipEntry("C:/x.png", png_bytes()), "unsafe path (drive letter)", id="C:/"),
    pytest.param(ZipEntry("c:x.png", png_bytes()), "unsafe path (drive letter)", id="c:"),
    pytest.param(
        ZipEntry("cat/x\x07.png", png_bytes()),
        "unsafe path (control characters in the name)",
        id="control character",
    ),
    pytest.param(
        ZipEntry("cat/link.png", b"/etc/passwd", external_attr=SYMLINK_ATTR),
        "symbolic link; links are never followed",
        id="symlink",
    ),
    pytest.param(
        ZipEntry("cat/more.zip", zip_bytes({"a/1.png": png_bytes()})),
        "nested archive; not opened, unpack it into the class folders",
        id="nested zip by name",
    ),
    pytest.param(
        ZipEntry("cat/more.tar.gz", b"\x1f\x8b\x08\x00" + bytes(20)),
        "nested archive; not opened",
        id="nested tar.gz by name",
    ),
    pytest.param(
        ZipEntry("cat/holiday.png", zip_bytes({"a/1.png": png_bytes()})),
        "nested archive (zip); not opened, unpack it into the class folders",
        id="nested zip named .png",
    ),
    pytest.param(
        ZipEntry("cat/notes.jpg", b"shopping list: milk, eggs\n"),
        "not an image (content is not a recognised picture format)",
        id="text named .jpg",
    ),
    pytest.param(ZipEntry("cat/empty.png", b""), "not an image", id="empty file"),
    pytest.param(
        ZipEntry("cat/cut.jpg", noise_bytes(fmt="JPEG")[:1500]),
        "truncated or corrupt image data",
        id="truncated jpeg",
    ),
    pytest.param(
        ZipEntry("cat/bomb.png", bomb_png(9000, 9000)),
        "too many pixels (9000×9000 is over 25,000,000)",
        id="decompression bomb png",
    ),
    pytest.param(
        ZipEntry("cat/tiny.png", png_bytes((8, 8))),
        "too small (8×8; the shorter side must be at least 16 px)",
        id="too small",
    ),
    pytest.param(
        ZipEntry("cat/icon.png", image_bytes(Image.new("RGB", (32, 32)), "ICO")),
        "image format not supported (ICO); save it as PNG or JPEG",
        id="ico named .png",
    ),
    pytest.param(
        ZipEntry("cat/layers.psd", b"8BPS\x00\x01" + bytes(40)),
        "image format not supported (PSD); save it as PNG or JPEG",
        id="psd",
    ),
    pytest.param(
        ZipEntry("cat/old.png", png_bytes(), compress_type=9),
        "unsupported compression method (9); zip it again",
        id="deflate64",
    ),
    pytest.param(
        ZipEntry("readme.png", png_bytes()), "not inside a class folder", id="file at top level"
    ),
    pytest.param(
        ZipEntry("x" * 101 + "/1.png", png_bytes()),
        "class folder name is longer than 100 characters; shorten it",
        id="class name too long",
    ),
]


@pytest.mark.parametrize(("entry", "reason"), SKIPPED_ENTRIES)
def test_a_hostile_or_unusable_entry_is_skipped_with_its_reason(
    ingest: Ingest, entry: ZipEntry, reason: str
) -> None:
    report = ingest([*PETS.items(), entry])

    assert skipped(report)[entry.name].startswith(reason)
    assert report.classes == {"cat": 3, "dog": 3}
    assert entry.name not in {r.source for r in report.images}


def test_path_traversal_writes_nothing_outside_the_dataset(ingest: Ingest, tl_home: Path) -> None:
    entries = [("../escaped.png", png_bytes()), ("../../escaped-too.png", png_bytes())]

    report = ingest([*PETS.items(), *entries])

    assert set(skipped(report)) == {"../escaped.png", "../../escaped-too.png"}
    everything_of_this_run = tl_home.parent  # pytest's base folder: the workspace's parent
    assert not list(everything_of_this_run.rglob("escaped*.png"))


def test_a_duplicate_entry_name_is_skipped_and_the_first_copy_is_used(ingest: Ingest) -> None:
    first, second = picture("first"), picture("second")

    report = ingest([*PETS.items(), ("cat/twin.png", first), ("cat/twin.png", second)])

    assert skipped(report) == {
        "cat/twin.png": "duplicate entry name in the archive; only the first is used"
    }
    assert report.classes == {"cat": 4, "dog": 3}


def test_os_junk_is_ignored_and_counted(ingest: Ingest) -> None:
    junk = {
        "__MACOSX/cat/._000.png": b"\x00\x05\x16\x07",
        "cat/._000.png": b"\x00\x05\x16\x07",
        ".DS_Store": b"Bud1",
        "dog/.DS_Store": b"Bud1",
        "Thumbs.db": b"\xd0\xcf\x11\xe0",
        "dog/desktop.ini": b"[.ShellClassInfo]\n",
        ".hidden/1.png": picture("hidden"),
    }

    report = ingest(PETS | junk)

    assert report.junk_ignored == len(junk)
    assert report.skipped == ()
    assert report.classes == {"cat": 3, "dog": 3}


def test_a_jpeg_named_png_is_accepted(ingest: Ingest) -> None:
    report = ingest(PETS | {"cat/actually-a-jpeg.png": jpeg_bytes()})

    assert report.classes == {"cat": 4, "dog": 3}
    assert report.skipped == ()


def test_an_entry_with_a_bad_crc_is_skipped_not_fatal(tmp_path: Path) -> None:
    entries = PETS | {"cat/bad.png": noise_bytes()}
    path = archive_with_broken_crc(tmp_path / "data.zip", entries, "cat/bad.png")

    report = ingest_archive(path)

    assert skipped(report)["cat/bad.png"].startswith("corrupt entry in the archive (Bad CRC-32")
    assert report.classes == {"cat": 3, "dog": 3}


def test_an_entry_whose_header_understates_its_size_is_skipped(ingest: Ingest) -> None:
    liar = ZipEntry(
        "cat/liar.png", noise_bytes(), compress_type=zipfile.ZIP_STORED, declared_size=100
    )

    report = ingest([*PETS.items(), liar], limits=IngestLimits(max_entry_bytes=1000))

    # zipfile never yields more than the declared size; the CRC then exposes the lie.
    assert skipped(report)["cat/liar.png"].startswith("corrupt entry in the archive")


def test_an_entry_declared_over_the_per_file_cap_is_skipped_without_reading_it(
    make_archive: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_archive(PETS | {"cat/huge.png": noise_bytes()})
    opened = spy_on_entry_reads(monkeypatch)

    report = ingest_archive(path, limits=IngestLimits(max_entry_bytes=2000))

    assert skipped(report)["cat/huge.png"].startswith("too large (")
    assert "cat/huge.png" not in opened
    assert report.classes == {"cat": 3, "dog": 3}


def test_a_zip_bomb_entry_is_skipped_by_its_ratio_without_decompressing(
    make_archive: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = ZipEntry("cat/zeros.png", bytes(20 * MiB), compress_type=zipfile.ZIP_DEFLATED)
    path = make_archive([*PETS.items(), bomb])
    assert path.stat().st_size < 100_000
    opened = spy_on_entry_reads(monkeypatch)

    report = ingest_archive(path)

    reason = skipped(report)["cat/zeros.png"]
    assert reason.startswith("suspicious compression ratio (")
    assert reason.endswith("looks like a zip bomb")
    assert "cat/zeros.png" not in opened


def test_a_split_folder_inside_a_split_folder_is_not_a_class(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 2}, prefix="train/") | {
        "train/val/3.png": picture(3),
        "train/val/cat/4.png": picture(4),
    }

    report = ingest(entries)

    reason = "'val' is a split folder inside a class or split folder; it is not a class"
    assert skipped(report) == {"train/val/3.png": reason, "train/val/cat/4.png": reason}
    assert report.classes == {"cat": 2, "dog": 2}


def test_files_beside_split_folders_are_skipped_as_outside_the_split(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 2}, prefix="train/") | {
        "extra/cat/5.png": picture(5),
        "notes.png": picture(6),
    }

    report = ingest(entries)

    outside = "outside the train/val folders; the split is unknown"
    assert skipped(report) == {"extra/cat/5.png": outside, "notes.png": outside}


def test_files_beside_the_class_folders_in_a_wrapper_are_skipped(ingest: Ingest) -> None:
    report = ingest(
        class_folders({"cat": 2, "dog": 2}, prefix="data/") | {"data/x.png": png_bytes()}
    )

    assert skipped(report) == {"data/x.png": "not inside a class folder"}
    assert report.classes == {"cat": 2, "dog": 2}


def test_an_image_that_crashes_pillow_is_skipped_and_the_ingest_goes_on(ingest: Ingest) -> None:
    report = ingest(PETS | {"cat/odd-exif.jpg": mistyped_exif_jpeg()})

    assert skipped(report)["cat/odd-exif.jpg"].startswith("truncated or corrupt image data")


# --- archives refused as a whole -----------------------------------------------------


def assert_says_what_and_what_to_do(message: str, archive_name: str, remedy: str) -> None:
    assert repr(archive_name) in message, "the message must name the archive"
    assert remedy in message, "the message must say what to do"
    assert "\n" not in message


def test_an_encrypted_entry_refuses_the_archive(refuse: Refuse) -> None:
    message = refuse(
        [*PETS.items(), ZipEntry("cat/secret.png", png_bytes(), flag_bits=ENCRYPTED_FLAG)],
        name="locked.zip",
    )

    assert_says_what_and_what_to_do(message, "locked.zip", "without a password")
    assert "encrypted" in message
    assert "'cat/secret.png'" in message


@pytest.mark.parametrize(
    "content",
    [b"name,label\ncat.png,cat\n", b"", png_bytes()],
    ids=["text file", "empty file", "png named .zip"],
)
def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(content)

    with pytest.raises(DataError) as caught:
        ingest_archive(path)

    message = str(caught.value)
    assert_says_what_and_what_to_do(message, "upload.zip", "upload the complete file")
    assert "cannot be opened as a zip archive" in message
    assert "truncated or not a zip" in message


def test_a_truncated_zip_is_refused(tmp_path: Path) -> None:
    blob = zip_bytes(PETS)
    path = tmp_path / "half.zip"
    path.write_bytes(blob[: len(blob) // 2])

    with pytest.raises(DataError) as caught:
        ingest_archive(path)

    assert_says_what_and_what_to_do(str(caught.value), "half.zip", "upload the complete file")
    assert "truncated" in str(caught.value)


def test_a_zip_whose_directory_is_damaged_is_refused(tmp_path: Path) -> None:
    blob = bytearray(zip_bytes(PETS))
    central = blob.index(b"PK\x01\x02")
    blob[central : central + 4] = b"XXXX"
    path = tmp_path / "damaged.zip"
    path.write_bytes(bytes(blob))

    with pytest.raises(DataError) as caught:
        ingest_archive(path)

    assert_says_what_and_what_to_do(str(caught.value), "damaged.zip", "Compress")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        ingest_archive(tmp_path / "nowhere.zip")

    assert_says_what_and_what_to_do(str(caught.value), "nowhere.zip", "upload the zip again")
    assert "does not exist" in str(caught.value)


def test_too_many_entries_are_refused_before_the_directory_is_parsed(
    make_archive: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_archive(class_folders({"cat": 5, "dog": 5}), "many.zip")
    forbid_opening_zips(monkeypatch)

    with pytest.raises(DataError) as caught:
        ingest_archive(path, limits=IngestLimits(max_entries=5))

    message = str(caught.value)
    assert_says_what_and_what_to_do(message, "many.zip", "TL_MAX_ENTRIES")
    assert "has 10 entries, over the limit of 5" in message


def test_an_end_record_that_understates_the_entry_count_does_not_bypass_the_cap(
    refuse: Refuse,
) -> None:
    message = refuse(
        class_folders({"cat": 5, "dog": 5}),
        zip_options={"declared_count": 2},
        limits=IngestLimits(max_entries=5),
    )

    assert "has 10 entries, over the limit of 5" in message


def test_an_archive_over_the_size_cap_is_refused(refuse: Refuse) -> None:
    message = refuse(PETS, name="big.zip", limits=IngestLimits(max_archive_bytes=100))

    assert_says_what_and_what_to_do(message, "big.zip", "split the dataset")
    assert "over the limit of" in message


def test_an_archive_declaring_more_than_the_total_cap_is_refused(refuse: Refuse) -> None:
    total = sum(len(data) for data in PETS.values())

    message = refuse(PETS, name="wide.zip", limits=IngestLimits(max_total_bytes=total - 1))

    assert_says_what_and_what_to_do(message, "wide.zip", "split the dataset")
    assert "would unpack to" in message


def test_an_archive_with_a_single_class_is_refused(refuse: Refuse) -> None:
    message = refuse(class_folders({"cat": 4}, prefix="pets/"), name="cats.zip")

    assert_says_what_and_what_to_do(message, "cats.zip", "Put each class in its own folder")
    assert "only one class ('cat')" in message
    assert "at least two" in message


def test_an_archive_whose_second_class_is_all_unusable_is_refused_as_one_class(
    refuse: Refuse,
) -> None:
    message = refuse(class_folders({"cat": 3}) | {"dog/a.txt": b"woof", "dog/b.jpg": b"woof"})

    assert "only one class ('cat')" in message


def test_an_archive_without_usable_images_is_refused_with_an_example(refuse: Refuse) -> None:
    message = refuse({"cat/a.txt": b"meow", "dog/b.txt": b"woof"}, name="words.zip")

    assert_says_what_and_what_to_do(message, "words.zip", "one folder per class")
    assert "contains no usable images (2 files skipped" in message
    assert "'cat/a.txt': not an image" in message


def test_an_empty_zip_is_refused(refuse: Refuse) -> None:
    message = refuse({}, name="empty.zip")

    assert_says_what_and_what_to_do(message, "empty.zip", "one folder per class")
    assert "contains no usable images (0 files skipped)" in message


def test_a_zip_of_only_folders_and_junk_is_refused(refuse: Refuse) -> None:
    message = refuse([ZipEntry("cat/"), ZipEntry("dog/"), ("__MACOSX/._cat", b"x")])

    assert "contains no usable images" in message


def test_the_source_name_is_used_in_messages(refuse: Refuse) -> None:
    message = refuse({"cat/1.png": picture(1)}, source_name="My Pets.zip")

    assert "'My Pets.zip'" in message


# --- stored images -------------------------------------------------------------------


def test_the_exif_orientation_is_applied_to_the_stored_image(ingest: Ingest) -> None:
    report = ingest(PETS | {"cat/rotated.jpg": jpeg_bytes((40, 20), orientation=6)})

    with Image.open(stored_file(report, "cat/rotated.jpg")) as stored:
        assert stored.size == (20, 40)


def test_a_large_image_is_stored_downscaled_to_stored_max_side(ingest: Ingest) -> None:
    report = ingest(
        PETS | {"cat/wide.png": picture("wide", (100, 50))},
        limits=IngestLimits(stored_max_side=32),
    )

    with Image.open(stored_file(report, "cat/wide.png")) as stored:
        assert stored.size == (32, 16)


def test_a_plain_upright_jpeg_is_stored_byte_for_byte(ingest: Ingest) -> None:
    original = jpeg_bytes((32, 32))

    report = ingest(PETS | {"cat/photo.jpg": original})

    assert stored_file(report, "cat/photo.jpg").read_bytes() == original


# --- warnings in the report ----------------------------------------------------------


def test_a_healthy_dataset_has_no_warnings(ingest: Ingest) -> None:
    report = ingest(class_folders({"cat": 25, "dog": 25}))

    assert report.warnings == ()


def test_a_tiny_dataset_with_few_images_per_class_is_warned_about(ingest: Ingest) -> None:
    warnings = ingest(PETS).warnings

    assert any(w.startswith("Tiny dataset: 6 images in all.") for w in warnings)
    assert any(w.startswith("Too few images in 'cat' (3), 'dog' (3)") for w in warnings)


def test_class_imbalance_is_warned_about(ingest: Ingest) -> None:
    warnings = ingest(class_folders({"cat": 30, "dog": 3})).warnings

    (imbalance,) = [w for w in warnings if w.startswith("Class imbalance")]
    assert "'cat' has 30 images, 'dog' only 3 (10.0×)" in imbalance
    assert "add images to 'dog'" in imbalance


def test_a_mild_imbalance_is_not_warned_about(ingest: Ingest) -> None:
    warnings = ingest(class_folders({"cat": 12, "dog": 5})).warnings

    assert not [w for w in warnings if w.startswith("Class imbalance")]


def test_the_same_picture_in_two_classes_is_warned_about_as_a_duplicate(ingest: Ingest) -> None:
    same = picture("same")

    warnings = ingest(PETS | {"cat/x.png": same, "dog/y.png": same}).warnings

    (duplicate,) = [w for w in warnings if "duplicate" in w.lower()]
    assert "'cat/x.png' (cat) and 'dog/y.png' (dog)" in duplicate
    assert "remove it from the wrong class" in duplicate


def test_a_duplicate_warning_names_the_two_classes_even_with_copies_in_one_class(
    ingest: Ingest,
) -> None:
    same = picture("same")

    warnings = ingest(PETS | {"cat/a.png": same, "cat/b.png": same, "dog/c.png": same}).warnings

    (duplicate,) = [w for w in warnings if "duplicate" in w.lower()]
    assert "(dog)" in duplicate


def test_the_same_picture_in_train_and_val_is_warned_about_as_leakage(ingest: Ingest) -> None:
    same = picture("same")
    entries = (
        class_folders({"cat": 3, "dog": 3}, prefix="train/")
        | class_folders({"cat": 1, "dog": 1}, prefix="val/")
        | {"train/cat/x.png": same, "val/cat/y.png": same}
    )

    warnings = ingest(entries).warnings

    (leakage,) = [w for w in warnings if w.startswith("Leakage")]
    assert "'train/cat/x.png' and 'val/cat/y.png'" in leakage
    assert not [w for w in warnings if "duplicate" in w.lower()]


def test_a_long_list_of_examples_is_summarised(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 2}, prefix="val/")
    for n in range(5):
        entries |= {f"train/cat/{n}.png": picture(n), f"val/cat/copy{n}.png": picture(n)}
    entries |= class_folders({"dog": 1}, prefix="train/")

    warnings = ingest(entries).warnings

    (leakage,) = [w for w in warnings if w.startswith("Leakage")]
    assert leakage.startswith("Leakage: 5 images appear in train/ and in val/ or test/")
    assert "; and 2 more." in leakage


def test_split_folders_without_val_or_without_a_class_are_warned_about(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 2}, prefix="train/") | class_folders(
        {"cat": 2}, prefix="test/"
    )

    warnings = ingest(entries).warnings

    assert any("no val/ folder" in w for w in warnings)
    assert any(w.startswith("The test/ folder has no images of 'dog'") for w in warnings)


def test_split_folders_without_train_are_warned_about(ingest: Ingest) -> None:
    entries = class_folders({"cat": 2, "dog": 2}, prefix="val/")

    warnings = ingest(entries).warnings

    assert any("no train/ folder" in w for w in warnings)


# --- the dataset store ---------------------------------------------------------------


def test_the_same_archive_twice_is_one_dataset_and_is_not_read_again(
    make_archive: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tl_home: Path
) -> None:
    path = make_archive(PETS)
    first = ingest_archive(path)

    forbid_opening_zips(monkeypatch)
    second = ingest_archive(path)

    assert second == first
    assert second.root == first.root
    assert re.fullmatch(r"[0-9a-f]{12}", first.dataset_id)
    assert [p.name for p in (tl_home / "datasets").iterdir()] == [first.dataset_id]


def test_the_dataset_id_follows_the_content_not_the_file_name(
    make_archive: Callable[..., Path],
) -> None:
    one = ingest_archive(make_archive(PETS, "one.zip"))
    renamed = ingest_archive(make_archive(PETS, "renamed.zip"))
    other = ingest_archive(make_archive(PETS | {"cat/new.png": picture("new")}, "one.zip"))

    assert renamed.dataset_id == one.dataset_id
    assert other.dataset_id != one.dataset_id


def test_home_chooses_where_the_dataset_is_stored(
    make_archive: Callable[..., Path], tmp_path: Path, tl_home: Path
) -> None:
    report = ingest_archive(make_archive(PETS), home=tmp_path / "elsewhere")

    assert report.root == (tmp_path / "elsewhere" / "datasets" / report.dataset_id).resolve()
    assert not (tl_home / "datasets" / report.dataset_id).exists()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every folder and file under `root`, with the size and time of each file."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        if p.is_file()
        else (0, 0)
        for p in root.rglob("*")
    }


def test_a_refused_archive_leaves_nothing_behind_and_keeps_existing_datasets(
    ingest: Ingest, refuse: Refuse, tl_home: Path
) -> None:
    kept = ingest(PETS, name="good.zip")
    before = tree(tl_home)

    refuse(class_folders({"cat": 3}), name="one-class.zip")  # fails after images were staged
    refuse({"x.txt": b"x", "y/z.txt": b"x"}, name="no-images.zip")

    assert tree(tl_home) == before
    assert load_dataset(kept.dataset_id) == kept


def test_a_half_written_dataset_folder_from_a_crash_is_replaced(
    make_archive: Callable[..., Path], tl_home: Path
) -> None:
    path = make_archive(PETS)
    dataset_id = ingest_archive(path, home=tl_home / "probe").dataset_id
    leftover = tl_home / "datasets" / dataset_id
    (leftover / "images" / "all" / "cat").mkdir(parents=True)
    (leftover / "images" / "all" / "cat" / "000001.jpg").write_bytes(b"half")

    report = ingest_archive(path)

    assert report.root == leftover.resolve()
    assert report.num_images == 6
    assert (leftover / "report.json").is_file()


def test_load_dataset_returns_the_stored_report(ingest: Ingest) -> None:
    report = ingest(PETS)

    loaded = load_dataset(report.dataset_id)

    assert loaded == report
    assert loaded.root == report.root
    assert len(loaded.images) == 6


@pytest.mark.parametrize(
    "dataset_id",
    [
        "../x",
        "abc",
        "",
        "0123456789AB",
        "0123456789ag",
        "0123456789abc",
        "0123456789ab\n",
        "../../etc/passwd",
        "/0123456789a",
        123456789012,
        None,
    ],
)
def test_load_dataset_rejects_a_malformed_id(dataset_id: object) -> None:
    with pytest.raises(DataError, match="Expected a dataset id of 12 hex digits"):
        load_dataset(dataset_id)  # type: ignore[arg-type]


def test_load_dataset_of_an_unknown_id_says_so() -> None:
    with pytest.raises(DataError, match=r"No stored dataset '0123456789ab'.*Upload the archive"):
        load_dataset("0123456789ab")


def test_list_datasets_is_empty_in_a_new_workspace() -> None:
    assert list_datasets() == []


def test_list_datasets_shows_the_newest_first(make_archive: Callable[..., Path]) -> None:
    older = ingest_archive(make_archive(PETS, "older.zip"))
    newer = ingest_archive(make_archive(class_folders({"ant": 2, "bee": 2}), "newer.zip"))
    assert older.root is not None and newer.root is not None
    os.utime(older.root / "report.json", (1_000_000_000, 1_000_000_000))

    assert [r.dataset_id for r in list_datasets()] == [newer.dataset_id, older.dataset_id]


def test_list_datasets_ignores_folders_that_are_not_datasets(ingest: Ingest, tl_home: Path) -> None:
    report = ingest(PETS)
    assert report.root is not None
    # What a concurrent ingest looks like just before it publishes its staging folder.
    staging = tl_home / "datasets" / f".ingest-{report.dataset_id}-abc123"
    staging.mkdir()
    (staging / "report.json").write_text((report.root / "report.json").read_text())
    (tl_home / "datasets" / "notes").mkdir()

    assert [r.root for r in list_datasets()] == [report.root]


# --- class mode: whose datasets a student sees -------------------------------------------

ADA, GRACE = Identity.student("Ada"), Identity.student("Grace")


@pytest.fixture
def class_datasets(make_archive: Callable[..., Path]) -> dict[str, str]:
    """Datasets uploaded by Ada, by Grace and by the teacher, and one with no uploader."""
    ids = {}
    for who, classes in [
        ("Ada", {"cat": 2, "dog": 2}),
        ("Grace", {"ant": 2, "bee": 2}),
        ("Teacher", {"owl": 2, "fox": 2}),
        ("nobody", {"red": 2, "blue": 2}),
    ]:
        report = ingest_archive(make_archive(class_folders(classes), f"{who}.zip"))
        ids[who] = report.dataset_id
    record_dataset_owner(ids["Ada"], ADA)
    record_dataset_owner(ids["Grace"], GRACE)
    record_dataset_owner(ids["Teacher"], Identity.teacher())
    return ids


def test_a_student_lists_their_own_the_teachers_and_unowned_datasets_only(
    class_datasets: dict[str, str],
) -> None:
    listed = {r.dataset_id for r in list_datasets(actor=ADA)}

    assert listed == {class_datasets[who] for who in ("Ada", "Teacher", "nobody")}


def test_the_teacher_and_the_operator_list_every_dataset(class_datasets: dict[str, str]) -> None:
    everything = set(class_datasets.values())

    assert {r.dataset_id for r in list_datasets(actor=Identity.teacher())} == everything
    assert {r.dataset_id for r in list_datasets()} == everything


def test_a_student_cannot_load_another_students_dataset(class_datasets: dict[str, str]) -> None:
    with pytest.raises(AccessDenied, match=r"uploaded by another student.*ask the teacher"):
        load_dataset(class_datasets["Grace"], actor=ADA)

    assert load_dataset(class_datasets["Ada"], actor=ADA).classes == {"cat": 2, "dog": 2}
    assert load_dataset(class_datasets["Grace"], actor=GRACE).classes == {"ant": 2, "bee": 2}
    assert load_dataset(class_datasets["Grace"], actor=Identity.teacher()).num_images == 4
    assert load_dataset(class_datasets["Grace"]).num_images == 4


def test_a_dataset_the_teacher_shares_is_open_to_every_student(
    class_datasets: dict[str, str],
) -> None:
    share_dataset(Identity.teacher(), class_datasets["Grace"])

    assert load_dataset(class_datasets["Grace"], actor=ADA).num_images == 4
    assert class_datasets["Grace"] in {r.dataset_id for r in list_datasets(actor=ADA)}


def test_progress_is_reported_up_to_the_total(ingest: Ingest) -> None:
    calls: list[tuple[int, int]] = []

    ingest(PETS | {"cat/notes.jpg": b"text"}, progress=lambda *call: calls.append(call))

    assert calls[-1] == (7, 7)
    assert [done for done, _ in calls] == list(range(1, 8))
    assert {total for _, total in calls} == {7}


def test_progress_reaches_the_total_when_the_last_entry_is_unreadable(tmp_path: Path) -> None:
    entries = PETS | {"dog/zzz.png": noise_bytes()}  # sorted last: read last
    path = archive_with_broken_crc(tmp_path / "data.zip", entries, "dog/zzz.png")
    calls: list[tuple[int, int]] = []

    ingest_archive(path, progress=lambda *call: calls.append(call))

    assert calls[-1] == (7, 7)


# --- the report document -------------------------------------------------------------


def test_to_json_is_the_cli_contract_and_serialisable(ingest: Ingest) -> None:
    report = ingest(PETS | {"cat/notes.jpg": b"text", "__MACOSX/._x": b""}, name="pets.zip")

    doc = report.to_json()

    assert set(doc) == REPORT_JSON_KEYS
    assert json.loads(json.dumps(doc)) == doc
    assert doc["classes"] == {"cat": 3, "dog": 3}
    assert doc["num_images"] == 6
    assert doc["split"] is None
    assert [s["path"] for s in doc["skipped"]] == ["cat/notes.jpg"]
    assert doc["skipped"][0]["reason"].startswith("not an image")
    assert doc["source_name"] == "pets.zip"
    assert doc["junk_ignored"] == 1
    assert all(isinstance(w, str) for w in doc["warnings"])
