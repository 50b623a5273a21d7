"""The worker side: the room that imports TensorFlow to train.

- `train`: one run from ``run.json`` to ``model.keras``, phase by phase.
- `callbacks`: small Keras callbacks with one job each (metrics, stop flag, drift,
  checkpoints, best weights).
- `cache`: features cached at the frozen boundary.
- `device`: TensorFlow's view of the devices, distribution strategy, quiet imports.

Nothing the web process imports may import this package (a test holds that rule).
"""
