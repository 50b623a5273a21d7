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

from tl_core.blocks import BlockInfo
from tl_core.runs import best_epoch

__all__ = [
    "FROZEN_COLOR",
    "TRAINABLE_COLOR",
    "TRAIN_COLOR",
    "VAL_COLOR",
    "class_counts_figure",
    "freeze_strip_figure",
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


def training_curves_figure(
    epochs: Sequence[Mapping[str, Any]], total_epochs: int | None = None
) -> go.Figure:
    """Return accuracy (left) and loss (right) per epoch, training against validation.

    The traces, in order: training accuracy, validation accuracy, training loss,
    validation loss, then a star on the best validation accuracy (when there is one). A
    two-phase run gets a dashed line where the fine-tune phase starts. The x axis spans
    `total_epochs` when given, so the curves grow into a fixed frame while training.

    Args:
        epochs: epoch lines of ``metrics.jsonl`` (``epoch``, ``phase``, ``accuracy``,
            ``val_accuracy``, ``loss``, ``val_loss``; missing values leave gaps).
        total_epochs: epochs planned over all phases (default: as many as there are lines).

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
    last = max([total_epochs or 0, *(value for value in x if isinstance(value, int))], default=0)
    span = max(last, 1)
    figure.update_xaxes(
        title_text="epoch",
        range=[0.5, span + 0.5],
        dtick=1 if span <= 20 else None,
        zeroline=False,
    )
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=1, col=2)
    figure.update_layout(
        height=360,
        margin={"l": 0, "r": 0, "t": 64, "b": 0},
        # Centred above the panels, clear of both panel titles.
        legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": 1.2, "yanchor": "bottom"},
        hovermode="closest",
        uirevision="training-curves",
    )
    return figure


def _phase_starts(epochs: Sequence[Mapping[str, Any]]) -> list[int]:
    """Epochs that begin a new phase (the first epoch excepted)."""
    starts = []
    for previous, line in itertools.pairwise(epochs):
        if line.get("phase") != previous.get("phase") and isinstance(line.get("epoch"), int):
            starts.append(line["epoch"])
    return starts
