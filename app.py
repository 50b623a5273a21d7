"""Transfer-learning studio: the Streamlit entry point (``streamlit run app.py``).

It only wires things up: the pages are the wizard steps in `ui.wizard.STEPS`, and the
sidebar (dataset, progress) is drawn after the page so that it shows the page's choices.
"""

import streamlit as st

from ui import datasets, sidebar, wizard

st.set_page_config(
    page_title="Transfer-learning studio", page_icon=":material/school:", layout="wide"
)
page = st.navigation(wizard.pages())
datasets.sync_dataset_with_url()
page.run()
sidebar.render()
