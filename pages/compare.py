"""Compare: runs side by side (curves, the settings that differ, results), and the
freeze-depth ladder, which queues runs that differ only in how many top blocks train.

Everything is read from run folders and ladder files on disk, so it survives restarts.
"""

import streamlit as st

from ui import compare_view, run_view, runs_view, shell
from ui.errors import user_errors

shell.ensure_app()

st.title("Compare", anchor=False)
st.markdown(
    "Put runs side by side: their validation curves, the settings in which they differ, "
    "and how they ended. A **freeze-depth ladder** below asks how deep fine-tuning should "
    "go: it trains the same model several times, each with more of the top blocks trainable."
)

run_view.sync_run_with_url()
runs = []
with user_errors():
    runs = runs_view.load_runs()
if not runs:
    st.info(
        "No runs yet: train one on the Train page, then compare it with the next.",
        icon=":material/info:",
    )
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

st.subheader("Runs side by side", anchor=False)
if len(runs) < 2:
    st.info(
        "Comparing needs two runs, and there is one so far. Train another on the Train "
        "page, or queue a freeze-depth ladder below: it trains several at once.",
        icon=":material/info:",
    )
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
else:
    chosen = compare_view.pick_runs(runs)
    with user_errors():
        compare_view.render_comparison(chosen)
    with user_errors():
        compare_view.render_share(chosen)

st.divider()
st.subheader("Freeze-depth ladder", anchor=False)
st.markdown(
    "Which blocks are worth fine-tuning? One click queues a run per depth, identical "
    "otherwise, then plots the best validation accuracy each reached and what an epoch "
    "cost. Past a few blocks, accuracy often levels off while the time keeps growing."
)
with user_errors():
    compare_view.render_ladder_section(runs)
