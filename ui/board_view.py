"""The class board: a lesson's question, students, predictions and outcomes, for a projector.

Large type (a CSS block scoped to the board's container), and only two controls in a thin
top row: which lesson (the open one first) and whether to show the leaderboard. Everything
about the students is read from `tl_core.classroom.lessons.board_rows` and redrawn by a
fragment every `POLL_SECONDS`; the chart is built only when the rows changed (a cache keyed
by the rows themselves), so a poll that finds nothing new redraws the same figure without
building it again. Names are the students' own: every one is escaped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from tl_core.classroom.lessons import BoardRow, Lesson, board_rows, list_lessons
from tl_core.viz.board import (
    arm_outcomes,
    board_chart,
    curve_sentence,
    leaderboard,
    outcome_sentence,
    prediction_counts,
)
from tl_core.viz.markdown import escape_markdown
from ui.errors import user_errors

#: Widget key of the lesson picker.
LESSON_PICKER = "board_lesson"
#: Widget key of the "Show leaderboard" toggle.
LEADERBOARD_TOGGLE = "board_leaderboard"
#: Seconds between two reads of the board's rows (each reads the lesson's runs).
POLL_SECONDS = 3.0
#: Rows on the leaderboard.
LEADERBOARD_SIZE = 10
#: Container keys: Streamlit gives each a ``st-key-<key>`` class that the CSS scopes to.
BOARD_KEY = "class_board"
QUESTION_KEY = "class_board_question"
_CSS = f"""<style>
.st-key-{BOARD_KEY} p, .st-key-{BOARD_KEY} li,
.st-key-{BOARD_KEY} td, .st-key-{BOARD_KEY} th {{ font-size: 1.5rem; line-height: 1.45; }}
.st-key-{BOARD_KEY} h3 {{ font-size: 2rem; }}
.st-key-{QUESTION_KEY} p {{ font-size: 2.4rem; font-weight: 600; line-height: 1.25; }}
</style>"""


def pick_lesson(lessons: Sequence[Lesson]) -> Lesson:
    """Draw the lesson picker (the first open lesson preselected) and the leaderboard toggle
    in one row; return the picked lesson."""
    ids = [lesson.lesson_id for lesson in lessons]
    by_id = {lesson.lesson_id: lesson for lesson in lessons}
    if st.session_state.get(LESSON_PICKER) not in by_id:
        opened = [lesson.lesson_id for lesson in lessons if lesson.is_open]
        st.session_state[LESSON_PICKER] = (opened or ids)[0]
    picker_col, toggle_col = st.columns([4, 1], vertical_alignment="bottom")
    picked = picker_col.selectbox(
        "Lesson",
        ids,
        format_func=lambda lesson_id: _lesson_label(by_id[lesson_id]),
        key=LESSON_PICKER,
    )
    toggle_col.toggle("Show leaderboard", key=LEADERBOARD_TOGGLE)
    return by_id[picked]


def _lesson_label(lesson: Lesson) -> str:
    return f"{lesson.title} (open)" if lesson.is_open else lesson.title


def render_board(lesson: Lesson) -> None:
    """Draw the board of `lesson`: its question, then the live part (`POLL_SECONDS`)."""
    st.html(_CSS)
    with st.container(key=BOARD_KEY):
        st.markdown(f"### {escape_markdown(lesson.title)}")
        if lesson.question:
            with st.container(key=QUESTION_KEY):
                st.markdown(escape_markdown(lesson.question))
        show_leaderboard = bool(st.session_state.get(LEADERBOARD_TOGGLE))
        st.fragment(_live_board, run_every=POLL_SECONDS)(lesson, show_leaderboard)


def _live_board(lesson: Lesson, show_leaderboard: bool) -> None:
    """The fragment's body: everything that changes as students predict and train."""
    rows: list[BoardRow] = []
    with user_errors():
        rows = board_rows(lesson.lesson_id)
    if not rows:
        st.info(
            "Nobody has joined this lesson yet: the board fills in as students predict and train.",
            icon=":material/hourglass_empty:",
        )
        return
    plain = tuple(dataclasses.asdict(row) for row in rows)
    st.table(students_table(rows), hide_index=True)
    _render_outcomes(lesson, plain)
    if lesson.chart:
        figure = _figure(lesson.chart, tuple(rows))
        st.plotly_chart(figure, key="board_chart", theme=None, config={"displayModeBar": False})
    if show_leaderboard:
        _render_leaderboard(plain)


