"""The training curves figure: accuracy and loss per epoch, training against validation."""

from __future__ import annotations

from tl_core.viz.plots import TRAIN_COLOR, VAL_COLOR, training_curves_figure


def _line(epoch: int, val_accuracy: float | None, phase: str = "train") -> dict[str, object]:
    return {
        "epoch": epoch,
        "phase": phase,
        "accuracy": 0.1 * epoch,
        "val_accuracy": val_accuracy,
        "loss": 2.0 / epoch,
        "val_loss": 2.5 / epoch,
    }


def test_the_traces_are_accuracy_then_loss_each_training_then_validation() -> None:
    figure = training_curves_figure([_line(1, 0.3), _line(2, 0.6)])

    train_acc, val_acc, train_loss, val_loss, best = figure.data
    assert (train_acc.x, train_acc.y) == ((1, 2), (0.1, 0.2))
    assert val_acc.y == (0.3, 0.6)
    assert (train_loss.y, val_loss.y) == ((2.0, 1.0), (2.5, 1.25))
    assert (train_acc.xaxis, train_loss.xaxis) == ("x", "x2")
    assert [t.line.color for t in figure.data[:4]] == [TRAIN_COLOR, VAL_COLOR] * 2
    assert [t.showlegend for t in figure.data[:4]] == [True, True, False, False]
    assert (best.x, best.y) == ((2,), (0.6,))


def test_the_best_epoch_has_the_highest_validation_accuracy_and_ties_go_to_the_lower_loss() -> None:
    figure = training_curves_figure([_line(1, 0.7), _line(2, 0.9), _line(3, 0.5)])
    tied = training_curves_figure([_line(1, 0.7), _line(2, 0.5), _line(3, 0.7)])

    assert figure.data[-1].x == (2,)
    assert tied.data[-1].x == (3,)  # val_loss 2.5/3 < 2.5/1


def test_without_validation_accuracy_there_is_no_star_and_gaps_stay_gaps() -> None:
    figure = training_curves_figure([_line(1, None), _line(2, None)])

    assert len(figure.data) == 4
    assert figure.data[1].y == (None, None)


def test_the_x_axis_spans_the_planned_epochs() -> None:
    assert training_curves_figure([_line(1, 0.5)], total_epochs=10).layout.xaxis.range == (
        0.5,
        10.5,
    )
    assert training_curves_figure([]).layout.xaxis.range == (0.5, 1.5)


def test_a_two_phase_run_marks_where_fine_tuning_starts() -> None:
    lines = [_line(1, 0.3, "head"), _line(2, 0.4, "head"), _line(3, 0.6, "fine-tune")]

    figure = training_curves_figure(lines, total_epochs=4)

    assert [shape.x0 for shape in figure.layout.shapes] == [2.5, 2.5]
    assert {annotation.text for annotation in figure.layout.annotations} >= {"fine-tune"}


def test_redraws_keep_the_users_zoom() -> None:
    assert training_curves_figure([]).layout.uirevision == "training-curves"
