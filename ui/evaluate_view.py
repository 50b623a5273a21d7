"""The Evaluate page's views of one trained run: metrics, Grad-CAM, embeddings, weight drift.

Nothing here loads a model: metrics, Grad-CAM overlays and embeddings are background
analyses (`ui.analysis.await_analysis`), whose CLI arguments are built by
`evaluate_args` here and `gradcam_args` and `embeddings_args` from
`tl_core.analysis.report`, which the one-file report uses too: both find each other's
results, and tests store a result under exactly the arguments the page asks for. Weight
drift is read from the run's files (`tl_core.analysis.evaluate.drift_over_epochs`). Images are
read from the stored dataset folder, by paths checked to stay inside it.

Each view is drawn by one ``render_*`` function, meant for its own tab: an analysis
starts only when its view is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import streamlit as st

from tl_core import DatasetReport, load_dataset
from tl_core.analysis.background import forget_analysis
from tl_core.analysis.evaluate import drift_over_epochs
from tl_core.analysis.report import embeddings_args, gradcam_args, gradcam_folder
from tl_core.config import RunConfig
from tl_core.data.dataset import split_dataset
from tl_core.jobs.runs import RunFiles, RunSummary, read_json, run_path
from tl_core.viz.evaluation import (
    confusion_matrix_figure,
    drift_figure,
    embedding_figure,
    frozen_rows,
)
from tl_core.viz.markdown import escape_markdown
from tl_core.workspace import safe_join
from ui import state
from ui.analysis import await_analysis
from ui.dataset_view import thumbnail
from ui.errors import user_errors
from ui.report_view import render_report_download

#: Widget key of the trained-run picker.
RUN_PICKER = "evaluate_run_picker"
#: Widget key of the tabs (lazy: only the open tab runs, so only its analyses start).
TABS = "evaluate_tabs"
#: Widget key of the toggle that lists every misclassified image, not only the worst.
SHOW_ALL_MISCLASSIFIED = "evaluate_show_all_misclassified"
#: Widget key of the Grad-CAM image picker (its value: the image's path in the dataset).
IMAGE_PICKER = "evaluate_gradcam_image"
#: Widget key of the Grad-CAM second-run picker (a run id, or `NO_COMPARISON`).
COMPARE_PICKER = "evaluate_gradcam_compare"

#: Key prefixes of the analyses' status lines and retry buttons (`await_analysis`).
EVALUATE_ANALYSIS = "evaluate_metrics"
GRADCAM_EVALUATE_ANALYSIS = "evaluate_gradcam_metrics"
GRADCAM_ANALYSIS = "evaluate_gradcam"
EMBEDDINGS_ANALYSIS = "evaluate_embeddings"
#: Key prefix of the report's buttons.
REPORT = "evaluate_report"

#: The tabs, in order.
TAB_LABELS = ("Metrics", "Grad-CAM", "Embeddings", "Weight drift")
#: The Grad-CAM second-run picker's value for "no second run".
NO_COMPARISON = "none"
#: Misclassified images shown before the "show all" toggle.
MISCLASSIFIED_SHOWN = 12
#: Most-confused class pairs listed.
CONFUSED_PAIRS_SHOWN = 5
#: Correctly classified candidates per class offered to Grad-CAM, beside the mistakes.
GRADCAM_IMAGES_PER_CLASS = 2
#: The drift caption names the blocks that moved while there are at most this many.
NAMED_MOVING_BLOCKS = 5
#: Display width of a misclassified thumbnail in CSS pixels (the image has twice that).
THUMBNAIL_WIDTH = 120

GRADCAM_EXPLAINED = (
    "Grad-CAM colours the parts of the picture that pushed the model towards its "
    "prediction: red and yellow mattered most, blue little. It is read from one feature "
    "map near the end of the network, so it is coarse, a few cells across the picture. "
    "Two runs that predict the same class may look at different evidence."
)


# --- the analyses' arguments ---------------------------------------------------------------


def evaluate_args(run_dir: Path) -> list[str]:
    """The CLI arguments of the run's evaluation: ``["evaluate", RUN_DIR]``.

    Example:
        >>> evaluate_args(Path("/w/runs/r1"))
        ['evaluate', '/w/runs/r1']
    """
    return ["evaluate", str(run_dir)]


# --- plain data for the views ----------------------------------------------------------------


@dataclass(frozen=True)
class ImageChoice:
    """A validation image offered to Grad-CAM.

    Args:
        path: its path inside the dataset folder.
        true: its class.
        name: its file name in the uploaded archive.
        predicted: the class the run took it for, when it was misclassified.
        confidence: the run's probability of `predicted`, when misclassified.
    """

    path: str
    true: str
    name: str
    predicted: str | None = None
    confidence: float | None = None

    @property
    def label(self) -> str:
        """How the picker names it: ``"✗ circle taken for square (97%) · circle_011.png"``."""
        if self.predicted is None:
            return f"{self.true} · {self.name}"
        return (
            f"✗ {self.true} taken for {self.predicted} ({self.confidence or 0:.0%}) · {self.name}"
        )


def image_choices(
    evaluation: Mapping[str, Any],
    report: DatasetReport,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    per_class: int = GRADCAM_IMAGES_PER_CLASS,
) -> list[ImageChoice]:
    """The images Grad-CAM offers: the misclassified ones, worst first, then the first
    `per_class` other validation images of each class.

    Args:
        evaluation: the run's ``evaluate`` document.
        report: the run's stored dataset.
        val_fraction, seed: the run's split settings (`RunConfig`), so that only images
            the run never trained on are offered (defaults 0.2 and 0).
        per_class: other validation images per class (default `GRADCAM_IMAGES_PER_CLASS`).

    Example:
        >>> image_choices(doc, report, val_fraction=0.2, seed=0)[0].label  # doctest: +SKIP
        '✗ circle taken for square (100%) · circle_011.png'
    """
    wrong = [
        ImageChoice(
            path=row["path"],
            true=row["true"],
            name=PurePosixPath(row.get("source") or row["path"]).name,
            predicted=row["predicted"],
            confidence=row["confidence"],
        )
        for row in sorted(evaluation["misclassified"], key=lambda row: -row["loss"])
    ]
    listed = {choice.path for choice in wrong}
    splits = split_dataset(report, val_fraction=val_fraction, seed=seed)
    others = [
        ImageChoice(record.path, record.label, PurePosixPath(record.source).name)
        for record in splits.val_examples(per_class, exclude=listed)
    ]
    return wrong + others


def image_file(report: DatasetReport, path: str) -> Path:
    """The file of a dataset image given by its path inside the dataset folder.

    Raises `DataError` when the path leaves the dataset folder.
    """
    if report.root is None:
        raise ValueError(f"Dataset {report.dataset_id} was not loaded from disk.")
    return safe_join(report.root, path)


def comparison_runs(run: RunSummary, runs: Sequence[RunSummary]) -> list[RunSummary]:
    """The other runs of `runs` trained on the same dataset as `run`, in the given order."""
    return [
        other for other in runs if other.run_id != run.run_id and other.dataset_id == run.dataset_id
    ]


def per_class_table(evaluation: Mapping[str, Any]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (rows, in class-index order).

    Example:
        >>> doc = {"class_names": ["cat"], "per_class": {"cat": {"precision": 0.5,
        ...        "recall": 1.0, "f1": 0.667, "support": 2}}}
        >>> per_class_table(doc).loc["cat"].tolist()
        [0.5, 1.0, 0.667, 2.0]
    """
    names = list(evaluation["class_names"])
    rows = [evaluation["per_class"][name] for name in names]
    return pd.DataFrame(
        {
            "Precision": [row["precision"] for row in rows],
            "Recall": [row["recall"] for row in rows],
            "F1": [row["f1"] for row in rows],
            "Support": [row["support"] for row in rows],
        },
        index=pd.Index(names, name="class"),
    )


