"""The wizard's steps, in order: the one list that the navigation and the progress read.

Add a step by appending a `WizardStep` to `STEPS` once its page works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from ui import identity, run_view, state


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
    WizardStep(
        title="Backbone",
        script="pages/backbone.py",
        icon=":material/hub:",
        url_path="backbone",
        is_done=state.backbone_ready,
    ),
    WizardStep(
        title="Layers",
        script="pages/layers.py",
        icon=":material/layers:",
        url_path="layers",
        is_done=state.layers_seen,
    ),
    WizardStep(
        title="Train",
        script="pages/train.py",
        icon=":material/model_training:",
        url_path="train",
        is_done=run_view.train_step_done,
    ),
    WizardStep(
        title="Evaluate",
        script="pages/evaluate.py",
        icon=":material/analytics:",
        url_path="evaluate",
        is_done=state.evaluated,
    ),
    WizardStep(
        title="Predict & Export",
        script="pages/predict_export.py",
        icon=":material/download:",
        url_path="predict_export",
        is_done=state.exported,
    ),
)

#: Pages beside the steps: in the navigation after them, not in the progress list.
COMPARE_PAGE = "pages/compare.py"
RUNS_PAGE = "pages/runs.py"
#: The teacher's page (class mode only): students, the queue, quotas, sharing.
CLASS_PAGE = "pages/class_room.py"
#: The class board of a lesson, for the projector: the teacher's in class mode, and the
#: self-learner's in single-user mode (the results of their own lesson runs).
BOARD_PAGE = "pages/board.py"


def pages() -> list[st.Page]:
    """Return one ``st.Page`` per step for ``st.navigation``, then the Compare and Runs
    pages, the Class page for the teacher in class mode, and the Board page for the teacher
    and in single-user mode; the first step is the home page."""
    extra = []
    if identity.class_mode() and identity.is_teacher():
        extra.append(st.Page(CLASS_PAGE, title="Class", icon=":material/groups:", url_path="class"))
    if identity.is_teacher():  # the teacher, or single-user mode
        extra.append(
            st.Page(BOARD_PAGE, title="Board", icon=":material/co_present:", url_path="board")
        )
    return [
        st.Page(
            step.script,
            title=step.title,
            icon=step.icon,
            url_path=step.url_path,
            default=index == 0,
        )
        for index, step in enumerate(STEPS)
    ] + [
        st.Page(COMPARE_PAGE, title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page(RUNS_PAGE, title="Runs", icon=":material/history:", url_path="runs"),
        *extra,
    ]


def next_step_link(script: str) -> None:
    """Draw a "Next: …" link to the step after the page `script`; nothing after the last."""
    scripts = [step.script for step in STEPS]
    position = scripts.index(script)
    if position + 1 < len(STEPS):
        step = STEPS[position + 1]
        st.page_link(step.script, label=f"Next: {step.title}", icon=":material/arrow_forward:")
