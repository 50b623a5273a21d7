"""Plotly figures built from plain data (counts, block lists); no Streamlit, no TensorFlow.

The UI draws these with ``st.plotly_chart``; tests inspect them as data. Each figure has a
fixed ``uirevision`` so that a redraw with new values keeps the user's zoom and legend.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_core.jobs.runs import ACTIVE_STATES, FINAL_STATES, best_epoch
from tl_core.models.blocks import BlockInfo

__all__ = [
    "FROZEN_COLOR",
    "GHOST_COLOR",
    "RUN_COLORS",
    "TRAINABLE_COLOR",
    "TRAIN_COLOR",
    "VAL_COLOR",
    "class_counts_figure",
    "compare_curves_figure",
    "freeze_strip_figure",
    "ladder_figure",
    "plotly_text",
    "strip_widths",
    "training_curves_figure",
]

#: Colour of frozen blocks: a quiet grey-blue, since nothing happens there.
FROZEN_COLOR = "#94a3b8"
#: Colour of trainable blocks: orange, where the learning happens.
TRAINABLE_COLOR = "#f97316"
#: Smallest share of the strip a block gets, so a block of a few hundred parameters
#: next to one of a million stays visible and hoverable.
MIN_SEGMENT_SHARE = 0.015


def class_counts_figure(counts: pd.DataFrame) -> go.Figure:
    """Return a bar chart of images per class (rows) and split (columns), stacked by split."""
    figure = go.Figure()
    for split in counts.columns:
        figure.add_bar(
            x=list(counts.index),
            y=counts[split].tolist(),
            name=split,
            text=counts[split].tolist(),
            textposition="inside",
            insidetextanchor="middle",
            textangle=0,
        )
    figure.update_layout(
        barmode="stack",
        height=300,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        showlegend=len(counts.columns) > 1,
        legend={"orientation": "h", "y": 1.1, "traceorder": "normal"},
        # Counts too small to fit inside their bar are hidden rather than squeezed.
        uniformtext={"minsize": 10, "mode": "hide"},
        yaxis_title="images",
        uirevision="class-counts",
    )
    return figure


def strip_widths(params: Sequence[int]) -> list[float]:
    """Return each block's share of the freeze strip (they add up to 1).

    Widths follow the square root of the parameter count: linear widths would leave the
    stem of MobileNetV2 (992 parameters) invisible next to its top (414,720). No block
    gets less than `MIN_SEGMENT_SHARE` (when there is room for that).

    Example:
        >>> [round(w, 2) for w in strip_widths([100, 400, 0])]
        [0.33, 0.66, 0.01]
    """
    if not params:
        return []
    raw = [math.sqrt(max(p, 0)) for p in params]
    total = sum(raw)
    shares = [r / total for r in raw] if total else [1 / len(raw)] * len(raw)
    floor = min(MIN_SEGMENT_SHARE, 1 / len(raw))
    # Blocks below the floor get it; the others share what is left, in proportion.
    raised = [share < floor for share in shares]
    left = 1 - floor * sum(raised)
    rest = sum(share for share, up in zip(shares, raised, strict=True) if not up)
    return [floor if up else share * left / rest for share, up in zip(shares, raised, strict=True)]


def freeze_strip_figure(blocks: Sequence[BlockInfo], trainable: Collection[str]) -> go.Figure:
    """Return the backbone as one horizontal strip: input left, a segment per block.

    Segments are sized by `strip_widths`, coloured `FROZEN_COLOR` or `TRAINABLE_COLOR`
    (one trace each, named "Frozen" and "Trainable"), and name the block, its parameters
    and its state on hover. There is no legend: say what the colours mean next to it.

    Args:
        blocks: the backbone's blocks, input side first.
        trainable: names of the blocks that train.

    Example:
        >>> blocks = [BlockInfo("stem", ("conv",), 864, (None, 8, 8, 32)),
        ...           BlockInfo("top", ("conv2",), 4096, (None, 4, 4, 128))]
        >>> [trace.name for trace in freeze_strip_figure(blocks, {"top"}).data]
        ['Frozen', 'Trainable']
    """
    widths = strip_widths([block.params for block in blocks])
    starts = [sum(widths[:i]) for i in range(len(widths))]
    figure = go.Figure()
    for label, color, trains in (
        ("Frozen", FROZEN_COLOR, False),
        ("Trainable", TRAINABLE_COLOR, True),
    ):
        chosen = [i for i, block in enumerate(blocks) if (block.name in trainable) == trains]
        figure.add_bar(
            orientation="h",
            name=label,
            y=[""] * len(chosen),
            x=[widths[i] for i in chosen],
            base=[starts[i] for i in chosen],
            marker={"color": color, "line": {"color": "white", "width": 1.5}},
            text=[blocks[i].name for i in chosen],
            textposition="inside",
            insidetextanchor="middle",
            textangle=0,
            customdata=[
                [blocks[i].name, f"{blocks[i].params:,}", label.lower(), i + 1] for i in chosen
            ],
            hovertemplate=(
                "<b>%{customdata[0]}</b> (block %{customdata[3]})<br>"
                "%{customdata[1]} parameters<br>%{customdata[2]}<extra></extra>"
            ),
        )
    figure.update_layout(
        barmode="overlay",
        # Plotly leaves a state without blocks out of the legend, so the colours are
        # explained next to the chart instead, the same way whatever trains.
        showlegend=False,
        height=90,
        margin={"l": 0, "r": 0, "t": 0, "b": 24},
        uniformtext={"minsize": 9, "mode": "hide"},
        xaxis={"range": [0, 1], "visible": False, "fixedrange": True},
        yaxis={"visible": False, "fixedrange": True},
        annotations=[
            _edge_label("← input image", 0, "left"),
            _edge_label("features → new head", 1, "right"),
        ],
        plot_bgcolor="rgba(0,0,0,0)",
        uirevision="freeze-strip",
    )
    return figure


def _edge_label(text: str, x: float, anchor: str) -> dict[str, object]:
    return {
        "text": text,
        "x": x,
        "xref": "paper",
        "xanchor": anchor,
        "y": 0,
        "yref": "paper",
        "yanchor": "top",
        "yshift": -4,
        "showarrow": False,
        "font": {"size": 12, "color": "#64748b"},
    }


# --- training curves -------------------------------------------------------------------------

#: Colours of the training and validation curves (the same in both panels).
TRAIN_COLOR = "#2563eb"
VAL_COLOR = "#f59e0b"
#: Colour of earlier runs behind a live run's curves: light, so the live run stands out.
GHOST_COLOR = "#cbd5e1"
#: One colour per compared run, in order (D3's palette without its grey, which would
#: read as "frozen" or "earlier run" elsewhere in the studio).
RUN_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)


def training_curves_figure(
    epochs: Sequence[Mapping[str, Any]],
    total_epochs: int | None = None,
    *,
    ghosts: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
) -> go.Figure:
    """Return accuracy (left) and loss (right) per epoch, training against validation.

    The traces, in order: training accuracy, validation accuracy, training loss,
    validation loss, then a star on the best validation accuracy (when there is one). A
    two-phase run gets a dashed line where the fine-tune phase starts. The x axis spans
    `total_epochs` when given, so the curves grow into a fixed frame while training.

    Ghosts (earlier runs, as a yardstick) come before all of these, so that they are drawn
    behind: for each, its validation accuracy and its validation loss, thin and grey
    (`GHOST_COLOR`), without markers, in one legend group named "earlier runs"; hovering
    one names its run.

    Args:
        epochs: epoch lines of ``metrics.jsonl`` (``epoch``, ``phase``, ``accuracy``,
            ``val_accuracy``, ``loss``, ``val_loss``; missing values leave gaps).
        total_epochs: epochs planned over all phases (default: as many as there are lines).
        ghosts: ``(label, epoch lines)`` of earlier runs (default: none).

    Example:
        >>> figure = training_curves_figure(
        ...     [{"epoch": 1, "accuracy": 0.5, "val_accuracy": 0.4, "loss": 1.2, "val_loss": 1.3}]
        ... )
        >>> [trace.name for trace in figure.data]
        ['training', 'validation', 'training', 'validation', 'best']
    """
    x = [line.get("epoch") for line in epochs]
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("Accuracy", "Loss"), horizontal_spacing=0.08
    )
    for index, (label, lines) in enumerate(ghosts):
        _add_ghost(figure, label, lines, first=index == 0)
    for column, metric, value_format in ((1, "accuracy", ".1%"), (2, "loss", ".3f")):
        for name, key, color in (
            ("training", metric, TRAIN_COLOR),
            ("validation", f"val_{metric}", VAL_COLOR),
        ):
            figure.add_scatter(
                x=x,
                y=[line.get(key) for line in epochs],
                name=name,
                legendgroup=name,
                showlegend=column == 1,
                mode="lines+markers",
                line={"color": color, "width": 2},
                marker={"size": 6},
                hovertemplate=f"epoch %{{x}}: %{{y:{value_format}}}<extra>{name}</extra>",
                row=1,
                col=column,
            )
    best = best_epoch([dict(line) for line in epochs])
    if best is not None:
        figure.add_scatter(
            x=[best.get("epoch")],
            y=[best["val_accuracy"]],
            name="best",
            mode="markers",
            marker={"symbol": "star", "size": 14, "color": VAL_COLOR, "line": {"width": 1}},
            hovertemplate="best validation accuracy: %{y:.1%} (epoch %{x})<extra></extra>",
            row=1,
            col=1,
        )
    for boundary in _phase_starts(epochs):
        figure.add_vline(
            x=boundary - 0.5,
            line={"dash": "dash", "color": "#64748b", "width": 1},
            annotation={"text": "fine-tune", "font": {"size": 11, "color": "#64748b"}},
            annotation_position="top right",
        )
    # The frame is this run's: a longer earlier run is cut at its end (zoom out to see it).
    last = max([total_epochs or 0, *(value for value in x if isinstance(value, int))], default=0)
    _epoch_axes(figure, max(last, 1))
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=1, col=2)
    _two_panel_layout(figure, "training-curves")
    return figure


def _add_ghost(
    figure: go.Figure, label: str, lines: Sequence[Mapping[str, Any]], *, first: bool
) -> None:
    """Draw one earlier run's validation curves, thin and grey, in the "earlier runs" group."""
    x = [line.get("epoch") for line in lines]
    for column, key, value_format in ((1, "val_accuracy", ".1%"), (2, "val_loss", ".3f")):
        figure.add_scatter(
            x=x,
            y=[line.get(key) for line in lines],
            name="earlier runs",
            legendgroup="earlier runs",
            showlegend=first and column == 1,
            mode="lines",
            line={"color": GHOST_COLOR, "width": 1},
            hovertemplate=(
                f"{plotly_text(label)}<br>epoch %{{x}}: %{{y:{value_format}}}"
                "<extra>earlier run</extra>"
            ),
            row=1,
            col=column,
        )


