"""Presentation mode: a comparison told as full-screen slides, one point per slide.

``?present=1&runs=ID1,ID2`` (the Compare page's **Present** button) draws, instead of
the app's navigation, page and sidebar, one slide at a time in large type: the question,
each run's setup (its freeze strip), the curves overlaid, the metrics with their change
from the first run, the summary in plain words, the confusion matrices, Grad-CAM pairs
already computed, the weight drift, a live run while one trains (or ``?live=ID``), and
an end slide. The arrow keys (the Previous and Next buttons' shortcuts) move between
slides, and the slide's number is kept in ``?slide=``, so a reload keeps the place.

Everything is read from the runs' folders with the same builders as the pages and the
report (`tl_core.viz`, `tl_core.analysis.report`): nothing here loads a model, so an
evaluation not computed yet is a slide that says how to get it. Every name that came
from a user (run labels, owners, class and dataset names) is escaped.

Example:
    >>> present_params(["20261207-090000-aaaaaa", "20261207-091500-bbbbbb"])
    {'present': '1', 'runs': '20261207-090000-aaaaaa,20261207-091500-bbbbbb'}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from tl_core import TLError, load_dataset
from tl_core.analysis.background import analysis_folder, result_path
from tl_core.analysis.compare import (
    ComparedRun,
    default_selection,
    describe_freeze,
    load_compared_runs,
)
from tl_core.analysis.evaluate import EVAL_FILE, drift_over_epochs
from tl_core.analysis.report import RunFacts, report_question, summary_sentences
from tl_core.jobs.runs import ACTIVE_STATES, RunFiles, read_json, run_path
from tl_core.models.blocks import BlockInfo
from tl_core.viz.evaluation import confusion_matrix_figure, drift_figure
from tl_core.viz.markdown import escape_markdown
from tl_core.viz.plots import compare_curves_figure, freeze_strip_figure, plotly_text
from tl_core.workspace import safe_join
from ui import run_view, runs_view, state
from ui.errors import user_errors
from ui.evaluate_view import evaluate_args

#: Query parameters: presentation mode on, the runs shown, the slide, a live run.
PRESENT_PARAM = "present"
RUNS_PARAM = "runs"
SLIDE_PARAM = "slide"
LIVE_PARAM = "live"
#: Widget keys of the Previous and Next buttons (the arrow keys press them).
PREVIOUS_KEY = "present_previous"
NEXT_KEY = "present_next"
#: Container key of the slide itself (its large type hangs on it).
SLIDE_KEY = "present_slide"
#: Container key of the live run (its Stop and Resume buttons are hidden on a slide).
LIVE_KEY = "present_live"
#: Runs a presentation shows at most, side by side.
MAX_RUNS = 4
#: Font size of the charts' text, in pixels: legible from the back of a room.
CHART_FONT_SIZE = 18
#: Grad-CAM pictures on their slide at most.
GRADCAM_SHOWN = 3

_CSS = f"""
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"] {{
  display: none !important;
}}
[data-testid="stMainBlockContainer"] {{ padding: 2.5rem 4rem 5rem; max-width: none; }}
.st-key-{SLIDE_KEY} h1 {{ font-size: 3.2rem; line-height: 1.15; }}
.st-key-{SLIDE_KEY} h2 {{ font-size: 2.4rem; }}
.st-key-{SLIDE_KEY} p, .st-key-{SLIDE_KEY} li {{ font-size: 1.7rem; line-height: 1.45; }}
.st-key-{SLIDE_KEY} [data-testid="stMetricValue"],
.st-key-{SLIDE_KEY} [data-testid="stMetricValue"] p {{ font-size: 3rem; }}
.st-key-{SLIDE_KEY} [data-testid="stMetricLabel"] p {{ font-size: 1.3rem; }}
.st-key-{SLIDE_KEY} [data-testid="stCaptionContainer"] p {{ font-size: 1.2rem; }}
.st-key-{LIVE_KEY} [data-testid="stButton"] {{ display: none; }}
.st-key-present_controls {{
  position: fixed; right: 1.5rem; bottom: 1rem; z-index: 999; width: auto;
  opacity: 0.45; background: var(--background-color, #fff); border-radius: 8px;
  padding: 0.2rem 0.5rem;
}}
.st-key-present_controls:hover {{ opacity: 1; }}
</style>
"""


def requested() -> bool:
    """Whether this page view asks for presentation mode (``?present=1``)."""
    return st.query_params.get(PRESENT_PARAM) == "1"


def present_url(run_ids: Sequence[str]) -> str:
    """The address of presentation mode for `run_ids`, relative to the current page.

    Example:
        >>> present_url(["20261207-090000-aaaaaa", "20261207-091000-bbbbbb"])
        '?present=1&runs=20261207-090000-aaaaaa,20261207-091000-bbbbbb'
    """
    return "?" + urlencode(present_params(run_ids), safe=",")


def present_params(run_ids: Sequence[str], *, live: str | None = None) -> dict[str, str]:
    """The query parameters that open presentation mode on `run_ids` (and a `live` run).

    Example:
        >>> present_params(["a"], live="b")
        {'present': '1', 'runs': 'a', 'live': 'b'}
    """
    params = {PRESENT_PARAM: "1", RUNS_PARAM: ",".join(run_ids)}
    if live:
        params[LIVE_PARAM] = live
    return params


@dataclass(frozen=True)
class Slide:
    """One slide: its heading, and what it draws below it."""

    title: str
    draw: Callable[[], None]


@dataclass
class _Run:
    """One presented run: what the Compare page reads, and what Evaluate kept."""

    run: ComparedRun
    doc: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    gradcam: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.run.label

    @property
    def accuracy(self) -> float | None:
        value = (self.evaluation or {}).get("accuracy", self.run.summary.best_val_accuracy)
        return float(value) if isinstance(value, (int, float)) else None

    def blocks(self) -> list[dict[str, Any]]:
        return [b for b in self.doc.get("blocks") or [] if isinstance(b, dict) and "name" in b]

    def facts(self) -> RunFacts:
        """The run's numbers for the plain-language summary."""
        blocks = self.blocks()
        pairs = (self.evaluation or {}).get("most_confused") or []
        return RunFacts(
            label=self.label,
            config=self.run.config,
            accuracy=self.accuracy,
            seconds=self.run.summary.duration(),
            trainable_blocks=tuple(str(b["name"]) for b in blocks if b.get("trainable"))
            if blocks
            else None,
            total_blocks=len(blocks) or None,
            confusions={(str(p["true"]), str(p["predicted"])): int(p["count"]) for p in pairs},
        )


def render() -> None:
    """Draw presentation mode for the runs in ``?runs=`` (default: Compare's choice).

    Called by ``app.py`` instead of the navigation, page and sidebar when `requested`.
    """
    st.html(_CSS)
    slides: list[Slide] = []
    with user_errors():
        slides = build_slides(*_chosen_runs())
    if not slides:
        return
    index = current_slide(len(slides))
    slide = slides[index]
    with st.container(key=SLIDE_KEY):
        st.markdown(f"# {escape_markdown(slide.title)}")
        with user_errors():
            slide.draw()
    _render_controls(index, len(slides))


def current_slide(count: int) -> int:
    """The 0-based index of the shown slide: ``?slide=`` (1-based), kept within the deck.

    Example:
        >>> current_slide(9)  # with ?slide=3  # doctest: +SKIP
        2
    """
    raw = st.query_params.get(SLIDE_PARAM, "1")
    number = int(raw) if raw.isdigit() else 1
    return min(max(number, 1), count) - 1


def _go_to(number: int) -> None:
    st.query_params[SLIDE_PARAM] = str(number)


def _render_controls(index: int, count: int) -> None:
    """Previous, "3 / 9" and Next, small in a corner; the arrow keys press the buttons."""
    with st.container(key="present_controls", horizontal=True, vertical_alignment="center"):
        st.button(
            "Previous",
            key=PREVIOUS_KEY,
            icon=":material/chevron_left:",
            type="tertiary",
            shortcut="Left",
            disabled=index == 0,
            on_click=_go_to,
            args=(index,),
        )
        st.markdown(f"**{index + 1} / {count}**")
        st.button(
            "Next",
            key=NEXT_KEY,
            icon=":material/chevron_right:",
            type="tertiary",
            shortcut="Right",
            disabled=index == count - 1,
            on_click=_go_to,
            args=(index + 2,),
        )


# --- which runs ------------------------------------------------------------------------------


def _chosen_runs() -> tuple[list[str], str | None]:
    """The presented run ids (those the person may see) and the live run, if any.

    ``?runs=`` wins; without it, the runs the Compare page starts with.
    """
    visible = runs_view.load_runs()
    seen = {run.run_id for run in visible}
    asked = [run_id for run_id in st.query_params.get(RUNS_PARAM, "").split(",") if run_id]
    if not asked:
        asked = default_selection(visible, state.dataset_id())
    run_ids = list(dict.fromkeys(run_id for run_id in asked if run_id in seen))
    hidden = len(set(asked) - seen)
    if hidden:
        st.warning(
            f"{hidden} of the runs in this link cannot be shown: they are gone, or not "
            "yours to see.",
            icon=":material/visibility_off:",
        )
    live = st.query_params.get(LIVE_PARAM)
    if live not in seen:
        live = next(
            (run.run_id for run in visible if run.run_id in run_ids and run.state in ACTIVE_STATES),
            None,
        )
    return run_ids[:MAX_RUNS], live


# --- the slides ------------------------------------------------------------------------------


def build_slides(run_ids: Sequence[str], live: str | None = None) -> list[Slide]:
    """The deck for `run_ids` (baseline first) and a `live` run: one point per slide.

    Raises `TLError` when a run cannot be read.

    Example:
        >>> [s.title for s in build_slides(["20261207-090000-aaaaaa"])][:2]  # doctest: +SKIP
        ['How #1 mobilenet_v2 · feature extraction trains', 'Setup: #1 ...']
    """
    if not run_ids:
        return [Slide("Nothing to present yet", _nothing_chosen)]
    runs = [_read(run) for run in load_compared_runs(list(run_ids))]
    labels = [item.label for item in runs]
    question = (
        report_question(labels, [item.run.config for item in runs])
        if len(runs) > 1
        else f"How {labels[0]} learned"
    )
    slides = [Slide(question, lambda: _title(runs))]
    slides += [Slide(f"Setup: {item.label}", _bind(_setup, item)) for item in runs]
    slides.append(Slide("Learning curves", lambda: _curves(runs)))
    if live is not None:
        slides.append(Slide("Training now", lambda: _live(live)))
    slides.append(Slide("The numbers", lambda: _metrics(runs)))
    slides.append(Slide("In short", lambda: _summary(runs)))
    slides.append(Slide("Where they go wrong", lambda: _confusions(runs)))
    pictures = _gradcam_pictures(runs)
    if pictures:
        slides.append(Slide("Where each run looks", lambda: _gradcam(runs, pictures)))
    slides.append(Slide("Which weights moved", lambda: _drift(runs)))
    slides.append(Slide("Thank you", lambda: _end(runs)))
    return slides


def _bind(draw: Callable[[_Run], None], item: _Run) -> Callable[[], None]:
    return lambda: draw(item)


def _read(run: ComparedRun) -> _Run:
    root = run_path(run.run_id)
    item = _Run(run, read_json(RunFiles(root).config, {}) or {})
    for kept in (root / EVAL_FILE, result_path(root, evaluate_args(root))):
        evaluation = read_json(kept)
        if isinstance(evaluation, dict) and "confusion_matrix" in evaluation:
            item.evaluation = evaluation
            break
    item.gradcam = _kept_gradcam(root)
    return item


def _kept_gradcam(root: Path) -> dict[str, dict[str, Any]]:
    """The run's kept Grad-CAM predictions (Evaluate page, report), by image path."""
    folder = analysis_folder(root)
    kept: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("predict-*.json")):
        doc = read_json(path)
        for row in doc if isinstance(doc, list) else []:
            if not isinstance(row, dict) or not row.get("gradcam") or not row.get("image"):
                continue
            # Only an overlay inside the run's own folder is shown.
            overlay = safe_join(folder / "gradcam", PurePosixPath(str(row["gradcam"])).name)
            if overlay.is_file():
                kept[str(row["image"])] = {**row, "overlay": overlay}
    return kept


