"""Questions asked of a trained run: evaluate, explain, predict, export, compare.

- `evaluate`, `gradcam`, `predict`, `export`: load ``model.keras`` (TensorFlow inside
  their functions, never at import).
- `compare`, `ladder`: read run folders and queue run sets; no TensorFlow.
- `background`: runs one of the above in a detached process for the web app and keeps the
  JSON answer on disk, so the web process never loads a model.
"""
