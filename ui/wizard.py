"""The wizard's steps, in order: the one list that the navigation and the progress read.

Add a step by appending a `WizardStep` to `STEPS` once its page works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from ui import state


@dataclass(frozen=True)
class WizardStep:
    """One step of the wizard.

    Args:
        title: name shown in the navigation and the progress list.
        script: the page file, relative to ``app.py``.
        icon: a Material icon (``":material/name:"``).
        url_path: the step's address (``/data``).
        is_done: tells, from session state, whether the user has completed the step.
    """

    title: str
    script: str
    icon: str
    url_path: str
    is_done: Callable[[], bool]


STEPS: tuple[WizardStep, ...] = (
    WizardStep(
        title="Data",
        script="pages/data.py",
        icon=":material/photo_library:",
        url_path="data",
        is_done=lambda: state.dataset_id() is not None,
    ),
)


def pages() -> list[st.Page]:
    """Return one ``st.Page`` per step for ``st.navigation``; the first step is the home page."""
    return [
        st.Page(
            step.script,
            title=step.title,
            icon=step.icon,
            url_path=step.url_path,
            default=index == 0,
        )
        for index, step in enumerate(STEPS)
    ]