def _chart(figure: Any, key: str, *, height: int | None = None) -> None:
    """A chart in the slides' large type: drawn without Streamlit's theme, which would
    shrink its fonts back to the page's."""
    figure.update_layout(font={"size": CHART_FONT_SIZE})
    # Larger tick labels need room: let the axes push the margins out.
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    if height is not None:
        figure.update_layout(height=height)
    st.plotly_chart(figure, key=key, theme=None, config={"displayModeBar": False})


def _columns(runs: Sequence[_Run]) -> list[Any]:
    return st.columns(len(runs), gap="large")


def _nothing_chosen() -> None:
    st.markdown("Choose two runs on the Compare page, then press **Present** there.")
    st.page_link("pages/compare.py", label="Go to Compare", icon=":material/compare:")


def _title(runs: Sequence[_Run]) -> None:
    names = []
    for dataset_id in dict.fromkeys(str(item.run.config.get("dataset_id")) for item in runs):
        try:
            names.append(load_dataset(dataset_id).source_name or dataset_id)
        except TLError:
            names.append(dataset_id)
    st.markdown(f"Dataset: **{escape_markdown(', '.join(names))}**")
    for item in runs:
        owner = item.doc.get("owner")
        by = f" · {escape_markdown(str(owner))}" if owner else ""
        st.markdown(f"- {escape_markdown(item.label)}{by}")


