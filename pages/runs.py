"""Runs: every training run on this server, and any one of them opened with its curves.

The list is read from the run folders on disk, so it survives restarts of the app; a run
still training keeps being watched. Opening a run makes it the session's run (``?run=``).
"""

import streamlit as st

from ui import run_view, runs_view, shell
from ui.errors import user_errors

shell.ensure_app()

st.title("Runs", anchor=False)
st.markdown(
    "Every run trained on this server, newest first. Open one to see its curves, and "
    "resume it when it was stopped or interrupted."
)

run_view.sync_run_with_url()
runs = []
with user_errors():
    runs = runs_view.load_runs()
if not runs:
    st.info("No runs yet: start one on the Train page.", icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

runs_view.render_table(runs)
picked = runs_view.pick_run(runs)
if picked is not None:
    with user_errors():
        run_view.render_run(picked)
