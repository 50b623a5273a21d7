"""Runs: every training run on this server, and any one of them opened with its curves.

The list is read from the run folders on disk, so it survives restarts of the app; a run
still training keeps being watched. Opening a run makes it the session's run (``?run=``).
A run that has ended can be deleted, after a confirmation. In class mode a student sees
their own runs and the shared ones; someone else's run opened by its link is shown to
watch, without its buttons.
"""

import streamlit as st

from ui import demo_view, run_view, runs_view, setup_link, shell, state
from ui.errors import user_errors

shell.ensure_app()

st.title("Runs", anchor=False)
st.markdown(
    "Every run trained on this server, newest first. Open one to see its curves, resume "
    "it when it was stopped or interrupted, or delete it once it has ended."
)

run_view.sync_run_with_url()
runs_view.show_deleted()
runs = []
with user_errors():
    runs = runs_view.load_runs()
with user_errors():
    demo_view.render_demo(expanded=not runs)
if not runs and state.run_id() is None:
    st.info("No runs yet: start one on the Train page.", icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

if runs:
    runs_view.render_table(runs)
picked = runs_view.pick_run(runs)
if picked is not None:
    with user_errors():
        run_view.render_run(picked)
        setup_link.render_setup_link(picked)
        runs_view.render_delete(picked)
