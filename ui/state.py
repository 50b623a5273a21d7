"""Every session-state key and query parameter of the studio, with typed getters and setters.

Session state holds small plain values only: ids and widget keys, never reports, images
or uploaded bytes. Everything heavier lives on disk under ``TL_HOME`` and is loaded
through `tl_core` by id. A browser reload starts a new session, so the chosen dataset
is mirrored into the URL (``?dataset=<id>``) and restored from there.
"""

from __future__ import annotations

import streamlit as st

#: The id of the dataset this session works on (12 hex digits, from `tl_core`).
DATASET_ID = "dataset_id"
#: The ``file_id`` of the last upload that was ingested (or refused), so that reruns
#: of the script, which see the same upload again, do not ingest it twice.
HANDLED_UPLOAD = "handled_upload"
#: Widget key of the "stored datasets" picker on the Data page.
DATASET_PICKER = "dataset_picker"
#: Widget key of the zip uploader on the Data page.
UPLOADER = "dataset_upload"

#: Query parameter that carries the dataset id across browser reloads.
DATASET_PARAM = "dataset"


def dataset_id() -> str | None:
    """Return the id of the chosen dataset, or ``None`` when none is chosen yet."""
    value = st.session_state.get(DATASET_ID)
    return value if isinstance(value, str) else None


def set_dataset_id(value: str) -> None:
    """Choose the dataset `value` for this session and put it into the URL."""
    st.session_state[DATASET_ID] = value
    if st.query_params.get(DATASET_PARAM) != value:
        st.query_params[DATASET_PARAM] = value


def clear_dataset_id() -> None:
    """Forget the chosen dataset, in the session and in the URL."""
    st.session_state.pop(DATASET_ID, None)
    if DATASET_PARAM in st.query_params:
        del st.query_params[DATASET_PARAM]


def dataset_param() -> str | None:
    """Return the dataset id the URL asks for (unvalidated), or ``None``."""
    return st.query_params.get(DATASET_PARAM)


def handled_upload() -> str | None:
    """Return the ``file_id`` of the last upload that was ingested or refused."""
    value = st.session_state.get(HANDLED_UPLOAD)
    return value if isinstance(value, str) else None


def set_handled_upload(file_id: str) -> None:
    """Remember that the upload `file_id` was handled, so reruns leave it alone."""
    st.session_state[HANDLED_UPLOAD] = file_id
