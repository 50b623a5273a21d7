"""What a model is made of, answered without TensorFlow at import time.

- `backbones`: the registry of pretrained families as data (id → Keras application, input
  size, preprocessing, weights files).
- `blocks`: how a backbone's layers group into blocks that freeze together.
- `classifier`: backbone + preprocessing + head, the freeze plan and compilation.
- `catalog`: block lists and image-size advice for the web process (via subprocess).
- `caching`: where a freeze plan's frozen boundary lies, the rule the engine caches by.
- `estimate`: how long a configured run should take, with and without caching, before
  it starts.
"""