def _setup(item: _Run) -> None:
    config = item.run.config
    st.markdown(f"## {escape_markdown(describe_freeze(config).capitalize())}")
    blocks = item.blocks()
    if blocks:
        infos = [BlockInfo(str(b["name"]), (), int(b.get("params") or 0), ()) for b in blocks]
        trainable = {str(b["name"]) for b in blocks if b.get("trainable")}
        _chart(freeze_strip_figure(infos, trainable), f"present_strip_{item.run.run_id}")
        st.markdown(
            f"{len(trainable)} of {len(blocks)} backbone blocks train, in colour; the grey "
            "ones stay frozen. Input on the left."
        )
    else:
        st.markdown("The block plan is written when the run starts.")
    settings = [
        (config.get("backbone"), "{}"),
        (config.get("image_size"), "{} px"),
        (config.get("epochs"), "{} epochs"),
        (config.get("learning_rate"), "learning rate {}"),
    ]
    shown = [form.format(escape_markdown(str(value))) for value, form in settings if value]
    st.caption(" · ".join(shown))


def _curves(runs: Sequence[_Run]) -> None:
    figure = compare_curves_figure(
        [(plotly_text(item.label), item.run.epochs) for item in runs], show_training=True
    )
    _chart(figure, "present_curves", height=560)
    st.caption("Validation solid, training dashed; one colour per run.")


