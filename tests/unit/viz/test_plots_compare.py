"""Figures for comparing runs: ghost curves, runs overlaid, and the freeze-depth ladder."""

from __future__ import annotations

from typing import Any

from tl_core.viz.plots import (
    FROZEN_COLOR,
    GHOST_COLOR,
    RUN_COLORS,
    compare_curves_figure,
    ladder_figure,
    training_curves_figure,
)


def _lines(*val_accuracies: float) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "accuracy": accuracy + 0.1,
            "val_accuracy": accuracy,
            "loss": 1.0 / epoch,
            "val_loss": 1.5 / epoch,
        }
        for epoch, accuracy in enumerate(val_accuracies, start=1)
    ]


def test_ghosts_come_first_so_they_are_drawn_behind_the_run() -> None:
    plain = training_curves_figure(_lines(0.5, 0.7))
    figure = training_curves_figure(
        _lines(0.5, 0.7), ghosts=[("#1 resnet50", _lines(0.3)), ("#2 vgg16", _lines(0.4, 0.6))]
    )

    ghosts, rest = figure.data[:4], figure.data[4:]
    assert [trace.name for trace in rest] == [trace.name for trace in plain.data]
    assert [trace.y for trace in rest] == [trace.y for trace in plain.data]
    assert [trace.y for trace in ghosts] == [(0.3,), (1.5,), (0.4, 0.6), (1.5, 0.75)]
    assert [trace.xaxis for trace in ghosts] == ["x", "x2", "x", "x2"]
    assert (
        {trace.name for trace in ghosts}
        == {trace.legendgroup for trace in ghosts}
        == {"earlier runs"}
    )
    assert [trace.showlegend for trace in ghosts] == [True, False, False, False]
    assert {(trace.mode, trace.line.color, trace.line.width) for trace in ghosts} == {
        ("lines", GHOST_COLOR, 1)
    }
    assert "#2 vgg16" in ghosts[2].hovertemplate


def test_a_ghost_label_cannot_inject_markup_or_template_fields() -> None:
    figure = training_curves_figure([], ghosts=[("<b>%{y}</b>", _lines(0.3))])

    assert figure.data[0].hovertemplate.startswith("&lt;b>%&#8203;{y}&lt;/b><br>")


def test_ghosts_keep_the_runs_own_frame() -> None:
    figure = training_curves_figure(
        _lines(0.5), total_epochs=3, ghosts=[("#1", _lines(*[0.5] * 8))]
    )

    assert figure.layout.xaxis.range == (0.5, 3.5)


def test_compared_runs_get_one_colour_each_and_share_a_legend_entry() -> None:
    figure = compare_curves_figure([("#1", _lines(0.5, 0.6)), ("#2", _lines(0.7))])

    assert [(trace.name, trace.xaxis, trace.y) for trace in figure.data] == [
        ("#1", "x", (0.5, 0.6)),
        ("#1", "x2", (1.5, 0.75)),
        ("#2", "x", (0.7,)),
        ("#2", "x2", (1.5,)),
    ]
    assert [trace.line.color for trace in figure.data] == [RUN_COLORS[0]] * 2 + [RUN_COLORS[1]] * 2
    assert [trace.showlegend for trace in figure.data] == [True, False, True, False]
    assert figure.layout.xaxis.range == (0.5, 2.5)
    assert figure.layout.uirevision == "compare-curves"


def test_training_curves_are_added_dashed_and_faint() -> None:
    figure = compare_curves_figure([("#1", _lines(0.5))], show_training=True)

    validation, _, training, training_loss = figure.data
    assert training.y == (0.6,) and training_loss.y == (1.0,)
    assert (training.line.dash, training.opacity, training.showlegend) == ("dash", 0.45, False)
    assert validation.line.dash is None
    assert "<extra>training</extra>" in training.hovertemplate


def test_many_runs_reuse_the_colours_in_turn() -> None:
    runs = [(f"#{i}", _lines(0.5)) for i in range(len(RUN_COLORS) + 1)]

    figure = compare_curves_figure(runs)

    assert figure.data[-1].line.color == RUN_COLORS[0]


def test_the_ladder_plots_finished_rungs_and_marks_the_others_pending() -> None:
    rows = [
        {"depth": 0, "state": "completed", "best_val_accuracy": 0.7, "seconds_per_epoch": 2.0},
        {"depth": 1, "state": "stopped", "best_val_accuracy": 0.8, "seconds_per_epoch": 3.0},
        {"depth": 2, "state": "running", "best_val_accuracy": 0.5, "seconds_per_epoch": 4.0},
        {"depth": 4, "state": "queued", "best_val_accuracy": None, "seconds_per_epoch": None},
        {"depth": 8, "state": "failed", "best_val_accuracy": None, "seconds_per_epoch": None},
    ]

    accuracy, seconds, pending = ladder_figure(rows).data

    assert (accuracy.x, accuracy.y, accuracy.xaxis) == ((0, 1), (0.7, 0.8), "x")
    assert (seconds.x, seconds.y, seconds.xaxis) == ((0, 1), (2.0, 3.0), "x2")
    assert (pending.x, pending.y, pending.text) == ((2, 4), (0, 0), ("running", "queued"))
    assert (pending.marker.symbol, pending.marker.color) == ("circle-open", FROZEN_COLOR)
    axis = ladder_figure(rows).layout.xaxis2
    assert (axis.type, axis.categoryarray) == ("category", (0, 1, 2, 4, 8))


def test_an_empty_ladder_still_makes_a_figure() -> None:
    assert [len(trace.x) for trace in ladder_figure([]).data] == [0, 0, 0]
