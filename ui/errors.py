"""Show errors to people, not tracebacks: one wrapper that every page uses around its work."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from tl_core import TLError
from tl_core.viz.markdown import escape_markdown

logger = logging.getLogger(__name__)


@contextmanager
def user_errors() -> Iterator[None]:
    """Run the block; show what goes wrong in it as a message instead of a traceback.

    A `TLError` is shown with ``st.error`` as it is: its message already says what
    happened, why, and what to do. Any other exception is logged with its traceback
    under a short reference, and the page shows only that reference. The rest of the
    page goes on rendering, so state chosen earlier (a dataset, a run) stays visible.
    Streamlit's own control flow (``st.rerun``, ``st.stop``) passes through untouched,
    because it is not an ``Exception``.

    Example:
        >>> with user_errors():  # doctest: +SKIP
        ...     report = ingest_archive(path)
        ...     state.set_dataset_id(report.dataset_id)
    """
    try:
        yield
    except TLError as exc:
        st.error(escape_markdown(str(exc)), icon=":material/error:")
    except Exception:
        ref = uuid.uuid4().hex[:8]
        logger.exception("Unexpected error shown to the user as ref %s", ref)
        st.error(
            f"Something went wrong (ref {ref}). This is a bug, not something you did; "
            "try again, and quote the reference if it keeps happening.",
            icon=":material/bug_report:",
        )
