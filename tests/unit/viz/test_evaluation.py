"""Figures of a run's evaluation: confusion matrix, embedding panels, weight-drift strip."""

from __future__ import annotations

import plotly.graph_objects as go

from tl_core.viz.evaluation import (
    MAX_ANNOTATED_CLASSES,
    class_colors,
    confusion_matrix_figure,
    drift_figure,
    embedding_figure,
    frozen_rows,
)
from tl_core.viz.plots import FROZEN_COLOR

CLASSES = ["circle", "square", "star"]


def test_the_confusion_matrix_shows_counts_coloured_by_share_of_the_true_class() -> None:
    figure = confusion_matrix_figure([[8, 2, 0], [6, 4, 0], [0, 0, 0]], CLASSES)

    (heatmap,) = figure.data
    assert isinstance(figure, go.Figure)
    assert heatmap.type == "heatmap"
    assert list(heatmap.x) == CLASSES  # predicted
    assert list(heatmap.y) == CLASSES  # true
    assert [list(row) for row in heatmap.text] == [["8", "2", "0"], ["6", "4", "0"], ["0"] * 3]
    assert [list(row) for row in heatmap.z] == [[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.0] * 3]
    assert (heatmap.zmin, heatmap.zmax) == (0.0, 1.0)
    assert heatmap.texttemplate == "%{text}"
    assert figure.layout.yaxis.autorange == "reversed"  # first class at the top
    assert figure.layout.xaxis.title.text == "predicted class"
    assert figure.layout.yaxis.title.text == "true class"


def test_a_big_confusion_matrix_leaves_the_counts_to_the_hover() -> None:
    names = [f"c{i}" for i in range(MAX_ANNOTATED_CLASSES + 1)]
    matrix = [[int(i == j) for j in range(len(names))] for i in range(len(names))]

    (heatmap,) = confusion_matrix_figure(matrix, names).data

    assert heatmap.texttemplate is None
    assert "%{text} images" in heatmap.hovertemplate


def test_class_names_cannot_inject_markup_or_template_fields() -> None:
    figure = confusion_matrix_figure([[1, 0], [0, 1]], ["<b>cat</b>", "%{z}dog"])

    (heatmap,) = figure.data
    assert list(heatmap.x) == ["&lt;b>cat&lt;/b>", "%&#8203;{z}dog"]


def test_an_embedding_panel_has_one_trace_per_class_in_its_colour() -> None:
    points = [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]

    figure = embedding_figure(
        points,
        [0, 2, 2, 0],
        CLASSES,
        title="After training",
        explained_variance=[0.5, 0.25],
        paths=["images/all/circle/1.jpg", "a/2.jpg", "a/3.jpg", "a/4.jpg"],
    )

    colors = class_colors(len(CLASSES))
    assert [(t.name, list(t.x), list(t.y)) for t in figure.data] == [
        ("circle", [0.0, 6.0], [1.0, 7.0]),
        ("star", [2.0, 4.0], [3.0, 5.0]),
    ]
    assert [t.marker.color for t in figure.data] == [colors[0], colors[2]]
    assert list(figure.data[0].customdata) == ["1.jpg", "4.jpg"]
    assert figure.layout.title.text == "After training"
    assert figure.layout.xaxis.title.text == "PC1 (50.0% of variance)"
    assert figure.layout.yaxis.title.text == "PC2 (25.0% of variance)"


def test_without_explained_variance_the_axes_are_plain_components() -> None:
    figure = embedding_figure([[0.0, 0.0]], [1], CLASSES, title="t-SNE")

    assert figure.layout.xaxis.title.text == "component 1"
    assert figure.data[0].customdata is None


def test_class_colours_stay_distinct_for_many_classes() -> None:
    assert len(set(class_colors(10))) == 10
    assert len(set(class_colors(26))) == 26
    assert class_colors(3) == class_colors(10)[:3]


def test_frozen_rows_are_exactly_zero_in_every_recorded_epoch() -> None:
    assert frozen_rows([[0.0, 0.0], [0.0, 1e-9], [None, 0.0], [None, None], []]) == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_the_drift_strip_greys_out_frozen_blocks() -> None:
    table = {
        "epochs": [1, 2, 3],
        "phases": ["train"] * 3,
        "blocks": ["stem", "block_1", "top"],
        "values": [[0.0, 0.0, 0.0], [0.0, 0.01, 0.02], [0.05, None, 0.2]],
    }

    figure = drift_figure(table)

    moved, frozen = figure.data
    assert (moved.type, moved.name, frozen.name) == ("heatmap", "moved", "frozen")
    assert list(moved.y) == ["stem", "block_1", "top"]
    assert list(moved.x) == [1, 2, 3]
    assert [list(row) for row in moved.z] == [
        [None, None, None],
        [0.0, 0.01, 0.02],
        [0.05, None, 0.2],
    ]
    assert (moved.zmin, moved.zmax) == (0.0, 0.2)  # from no change at all
    assert [list(row) for row in frozen.z] == [[0.0] * 3, [None] * 3, [None] * 3]
    assert {color for _, color in frozen.colorscale} == {FROZEN_COLOR}
    assert frozen.showscale is False
    assert "frozen: 0.0" in frozen.hovertemplate
    assert figure.layout.yaxis.autorange == "reversed"  # input side at the top
    assert not figure.layout.shapes


def test_the_drift_strip_marks_where_the_fine_tune_phase_begins() -> None:
    table = {
        "epochs": [1, 2, 3],
        "phases": ["head", "head", "fine-tune"],
        "blocks": ["stem", "top"],
        "values": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.01]],
    }

    figure = drift_figure(table)

    (line,) = figure.layout.shapes
    assert line.x0 == 2.5
    assert [note.text for note in figure.layout.annotations] == ["fine-tune"]
