"""The class board from plain rows: the assembled chart, each arm's outcome, the predictions."""

from __future__ import annotations

from typing import Any

from tl_core.viz.board import (
    ONE_SERIES,
    ArmOutcome,
    arm_outcomes,
    board_chart,
    curve_sentence,
    leaderboard,
    outcome_sentence,
    prediction_counts,
)


def _row(
    student: str,
    variant: str,
    accuracy: float | None,
    *,
    x: float | None = None,
    state: str = "completed",
    prediction: str | None = None,
) -> dict[str, Any]:
    return {
        "student": student,
        "variant": variant,
        "x": x,
        "run_id": None,
        "state": state,
        "best_val_accuracy": accuracy,
        "prediction": prediction,
    }


DATASIZE = [
    _row("Ada", "10 % · pretrained", 0.80, x=0.1),
    _row("Ben", "10 % · from scratch", 0.30, x=0.1),
    _row("Cleo", "100 % · pretrained", 0.90, x=1.0),
    _row("Dev", "100 % · pretrained", 0.94, x=1.0),
    _row("Eve", "100 % · from scratch", None, x=1.0, state="running"),
]


def _traces(figure: Any) -> dict[str, Any]:
    return {trace.name: trace for trace in figure.data}


def test_the_datasize_chart_has_one_curve_per_series_through_the_mean_at_each_fraction() -> None:
    traces = _traces(board_chart(DATASIZE, "datasize"))

    assert list(traces) == ["pretrained", "pretrained runs", "from scratch", "from scratch runs"]
    assert traces["pretrained"].x == ("10 %", "100 %")
    assert traces["pretrained"].y[0] == 0.80
    assert abs(traces["pretrained"].y[1] - 0.92) < 1e-9
    assert traces["from scratch"].x == ("10 %",)
    assert traces["pretrained runs"].y == (0.80, 0.90, 0.94)


def test_every_fraction_is_on_the_axis_before_its_results_arrive() -> None:
    queued = _row("Ada", "50 % · pretrained", None, x=0.5, state="queued")

    figure = board_chart([queued], "datasize")

    assert list(figure.layout.xaxis.categoryarray) == ["50 %"]
    assert figure.layout.xaxis.title.text == "share of the training images"


def test_a_ladder_is_one_curve_against_the_depth() -> None:
    rows = [
        _row("Ada", "depth 0 (head only)", 0.70, x=0.0),
        _row("Ben", "depth 2", 0.82, x=2.0),
        _row("Cleo", "depth 8", 0.40, x=8.0, state="running"),
    ]

    traces = _traces(board_chart(rows, "ladder"))

    assert list(traces) == [ONE_SERIES, f"{ONE_SERIES} runs"]
    assert traces[ONE_SERIES].x == ("0", "2", "8")
    # A running run's best so far is drawn, as an open marker.
    assert traces[f"{ONE_SERIES} runs"].marker.symbol == ("circle", "circle", "circle-open")


def test_names_in_the_chart_cannot_inject_markup() -> None:
    rows = [_row("<b>Ada</b>", "depth 1 · <i>x</i>", 0.5, x=1.0)]

    traces = _traces(board_chart(rows))

    assert "&lt;i>x&lt;/i>" in traces
    assert traces["&lt;i>x&lt;/i> runs"].customdata[0][0] == "&lt;b>Ada&lt;/b>"


def test_rows_without_an_x_stay_off_the_chart() -> None:
    figure = board_chart([_row("Ada", "Feature extraction", 0.8)])

    assert all(len(trace.x) == 0 for trace in figure.data)


def test_the_curve_sentence_reads_each_series_from_its_smallest_to_its_largest_share() -> None:
    sentence = curve_sentence(DATASIZE, "datasize")

    assert sentence == (
        "Pretrained: from 80.0% at 10 % to 92.0% at 100 %; from scratch: 30.0% at 10 %."
    )


def test_the_curve_sentence_names_a_peak_between_the_ends() -> None:
    rows = [
        _row("Ada", "depth 0", 0.70, x=0.0),
        _row("Ben", "depth 2", 0.85, x=2.0),
        _row("Cleo", "depth 8", 0.65, x=8.0),
        _row("Dev", "depth 4", 0.99, x=4.0, state="running"),
    ]

    assert curve_sentence(rows) == "From 70.0% at 0 to 65.0% at 8, best 85.0% at 2."
    assert "No finished runs yet" in curve_sentence(rows[3:])


def test_arm_outcomes_average_completed_runs_only() -> None:
    rows = [
        _row("Ada", "Feature extraction", 0.70),
        _row("Ben", "Feature extraction", 0.74),
        _row("Cleo", "Fine-tune top 4", 0.60, state="running"),
        _row("Dev", "Fine-tune top 4", None, state="not started"),
    ]

    assert arm_outcomes(rows) == [
        ArmOutcome("Feature extraction", 2, 2, 0.72),
        ArmOutcome("Fine-tune top 4", 2, 0, None),
    ]


def test_the_outcome_names_the_winning_arm_and_its_lead_in_points() -> None:
    sentence = outcome_sentence(
        [ArmOutcome("Feature extraction", 2, 2, 0.72), ArmOutcome("Fine-tune top 4", 2, 2, 0.80)]
    )

    assert sentence.startswith("Fine-tune top 4 leads with 80.0%")
    assert "8.0 points ahead of Feature extraction (72.0%, 2 runs)" in sentence


def test_the_outcome_waits_for_results() -> None:
    assert "No finished runs yet" in outcome_sentence([ArmOutcome("A", 1, 0, None)])
    one = outcome_sentence([ArmOutcome("A", 1, 1, 0.5), ArmOutcome("B", 1, 0, None)])
    assert one == "A leads with 50.0% (mean of 1 run); still waiting for B."


def test_prediction_counts_follow_the_choices_then_other_and_missing() -> None:
    rows = [
        _row("Ada", "A", None, prediction="Fine-tuning wins"),
        _row("Ben", "B", None, prediction="Fine-tuning wins"),
        _row("Cleo", "A", None, prediction="something else"),
        _row("Dev", "B", None),
    ]

    counts = prediction_counts(rows, ["Fine-tuning wins", "About the same"])

    assert counts == [
        ("Fine-tuning wins", 2),
        ("About the same", 0),
        ("other", 1),
        ("no prediction yet", 1),
    ]


def test_the_leaderboard_ranks_results_highest_first_and_keeps_the_top() -> None:
    rows = [_row(name, "A", accuracy) for name, accuracy in (("Ada", 0.7), ("Ben", 0.9))]
    rows += [_row("Cleo", "A", 0.9), _row("Dev", "A", None)]

    assert [row["student"] for row in leaderboard(rows)] == ["Ben", "Cleo", "Ada"]
    assert [row["student"] for row in leaderboard(rows, top=1)] == ["Ben"]
