"""The sidebar under the navigation: the session's dataset and the wizard's progress."""

from __future__ import annotations

import streamlit as st

from tl_core import DatasetReport, TLError
from ui import datasets
from ui.text import escape_markdown
from ui.wizard import STEPS

#: Class names listed by name in the sidebar before it says "and N more".
CLASSES_SHOWN = 6


def render() -> None:
    """Draw the sidebar; call it after the page ran, so it shows what the page chose."""
    with st.sidebar:
        st.subheader("Dataset", anchor=False)
        try:
            report = datasets.current_dataset()
        except TLError:
            # The page has already said what is wrong with it; the sidebar stays quiet.
            report = None
        if report is None:
            st.caption("None chosen yet.")
        else:
            _render_dataset(report)
        st.subheader("Progress", anchor=False)
        for step in STEPS:
            done = step.is_done()
            icon = ":material/check_circle:" if done else ":material/radio_button_unchecked:"
            st.markdown(f"{icon} {step.title}" + (" · done" if done else ""))


def _render_dataset(report: DatasetReport) -> None:
    names = report.class_names
    listed = ", ".join(escape_markdown(name) for name in names[:CLASSES_SHOWN])
    if len(names) > CLASSES_SHOWN:
        listed += f" and {len(names) - CLASSES_SHOWN} more"
    st.markdown(
        f":material/folder_zip: **{escape_markdown(report.source_name)}**  \n"
        f"{len(names)} classes · {report.num_images:,} images"
    )
    st.caption(listed)