def confusions_in_words(
    pairs: Sequence[Mapping[str, Any]], limit: int = CONFUSED_PAIRS_SHOWN
) -> list[str]:
    """The most confused class pairs as Markdown-safe sentences, most frequent first.

    Args:
        pairs: ``most_confused`` of an evaluation (``true``, ``predicted``, ``count``).
        limit: how many to say (default `CONFUSED_PAIRS_SHOWN`).

    Example:
        >>> confusions_in_words([{"true": "square", "predicted": "circle", "count": 6},
        ...                      {"true": "star", "predicted": "circle", "count": 1}])
        ['square taken for circle: 6 times', 'star taken for circle: once']
    """
    ranked = sorted(pairs, key=lambda pair: -pair["count"])[:limit]
    return [
        f"{escape_markdown(pair['true'])} taken for {escape_markdown(pair['predicted'])}: "
        + ("once" if pair["count"] == 1 else f"{pair['count']} times")
        for pair in ranked
    ]


def freeze_plan_words(run: RunSummary) -> str:
    """The run's freeze plan in words (for a two-phase run, its last phase).

    Example:
        >>> freeze_plan_words(RunSummary("r", "completed", 0.0, trainable_blocks=0,
        ...                              total_blocks=19))
        'Feature extraction: all 19 backbone blocks frozen, only the new head trained.'
    """
    trainable, total = run.trainable_blocks, run.total_blocks
    if trainable is None or total is None:
        return "Freeze plan unknown: the run did not record its blocks."
    if trainable == 0:
        return f"Feature extraction: all {total} backbone blocks frozen, only the new head trained."
    if trainable == total:
        return f"Full training: all {total} backbone blocks trained, with the new head."
    return (
        f"Fine-tune: {trainable} of {total} backbone blocks trained, "
        f"the other {total - trainable} frozen."
    )


