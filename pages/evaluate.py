"""Evaluate: how good a trained run is, where it looks, what training changed in it.

Metrics, Grad-CAM and embeddings come from background analyses (the web process never
loads a model); each tab starts its own only when it is opened, the Metrics tab at once.
"""

import streamlit as st

from ui import evaluate_view, shell
from ui.errors import user_errors
from ui.trained_runs import pick_trained_run, require_trained_runs

shell.ensure_app()

st.title("Evaluate", anchor=False)
st.markdown(
    "Check a trained run on the validation images it never trained on: its scores and "
    "mistakes, where in a picture it looks, how it groups the images, and which layers "
    "training moved."
)

runs = require_trained_runs(
    "No trained run yet: train one on the Train page, then evaluate it here."
)

run = pick_trained_run(runs, key=evaluate_view.RUN_PICKER, label="Trained run")
metrics, gradcam, embeddings, drift = st.tabs(
    evaluate_view.TAB_LABELS, key=evaluate_view.TABS, on_change="rerun"
)
if metrics.open:
    with metrics, user_errors():
        evaluate_view.render_metrics(run)
if gradcam.open:
    with gradcam, user_errors():
        evaluate_view.render_gradcam(run, runs)
if embeddings.open:
    with embeddings, user_errors():
        evaluate_view.render_embeddings(run)
if drift.open:
    with drift, user_errors():
        evaluate_view.render_drift(run)

st.divider()
st.subheader("Report", anchor=False)
with user_errors():
    evaluate_view.render_report(run, runs)
