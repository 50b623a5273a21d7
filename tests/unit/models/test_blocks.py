"""Blocks: cut only where one tensor is alive, cover every layer once, add up the params."""

from __future__ import annotations

import dataclasses
import itertools
import json
from functools import cache

import keras
import pytest

from tl_core.models.backbones import build_backbone, get_backbone, list_backbones
from tl_core.models.blocks import BlockInfo, blocks_json, group_blocks

FAST_IDS = {"mobilenet_v2", "mobilenet_v3_small"}

# One block per residual unit; DenseNet's dense layers merged per dense block.
EXPECTED_BLOCK_COUNTS = {
    "mobilenet_v2": 19,
    "mobilenet_v3_small": 13,
    "mobilenet_v3_large": 17,
    "resnet50": 17,
    "resnet50_v2": 18,
    "resnet101": 34,
    "efficientnet_b0": 18,
    "efficientnet_b3": 28,
    "efficientnet_v2_b0": 23,
    "efficientnet_v2_s": 42,
    "vgg16": 5,
    "vgg19": 5,
    "xception": 14,
    "inception_v3": 12,
    "inception_resnet_v2": 45,
    "densenet121": 9,
    "densenet169": 9,
    "convnext_tiny": 23,
    "convnext_small": 41,
}


def backbone_params() -> list:
    """Every registered id; all but the small MobileNets are marked slow."""
    return [
        pytest.param(spec.id, marks=() if spec.id in FAST_IDS else pytest.mark.slow)
        for spec in list_backbones()
    ]


@cache
def grouped(backbone_id: str) -> tuple[keras.Model, list[BlockInfo]]:
    """Build each backbone once, at its smallest input, and group it."""
    spec = get_backbone(backbone_id)
    model = build_backbone(spec, spec.min_input_size)
    return model, group_blocks(model, spec)


def crossing_tensors(model: keras.Model, before: set[int]) -> set[int]:
    """Ids of tensors produced by operations in `before` (or the input) used outside it."""
    produced = {id(t) for t in model.inputs}
    for op in model.operations:
        if id(op) in before:
            produced |= {id(t) for t in keras.tree.flatten(op.output)}
    return {
        id(t)
        for op in model.operations
        if id(op) not in before
        for t in keras.tree.flatten(op.input)
        if id(t) in produced
    }


def closure(model: keras.Model, start: set[int], *, upstream: bool) -> set[int]:
    """Ids of the operations in `start` and all their ancestors (or descendants)."""
    producer = {id(t): op for op in model.operations for t in keras.tree.flatten(op.output)}
    edges: dict[int, set[int]] = {id(op): set() for op in model.operations}
    for op in model.operations:
        for t in keras.tree.flatten(op.input):
            parent = id(producer[id(t)])
            if upstream:
                edges[id(op)].add(parent)
            else:
                edges[parent].add(id(op))
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_block_params_add_up_to_the_backbone(backbone_id: str):
    model, blocks = grouped(backbone_id)
    assert sum(block.params for block in blocks) == model.count_params()
    assert all(block.params >= 0 and block.layers for block in blocks)


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_every_layer_belongs_to_exactly_one_block(backbone_id: str):
    model, blocks = grouped(backbone_id)
    names = [name for block in blocks for name in block.layers]
    assert len(names) == len(set(names))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert set(names) == {layer.name for layer in layers}
    assert {layer.name for layer in layers if layer.weights} <= set(names)


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_blocks_have_unique_names_and_the_expected_count(backbone_id: str):
    _, blocks = grouped(backbone_id)
    names = [block.name for block in blocks]
    assert len(names) == len(set(names))
    assert len(blocks) == EXPECTED_BLOCK_COUNTS[backbone_id], names


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_blocks_run_from_input_side_to_output_side(backbone_id: str):
    model, blocks = grouped(backbone_id)
    position = {op.name: i for i, op in enumerate(model.operations)}
    spans = [[position[name] for name in block.layers] for block in blocks]
    for earlier, later in itertools.pairwise(spans):
        assert max(earlier) < min(later)
    assert blocks[-1].output_shape == tuple(model.output_shape)


@pytest.mark.parametrize("backbone_id", backbone_params())
def test_cuts_are_only_where_one_tensor_is_alive(backbone_id: str):
    """Nothing after a cut uses a tensor from before it except the one crossing tensor.

    Plain tensor operations (``x + y``) belong to no block; between two blocks they may go
    either side of the cut, so both placements are tried.
    """
    model, blocks = grouped(backbone_id)
    by_name = {layer.name: layer for layer in model.layers}
    for k in range(len(blocks) - 1):
        head = {id(by_name[n]) for block in blocks[: k + 1] for n in block.layers}
        tail = {id(by_name[n]) for block in blocks[k + 1 :] for n in block.layers}
        before = closure(model, head, upstream=True)
        after = closure(model, tail, upstream=False)
        assert not before & after, f"cut after {blocks[k].name} splits a block"
        floating = {id(op) for op in model.operations} - before - after
        crossings = crossing_tensors(model, before), crossing_tensors(model, before | floating)
        assert 1 in {len(c) for c in crossings}, f"cut after {blocks[k].name}"


def residual_toy() -> keras.Model:
    """A small graph with a residual `+`, a concat, a lone tensor op and a head."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="unit1_conv_a")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="unit1_conv_b")(y)
    x = keras.layers.Activation("relu", name="unit1_out")(x + y)
    a = keras.layers.Conv2D(2, 1, name="unit2_branch_a")(x)
    b = keras.layers.Conv2D(2, 1, name="unit2_branch_b")(x)
    x = keras.layers.Concatenate(name="unit2_concat")([a, b]) * 0.5
    outputs = keras.layers.Conv2D(5, 1, name="head_conv")(x)
    return keras.Model(inputs, outputs)


def toy_spec(block_rule: str):
    return dataclasses.replace(get_backbone("mobilenet_v2"), block_rule=block_rule)


def test_a_residual_and_a_concat_are_never_split():
    blocks = group_blocks(residual_toy(), toy_spec(r"^unit\d+"))
    assert [(b.name, b.layers) for b in blocks] == [
        ("stem", ("stem_conv",)),
        ("unit1", ("unit1_conv_a", "unit1_conv_b", "unit1_out")),
        ("unit2", ("unit2_branch_a", "unit2_branch_b", "unit2_concat")),
        ("top", ("head_conv",)),
    ]
    assert [b.output_shape for b in blocks] == [(None, 8, 8, 4)] * 3 + [(None, 8, 8, 5)]
    assert [b.params for b in blocks] == [112, 296, 20, 25]


def test_repeated_labels_that_are_not_neighbours_get_a_suffix():
    blocks = group_blocks(residual_toy(), toy_spec(r"conv|concat"))
    assert [b.name for b in blocks] == ["conv", "concat", "conv_2"]


def test_a_rule_that_matches_nothing_gives_one_stem_block():
    model = residual_toy()
    (block,) = group_blocks(model, toy_spec(r"^nothing$"))
    assert block.name == "stem" and block.params == model.count_params()


def test_blocks_json_follows_the_cli_contract():
    model = residual_toy()
    rows = blocks_json(group_blocks(model, toy_spec(r"^unit\d+")))
    assert json.loads(json.dumps(rows)) == rows
    assert all(set(row) == {"name", "layers", "params", "output_shape"} for row in rows)
    assert sum(row["params"] for row in rows) == model.count_params()
    assert rows[0]["output_shape"] == [None, 8, 8, 4]
