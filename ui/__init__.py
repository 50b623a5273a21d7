"""Shared Streamlit helpers for the pages: session state, error display, dataset views.

Everything that touches ``streamlit`` lives here or in ``pages/``; `tl_core` never does.
"""
