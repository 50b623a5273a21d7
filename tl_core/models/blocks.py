"""Group a backbone's layers into blocks, the units a user freezes and unfreezes.

A block boundary is a point in the graph where exactly one tensor is alive: everything
before it reaches everything after it through that tensor alone. Cutting only there means
a residual connection, a skip or a concatenation is never split between two blocks, so a
frozen prefix is a clean feature extractor and its output can be cached.

The pieces between such points are labelled with the backbone's `block_rule` (a regular
expression over layer names, see `tl_core.models.backbones`) and neighbouring pieces with the same
label are merged: the ResNet layers of ``conv2_block1`` form one block, all dense layers
of a DenseNet dense block form one block. Pieces before the first labelled one form the
``"stem"``, pieces after the last one the ``"top"``.

Example:
    >>> from tl_core.models.backbones import build_backbone, get_backbone
    >>> spec = get_backbone("mobilenet_v2")
    >>> blocks = group_blocks(build_backbone(spec, 96), spec)  # doctest: +SKIP
    >>> [block.name for block in blocks][:3]  # doctest: +SKIP
    ['stem', 'expanded_conv', 'block_1']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from tl_core.models.backbones import BackboneSpec

__all__ = ["BlockInfo", "blocks_json", "group_blocks"]

STEM = "stem"
TOP = "top"


@dataclass(frozen=True)
class BlockInfo:
    """One block of a backbone, input side first.

    Attributes:
        name: Label from the backbone's block rule (``"block_3"``), ``"stem"`` or ``"top"``.
        layers: Names of the Keras layers in the block, in graph order.
        params: Number of parameters (trainable or not) of those layers.
        output_shape: Shape of the single tensor the block hands to the next one,
            batch dimension first (``None``).
    """

    name: str
    layers: tuple[str, ...]
    params: int
    output_shape: tuple[int | None, ...]


@dataclass
class _Piece:
    """Layers between two one-live-tensor points, and the tensor leaving them."""

    layers: list[Any]
    output: Any
    label: str | None = None


def group_blocks(backbone: keras.Model, spec: BackboneSpec) -> list[BlockInfo]:
    """Split a functional `backbone` into blocks, input side first.

    Args:
        backbone: A functional model, as built by `tl_core.models.backbones.build_backbone`.
        spec: Its registry entry; `spec.block_rule` names the blocks.

    Returns:
        The blocks. Their `params` add up to ``backbone.count_params()`` and every layer
        but the input belongs to exactly one of them.

    Example:
        >>> spec = get_backbone("vgg16")  # doctest: +SKIP
        >>> [b.name for b in group_blocks(build_backbone(spec, 32), spec)]  # doctest: +SKIP
        ['block1', 'block2', 'block3', 'block4', 'block5']
    """
    pieces = _label(_pieces(backbone), re.compile(spec.block_rule))
    merged: list[_Piece] = []
    for piece in pieces:
        if merged and merged[-1].label == piece.label:
            merged[-1].layers.extend(piece.layers)
            merged[-1].output = piece.output
        else:
            merged.append(piece)
    return [
        BlockInfo(
            name=name,
            layers=tuple(layer.name for layer in piece.layers),
            params=sum(layer.count_params() for layer in piece.layers),
            output_shape=tuple(piece.output.shape),
        )
        for name, piece in zip(_unique([p.label or STEM for p in merged]), merged, strict=True)
    ]


def blocks_json(blocks: list[BlockInfo]) -> list[dict[str, Any]]:
    """Return `blocks` as plain rows, the contract of ``python -m tl_core blocks --json``.

    Each row has ``name``, ``layers`` (a list), ``params`` and ``output_shape`` (a list,
    ``null`` for the batch dimension).

    Example:
        >>> blocks_json([BlockInfo("stem", ("conv",), 864, (None, 16, 16, 32))])
        [{'name': 'stem', 'layers': ['conv'], 'params': 864, 'output_shape': [None, 16, 16, 32]}]
    """
    return [
        {
            "name": block.name,
            "layers": list(block.layers),
            "params": block.params,
            "output_shape": list(block.output_shape),
        }
        for block in blocks
    ]


def _pieces(backbone: keras.Model) -> list[_Piece]:
    """Cut the graph after every operation that leaves exactly one tensor alive.

    `model.operations` is in topological order and, unlike `model.layers`, includes plain
    tensor operations (``x + y``), which carry residual connections in some applications.
    """
    import keras

    operations = backbone.operations
    end = len(operations)
    last_use = {id(tensor): end for tensor in backbone.outputs}
    for position, operation in enumerate(operations):
        for tensor in keras.tree.flatten(operation.input):
            last_use[id(tensor)] = max(last_use.get(id(tensor), -1), position)

    pieces: list[_Piece] = []
    alive: dict[int, Any] = {}
    layers: list[Any] = []
    for position, operation in enumerate(operations):
        if isinstance(operation, keras.layers.Layer) and not isinstance(
            operation, keras.layers.InputLayer
        ):
            layers.append(operation)
        for tensor in keras.tree.flatten(operation.output):
            alive[id(tensor)] = tensor
        alive = {key: t for key, t in alive.items() if last_use.get(key, -1) > position}
        if len(alive) == 1:
            (output,) = alive.values()
            if layers:
                pieces.append(_Piece(layers, output))
            elif pieces:
                # Tensor operations alone (`x * 0.5`) belong with the layers before them.
                pieces[-1].output = output
            layers = []
    return pieces


def _label(pieces: list[_Piece], rule: re.Pattern[str]) -> list[_Piece]:
    """Label each piece by the first layer name `rule` matches.

    Unmatched pieces before the first match are the stem, after the last match the top,
    and in between they join the block before them.
    """
    for piece in pieces:
        piece.label = next(
            (m.group(0) for layer in piece.layers if (m := rule.search(layer.name))), None
        )
    labelled = [i for i, piece in enumerate(pieces) if piece.label is not None]
    if not labelled:
        return pieces
    for i, piece in enumerate(pieces):
        if piece.label is None:
            if i < labelled[0]:
                piece.label = STEM
            elif i > labelled[-1]:
                piece.label = TOP
            else:
                piece.label = pieces[i - 1].label
    return pieces


def _unique(names: list[str]) -> list[str]:
    """Suffix repeated names (``mixed``, ``mixed_2``) so each block name is unique."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique
