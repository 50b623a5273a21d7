"""Board: a lesson's class board for the projector (the teacher's; any self-learner's).

The lesson's question in large type, each student's arm, state, best validation accuracy
and prediction, the predictions against the outcomes, the assembled ladder or data-size
chart as results arrive, and a leaderboard shown only on request. A student who types its
address is refused: the board shows everyone's results and predictions.
"""

import streamlit as st

from ui import board_view, identity, shell
from ui.errors import user_errors

shell.ensure_app()

identity.require_teacher_page(
    "The class board is the teacher's: it shows everyone's results and predictions. "
    "Your own runs and your prediction are on the Train and Runs pages.",
)

lessons = []
with user_errors():
    lessons = board_view.load_lessons()
if not lessons:
    st.title("Board", anchor=False)
    st.info(
        "No lessons yet. Create one from a built-in lesson or from a run's settings; its "
        "board then shows here.",
        icon=":material/info:",
    )
    st.stop()

board_view.render_board(board_view.pick_lesson(lessons))
