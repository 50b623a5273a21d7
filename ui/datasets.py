"""Getting a dataset into the session: the bundled sample, uploads, stored ones, the URL.

The functions here call `tl_core` and record only the dataset id in session state
(`ui.state`); the report itself is always read back from disk by id, as the session's
person (in class mode a student cannot open another student's upload). A zip is never
read in the script thread: `tl_core.data.ingest_job` reads it in a background process,
the session keeps its small `IngestTicket`, and `follow_ingest` polls it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tl_core import DatasetReport, TLError, load_dataset
from tl_core.data.ingest_job import (
    IngestState,
    IngestTicket,
    forget_ingest,
    ingest_state,
    save_upload,
    start_ingest,
)
from tl_core.viz.markdown import escape_markdown
from ui import state
from ui.identity import current_actor

#: The offline sample, built by ``scripts/make_sample_dataset.py`` (``make sample``).
SAMPLE_ARCHIVE = Path(__file__).resolve().parents[1] / "assets" / "sample_shapes.zip"

#: Session-state key of the `IngestTicket` of the zip this session waits for.
PENDING_INGEST = "pending_ingest"
#: Seconds between two looks at a running ingest.
POLL_SECONDS = 0.5

logger = logging.getLogger(__name__)


def current_dataset() -> DatasetReport | None:
    """Return the report of the chosen dataset, or ``None`` when none is chosen.

    Raises `TLError` (and forgets the choice) when the stored dataset is gone.
    """
    dataset_id = state.dataset_id()
    if dataset_id is None:
        return None
    try:
        return load_dataset(dataset_id, actor=current_actor())
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
        report = load_dataset(asked, actor=current_actor())
    except TLError as exc:
        state.clear_dataset_id()
        st.warning(
            "The dataset named in this link cannot be opened. " + escape_markdown(str(exc)),
            icon=":material/link_off:",
        )
        return
    state.set_dataset_id(report.dataset_id)


def choose_sample() -> None:
    """Choose the bundled sample: at once when it is stored, else once its ingest ends.

    Does nothing while another ingest is pending for this session (an upload wins), and
    explains on the page when the sample file is missing. Raises `TLError` when the
    ingest cannot be started.
    """
    if pending_ingest() is not None:
        return
    if not SAMPLE_ARCHIVE.is_file():
        st.info(
            "The bundled sample dataset is missing from this installation "
            f"(`{SAMPLE_ARCHIVE.name}` in `assets/`). Upload a zip of your own below, or "
            "build the sample with `make sample` and reload the page.",
            icon=":material/info:",
        )
        return
    _start(SAMPLE_ARCHIVE, source_name=SAMPLE_ARCHIVE.name, consume=False)


def choose_upload(upload: UploadedFile) -> None:
    """Start ingesting an uploaded zip; it becomes the session's dataset once stored.

    The upload is written into the workspace at once, in chunks (Streamlit holds uploads
    in memory), and read by a background process (`tl_core.data.ingest_job`); the copy is
    deleted when that ends. The previous choice stays until then, and stays for good if
    the archive is refused. Raises `TLError` when the ingest cannot be started.
    """
    upload.seek(0)
    copy = save_upload(upload)
    _start(copy, source_name=upload.name, consume=True)


def _start(archive: Path, *, source_name: str, consume: bool) -> None:
    ticket = start_ingest(archive, source_name=source_name, consume=consume, actor=current_actor())
    if ingest_state(ticket).state == "ready":
        st.session_state.pop(PENDING_INGEST, None)
        state.set_dataset_id(ticket.dataset_id)
    else:
        st.session_state[PENDING_INGEST] = ticket


def pending_ingest() -> IngestTicket | None:
    """Return the ingest this session waits for, or ``None``."""
    ticket = st.session_state.get(PENDING_INGEST)
    return ticket if isinstance(ticket, IngestTicket) else None


def follow_ingest() -> None:
    """Show the session's pending ingest; call after `choose_upload` and `choose_sample`.

    While it runs, a fragment redraws its progress every `POLL_SECONDS` and reruns the
    page when it ends. Once it ends, a stored dataset becomes the session's choice, and
    a failure is shown once, with "Try again" when the process died or hit a bug.
    """
    ticket = pending_ingest()
    if ticket is None:
        return
    progress = ingest_state(ticket)
    if progress.state == "running":
        st.fragment(_poll, run_every=POLL_SECONDS)(ticket)
        return
    st.session_state.pop(PENDING_INGEST, None)
    if progress.state == "ready":
        state.set_dataset_id(ticket.dataset_id)
    else:
        _render_failure(ticket, progress)


def _poll(ticket: IngestTicket) -> None:
    """The fragment's body: one look at two small files and one progress bar; nothing
    else is read or drawn while the ingest runs, so a watching tab costs the server little."""
    progress = ingest_state(ticket)
    if progress.state != "running":
        st.rerun()
    st.progress(
        progress.fraction,
        text=f"Reading {escape_markdown(ticket.source_name)}: {progress.label}",
    )


def _render_failure(ticket: IngestTicket, failure: IngestState) -> None:
    if failure.internal:
        ref = uuid.uuid4().hex[:8]
        logger.error("Ingest of %r failed, shown as ref %s: %s", ticket, ref, failure.error)
        st.error(
            f"Reading {escape_markdown(ticket.source_name)} went wrong (ref {ref}). This is a "
            "bug, not something you did; try again, and quote the reference if it keeps "
            "happening.",
            icon=":material/bug_report:",
        )
    else:
        st.error(escape_markdown(failure.error or ""), icon=":material/error:")
    if failure.internal or failure.crashed:
        st.button(
            "Try again",
            key=f"ingest_retry_{ticket.dataset_id}",
            icon=":material/refresh:",
            on_click=_retry,
            args=(ticket,),
        )


def _retry(ticket: IngestTicket) -> None:
    forget_ingest(ticket)
    # The uploader still holds the file: forgetting that it was handled reads it again.
    st.session_state.pop(state.HANDLED_UPLOAD, None)
