"""Performance ratios against plain Keras, measured in the same run: ``python -m bench NAME``."""