def _live(run_id: str) -> None:
    with st.container(key=LIVE_KEY):
        run_view.render_run(run_id)


def _metrics(runs: Sequence[_Run]) -> None:
    base = runs[0]
    base_seconds = base.run.summary.duration()
    for column, item in zip(_columns(runs), runs, strict=True):
        with column:
            st.markdown(f"**{escape_markdown(item.label)}**")
            accuracy = item.accuracy
            st.metric(
                "Validation accuracy",
                "—" if accuracy is None else f"{accuracy:.1%}",
                delta=_points(base.accuracy, accuracy) if item is not base else None,
                border=True,
            )
            seconds = item.run.summary.duration()
            st.metric(
                "Training time",
                "—" if seconds is None else _clock(seconds),
                delta=_seconds_delta(base_seconds, seconds) if item is not base else None,
                delta_color="inverse",
                border=True,
            )
            params = item.run.trainable_params
            st.metric("Trainable parameters", "—" if params is None else f"{params:,}", border=True)
    st.caption("Changes are against the first run. Accuracy: evaluated, else the best epoch's.")


def _points(base: float | None, value: float | None) -> str | None:
    if base is None or value is None:
        return None
    return f"{(value - base) * 100:+.1f} pts"


def _seconds_delta(base: float | None, value: float | None) -> str | None:
    if base is None or value is None:
        return None
    change = value - base
    if abs(change) < 1:
        return None  # the same time: no arrow
    return ("+" if change > 0 else "−") + _clock(abs(change))


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _summary(runs: Sequence[_Run]) -> None:
    for sentence in summary_sentences([item.facts() for item in runs]):
        st.markdown(f"- {escape_markdown(sentence)}")


