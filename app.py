"""Transfer-learning studio: the Streamlit entry point (``streamlit run app.py``).

It only wires things up: the pages are the wizard steps in `ui.wizard.STEPS`, and the
sidebar (dataset, progress) is drawn after the page so that it shows the page's choices.
In class mode nothing but the sign-in runs until the session knows who is there
(`ui.signin.require_identity`).
The first page view starts the server's training scheduler (`ui.jobs.scheduler`).
Pages run inside `ui.shell.inside_app`, so that none of them can run without this shell.
"""

import streamlit as st

from ui import datasets, jobs, present, setup_link, shell, sidebar, signin, wizard

st.set_page_config(
    page_title="Transfer-learning studio", page_icon=":material/school:", layout="wide"
)
jobs.scheduler()
person = signin.require_identity(wizard.pages)
# --- presentation mode (?present=1): the slides alone, no navigation, page or sidebar ---
if present.requested():
    st.navigation(wizard.pages(), position="hidden")  # the page's address stays valid
    present.render()
    st.stop()
# ---
page = st.navigation(wizard.pages())
if person is not None:  # before the page, which may stop the script early
    with st.sidebar:
        signin.render_signed_in(person)
datasets.sync_dataset_with_url()
setup_link.apply_shared_setup()
with shell.inside_app():
    page.run()
sidebar.render()
