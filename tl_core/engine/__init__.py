"""The worker side: the room that imports TensorFlow to train.

- `train`: one run from ``run.json`` to ``model.keras``, phase by phase.
- `callbacks`: small Keras callbacks with one job each (metrics, stop flag, drift,
  checkpoints, best weights).
- `checkpoints`: variables saved by object key, committed under a pointer, versions checked.
- `saving`: ``model.keras`` as a float32 inference graph.
- `boundary`: training the upper blocks and the head from activations cached at the
  frozen boundary; `cache`: the shared, bounded, locked cache they live in.
- `warm`: a worker process that has imported TensorFlow before its job arrives.
- `device`: TensorFlow's view of the devices, distribution strategy, quiet imports.

Nothing the web process imports may import this package (a test holds that rule).
"""