def plotly_text(text: str) -> str:
    """Return `text` (a class name, a run label) safe in a Plotly label or hover template:
    no markup, no template fields.

    Example:
        >>> plotly_text("<b>cats & %{dogs}")
        '&lt;b>cats &amp; %&#8203;{dogs}'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("%{", "%&#8203;{")


def _epoch_axes(figure: go.Figure, span: int) -> None:
    """Both panels' x axes: epochs 1 to `span`, a tick per epoch while they fit."""
    figure.update_xaxes(
        title_text="epoch",
        range=[0.5, span + 0.5],
        dtick=1 if span <= 20 else None,
        zeroline=False,
    )


def _two_panel_layout(figure: go.Figure, uirevision: str) -> None:
    figure.update_layout(
        height=360,
        margin={"l": 0, "r": 0, "t": 64, "b": 0},
        # Centred above the panels, clear of both panel titles.
        legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": 1.2, "yanchor": "bottom"},
        hovermode="closest",
        uirevision=uirevision,
    )


def _phase_starts(epochs: Sequence[Mapping[str, Any]]) -> list[int]:
    """Epochs that begin a new phase (the first epoch excepted)."""
    starts = []
    for previous, line in itertools.pairwise(epochs):
        if line.get("phase") != previous.get("phase") and isinstance(line.get("epoch"), int):
            starts.append(line["epoch"])
    return starts