def students_table(rows: Sequence[BoardRow]) -> pd.DataFrame:
    """One line per student: name, arm, state, best validation accuracy, prediction (names
    and predictions escaped for the table's Markdown)."""
    return pd.DataFrame(
        {
            "Student": [escape_markdown(row.student) for row in rows],
            "Arm": [escape_markdown(row.variant) or "—" for row in rows],
            "State": [row.state for row in rows],
            "Best val. accuracy": [_accuracy(row.best_val_accuracy) for row in rows],
            "Prediction": [escape_markdown(row.prediction or "—") for row in rows],
        }
    )


def _accuracy(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _render_outcomes(lesson: Lesson, rows: Sequence[dict[str, Any]]) -> None:
    """Predictions beside outcomes: what the class expected, and what the arms gave (for a
    chart lesson, what the curves say)."""
    predicted_col, outcome_col = st.columns(2, gap="large")
    with predicted_col:
        st.markdown("**Predictions**")
        if lesson.prediction_choices:
            counts = prediction_counts(rows, lesson.prediction_choices)
            st.table(
                pd.DataFrame(
                    {
                        "Prediction": [escape_markdown(name) for name, _ in counts],
                        "Students": [count for _, count in counts],
                    }
                ),
                hide_index=True,
            )
        else:
            said = sum(row["prediction"] is not None for row in rows)
            st.markdown(f"{said} of {len(rows)} students have written one: see the table.")
    with outcome_col:
        st.markdown("**Outcome**")
        if lesson.chart:
            # Arms along a curve: the chart below shows each; the sentence reads the curves.
            st.markdown(escape_markdown(curve_sentence(rows, lesson.chart)))
            return
        outcomes = arm_outcomes(rows)
        if outcomes:
            st.table(
                pd.DataFrame(
                    {
                        "Arm": [escape_markdown(arm.variant) for arm in outcomes],
                        "Finished": [f"{arm.finished} of {arm.students}" for arm in outcomes],
                        "Mean best accuracy": [_accuracy(arm.mean_accuracy) for arm in outcomes],
                    }
                ),
                hide_index=True,
            )
        st.markdown(escape_markdown(outcome_sentence(outcomes)))


def _render_leaderboard(rows: Sequence[dict[str, Any]]) -> None:
    top = leaderboard(rows, LEADERBOARD_SIZE)
    st.markdown("**Leaderboard**")
    if not top:
        st.markdown("No results yet.")
        return
    st.table(
        pd.DataFrame(
            {
                "#": list(range(1, len(top) + 1)),
                "Student": [escape_markdown(str(row["student"])) for row in top],
                "Arm": [escape_markdown(str(row["variant"])) for row in top],
                "Best val. accuracy": [_accuracy(row["best_val_accuracy"]) for row in top],
            }
        ),
        hide_index=True,
    )


@st.cache_resource(max_entries=16, show_spinner=False)
def _figure(chart: str, rows: tuple[BoardRow, ...]) -> go.Figure:
    """The board's chart, built once per set of rows (a poll that finds the same rows gets
    the same figure back; ``st.plotly_chart`` only reads it)."""
    return board_chart([dataclasses.asdict(row) for row in rows], chart)


def load_lessons() -> list[Lesson]:
    """Every stored lesson, open ones first (then by title)."""
    return sorted(list_lessons(), key=lambda lesson: (not lesson.is_open, lesson.title))
