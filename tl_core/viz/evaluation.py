"""Plotly figures of a trained run's evaluation, built from plain data; no Streamlit, no TF.

- `confusion_matrix_figure`: true class (rows) against predicted class (columns), counts
  as text, coloured by the share of the true class.
- `embedding_figure`: validation images as 2-D points, one colour per class
  (`class_colors`, the same in every panel).
- `drift_figure`: how far each backbone block's weights moved from their start, per
  epoch; frozen blocks (exactly 0.0 throughout) in grey.

The inputs are the documents of ``python -m tl_core evaluate|embeddings --json`` and
`tl_core.analysis.evaluate.drift_over_epochs`. Class names come from the user's folders, so they
are made safe for Plotly's markup before they reach a label or a hover.

Example:
    >>> figure = confusion_matrix_figure([[5, 1], [2, 4]], ["cat", "dog"])
    >>> figure.data[0].text
    (['5', '1'], ['2', '4'])
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative

from tl_core.viz.plots import FROZEN_COLOR, plotly_text

__all__ = [
    "DRIFT_COLORSCALE",
    "class_colors",
    "confusion_matrix_figure",
    "drift_figure",
    "embedding_figure",
    "frozen_rows",
]

#: Above this many classes the confusion matrix drops its cell texts (hover still tells).
MAX_ANNOTATED_CLASSES = 25

#: Colours of moving blocks in the drift strip: white (no change) to deep orange, the
#: studio's colour of trainable blocks, so that frozen grey never looks like "a little".
DRIFT_COLORSCALE = [[0.0, "#fff7ed"], [0.5, "#fb923c"], [1.0, "#9a3412"]]


def class_colors(count: int) -> list[str]:
    """Return one colour per class index, the same wherever a class is drawn.

    Plotly's ten-colour palette while it suffices, its 26-colour one beyond, cycled for
    more classes than that.

    Example:
        >>> class_colors(2)
        ['#636EFA', '#EF553B']
    """
    palette = qualitative.Plotly if count <= len(qualitative.Plotly) else qualitative.Alphabet
    return [palette[i % len(palette)] for i in range(count)]


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str]
) -> go.Figure:
    """Return the confusion matrix as a heatmap: true class on y (first at the top),
    predicted class on x.

    Each cell shows its count; its colour is the count's share of the true class (its
    row), so a rare class's errors stand out as much as a common one's. Hovering a cell
    says it in words.

    Args:
        matrix: counts, rows = true class, columns = predicted class, in class-index order
            (``confusion_matrix`` of an evaluation).
        class_names: the class names, in index order.

    Example:
        >>> figure = confusion_matrix_figure([[3, 1], [0, 4]], ["cat", "dog"])
        >>> [[round(share, 2) for share in row] for row in figure.data[0].z]
        [[0.75, 0.25], [0.0, 1.0]]
    """
    counts = [[int(count) for count in row] for row in matrix]
    shares = [[count / sum(row) if sum(row) else 0.0 for count in row] for row in counts]
    names = [plotly_text(name) for name in class_names]
    annotated = len(names) <= MAX_ANNOTATED_CLASSES
    figure = go.Figure(
        go.Heatmap(
            x=names,
            y=names,
            z=shares,
            zmin=0.0,
            zmax=1.0,
            text=[[str(count) for count in row] for row in counts],
            texttemplate="%{text}" if annotated else None,
            colorscale="Blues",
            colorbar={"title": {"text": "share of<br>true class"}, "tickformat": ".0%"},
            xgap=1,
            ygap=1,
            hovertemplate=(
                "true <b>%{y}</b>, predicted <b>%{x}</b>:<br>"
                "%{text} images (%{z:.0%} of the true class)<extra></extra>"
            ),
        )
    )
    side = min(720, max(320, 44 * len(names) + 140))
    figure.update_layout(
        height=side,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        xaxis={"title": {"text": "predicted class"}, "type": "category"},
        yaxis={"title": {"text": "true class"}, "type": "category", "autorange": "reversed"},
        plot_bgcolor="rgba(0,0,0,0)",
        uirevision="confusion-matrix",
    )
    return figure


def embedding_figure(
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    title: str,
    explained_variance: Sequence[float] | None = None,
    paths: Sequence[str] | None = None,
) -> go.Figure:
    """Return one panel of the embedding view: a scatter of 2-D points, one trace per class.

    Traces follow the class index (classes without points are left out) and take
    `class_colors`, so that two panels of the same run colour a class alike.

    Args:
        points: ``[[x, y], …]``, one per image (``before`` or ``after`` of an
            embeddings document).
        labels: the class index of each point.
        class_names: the class names, in index order.
        title: the panel's title ("Before training").
        explained_variance: PCA's explained variance ratio of the two axes, shown in the
            axis titles (default ``None``: plain "component 1/2", as for t-SNE).
        paths: the image of each point, named on hover (default ``None``).

    Example:
        >>> figure = embedding_figure([[0, 1], [2, 3], [4, 5]], [0, 1, 1], ["cat", "dog"],
        ...                           title="After training", explained_variance=[0.6, 0.3])
        >>> [(trace.name, list(trace.x)) for trace in figure.data]
        [('cat', [0]), ('dog', [2, 4])]
        >>> figure.layout.xaxis.title.text
        'PC1 (60.0% of variance)'
    """
    colors = class_colors(len(class_names))
    names = [PurePosixPath(path).name for path in paths] if paths is not None else None
    figure = go.Figure()
    for index, name in enumerate(class_names):
        members = [i for i, label in enumerate(labels) if label == index]
        if not members:
            continue
        safe = plotly_text(name)
        figure.add_scatter(
            x=[points[i][0] for i in members],
            y=[points[i][1] for i in members],
            name=safe,
            legendgroup=safe,
            mode="markers",
            marker={"color": colors[index], "size": 7, "opacity": 0.85},
            customdata=[plotly_text(names[i]) for i in members] if names else None,
            hovertemplate=(
                f"<b>{safe}</b>" + ("<br>%{customdata}" if names else "") + "<extra></extra>"
            ),
        )
    figure.update_layout(
        title={"text": plotly_text(title), "x": 0.5, "xanchor": "center"},
        height=380,
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        # Projected coordinates have no unit worth reading: only the grouping matters.
        xaxis={
            "title": {"text": _axis_title(1, explained_variance)},
            "showticklabels": False,
            "zeroline": False,
        },
        yaxis={
            "title": {"text": _axis_title(2, explained_variance)},
            "showticklabels": False,
            "zeroline": False,
        },
        legend={"title": {"text": "class"}},
        uirevision=f"embedding-{title}",
    )
    return figure


def _axis_title(component: int, ratios: Sequence[float] | None) -> str:
    if ratios is None or len(ratios) < component:
        return f"component {component}"
    return f"PC{component} ({ratios[component - 1]:.1%} of variance)"


def frozen_rows(values: Sequence[Sequence[float | None]]) -> list[bool]:
    """Return, per block, whether it stayed frozen: exactly 0.0 at every recorded epoch.

    A block that has no value at all is not called frozen (nothing says so).

    Example:
        >>> frozen_rows([[0.0, 0.0], [0.0, 0.02], [None, None]])
        [True, False, False]
    """
    return [
        any(value is not None for value in row) and all(value in (None, 0.0) for value in row)
        for row in values
    ]


def drift_figure(table: Mapping[str, Any]) -> go.Figure:
    """Return the weight-drift strip: blocks (input side at the top) × epochs.

    Two heatmap traces over the same grid: "moved" colours each block's relative L2
    change since the start on `DRIFT_COLORSCALE`; "frozen" paints the blocks that stayed
    at exactly 0.0 in every epoch grey (`FROZEN_COLOR`, hover "frozen: 0.0"). Each cell
    belongs to one of them; the other has a gap there. A dashed line marks where a new
    phase (the fine-tune of a two-phase run) begins.

    Args:
        table: `tl_core.analysis.evaluate.drift_over_epochs` output: ``epochs``, ``phases``,
            ``blocks`` (input side first) and ``values`` (per block, per epoch; ``None``
            where an epoch did not record the block).

    Example:
        >>> figure = drift_figure({"epochs": [1, 2], "phases": ["train", "train"],
        ...                        "blocks": ["stem", "top"],
        ...                        "values": [[0.0, 0.0], [0.01, 0.03]]})
        >>> [(trace.name, trace.z) for trace in figure.data]
        [('moved', ([None, None], [0.01, 0.03])), ('frozen', ([0.0, 0.0], [None, None]))]
    """
    epochs = list(table["epochs"])
    blocks = [plotly_text(name) for name in table["blocks"]]
    values = [list(row) for row in table["values"]]
    frozen = frozen_rows(values)
    moved = [
        [None if still else value for value in row]
        for row, still in zip(values, frozen, strict=True)
    ]
    stayed = [
        [0.0 if still and value is not None else None for value in row]
        for row, still in zip(values, frozen, strict=True)
    ]
    # The scale starts at 0 (white), so a block that moved a little never passes for grey.
    largest = max((value for row in moved for value in row if value is not None), default=0.0)
    figure = go.Figure()
    figure.add_heatmap(
        name="moved",
        x=epochs,
        y=blocks,
        z=moved,
        zmin=0.0,
        zmax=largest or 1.0,
        colorscale=DRIFT_COLORSCALE,
        colorbar={"title": {"text": "relative<br>change"}},
        xgap=1,
        ygap=1,
        hoverongaps=False,
        hovertemplate="<b>%{y}</b>, epoch %{x}: moved %{z:.3g}<extra></extra>",
    )
    figure.add_heatmap(
        name="frozen",
        x=epochs,
        y=blocks,
        z=stayed,
        colorscale=[[0.0, FROZEN_COLOR], [1.0, FROZEN_COLOR]],
        showscale=False,
        xgap=1,
        ygap=1,
        hoverongaps=False,
        hovertemplate="<b>%{y}</b>, epoch %{x}: frozen: 0.0<extra></extra>",
    )
    phases = list(table.get("phases") or [])
    for (_, before), (epoch, phase) in itertools.pairwise(zip(epochs, phases, strict=False)):
        if phase != before:
            figure.add_vline(
                x=epoch - 0.5,
                line={"dash": "dash", "color": "#334155", "width": 1.5},
                annotation={"text": plotly_text(str(phase)), "font": {"size": 11}},
                annotation_position="top right",
            )
    figure.update_layout(
        height=min(900, max(220, 20 * len(blocks) + 90)),
        margin={"l": 0, "r": 0, "t": 24, "b": 0},
        xaxis={"title": {"text": "epoch"}, "dtick": 1 if len(epochs) <= 20 else None},
        yaxis={"type": "category", "autorange": "reversed", "title": {"text": "block"}},
        plot_bgcolor="rgba(0,0,0,0)",
        uirevision="weight-drift",
    )
    return figure
