"""Class: the teacher's view of the class (class mode only).

Who joined and how their runs go, the whole queue with its order, the per-student limits,
the runs shared with the class, and the lessons (made from a built-in or a run, opened and
closed, exported and imported). Only the teacher's navigation lists this page; a student
who types its address is refused here, and the core refuses their actions anyway.
"""

import streamlit as st

from ui import class_view, identity, shell
from ui.errors import user_errors

shell.ensure_app()

identity.require_teacher_page(
    "The Class page is the teacher's: it manages everyone's runs and limits. "
    "Your own runs are on the Runs page.",
)

actor = identity.current_actor()
st.title("Class", anchor=False)
st.caption(
    f"Read at {class_view.now_label()}; the page does not refresh by itself. "
    "Refresh to see the latest."
)
st.button("Refresh", key="class_refresh", icon=":material/refresh:")
class_view.render_notice()

overview = None
with user_errors():
    overview = class_view.load_overview()
if overview is None:
    st.stop()

students, queue, quotas, share, lessons = st.tabs(
    ["Students", "Queue", "Quotas", "Share", "Lessons"]
)
with students:
    class_view.render_students(overview, actor)
with queue:
    class_view.render_queue(overview, actor)
with quotas:
    class_view.render_quotas(overview.settings, actor)
with share:
    class_view.render_share(overview, actor)
with lessons:
    class_view.render_lessons(overview, actor)
