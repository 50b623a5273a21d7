"""Train, step 4 of the wizard: start a run, watch its curves live, stop or resume it.

Training runs in a worker process started by the server's scheduler; this page only
queues runs and reads what the worker writes. The run shown is in the URL (``?run=``),
so a reload, or a visit after a restart of the app, finds it again.

In a lesson (the Lesson picker, kept in ``?lesson=``) the lesson brings the dataset, the
backbone and the recipe, so the Data, Backbone and Layers steps are not needed: the form
shows the teacher's locked settings greyed with their reasons, asks the lesson's question,
and unlocks Start once a prediction is saved.
"""

import streamlit as st

from tl_core.models import catalog
from ui import backbone_view, datasets, run_view, shell, state, training, wizard
from ui.errors import user_errors

shell.ensure_app()

st.title("Train", anchor=False)
st.markdown(
    "Training shows the model your images again and again (**epochs**) and nudges its "
    "trainable weights after every **batch**. Watch two curves: **training** accuracy "
    "says how well it fits the images it learns from, **validation** accuracy how well it "
    "does on images it never learns from. When validation stops rising while training "
    "keeps going up, the model has started memorising: more epochs will not help."
)

run_view.sync_run_with_url()
backbone_view.sync_backbone_with_url()
report = None
with user_errors():
    report = datasets.current_dataset()
lesson = None
with user_errors():
    lesson = training.render_lesson_picker()

run_id = state.run_id()
if run_id is not None:
    with user_errors():
        run_view.render_run(run_id, ghosts=True)
    if run_view.train_step_done():
        wizard.next_step_link("pages/train.py")
    st.divider()

# With a run on show, the form folds away under it, so that the run stays in view.
with st.expander("Train another run", icon=":material/add:") if run_id else st.container():
    if lesson is not None:
        with user_errors():
            training.render_lesson(lesson)
    elif report is None:
        st.info(
            "Choose a dataset first: the images your model learns from.", icon=":material/info:"
        )
        st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")
    elif not state.backbone_ready():
        st.info(
            "Choose a backbone first: the pretrained network your classifier is built on.",
            icon=":material/info:",
        )
        st.page_link("pages/backbone.py", label="Go to Backbone", icon=":material/hub:")
    else:
        choice = state.model_choice(report)
        blocks = None
        with user_errors():
            blocks = catalog.cached_backbone_blocks(choice.backbone, choice.image_size)
        if not state.layers_seen():
            st.caption(
                "Which blocks train is the default for these weights; review it on the Layers page."
            )
            st.page_link("pages/layers.py", label="Review the layers", icon=":material/layers:")
        settings = training.render_form(choice, report, len(blocks) if blocks else None)
        training.render_time_estimate(choice, report, blocks, settings)
        limit = training.run_limit_reached()
        if limit is not None:
            st.info(limit, icon=":material/block:")
        if st.button(
            "Start training",
            type="primary",
            icon=":material/play_arrow:",
            disabled=limit is not None,
        ):
            with user_errors():
                training.start_training(report.dataset_id, settings)
                st.rerun()