def _missing_evaluation(item: _Run) -> None:
    st.info(
        f"{escape_markdown(item.label)} has not been evaluated yet: open it on the Evaluate "
        "page, or press **Prepare report** on Compare, which evaluates every run.",
        icon=":material/pending:",
    )


def _confusions(runs: Sequence[_Run]) -> None:
    for column, item in zip(_columns(runs), runs, strict=True):
        with column:
            st.markdown(f"**{escape_markdown(item.label)}**")
            if item.evaluation is None:
                _missing_evaluation(item)
                continue
            figure = confusion_matrix_figure(
                item.evaluation["confusion_matrix"], item.evaluation["class_names"]
            )
            _chart(figure, f"present_confusion_{item.run.run_id}")
    st.caption("Rows: the true class; columns: what the run took it for.")


def _gradcam_pictures(runs: Sequence[_Run]) -> list[str]:
    """Images that at least two of the runs have explained (a pair to compare)."""
    counts: dict[str, int] = {}
    for item in runs:
        for image in item.gradcam:
            counts[image] = counts.get(image, 0) + 1
    return [image for image, count in counts.items() if count >= 2][:GRADCAM_SHOWN]


def _gradcam(runs: Sequence[_Run], pictures: Sequence[str]) -> None:
    for image in pictures:
        for column, item in zip(_columns(runs), runs, strict=True):
            with column:
                _gradcam_cell(item, image)
    st.caption("Red and yellow pushed the run towards its prediction most, blue little.")


def _gradcam_cell(item: _Run, image: str) -> None:
    row = item.gradcam.get(image)
    if row is None:
        st.caption(f"{escape_markdown(item.label)}: not explained yet.")
        return
    st.image(str(row["overlay"]), width=320)
    confidence = row.get("confidence")
    said = escape_markdown(str(row.get("label")))
    if isinstance(confidence, (int, float)):
        said += f" ({confidence:.0%})"
    st.caption(f"{escape_markdown(item.label)}: {said}")


def _drift(runs: Sequence[_Run]) -> None:
    for column, item in zip(_columns(runs), runs, strict=True):
        with column:
            st.markdown(f"**{escape_markdown(item.label)}**")
            table = drift_over_epochs(run_path(item.run.run_id))
            if not table["epochs"]:
                st.caption("This run recorded no weight drift.")
                continue
            _chart(drift_figure(table), f"present_drift_{item.run.run_id}")
    st.caption("How far each block's weights moved from the start; grey blocks stayed frozen.")


def _end(runs: Sequence[_Run]) -> None:
    sentences = summary_sentences([item.facts() for item in runs])
    if len(sentences) > 1:
        st.markdown(escape_markdown(sentences[-1]))
    st.markdown("Questions?")
    st.page_link(
        "pages/compare.py",
        label="Leave the presentation",
        icon=":material/close_fullscreen:",
        query_params=_leave_params(runs),
    )


def _leave_params(runs: Sequence[_Run]) -> Mapping[str, str]:
    return {"run": runs[0].run.run_id} if runs else {}