def drift_in_words(table: Mapping[str, Any]) -> str:
    """Say which blocks stayed frozen and where training moved the weights most.

    Args:
        table: `tl_core.analysis.evaluate.drift_over_epochs` output.

    Example:
        >>> drift_in_words({"epochs": [1, 2], "blocks": ["stem", "top"],
        ...                 "values": [[0.0, 0.0], [0.01, 0.03]]})  # doctest: +ELLIPSIS
        '1 of 2 blocks stayed frozen (grey): ... of 1 block (top), most in top (0.03 by epoch 2).'
    """
    blocks, values = list(table["blocks"]), list(table["values"])
    frozen = frozen_rows(values)
    moved: dict[str, tuple[float, int]] = {}
    for name, row, still in zip(blocks, values, frozen, strict=True):
        value, epoch = _last_value(row, table["epochs"])
        if not still and value is not None:
            moved[name] = (value, epoch)
    if any(frozen):
        words = (
            f"{sum(frozen)} of {len(blocks)} blocks stayed frozen (grey): their weights "
            "changed by exactly 0.0 in every epoch."
        )
    else:
        words = "No block was frozen."
    if moved:
        most = max(moved, key=lambda name: moved[name][0])
        value, epoch = moved[most]
        named = f" ({', '.join(moved)})" if len(moved) <= NAMED_MOVING_BLOCKS else ""
        words += (
            f" Training moved the weights of {len(moved)} "
            f"block{'s' if len(moved) != 1 else ''}{escape_markdown(named)}, most in "
            f"{escape_markdown(most)} ({value:.3g} by epoch {epoch})."
        )
    return words


def _last_value(row: Sequence[float | None], epochs: Sequence[int]) -> tuple[float | None, int]:
    for value, epoch in zip(reversed(row), reversed(epochs), strict=True):
        if value is not None:
            return value, epoch
    return None, 0


# --- views -----------------------------------------------------------------------------------


def _evaluation(run: RunSummary, waiting: str, key: str) -> dict[str, Any] | None:
    """The run's ``evaluate`` analysis (shared by the tabs that need it), or ``None`` yet."""
    run_dir = run_path(run.run_id)
    return await_analysis(run_dir, evaluate_args(run_dir), waiting=waiting, key=key)


