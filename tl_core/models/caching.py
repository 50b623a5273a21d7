"""Where a phase's cacheable frozen part ends: the rule the engine trains by and the
estimate prices, written once and free of TensorFlow so the web process can use it.

When the bottom blocks of a phase are frozen, the network splits at the frozen boundary:
the output of the last frozen block below the first trainable one (blocks are
single-tensor cuts, see `tl_core.models.blocks`). When no block trains, the boundary is
the pooled backbone features; when the bottom block trains, nothing can be cached.

Example:
    >>> boundary_of(["stem", "block_1", "top"], ("top",))
    'block_1'
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["HEAD_FEATURES", "boundary_of"]

#: The boundary of a phase in which only the head trains: the pooled backbone features.
HEAD_FEATURES = "pooled"


def boundary_of(block_names: Sequence[str], trainable: Collection[str]) -> str | None:
    """Return where a phase's cacheable frozen part ends: `HEAD_FEATURES` when no block
    trains, the last block below the first trainable one otherwise, ``None`` when the
    bottom block trains (nothing below it to cache).

    Args:
        block_names: the backbone's blocks, input side first.
        trainable: the names of the blocks that train in the phase.

    Example:
        >>> boundary_of(["stem", "block_1", "top"], ()), boundary_of(["stem", "top"], ["stem"])
        ('pooled', None)
    """
    chosen = set(trainable)
    if not chosen:
        return HEAD_FEATURES
    first = next(i for i, name in enumerate(block_names) if name in chosen)
    return block_names[first - 1] if first >= 1 else None
