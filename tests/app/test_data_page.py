"""The Data page, run through the whole app (``app.py`` with its navigation) by AppTest."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.app.wizard_support import pending_ingest, settle_ingest
from tl_core import DatasetReport, ingest_archive
from tl_core.data import ingest_job
from tl_core.data.ingest_job import IngestState, IngestTicket, ingest_state
from tl_core.jobs import processes
from ui import datasets, state

ImageZip = Callable[..., bytes]

#: Seconds an ingest of a test zip may take in its background process.
#: Images in a zip whose ingest surely outlasts one run of the page (about 2 s here).
SLOW_ZIP = {"cat": 1500, "dog": 1500}


def _plain(markdown: str) -> str:
    """Undo the Markdown escaping the page applies to names and messages."""
    return markdown.replace("\\", "")


def _reading(app: AppTest) -> tuple[IngestTicket, int]:
    """The ingest the session waits for, which must be running: its ticket and pid."""
    ticket = pending_ingest(app)
    assert ticket is not None, "the page is not waiting for an ingest"
    reading = ingest_state(ticket)
    assert reading.state == "running", "the page waited for the ingest to finish"
    assert reading.pid is not None
    return ticket, reading.pid


def _start_upload(app: AppTest, name: str, content: bytes) -> AppTest:
    """Upload a zip; the page returns while its ingest runs."""
    app.file_uploader(key=state.UPLOADER).upload(name, content, "application/zip")
    return app.run()


def _upload(app: AppTest, name: str, content: bytes) -> AppTest:
    """Upload a zip and wait until its ingest has ended."""
    return settle_ingest(_start_upload(app, name, content))


def _arrive(app: AppTest) -> AppTest:
    """A first visit: the page starts reading the sample; wait until it is stored."""
    return settle_ingest(app.run())


def _shown_dataset(app: AppTest) -> str:
    """The name in the report's header: the dataset the page shows."""
    return _plain(app.header[0].value)


def _assert_no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


@pytest.fixture
def sample(tmp_path: Path) -> DatasetReport:
    """The bundled sample's report, ingested aside, to say what the page should show."""
    return ingest_archive(datasets.SAMPLE_ARCHIVE, home=tmp_path / "expected")


def test_first_visit_shows_the_sample_report(app: AppTest, sample: DatasetReport) -> None:
    _arrive(app)

    _assert_no_exception(app)
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Images"] == f"{sample.num_images:,}"
    assert metrics["Classes"] == str(len(sample.classes))
    assert [t.label for t in app.tabs] == [f"{n} ({c})" for n, c in sample.classes.items()]
    assert len(app.get("plotly_chart")) == 1
    assert len(app.get("image")[0].value) == 8
    assert app.session_state[state.DATASET_ID] == sample.dataset_id
    assert app.query_params[state.DATASET_PARAM] == sample.dataset_id


def test_the_sidebar_names_the_dataset_and_marks_the_data_step_done(
    app: AppTest, sample: DatasetReport
) -> None:
    _arrive(app)

    sidebar = " ".join(_plain(m.value) for m in app.sidebar.markdown)
    assert datasets.SAMPLE_ARCHIVE.name in sidebar
    assert f"{len(sample.classes)} classes · {sample.num_images} images" in sidebar
    assert "Data · done" in sidebar


def test_uploading_a_zip_shows_its_report_and_remembers_it(
    app: AppTest, image_zip: ImageZip, app_home: Path
) -> None:
    content = image_zip({"cat": 12, "dog": 9})
    _arrive(app)

    _upload(app, "pets.zip", content)

    _assert_no_exception(app)
    assert _shown_dataset(app) == "pets.zip"
    assert [t.label for t in app.tabs] == ["cat (12)", "dog (9)"]
    dataset_id = app.session_state[state.DATASET_ID]
    assert app.query_params[state.DATASET_PARAM] == dataset_id
    assert app.selectbox(key=state.DATASET_PICKER).value == dataset_id
    leftovers = list((app_home / ingest_job.INGESTS_DIR).rglob("*.zip"))
    assert not leftovers, "the upload's copy was not deleted"