def render_metrics(run: RunSummary) -> None:
    """The Metrics tab: scores, confusion matrix, per-class table, the worst mistakes.

    Starts the run's evaluation when nobody has yet; marks the Evaluate step done once
    the metrics are shown.
    """
    doc = _evaluation(run, "Evaluating the model on its validation images", EVALUATE_ANALYSIS)
    if doc is None:
        return
    _render_scores(doc)
    state.mark_evaluated()
    matrix_column, pairs_column = st.columns([3, 2], gap="large")
    with matrix_column:
        st.subheader("Confusion matrix", anchor=False)
        st.plotly_chart(
            confusion_matrix_figure(doc["confusion_matrix"], doc["class_names"]),
            key="evaluate_confusion_matrix",
            config={"displayModeBar": False},
        )
        st.caption(
            "Rows are the true classes, columns what the model said; the diagonal is "
            "right. The colour is the share of the row, so a rare class's mistakes show."
        )
    with pairs_column:
        st.subheader("Most confused", anchor=False)
        sentences = confusions_in_words(doc["most_confused"])
        if sentences:
            st.markdown("\n".join(f"- {sentence}" for sentence in sentences))
        else:
            st.success("No class was taken for another.", icon=":material/check_circle:")
        st.subheader("Per class", anchor=False)
        st.dataframe(
            per_class_table(doc),
            width="stretch",
            column_config={
                "Precision": st.column_config.NumberColumn(
                    format="percent", help="Of the images called this class, the share that are."
                ),
                "Recall": st.column_config.NumberColumn(
                    format="percent", help="Of the images of this class, the share found."
                ),
                "F1": st.column_config.NumberColumn(
                    format="%.2f", help="Harmonic mean of precision and recall (0 to 1)."
                ),
                "Support": st.column_config.NumberColumn(
                    format="%d", help="Validation images of this class."
                ),
            },
        )
    st.subheader("Misclassified images", anchor=False)
    _render_misclassified(run, doc)


def _render_scores(doc: Mapping[str, Any]) -> None:
    accuracy = float(doc["accuracy"])
    classes = len(doc["class_names"])
    chance = 1 / classes
    source = {
        "archive": "the archive's own validation folder",
        "drawn": "drawn from the dataset with the run's seed, never trained on",
    }.get(doc.get("val_source"), "the run's validation split")
    columns = st.columns(4)
    columns[0].metric(
        "Accuracy",
        f"{accuracy:.1%}",
        delta=f"{(accuracy - chance) * 100:+.1f} pts vs chance",
        border=True,
        help="Share of validation images whose most likely class is the true one.",
    )
    columns[1].metric(
        "Chance level",
        f"{chance:.1%}",
        border=True,
        help=f"1 in {classes} classes: what guessing scores when the classes are balanced.",
    )
    columns[2].metric(
        "Loss",
        f"{float(doc['loss']):.3f}",
        border=True,
        help="Mean cross-entropy on the validation images: lower is better; "
        "confident mistakes cost most.",
    )
    columns[3].metric(
        "Validation images", f"{int(doc['num_images']):,}", border=True, help=source.capitalize()
    )


def _render_misclassified(run: RunSummary, doc: Mapping[str, Any]) -> None:
    rows = sorted(doc["misclassified"], key=lambda row: -row["loss"])
    matrix = doc["confusion_matrix"]
    wrong = sum(sum(row) for row in matrix) - sum(matrix[i][i] for i in range(len(matrix)))
    if not rows:
        st.success(
            "Every validation image was classified correctly.", icon=":material/check_circle:"
        )
        return
    kept = f"; the {len(rows)} worst are kept" if len(rows) < wrong else ""
    st.caption(
        f"{wrong} of {int(doc['num_images']):,} validation images were taken for another "
        f"class{kept}. Worst first: the highest loss, where the model was most sure of "
        "the wrong class."
    )
    show_all = len(rows) > MISCLASSIFIED_SHOWN and st.toggle(
        f"Show all {len(rows)}", key=SHOW_ALL_MISCLASSIFIED
    )
    shown = rows if show_all else rows[:MISCLASSIFIED_SHOWN]
    report = load_dataset(doc.get("dataset_id") or run.dataset_id or "")
    st.image(
        [thumbnail(str(image_file(report, row["path"])), THUMBNAIL_WIDTH) for row in shown],
        caption=[
            f"{escape_markdown(row['true'])} taken for {escape_markdown(row['predicted'])} "
            f"· {row['confidence']:.0%}"
            for row in shown
        ],
        width=THUMBNAIL_WIDTH,
    )


