"""Placeholder while this page is being written (replaced in this session)."""

import streamlit as st

from ui import shell

shell.ensure_app()

st.title("Coming up", anchor=False)