def test_an_upload_is_ingested_once_however_often_the_page_reruns(
    app: AppTest, image_zip: ImageZip, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    start = datasets.start_ingest

    def counting_start(path: Path, **kwargs: object) -> IngestTicket:
        calls.append(str(kwargs["source_name"]))
        return start(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(datasets, "start_ingest", counting_start)
    _arrive(app)
    _upload(app, "pets.zip", image_zip({"cat": 12, "dog": 12}))
    app.run()
    app.run()

    assert calls.count("pets.zip") == 1
    assert _shown_dataset(app) == "pets.zip"


def test_an_upload_is_read_in_the_background_with_its_progress_shown(
    app: AppTest, image_zip: ImageZip
) -> None:
    _arrive(app)
    before = app.session_state[state.DATASET_ID]

    _start_upload(app, "big.zip", image_zip(SLOW_ZIP))

    _assert_no_exception(app)
    _, pid = _reading(app)
    assert pid != os.getpid()
    (bar,) = app.get("progress")
    assert _plain(bar.proto.text).startswith("Reading big.zip: ")
    assert app.session_state[state.DATASET_ID] == before
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name

    settle_ingest(app)

    assert _shown_dataset(app) == "big.zip"
    assert not app.get("progress")


def test_two_sessions_uploading_the_same_zip_share_one_ingest(
    app: AppTest, image_zip: ImageZip, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = AppTest.from_file(str(APP), default_timeout=60)
    _arrive(app)
    _arrive(other)
    started: list[list[str]] = []
    spawn = processes.spawn_detached

    def counting_spawn(argv: list[str], **kwargs: object) -> object:
        started.append(argv)
        return spawn(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "spawn_detached", counting_spawn)
    content = image_zip(SLOW_ZIP)

    _start_upload(app, "pets.zip", content)
    _start_upload(other, "same pets.zip", content)
    settle_ingest(app)
    settle_ingest(other)

    assert len(started) == 1
    assert app.session_state[state.DATASET_ID] == other.session_state[state.DATASET_ID]
    assert _shown_dataset(other) == "pets.zip", "the first upload's name is kept"


def test_a_killed_ingest_says_so_and_try_again_reads_the_upload_again(
    app: AppTest, image_zip: ImageZip
) -> None:
    _arrive(app)
    before = app.session_state[state.DATASET_ID]
    _start_upload(app, "pets.zip", image_zip(SLOW_ZIP))
    ticket, pid = _reading(app)

    os.kill(pid, signal.SIGKILL)
    settle_ingest(app)

    _assert_no_exception(app)
    (error,) = app.error
    assert "'pets.zip' stopped before it finished" in _plain(error.value)
    assert app.session_state[state.DATASET_ID] == before
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name

    app.button(key=f"ingest_retry_{ticket.dataset_id}").click().run()
    settle_ingest(app)

    _assert_no_exception(app)
    assert not app.error
    assert _shown_dataset(app) == "pets.zip"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.zip", b"these are my notes, not a zip", "cannot be opened as a zip archive"),
        ("solo.zip", None, "has only one class ('cat')"),
    ],
)
def test_a_bad_upload_shows_why_and_keeps_the_previous_dataset(
    app: AppTest, image_zip: ImageZip, name: str, content: bytes | None, message: str
) -> None:
    _arrive(app)
    before = app.session_state[state.DATASET_ID]

    _upload(app, name, content or image_zip({"cat": 5}))

    _assert_no_exception(app)
    errors = [_plain(e.value) for e in app.error]
    assert len(errors) == 1
    assert name in errors[0]
    assert message in errors[0]
    assert app.session_state[state.DATASET_ID] == before
    assert app.query_params[state.DATASET_PARAM] == before
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name


def test_a_tiny_dataset_gets_its_warnings(app: AppTest, image_zip: ImageZip) -> None:
    _arrive(app)

    _upload(app, "tiny.zip", image_zip({"cat": 3, "dog": 12}))

    warnings = [_plain(w.value) for w in app.warning]
    assert any(w.startswith("Tiny dataset: 15 images in all") for w in warnings)
    assert any(w.startswith("Too few images in 'cat' (3)") for w in warnings)
    assert any(w.startswith("Class imbalance") for w in warnings)
    assert not app.success


def test_skipped_files_are_listed_with_their_reason(app: AppTest, image_zip: ImageZip) -> None:
    _arrive(app)

    _upload(app, "notes.zip", image_zip({"cat": 12, "dog": 12}, extra={"dog/notes.txt": b"hi"}))

    skipped = app.dataframe[-1].value
    assert list(skipped.columns) == ["File", "Reason"]
    assert skipped["File"].tolist() == ["dog/notes.txt"]
    assert "not an image" in skipped["Reason"].iloc[0]
    assert {m.label: m.value for m in app.metric}["Skipped files"] == "1"


def test_a_split_archive_shows_counts_per_split(app: AppTest, image_zip: ImageZip) -> None:
    _arrive(app)

    _upload(
        app,
        "split.zip",
        image_zip({"train/cat": 12, "train/dog": 12, "val/cat": 4, "val/dog": 4}),
    )

    _assert_no_exception(app)
    assert {m.label: m.value for m in app.metric}["Train / val"] == "24 / 8"
    table = app.dataframe[0].value
    assert table.loc["cat"].tolist() == [12, 4, 16]
    assert list(table.columns) == ["train", "val", "total"]


def test_picking_a_stored_dataset_shows_it(
    app: AppTest, image_zip: ImageZip, sample: DatasetReport
) -> None:
    _arrive(app)
    _upload(app, "pets.zip", image_zip({"cat": 12, "dog": 12}))

    app.selectbox(key=state.DATASET_PICKER).select(sample.dataset_id).run()

    _assert_no_exception(app)
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name
    assert app.session_state[state.DATASET_ID] == sample.dataset_id
    assert app.query_params[state.DATASET_PARAM] == sample.dataset_id


def test_a_reload_with_the_dataset_in_the_url_restores_it(
    app: AppTest, image_zip: ImageZip, tmp_path: Path
) -> None:
    archive = tmp_path / "pets.zip"
    archive.write_bytes(image_zip({"cat": 12, "dog": 12}))
    stored = ingest_archive(archive)

    app.query_params[state.DATASET_PARAM] = stored.dataset_id
    app.run()

    _assert_no_exception(app)
    assert _shown_dataset(app) == "pets.zip"
    assert app.session_state[state.DATASET_ID] == stored.dataset_id
    assert not any("link" in w.value for w in app.warning)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../../etc/passwd", "Expected a dataset id of 12 hex digits"),
        ("0123456789ab", "No stored dataset '0123456789ab'"),
    ],
)
def test_a_bad_dataset_in_the_url_gets_a_friendly_message(
    app: AppTest, value: str, message: str
) -> None:
    app.query_params[state.DATASET_PARAM] = value
    app.run()

    _assert_no_exception(app)
    warnings = [_plain(w.value) for w in app.warning]
    assert any(w.startswith("The dataset named in this link cannot be opened") for w in warnings)
    assert any(message in w for w in warnings)
    # The page goes on as on a first visit, with the sample.
    settle_ingest(app)
    assert _shown_dataset(app) == datasets.SAMPLE_ARCHIVE.name
    assert app.query_params[state.DATASET_PARAM] == app.session_state[state.DATASET_ID]