def render_gradcam(run: RunSummary, runs: Sequence[RunSummary]) -> None:
    """The Grad-CAM tab: one validation image explained by `run` and a second run.

    The image defaults to the run's worst mistake, so this waits for the evaluation; the
    second run defaults to the newest other trained run on the same dataset.

    Args:
        run: the picked run.
        runs: every trained run (candidates for the comparison).
    """
    st.caption(GRADCAM_EXPLAINED)
    run_dir = run_path(run.run_id)
    doc = _evaluation(
        run,
        "Evaluating the model first (Grad-CAM opens on its worst mistake)",
        GRADCAM_EVALUATE_ANALYSIS,
    )
    if doc is None:
        return
    report = load_dataset(doc.get("dataset_id") or run.dataset_id or "")
    config = _run_config(run_dir)
    choices = image_choices(doc, report, val_fraction=config.val_fraction, seed=config.seed)
    if not choices:
        st.info("This run has no validation images to explain.", icon=":material/info:")
        return
    image_column, compare_column = st.columns([3, 2])
    with image_column:
        choice = _pick_image(choices)
    with compare_column:
        other = _pick_comparison(run, comparison_runs(run, runs))
    image = image_file(report, choice.path)
    st.markdown(f"True class: **{escape_markdown(choice.true)}** · {escape_markdown(choice.name)}")
    for slot, (column, shown) in enumerate(zip(st.columns(2), (run, other), strict=True)):
        with column, user_errors():
            if shown is None:
                st.info(
                    "Pick a second run above to see where another freeze plan looks.",
                    icon=":material/compare:",
                )
            else:
                _render_overlay(shown, image, choice, key=f"{GRADCAM_ANALYSIS}_{slot}")


def _run_config(run_dir: Path) -> RunConfig:
    doc = read_json(RunFiles(run_dir).config, {}) or {}
    return RunConfig.from_json(doc.get("config"))


def _pick_image(choices: Sequence[ImageChoice]) -> ImageChoice:
    by_path = {choice.path: choice for choice in choices}
    if st.session_state.get(IMAGE_PICKER) not in by_path:
        st.session_state[IMAGE_PICKER] = choices[0].path
    path = st.selectbox(
        "Validation image",
        list(by_path),
        format_func=lambda path: by_path[path].label,
        key=IMAGE_PICKER,
        help="The misclassified images, worst first, then a few others of each class.",
    )
    return by_path[path]


def _pick_comparison(run: RunSummary, candidates: Sequence[RunSummary]) -> RunSummary | None:
    by_id = {other.run_id: other for other in candidates}
    options = [NO_COMPARISON, *by_id]
    if st.session_state.get(COMPARE_PICKER) not in options:
        st.session_state[COMPARE_PICKER] = candidates[0].run_id if candidates else NO_COMPARISON
    picked = st.selectbox(
        "Compare with",
        options,
        format_func=lambda run_id: _compare_label(by_id.get(run_id)),
        key=COMPARE_PICKER,
        help=f"Other trained runs on the same dataset as {run.run_id}.",
    )
    return by_id.get(picked)


def _compare_label(run: RunSummary | None) -> str:
    if run is None:
        return "No second run"
    return " · ".join(part for part in (run.run_id, run.backbone, run.freeze_summary) if part)


def _render_overlay(run: RunSummary, image: Path, choice: ImageChoice, *, key: str) -> None:
    run_dir = run_path(run.run_id)
    st.markdown(f"**{run.run_id}** · {escape_markdown(run.backbone or '?')}")
    st.caption(freeze_plan_words(run))
    args = gradcam_args(run_dir, image)
    result = await_analysis(run_dir, args, waiting="Computing Grad-CAM", key=key)
    if not result:
        return
    prediction = result[0]
    overlay = safe_join(gradcam_folder(run_dir), PurePosixPath(prediction["gradcam"]).name)
    if not overlay.is_file():
        st.warning("The overlay picture is gone from the run folder.", icon=":material/warning:")
        if st.button("Compute it again", key=f"{key}_again", icon=":material/refresh:"):
            forget_analysis(run_dir, args)
            st.rerun()
        return
    st.image(str(overlay))
    label = escape_markdown(prediction["label"])
    verdict = ":green[right]" if prediction["label"] == choice.true else ":red[wrong]"
    st.markdown(f"Predicted **{label}** with {prediction['confidence']:.1%} confidence: {verdict}.")
    st.caption(
        f"Explained layer: {escape_markdown(prediction.get('gradcam_layer') or '?')}, the "
        "last feature map with at least 2 × 2 positions."
    )