# --- comparing runs -------------------------------------------------------------------------


def compare_curves_figure(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], *, show_training: bool = False
) -> go.Figure:
    """Return validation accuracy (left) and loss (right) per epoch, one colour per run.

    For each run, in order: its validation accuracy, its validation loss and, with
    `show_training`, its training accuracy and loss (dashed and faint). Each run's traces
    share a legend group named by its label, so one click hides a run in both panels.
    Colours follow `RUN_COLORS` in the order of `runs`.

    Args:
        runs: ``(label, epoch lines)`` per run.
        show_training: also draw the training curves (default False).

    Example:
        >>> figure = compare_curves_figure(
        ...     [("#1", [{"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.1}]),
        ...      ("#2", [{"epoch": 1, "val_accuracy": 0.7, "val_loss": 0.9}])]
        ... )
        >>> [(trace.name, trace.y) for trace in figure.data]
        [('#1', (0.5,)), ('#1', (1.1,)), ('#2', (0.7,)), ('#2', (0.9,))]
    """
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Validation accuracy", "Validation loss"),
        horizontal_spacing=0.08,
    )
    curves = [("validation", "val_", {}, True)]
    if show_training:
        curves.append(("training", "", {"dash": "dash"}, False))
    for index, (label, lines) in enumerate(runs):
        color = RUN_COLORS[index % len(RUN_COLORS)]
        x = [line.get("epoch") for line in lines]
        for kind, prefix, dash, bold in curves:
            for column, metric, value_format in ((1, "accuracy", ".1%"), (2, "loss", ".3f")):
                figure.add_scatter(
                    x=x,
                    y=[line.get(prefix + metric) for line in lines],
                    name=label,
                    legendgroup=label,
                    showlegend=bold and column == 1,
                    mode="lines+markers" if bold else "lines",
                    opacity=1.0 if bold else 0.45,
                    line={"color": color, "width": 2 if bold else 1.5, **dash},
                    marker={"size": 5},
                    hovertemplate=(
                        f"{plotly_text(label)}<br>epoch %{{x}}: %{{y:{value_format}}}"
                        f"<extra>{kind}</extra>"
                    ),
                    row=1,
                    col=column,
                )
    last = max(
        (
            line["epoch"]
            for _, lines in runs
            for line in lines
            if isinstance(line.get("epoch"), int)
        ),
        default=1,
    )
    _epoch_axes(figure, last)
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=1, col=2)
    _two_panel_layout(figure, "compare-curves")
    return figure


