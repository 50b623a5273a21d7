"""Data, step 1 of the wizard: choose the labelled images the model will learn from.

Three ways in: the bundled sample (chosen on a first visit, so there is something to
look at at once), an uploaded zip, or a dataset stored earlier on this server.
"""

import streamlit as st

from tl_core import IngestLimits, list_datasets
from ui import dataset_view, datasets, shell, state, wizard
from ui.errors import user_errors
from ui.identity import current_actor

shell.ensure_app()

st.title("Data", anchor=False)
st.markdown(
    "Choose the labelled images your model will learn from. The sample shapes are ready to "
    "go; upload a zip to use your own pictures."
)

upload_col, stored_col = st.columns(2, gap="medium")
with upload_col.container(border=True, height="stretch"):
    st.markdown(":material/upload_file: **Upload a zip**")
    with user_errors():
        dataset_view.render_explainer(IngestLimits.from_env())
    upload = st.file_uploader("Zip file", type=["zip"], key=state.UPLOADER)
    # The uploader hands the same file to every rerun; ingest each upload only once.
    if upload is not None and upload.file_id != state.handled_upload():
        state.set_handled_upload(upload.file_id)
        with user_errors():
            datasets.choose_upload(upload)
    ingest_slot = st.container()

with stored_col.container(border=True, height="stretch"):
    st.markdown(":material/inventory_2: **Or pick a stored dataset**")
    picker_slot = st.container()
    if state.dataset_id() is None:
        with user_errors():
            datasets.choose_sample()
# After both starts, so that the sample's ingest is followed from its first run.
with ingest_slot, user_errors():
    datasets.follow_ingest()
# Drawn last so that it shows what the upload, the sample or a finished ingest chose.
with picker_slot, user_errors():
    dataset_view.pick_stored_dataset(list_datasets(actor=current_actor()))

report = None
with user_errors():
    report = datasets.current_dataset()
if report is not None:
    st.divider()
    dataset_view.render_report(report)
    wizard.next_step_link("pages/data.py")