def render_embeddings(run: RunSummary) -> None:
    """The Embeddings tab: the validation images in 2-D before and after training."""
    run_dir = run_path(run.run_id)
    doc = await_analysis(
        run_dir,
        embeddings_args(run_dir),
        waiting="Projecting the validation images",
        key=EMBEDDINGS_ANALYSIS,
    )
    if doc is None:
        return
    st.caption(
        "Each dot is a validation image, placed by the features the backbone gives it and "
        "projected to two dimensions (PCA). Look for the classes to gather into their own "
        "groups after training; before it, with the starting backbone, they are often "
        "mixed, above all with random weights."
    )
    before_column, after_column = st.columns(2)
    with before_column:
        if doc.get("before") is None:
            st.subheader("Before training", anchor=False)
            st.info(
                escape_markdown(doc.get("before_note") or "No picture of the start."),
                icon=":material/info:",
            )
        else:
            _embedding_chart(doc, "before", "Before training")
            if doc.get("before_source"):
                st.caption(f"Starting weights: {escape_markdown(doc['before_source'])}.")
    with after_column:
        _embedding_chart(doc, "after", "After training")
        st.caption(f"{int(doc.get('num_images') or len(doc['after'])):,} validation images.")


def _embedding_chart(doc: Mapping[str, Any], side: str, title: str) -> None:
    """One panel (`side`: ``"before"`` or ``"after"``) of an embeddings document."""
    variance = doc.get("explained_variance") or {}
    st.plotly_chart(
        embedding_figure(
            doc[side],
            doc["labels"],
            doc["class_names"],
            title=title,
            explained_variance=variance.get(side),
            paths=doc.get("paths"),
        ),
        key=f"evaluate_embeddings_{side}",
    )


def render_drift(run: RunSummary) -> None:
    """The Weight drift tab: how far each block's weights moved, epoch by epoch."""
    table = drift_over_epochs(run_path(run.run_id))
    if not table["epochs"]:
        st.info(
            "This run recorded no weight drift: no epoch finished, or it was trained "
            "before drift was kept per epoch.",
            icon=":material/info:",
        )
        return
    st.plotly_chart(
        drift_figure(table), key="evaluate_drift_chart", config={"displayModeBar": False}
    )
    st.caption(
        "Colour: each backbone block's relative change since the start, "
        "‖w − w₀‖ / ‖w₀‖, after each epoch; input side at the top. " + drift_in_words(table)
    )


def report_runs(run: RunSummary, runs: Sequence[RunSummary]) -> list[str]:
    """The runs a report from this page shows: `run`, and the run the Grad-CAM tab
    compares it with when one is picked there, the older one first (the baseline).

    Example:
        >>> report_runs(picked, trained)  # with a second run picked  # doctest: +SKIP
        ['20261120-090000-aaaaaa', '20261123-131500-bbbbbb']
    """
    other = st.session_state.get(COMPARE_PICKER)
    candidates = {candidate.run_id for candidate in comparison_runs(run, runs)}
    # Oldest first: the earlier run is the baseline (run ids begin with their creation time).
    return sorted([run.run_id, other]) if other in candidates else [run.run_id]


def render_report(run: RunSummary, runs: Sequence[RunSummary]) -> None:
    """The run's report (with the run it is compared with), ready to download.

    Raises `AccessDenied` when the person may not analyse one of the runs.
    """
    ids = report_runs(run, runs)
    others = [run_id for run_id in ids if run_id != run.run_id]
    also = f" and {others[0]}, the run Grad-CAM compares it with," if others else ""
    st.caption(
        f"One HTML file with everything above for {run.run_id}{also} that opens offline "
        "in any browser: to send to someone who is not at the app."
    )
    render_report_download(ids, key=REPORT)
