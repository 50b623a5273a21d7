"""Plotly figures and text built from plain data (run files, evaluations), never from models.

- `plots`: training curves, freeze strips, drift, comparisons.
- `evaluation`: confusion heatmaps, per-class bars, embeddings, galleries.
- `markdown`: escaping of user-supplied names for Markdown and plotly labels.
"""
