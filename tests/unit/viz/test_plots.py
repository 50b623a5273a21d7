"""Figures from plain data: the class counts bar chart and the freeze strip."""

from __future__ import annotations

import itertools

import pandas as pd
import plotly.graph_objects as go
import pytest

from tl_core.models.blocks import BlockInfo
from tl_core.viz.plots import (
    FROZEN_COLOR,
    MIN_SEGMENT_SHARE,
    TRAINABLE_COLOR,
    class_counts_figure,
    freeze_strip_figure,
    strip_widths,
)

BLOCKS = [
    BlockInfo("stem", ("Conv1", "bn_Conv1"), 992, (None, 32, 32, 32)),
    BlockInfo("block_1", ("block_1_expand",), 5_568, (None, 16, 16, 24)),
    BlockInfo("block_2", ("block_2_expand",), 9_456, (None, 16, 16, 24)),
    BlockInfo("block_16", ("block_16_expand",), 478_400, (None, 2, 2, 320)),
    BlockInfo("top", ("Conv_1", "Conv_1_bn", "out_relu"), 414_720, (None, 2, 2, 1280)),
]


def _segments(figure: go.Figure) -> list[tuple[str, float, float, str]]:
    """Every segment as (block, start, width, colour), left to right."""
    segments = [
        (name, base, width, trace.marker.color)
        for trace in figure.data
        for name, base, width in zip(trace.text, trace.base, trace.x, strict=True)
    ]
    return sorted(segments, key=lambda segment: segment[1])


def test_class_counts_are_stacked_bars_per_split() -> None:
    counts = pd.DataFrame(
        {"train": [10, 12], "val": [2, 3]}, index=pd.Index(["cat", "dog"], name="class")
    )

    figure = class_counts_figure(counts)

    assert isinstance(figure, go.Figure)
    assert [(trace.type, trace.name) for trace in figure.data] == [("bar", "train"), ("bar", "val")]
    assert list(figure.data[0].y) == [10, 12]
    assert figure.layout.barmode == "stack"
    assert figure.layout.showlegend is True


def test_the_strip_has_one_segment_per_block_input_side_first() -> None:
    figure = freeze_strip_figure(BLOCKS, {"block_16", "top"})

    assert isinstance(figure, go.Figure)
    assert [(t.type, t.orientation, t.name) for t in figure.data] == [
        ("bar", "h", "Frozen"),
        ("bar", "h", "Trainable"),
    ]
    segments = _segments(figure)
    assert [name for name, *_ in segments] == [block.name for block in BLOCKS]
    assert segments[0][1] == 0
    for (_, start, width, _), (_, following, _, _) in itertools.pairwise(segments):
        assert start + width == pytest.approx(following)
    assert sum(width for _, _, width, _ in segments) == pytest.approx(1)


def test_frozen_and_trainable_blocks_have_their_colours() -> None:
    segments = _segments(freeze_strip_figure(BLOCKS, {"block_2", "top"}))

    colours = {name: colour for name, _, _, colour in segments}
    assert colours == {
        "stem": FROZEN_COLOR,
        "block_1": FROZEN_COLOR,
        "block_2": TRAINABLE_COLOR,
        "block_16": FROZEN_COLOR,
        "top": TRAINABLE_COLOR,
    }


def test_hovering_a_segment_names_the_block_its_parameters_and_its_state() -> None:
    figure = freeze_strip_figure(BLOCKS, {"top"})

    frozen, trainable = figure.data
    assert list(trainable.customdata[0]) == ["top", "414,720", "trainable", 5]
    assert list(frozen.customdata[0]) == ["stem", "992", "frozen", 1]
    assert "%{customdata[1]} parameters" in trainable.hovertemplate


def test_all_frozen_and_all_trainable_keep_both_traces() -> None:
    for trainable in (set(), {block.name for block in BLOCKS}):
        figure = freeze_strip_figure(BLOCKS, trainable)

        assert [trace.name for trace in figure.data] == ["Frozen", "Trainable"]
        assert sum(len(trace.x) for trace in figure.data) == len(BLOCKS)


def test_the_strip_keeps_the_same_ui_revision_whatever_trains() -> None:
    first = freeze_strip_figure(BLOCKS, set())
    second = freeze_strip_figure(BLOCKS, {"top"})

    assert first.layout.uirevision == second.layout.uirevision == "freeze-strip"


def test_widths_follow_the_square_root_of_the_parameters() -> None:
    widths = strip_widths([100, 400, 1_600])

    assert widths == pytest.approx([1 / 7, 2 / 7, 4 / 7])


def test_tiny_blocks_stay_visible() -> None:
    widths = strip_widths([0, 10, 10_000_000])

    assert min(widths) == pytest.approx(MIN_SEGMENT_SHARE)
    assert sum(widths) == pytest.approx(1)


@pytest.mark.parametrize(
    ("params", "expected"),
    [([], []), ([0, 0], [0.5, 0.5]), ([5], [1.0])],
)
def test_degenerate_strips_still_add_up(params: list[int], expected: list[float]) -> None:
    assert strip_widths(params) == pytest.approx(expected)
