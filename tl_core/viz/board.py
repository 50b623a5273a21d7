"""The class board's content from plain rows: the assembled chart, outcomes, predictions.

A row is one student on a lesson's board, a mapping with the fields of
`tl_core.classroom.lessons.BoardRow` (``student``, ``variant``, ``x``, ``state``,
``best_val_accuracy``, ``prediction``). Nothing here reads files: the board page reads the
rows and hands them over, and tests build them by hand.

An arm's *series* on a chart is the part of its name after the last ``" · "``
(``"25 % · pretrained"`` is on the "pretrained" curve at x = 0.25); an arm without one
(``"depth 2"``) is on the single curve `ONE_SERIES`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from tl_core.viz.plots import RUN_COLORS, plotly_text

__all__ = [
    "ONE_SERIES",
    "ArmOutcome",
    "arm_outcomes",
    "board_chart",
    "curve_sentence",
    "leaderboard",
    "outcome_sentence",
    "prediction_counts",
]

#: The name of the curve of arms whose names carry no series.
ONE_SERIES = "best val. accuracy"
#: The x axis of each chart kind: its title, and how an x value reads.
_AXES = {
    "ladder": ("top blocks trained (0 = head only)", lambda x: f"{x:g}"),
    "datasize": ("share of the training images", lambda x: f"{x * 100:g} %"),
}
_SEPARATOR = " · "


@dataclass(frozen=True)
class ArmOutcome:
    """How one arm of a lesson did so far.

    Attributes:
        variant: the arm's name.
        students: rows on the board in this arm.
        finished: of those, runs completed with a validation accuracy.
        mean_accuracy: the mean best validation accuracy of the finished runs; ``None``
            before the first one.
    """

    variant: str
    students: int
    finished: int
    mean_accuracy: float | None


def _series(variant: str) -> str:
    return variant.rsplit(_SEPARATOR, 1)[1] if _SEPARATOR in variant else ONE_SERIES


def _has_result(row: Mapping[str, Any]) -> bool:
    return row.get("best_val_accuracy") is not None


def board_chart(rows: Sequence[Mapping[str, Any]], chart: str = "ladder") -> go.Figure:
    """Return best validation accuracy against the lesson's x, one curve per series.

    Each student with a result is a marker (hover: name, arm, state; a running run shows
    its best so far); each series' line joins its mean at every x. Every x of the rows is
    on the axis, evenly spaced, those without a result yet included, so the chart keeps
    its shape while results arrive. Traces, per series in order of first appearance: the
    mean line (named after the series), then the students' markers (``"<series> runs"``).

    Args:
        rows: the board's rows (rows without an ``x`` are left out).
        chart: ``"ladder"`` (x = top blocks trained) or ``"datasize"`` (x = share of the
            training images); sets the axis title and tick labels.

    Example:
        >>> figure = board_chart(
        ...     [{"student": "Ada", "variant": "25 % · pretrained", "x": 0.25,
        ...       "state": "completed", "best_val_accuracy": 0.9},
        ...      {"student": "Ben", "variant": "25 % · from scratch", "x": 0.25,
        ...       "state": "running", "best_val_accuracy": None}],
        ...     chart="datasize",
        ... )
        >>> [(trace.name, trace.y) for trace in figure.data]
        [('pretrained', (0.9,)), ('pretrained runs', (0.9,)), ('from scratch', ()), ('from scratch runs', ())]
    """  # noqa: E501
    title, label = _AXES.get(chart, _AXES["ladder"])
    placed = [row for row in rows if row.get("x") is not None]
    xs = sorted({float(row["x"]) for row in placed})
    figure = go.Figure()
    series_names = list(dict.fromkeys(_series(str(row.get("variant", ""))) for row in placed))
    for index, series in enumerate(series_names):
        color = RUN_COLORS[index % len(RUN_COLORS)]
        mine = [row for row in placed if _series(str(row.get("variant", ""))) == series]
        done = [row for row in mine if _has_result(row)]
        means = {
            x: statistics.fmean(row["best_val_accuracy"] for row in done if row["x"] == x)
            for x in xs
            if any(row["x"] == x for row in done)
        }
        figure.add_scatter(
            x=[label(x) for x in means],
            y=list(means.values()),
            name=plotly_text(series),
            mode="lines",
            line={"color": color, "width": 3},
            hovertemplate="mean %{y:.1%} at %{x}<extra></extra>",
        )
        figure.add_scatter(
            x=[label(float(row["x"])) for row in done],
            y=[row["best_val_accuracy"] for row in done],
            name=plotly_text(f"{series} runs"),
            mode="markers",
            marker={
                "size": 14,
                "color": color,
                "symbol": [
                    "circle" if row.get("state") == "completed" else "circle-open" for row in done
                ],
            },
            customdata=[
                [plotly_text(str(row.get(key, ""))) for key in ("student", "variant", "state")]
                for row in done
            ],
            hovertemplate="%{customdata[0]} · %{customdata[1]}: %{y:.1%} (%{customdata[2]})"
            "<extra></extra>",
            showlegend=False,
        )
    figure.update_xaxes(
        title_text=title,
        type="category",
        categoryorder="array",
        categoryarray=[label(x) for x in xs],
        range=[-0.5, len(xs) - 0.5],
    )
    figure.update_yaxes(title_text="best validation accuracy", range=[0, 1.02], tickformat=".0%")
    # Large type for a projector; the page draws it without Streamlit's theme, which
    # would put its own (small) fonts back.
    figure.update_layout(
        template="plotly_white",
        height=480,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        font={"size": 20},
        showlegend=len(series_names) > 1,
        legend={"orientation": "h", "y": 1.1},
        hovermode="closest",
        uirevision=f"board-{chart}",
    )
    return figure


def curve_sentence(rows: Sequence[Mapping[str, Any]], chart: str = "ladder") -> str:
    """What each curve of `board_chart` says so far: its mean at the smallest and largest x
    with a result, and its best where that lies between them (names as they are: escape
    them for Markdown). Completed runs only.

    Example:
        >>> curve_sentence(
        ...     [{"variant": "depth 0", "x": 0, "state": "completed", "best_val_accuracy": 0.7},
        ...      {"variant": "depth 2", "x": 2, "state": "completed", "best_val_accuracy": 0.8},
        ...      {"variant": "depth 8", "x": 8, "state": "completed", "best_val_accuracy": 0.6}])
        'From 70.0% at 0 to 60.0% at 8, best 80.0% at 2.'
    """
    _, label = _AXES.get(chart, _AXES["ladder"])
    done = [
        row
        for row in rows
        if row.get("x") is not None and row.get("state") == "completed" and _has_result(row)
    ]
    if not done:
        return "No finished runs yet: the curves grow as runs complete."
    parts = []
    for series in dict.fromkeys(_series(str(row.get("variant", ""))) for row in done):
        points: dict[float, list[float]] = {}
        for row in done:
            if _series(str(row.get("variant", ""))) == series:
                points.setdefault(float(row["x"]), []).append(row["best_val_accuracy"])
        means = {x: statistics.fmean(values) for x, values in sorted(points.items())}
        (low, first), (high, last) = next(iter(means.items())), list(means.items())[-1]
        text = f"{first:.1%} at {label(low)}"
        if high != low:
            text = f"from {text} to {last:.1%} at {label(high)}"
        best = max(means, key=means.__getitem__)
        if best not in (low, high):
            text += f", best {means[best]:.1%} at {label(best)}"
        parts.append(text if series == ONE_SERIES else f"{series}: {text}")
    sentence = "; ".join(parts) + "."
    return sentence[0].upper() + sentence[1:]


def arm_outcomes(rows: Sequence[Mapping[str, Any]]) -> list[ArmOutcome]:
    """Each arm's count of students, finished runs and mean best validation accuracy, in
    the order the arms first appear; rows without an arm are left out.

    Only completed runs count towards the mean: a running one's best is not yet its result.

    Example:
        >>> arm_outcomes([{"variant": "A", "state": "completed", "best_val_accuracy": 0.8},
        ...               {"variant": "A", "state": "running", "best_val_accuracy": 0.5}])
        [ArmOutcome(variant='A', students=2, finished=1, mean_accuracy=0.8)]
    """
    arms: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("variant"):
            arms.setdefault(str(row["variant"]), []).append(row)
    outcomes = []
    for variant, members in arms.items():
        results = [
            row["best_val_accuracy"]
            for row in members
            if row.get("state") == "completed" and _has_result(row)
        ]
        mean = statistics.fmean(results) if results else None
        outcomes.append(ArmOutcome(variant, len(members), len(results), mean))
    return outcomes


def outcome_sentence(outcomes: Sequence[ArmOutcome]) -> str:
    """What the class's results say so far, in one sentence (names as they are: escape
    them for Markdown).

    Example:
        >>> outcome_sentence([ArmOutcome("Feature extraction", 2, 2, 0.72),
        ...                   ArmOutcome("Fine-tune top 4", 2, 1, 0.85)])
        'Fine-tune top 4 leads with 85.0% (mean of 1 run), 13.0 points ahead of Feature extraction (72.0%, 2 runs).'
    """  # noqa: E501
    ranked = sorted(
        (arm for arm in outcomes if arm.mean_accuracy is not None),
        key=lambda arm: arm.mean_accuracy or 0.0,
        reverse=True,
    )
    if not ranked:
        return "No finished runs yet: the outcome appears as runs complete."
    best = ranked[0]
    assert best.mean_accuracy is not None  # ranked holds arms with a mean only
    lead = f"{best.variant} leads with {best.mean_accuracy:.1%} (mean of {_runs(best.finished)})"
    if len(ranked) == 1:
        waiting = [arm.variant for arm in outcomes if arm.mean_accuracy is None]
        rest = f"; still waiting for {', '.join(waiting)}" if waiting else ""
        return f"{lead}{rest}."
    second = ranked[1]
    assert second.mean_accuracy is not None
    gap = (best.mean_accuracy - second.mean_accuracy) * 100
    return (
        f"{lead}, {gap:.1f} points ahead of {second.variant} "
        f"({second.mean_accuracy:.1%}, {_runs(second.finished)})."
    )


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def prediction_counts(
    rows: Sequence[Mapping[str, Any]], choices: Sequence[str]
) -> list[tuple[str, int]]:
    """How many students picked each of `choices` (in their order), then ``"other"`` for
    predictions that are none of them and ``"no prediction yet"``, each only when non-zero.

    Example:
        >>> prediction_counts([{"prediction": "Yes"}, {"prediction": "Yes"},
        ...                    {"prediction": None}], ["Yes", "No"])
        [('Yes', 2), ('No', 0), ('no prediction yet', 1)]
    """
    said = [row.get("prediction") for row in rows]
    counts = [(choice, sum(text == choice for text in said)) for choice in choices]
    other = sum(text is not None and text not in choices for text in said)
    missing = sum(text is None for text in said)
    counts += [(name, count) for name, count in (("other", other), ("no prediction yet", missing))]
    return [(name, count) for name, count in counts if count or name in choices]


def leaderboard(rows: Sequence[Mapping[str, Any]], top: int = 10) -> list[Mapping[str, Any]]:
    """The `top` rows with the highest best validation accuracy, highest first (ties by
    name); rows without a result are left out.

    Example:
        >>> [row["student"] for row in leaderboard(
        ...     [{"student": "Ada", "best_val_accuracy": 0.7},
        ...      {"student": "Ben", "best_val_accuracy": 0.9},
        ...      {"student": "Cy", "best_val_accuracy": None}])]
        ['Ben', 'Ada']
    """
    ranked = sorted(
        (row for row in rows if _has_result(row)),
        key=lambda row: (-row["best_val_accuracy"], str(row.get("student", ""))),
    )
    return ranked[:top]
