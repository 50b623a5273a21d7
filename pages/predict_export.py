"""Predict & Export, the last step of the wizard: use a trained model, then take it away.

Predict: classify uploaded pictures (or validation images of the run's dataset) and see
where the model looked (Grad-CAM). Export: a ``.keras`` file, TensorFlow Lite (float32,
optionally int8), ``labels.json`` and a model card. Model work runs in background
processes (`ui.analysis`); this page only reads their results. In class mode a run shared
by someone else can be tried, but only its owner and the teacher can export it.
"""

import streamlit as st

from tl_core.jobs.runs import run_path
from ui import predict_export_view, run_view, shell, state
from ui.errors import user_errors
from ui.trained_runs import pick_trained_run, require_trained_runs

shell.ensure_app()

st.title("Predict & Export", anchor=False)
st.markdown(
    "Try the trained model on pictures of your own, see where it looked, then download "
    "it for use outside this studio."
)

runs = require_trained_runs(
    "No trained model yet: train one on the Train page, then come back here."
)

run = pick_trained_run(runs, key=predict_export_view.RUN_PICKER, label="Trained run")
run_dir = run_path(run.run_id)
classes = predict_export_view.class_names(run_dir)

st.header("Predict", anchor=False)
upload_col, options_col = st.columns([2, 1], gap="medium")
images = []
with upload_col, user_errors():
    images = predict_export_view.upload_pictures()
with options_col:
    top_k = predict_export_view.top_k_input(len(classes))
    samples = predict_export_view.validation_samples_wanted()
if samples:
    with user_errors():
        images += predict_export_view.validation_images(run_dir)

images = predict_export_view.pictures_to_classify(images)
if not images:
    st.caption("Upload a picture, or try the validation images, to see what the model says.")
else:
    with user_errors():
        results = predict_export_view.await_predictions(run_dir, images, len(classes))
        if results:
            predict_export_view.render_predictions(images, results, top_k)
            state.mark_exported()

st.header("Export", anchor=False)
if run_view.may_control(run.run_id):
    int8 = predict_export_view.int8_wanted()
    for target in predict_export_view.export_targets(int8=int8):
        with user_errors():
            predict_export_view.render_export_target(run_dir, target)
    with user_errors():
        predict_export_view.render_labels_download(run_dir)
else:
    predict_export_view.explain_no_export(run)
with user_errors():
    predict_export_view.render_model_card(run_dir)