def test_a_missing_sample_is_explained(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(datasets, "SAMPLE_ARCHIVE", tmp_path / "sample_shapes.zip")

    app.run()

    _assert_no_exception(app)
    assert "make sample" in app.info[0].value
    assert not app.header, "no report without a dataset"
    assert state.DATASET_ID not in app.session_state


def test_an_unexpected_error_shows_a_reference_not_a_traceback(
    app: AppTest,
    image_zip: ImageZip,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _arrive(app)
    before = app.session_state[state.DATASET_ID]

    def broken_start(path: Path, **kwargs: object) -> IngestTicket:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(datasets, "start_ingest", broken_start)
    with caplog.at_level(logging.ERROR, logger="ui.errors"):
        _upload(app, "pets.zip", image_zip({"cat": 12, "dog": 12}))

    _assert_no_exception(app)
    (error,) = app.error
    assert error.value.startswith("Something went wrong (ref ")
    assert "disk on fire" not in error.value
    ref = error.value.split("(ref ")[1][:8]
    assert ref in caplog.text
    assert "disk on fire" in caplog.text
    assert app.session_state[state.DATASET_ID] == before


def test_a_bug_in_the_ingest_process_shows_a_reference_and_try_again(
    app: AppTest,
    image_zip: ImageZip,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _arrive(app)
    before = app.session_state[state.DATASET_ID]
    failure = IngestState(
        "failed", error="internal error (RuntimeError: disk on fire at /srv/x)", internal=True
    )
    monkeypatch.setattr(datasets, "ingest_state", lambda ticket: failure)

    with caplog.at_level(logging.ERROR, logger="ui.datasets"):
        _upload(app, "pets.zip", image_zip({"cat": 12, "dog": 12}))

    _assert_no_exception(app)
    (error,) = app.error
    assert _plain(error.value).startswith("Reading pets.zip went wrong (ref ")
    assert "disk on fire" not in error.value
    assert "/srv/x" not in error.value
    ref = error.value.split("(ref ")[1][:8]
    assert ref in caplog.text
    assert "disk on fire" in caplog.text
    assert [b.label for b in app.button] == ["Try again"]
    assert app.session_state[state.DATASET_ID] == before
