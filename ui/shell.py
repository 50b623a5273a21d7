"""Keep every page inside the app shell (`app.py`), even on a fresh server's first request.

Streamlit still supports the legacy multipage mode: while a ``pages/`` folder sits next to
the main script, a server that has not yet run ``st.navigation`` serves ``/train`` by
running ``pages/train.py`` on its own — without `app.py`, so without the page config, the
scheduler, the dataset sync or the sidebar. That happens on the first page load after a
restart, exactly when a user reloads the run they were watching.

`app.py` runs its page inside `inside_app`; each page file calls `ensure_app` first.
Outside the shell, `ensure_app` runs `app.py` instead, whose ``st.navigation`` routes the
same URL back to the same page (now inside the shell), and then ends the outer run.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

#: The app's entry point, next to the ``ui`` package.
APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"

# Each Streamlit session runs its script on its own thread.
_local = threading.local()


@contextmanager
def inside_app() -> Iterator[None]:
    """Mark the current script run as running inside `app.py` (wrap ``page.run()``)."""
    _local.active = True
    try:
        yield
    finally:
        _local.active = False


def ensure_app() -> None:
    """Call first in every page file: outside the shell, run the shell and stop here."""
    if getattr(_local, "active", False):
        return
    runpy.run_path(str(APP_SCRIPT), run_name="__main__")
    st.stop()
