"""Getting a dataset into the session: the bundled sample, uploads, stored ones, the URL.

The functions here call `tl_core` and record only the dataset id in session state
(`ui.state`); the report itself is always read back from disk by id.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tl_core import DatasetReport, TLError, ingest_archive, load_dataset
from tl_core.viz.markdown import escape_markdown
from ui import state

#: The offline sample, built by ``scripts/make_sample_dataset.py`` (``make sample``).
SAMPLE_ARCHIVE = Path(__file__).resolve().parents[1] / "assets" / "sample_shapes.zip"

_COPY_CHUNK = 1 << 20


def current_dataset() -> DatasetReport | None:
    """Return the report of the chosen dataset, or ``None`` when none is chosen.

    Raises `TLError` (and forgets the choice) when the stored dataset is gone.
    """
    dataset_id = state.dataset_id()
    if dataset_id is None:
        return None
    try:
        return load_dataset(dataset_id)
    except TLError:
        state.clear_dataset_id()
        raise


def sync_dataset_with_url() -> None:
    """Keep the chosen dataset and ``?dataset=`` in step; call once per run, before the page.

    A fresh session (a browser reload, a shared link) takes its dataset from the URL.
    A value that names no stored dataset gets a friendly warning and is dropped from
    the URL. Within a session, the session's choice wins and is written back into the
    URL, since switching pages drops the query string.
    """
    chosen = state.dataset_id()
    asked = state.dataset_param()
    if chosen is not None:
        if asked != chosen:
            state.set_dataset_id(chosen)
        return
    if asked is None:
        return
    try:
        report = load_dataset(asked)
    except TLError as exc:
        state.clear_dataset_id()
        st.warning(
            "The dataset named in this link cannot be opened. " + escape_markdown(str(exc)),
            icon=":material/link_off:",
        )
        return
    state.set_dataset_id(report.dataset_id)


def choose_sample() -> DatasetReport | None:
    """Ingest the bundled sample (instant once stored) and choose it.

    Returns ``None``, with an explanation on the page, when the sample file is missing.
    Raises `TLError` when it cannot be ingested.
    """
    if not SAMPLE_ARCHIVE.is_file():
        st.info(
            "The bundled sample dataset is missing from this installation "
            f"(`{SAMPLE_ARCHIVE.name}` in `assets/`). Upload a zip of your own below, or "
            "build the sample with `make sample` and reload the page.",
            icon=":material/info:",
        )
        return None
    report = ingest_with_progress(SAMPLE_ARCHIVE, source_name=SAMPLE_ARCHIVE.name)
    state.set_dataset_id(report.dataset_id)
    return report


def choose_upload(upload: UploadedFile) -> DatasetReport:
    """Ingest an uploaded zip and choose it; the previous choice stays if this raises.

    The upload is copied to a temporary file in chunks at once (Streamlit keeps
    uploads in memory) and the copy is deleted afterwards, whatever happens.
    Raises `TLError` when the archive cannot be used.
    """
    fd, tmp_name = tempfile.mkstemp(prefix="tl-upload-", suffix=".zip")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            upload.seek(0)
            shutil.copyfileobj(upload, out, _COPY_CHUNK)
        report = ingest_with_progress(tmp, source_name=upload.name)
    finally:
        tmp.unlink(missing_ok=True)
    state.set_dataset_id(report.dataset_id)
    return report


def ingest_with_progress(archive: Path, *, source_name: str) -> DatasetReport:
    """Run `tl_core.ingest_archive` inside an ``st.status`` box with a progress bar.

    Raises `TLError` after marking the box as failed; the caller shows the message.
    """
    name = escape_markdown(source_name)
    with st.status(f"Reading {name}…", expanded=True) as box:
        bar = st.progress(0.0, text="Checking the archive…")
        shown = [-1]

        def progress(done: int, total: int) -> None:
            # One update per percent: every update is a message to the browser, and an
            # archive can hold 50,000 entries.
            percent = done * 100 // max(total, 1)
            if percent != shown[0]:
                shown[0] = percent
                bar.progress(percent / 100, text=f"{done:,} of {total:,} files read")

        try:
            report = ingest_archive(archive, source_name=source_name, progress=progress)
        except TLError:
            box.update(label=f"Could not use {name}", state="error", expanded=False)
            raise
        box.update(
            label=f"{name}: {report.num_images:,} images in {len(report.classes)} classes",
            state="complete",
            expanded=False,
        )
    return report
