"""Ingest jobs: a zip is ingested in a process of its own, shared, and survives its crash."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import class_folders, noise_bytes
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import dataset_owners
from tl_core.classroom.settings import update_class_settings
from tl_core.data import ingest_job
from tl_core.data.archive import archive_id, ingest_archive, list_datasets, load_dataset
from tl_core.data.ingest_job import (
    IngestState,
    IngestTicket,
    ingest_folder,
    ingest_state,
    run_ingest,
    start_ingest,
)
from tl_core.errors import AccessDenied, DataError
from tl_core.workspace import datasets_dir

MakeArchive = Callable[..., Path]

#: Seconds an ingest of a test archive may take, process start-up included.
TIMEOUT_S = 60.0


def _wait(ticket: IngestTicket, until: Callable[[IngestState], bool] | None = None) -> IngestState:
    """Poll the ingest until `until` holds (default: it no longer runs); fail on timeout."""
    done = until or (lambda state: state.state != "running")
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        state = ingest_state(ticket)
        if done(state):
            return state
        time.sleep(0.005)
    pytest.fail(f"the ingest of {ticket.source_name} did not get there in {TIMEOUT_S} s")


def test_the_ingest_runs_in_another_process_and_stores_the_dataset(
    make_archive: MakeArchive,
) -> None:
    archive = make_archive(class_folders({"cat": 4, "dog": 4}), "pets.zip")

    ticket = start_ingest(archive)
    running = ingest_state(ticket)

    assert running.state == "running"
    assert running.pid is not None
    assert running.pid != os.getpid()
    assert _wait(ticket).state == "ready"
    report = load_dataset(ticket.dataset_id)
    assert report.source_name == "pets.zip"
    assert report.classes == {"cat": 4, "dog": 4}


def test_a_bad_archive_ends_with_its_data_error_message(tmp_path: Path) -> None:
    archive = tmp_path / "notes.zip"
    archive.write_bytes(b"these are my notes, not a zip")
    with pytest.raises(DataError) as expected:
        ingest_archive(archive, home=tmp_path / "elsewhere")

    state = _wait(start_ingest(archive))

    assert state.state == "failed"
    assert state.error == str(expected.value)
    assert "'notes.zip' cannot be opened as a zip archive" in (state.error or "")
    assert not state.internal
    assert not state.crashed
    assert str(tmp_path) not in (state.error or "")


def test_two_starts_of_the_same_archive_share_one_process(make_archive: MakeArchive) -> None:
    entries = class_folders({"cat": 4, "dog": 4})
    first_copy = make_archive(entries, "first.zip")
    second_copy = make_archive(entries, "second.zip")

    first = start_ingest(first_copy, consume=True)
    second = start_ingest(second_copy, consume=True)

    assert second.dataset_id == first.dataset_id
    assert ingest_state(second).pid == ingest_state(first).pid
    assert not second_copy.exists(), "the second copy is not needed and was deleted"
    assert _wait(second).state == "ready"
    assert not first_copy.exists(), "the consumed upload is deleted once ingested"
    assert not any(ingest_folder(first).glob("*.zip"))


def test_a_stored_archive_is_ready_at_once_without_a_process(make_archive: MakeArchive) -> None:
    archive = make_archive(class_folders({"cat": 3, "dog": 3}))
    stored = ingest_archive(archive)

    ticket = start_ingest(archive)

    assert ticket.dataset_id == stored.dataset_id
    assert ingest_state(ticket) == IngestState("ready")


def test_a_killed_ingest_reads_as_failed_and_stores_nothing(make_archive: MakeArchive) -> None:
    kept = ingest_archive(make_archive(class_folders({"owl": 3, "emu": 3}), "birds.zip"))
    archive = make_archive(class_folders({"cat": 1500, "dog": 1500}), "big.zip")
    ticket = start_ingest(archive)

    checking = _wait(ticket, lambda state: 0 < state.done < state.total)
    assert checking.label == f"Checking {checking.done:,} of 3,000 files…"
    assert checking.pid is not None
    os.kill(checking.pid, signal.SIGKILL)
    state = _wait(ticket)

    assert state.state == "failed"
    assert state.crashed
    assert "big.zip" in (state.error or "")
    assert "stopped before it finished" in (state.error or "")
    assert "Try again" in (state.error or "")
    assert [report.dataset_id for report in list_datasets()] == [kept.dataset_id]
    assert not list(datasets_dir().glob(".ingest-*")), "the dead process's staging is left"
    assert ingest_state(ticket) == state, "the crash reads the same on every look"


def test_an_ingest_started_again_after_a_crash_completes(make_archive: MakeArchive) -> None:
    archive = make_archive(class_folders({"cat": 4, "dog": 4}))
    ticket = start_ingest(archive)
    pid = ingest_state(ticket).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _wait(ticket).crashed

    again = start_ingest(archive)

    assert again == ticket
    assert _wait(again).state == "ready"


def test_an_unexpected_error_in_the_ingest_reads_as_an_internal_failure(
    make_archive: MakeArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(class_folders({"cat": 3, "dog": 3}))
    ticket = IngestTicket("0123456789ab", "data.zip")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest_job, "ingest_archive", broken)
    with pytest.raises(RuntimeError):
        run_ingest(ingest_folder(ticket), archive, "data.zip")
    state = ingest_state(ticket)

    assert state.state == "failed"
    assert state.internal
    assert not state.crashed
    assert "disk on fire" in (state.error or "")


def test_the_label_says_what_the_ingest_is_doing() -> None:
    assert IngestState("running").label == "Opening the archive…"
    assert IngestState("running", done=1234, total=5000).label == "Checking 1,234 of 5,000 files…"


# --- class mode: upload limit and owners ----------------------------------------------------

ADA, GRACE = Identity.student("Ada"), Identity.student("Grace")


def _big_archive(make_archive: MakeArchive, name: str = "big.zip") -> Path:
    """A valid archive of about 1.5 MB: a noise picture does not compress."""
    entries = class_folders({"cat": 3, "dog": 3}) | {"cat/big.png": noise_bytes((700, 700))}
    archive = make_archive(entries, name)
    assert archive.stat().st_size > 1024 * 1024
    return archive


def test_a_students_upload_over_the_class_limit_is_refused_and_deleted(
    make_archive: MakeArchive, tl_home: Path
) -> None:
    update_class_settings(Identity.teacher(), max_upload_mb=1)
    upload = _big_archive(make_archive)
    dataset_id = archive_id(upload)

    with pytest.raises(AccessDenied) as refused:
        start_ingest(upload, source_name="holiday.zip", consume=True, actor=ADA)

    assert str(refused.value) == (
        "The archive 'holiday.zip' is 2 MB, over the class's upload limit of 1 MB per "
        "student. Make it smaller (fewer or smaller images) or ask the teacher to raise the "
        "limit."
    )
    assert not upload.exists(), "the refused upload's copy is deleted"
    assert not (tl_home / "ingests" / dataset_id).exists()
    assert dataset_owners(dataset_id) == []


def test_the_teacher_and_the_operator_have_no_upload_limit(make_archive: MakeArchive) -> None:
    update_class_settings(Identity.teacher(), max_upload_mb=1)
    archive = _big_archive(make_archive)
    ingest_archive(archive)

    for actor in (Identity.teacher(), None):
        assert ingest_state(start_ingest(archive, actor=actor)).state == "ready"


def test_a_students_upload_under_the_default_limit_is_ingested_and_theirs(
    make_archive: MakeArchive,
) -> None:
    upload = make_archive(class_folders({"cat": 3, "dog": 3}), "pets.zip")

    ticket = start_ingest(upload, source_name="pets.zip", consume=True, actor=ADA)

    assert _wait(ticket).state == "ready"
    assert dataset_owners(ticket.dataset_id) == ["Ada"]
    assert load_dataset(ticket.dataset_id, actor=ADA).source_name == "pets.zip"
    with pytest.raises(AccessDenied):
        load_dataset(ticket.dataset_id, actor=GRACE)


def test_the_same_archive_uploaded_by_two_students_belongs_to_both(
    make_archive: MakeArchive,
) -> None:
    entries = class_folders({"cat": 3, "dog": 3})
    first = start_ingest(make_archive(entries, "ada.zip"), consume=True, actor=ADA)
    assert _wait(first).state == "ready"

    second = start_ingest(make_archive(entries, "grace.zip"), consume=True, actor=GRACE)

    assert second.dataset_id == first.dataset_id
    assert dataset_owners(first.dataset_id) == ["Ada", "Grace"]
    assert load_dataset(first.dataset_id, actor=GRACE).num_images == 6
    assert [r.dataset_id for r in list_datasets(actor=GRACE)] == [first.dataset_id]
    assert list_datasets(actor=Identity.student("Alan")) == []


def test_the_operators_upload_records_no_owner(make_archive: MakeArchive) -> None:
    upload = make_archive(class_folders({"cat": 3, "dog": 3}))

    ticket = start_ingest(upload, consume=True)

    assert _wait(ticket).state == "ready"
    assert dataset_owners(ticket.dataset_id) == []
    assert load_dataset(ticket.dataset_id, actor=GRACE).num_images == 6


def test_a_file_already_on_the_server_stays_open_to_every_student(
    make_archive: MakeArchive,
) -> None:
    # The bundled sample is started with consume=False: nobody uploaded it.
    sample = make_archive(class_folders({"cat": 3, "dog": 3}), "sample_shapes.zip")
    ingest_archive(sample)

    ticket = start_ingest(sample, actor=ADA)

    assert dataset_owners(ticket.dataset_id) == []
    assert load_dataset(ticket.dataset_id, actor=GRACE).num_images == 6


def test_a_dataset_stored_before_class_mode_stays_open_when_a_student_uploads_it(
    make_archive: MakeArchive,
) -> None:
    entries = class_folders({"cat": 3, "dog": 3})
    stored = ingest_archive(make_archive(entries, "before.zip"))

    start_ingest(make_archive(entries, "again.zip"), consume=True, actor=ADA)

    assert dataset_owners(stored.dataset_id) == []
    assert load_dataset(stored.dataset_id, actor=GRACE).num_images == 6