def ladder_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Return what each freeze depth bought (left) and cost (right).

    Left: best validation accuracy against the number of top blocks trained; right: the
    median seconds per epoch. Rungs that are still queued or running appear on the left
    as open grey markers at 0, labelled with their state, in a trace named "pending".
    The traces, in order: "best val. accuracy", "seconds per epoch", "pending".

    Args:
        rows: one per rung, as `tl_core.analysis.ladder.ladder_results` returns them (``depth``,
            ``state``, ``best_val_accuracy``, ``seconds_per_epoch``).

    Example:
        >>> figure = ladder_figure(
        ...     [{"depth": 0, "state": "completed", "best_val_accuracy": 0.8,
        ...       "seconds_per_epoch": 2.0},
        ...      {"depth": 2, "state": "queued", "best_val_accuracy": None,
        ...       "seconds_per_epoch": None}]
        ... )
        >>> [(trace.name, trace.x) for trace in figure.data]
        [('best val. accuracy', (0,)), ('seconds per epoch', (0,)), ('pending', (2,))]
    """
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Best validation accuracy", "Seconds per epoch (median)"),
        horizontal_spacing=0.1,
    )
    for column, key, name, color, value_format in (
        (1, "best_val_accuracy", "best val. accuracy", VAL_COLOR, ".1%"),
        (2, "seconds_per_epoch", "seconds per epoch", TRAIN_COLOR, ".1f"),
    ):
        done = [
            row for row in rows if row.get("state") in FINAL_STATES and row.get(key) is not None
        ]
        figure.add_scatter(
            x=[row["depth"] for row in done],
            y=[row[key] for row in done],
            name=name,
            mode="lines+markers",
            line={"color": color, "width": 2},
            marker={"size": 9},
            customdata=[[row.get("state", "")] for row in done],
            hovertemplate=(
                f"top %{{x}} blocks trained: %{{y:{value_format}}} (%{{customdata[0]}})"
                "<extra></extra>"
            ),
            row=1,
            col=column,
        )
    pending = [row for row in rows if row.get("state") in ACTIVE_STATES]
    figure.add_scatter(
        x=[row["depth"] for row in pending],
        y=[0] * len(pending),
        name="pending",
        mode="markers+text",
        text=[row["state"] for row in pending],
        textposition="top center",
        marker={"size": 9, "symbol": "circle-open", "color": FROZEN_COLOR},
        hovertemplate="top %{x} blocks: %{text}<extra></extra>",
        row=1,
        col=1,
    )
    # Evenly spaced depths: suggested ladders double (0, 1, 2, 4, … 19), which a linear
    # axis would crowd into its left corner. The range keeps every depth on both panels,
    # those without a point yet included.
    depths = sorted({row["depth"] for row in rows})
    figure.update_xaxes(
        title_text="top blocks trained (0 = head only)",
        type="category",
        categoryorder="array",
        categoryarray=depths,
        range=[-0.5, len(depths) - 0.5],
    )
    figure.update_yaxes(range=[-0.05, 1.05], tickformat=".0%", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", ticksuffix=" s", row=1, col=2)
    figure.update_layout(
        height=320,
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        showlegend=False,
        hovermode="closest",
        uirevision="ladder",
    )
    return figure
