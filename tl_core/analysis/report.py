"""One self-contained HTML file that shows what fine-tuning changed, for people not at the app.

`build_report` gathers, for two or more runs, what the Compare and Evaluate pages show
one piece at a time: the question, each run's setup (its freeze strip), the curves
overlaid, the metrics with their change from the first run (the baseline), the confusion
matrices, the per-class changes, Grad-CAM of the same validation images by each run, the
weight-drift strips, the embeddings before and after training, the time each run took,
and a summary in plain words computed from those numbers (`summary_sentences`).

The file opens offline in any browser: plotly.js is inlined once in the head, every
picture is a ``data:`` URI, and nothing in it asks for a URL. Every name that came from a
user (class names, the dataset's archive name, owners) is escaped, so a class called
``<script>…`` is shown as text. Figures come from the same builders as the app's pages
(`tl_core.viz`), so the report looks like the app.

Evaluation, Grad-CAM and embeddings need a model: with ``compute=True`` (the CLI's
``report`` command) the missing ones are computed in this process and kept where the
pages find them (``eval.json``, ``RUN_DIR/analysis/``); with ``compute=False`` (a web
page, which never loads a model) only results already kept are used, and a missing piece
says how to get it.

Example:
    >>> runs = ["20261207-090000-aaaaaa", "20261207-091500-bbbbbb"]
    >>> data = build_report(runs, compute=False)  # doctest: +SKIP
    >>> write_report(runs, "report.html")  # doctest: +SKIP
    PosixPath('report.html')
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from tl_core.analysis.background import analysis_folder, result_path
from tl_core.analysis.compare import (
    ComparedRun,
    describe_freeze,
    load_compared_runs,
    median_epoch_seconds,
)
from tl_core.analysis.evaluate import EVAL_FILE, drift_over_epochs
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import require_run_analysis
from tl_core.config import RunConfig
from tl_core.errors import ConfigError, TLError
from tl_core.fsutil import write_bytes_atomic
from tl_core.jobs.runs import RunFiles, read_json, run_path, write_json_atomic

__all__ = [
    "GRADCAM_IMAGES",
    "RunFacts",
    "build_report",
    "embeddings_args",
    "gradcam_args",
    "gradcam_folder",
    "report_args",
    "report_question",
    "require_report_access",
    "summary_sentences",
    "write_report",
]

#: Validation images whose Grad-CAM every run draws.
GRADCAM_IMAGES = 4
#: Longest side of a picture in the report: big enough to see the heat map, small
#: enough that four runs stay far below 15 MB.
PICTURE_SIDE = 200
#: Most points per embedding panel (the Evaluate page's default too).
EMBEDDING_IMAGES = 300
#: Plotly's options for every chart: no logo (it is a link), no cloud export.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# --- the analyses' arguments (the pages' background analyses use the same ones) -----------


def embeddings_args(run_dir: Path) -> list[str]:
    """The CLI arguments of a run's embeddings, as the Evaluate page asks for them.

    Example:
        >>> embeddings_args(Path("/w/runs/r1"))
        ['embeddings', '/w/runs/r1']
    """
    return ["embeddings", str(run_dir)]


def gradcam_folder(run_dir: Path) -> Path:
    """Where the run's Grad-CAM overlays are written: ``RUN_DIR/analysis/gradcam``."""
    return analysis_folder(run_dir) / "gradcam"


def gradcam_args(run_dir: Path, image: Path) -> list[str]:
    """The CLI arguments of one image's prediction with Grad-CAM, as the Evaluate page asks.

    Example:
        >>> gradcam_args(Path("/w/runs/r1"), Path("/w/d/cat/1.jpg"))
        ['predict', '/w/runs/r1', '/w/d/cat/1.jpg', '--gradcam', '/w/runs/r1/analysis/gradcam']
    """
    return ["predict", str(run_dir), str(image), "--gradcam", str(gradcam_folder(run_dir))]


def report_args(run_ids: Sequence[str], out: Path) -> list[str]:
    """The CLI arguments that write the report of `run_ids` to `out` (with every analysis
    computed), for a page to run as a background analysis of the first run.

    Example:
        >>> report_args(["20261207-090000-aaaaaa", "20261207-091000-bbbbbb"], Path("/w/r.html"))
        ['report', '20261207-090000-aaaaaa', '20261207-091000-bbbbbb', '--out', '/w/r.html']
    """
    return ["report", *run_ids, "--out", str(out)]


def require_report_access(
    actor: Identity | None, run_ids: Sequence[str], *, home: Path | None = None
) -> None:
    """Refuse a report on runs `actor` may not analyse (a student: their own and shared
    runs), before anything is read or computed.

    Raises:
        ConfigError: no run ids.
        JobError: a malformed run id.
        AccessDenied: one of the runs is someone else's and not shared.

    Example:
        >>> require_report_access(None, ["20261207-090000-aaaaaa"])  # the operator: allowed
    """
    if not run_ids:
        raise ConfigError("Expected at least one run id for a report. Received none.")
    for run_id in run_ids:
        run_path(run_id, home)  # a malformed id is refused before any file is read
        if actor is not None:
            require_run_analysis(actor, run_id, home=home)


# --- the summary in plain words ---------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """The numbers the plain-language summary speaks of, for one run.

    Attributes:
        label: the run's label (``"#2 mobilenet_v2 · fine-tune top 4"``).
        config: its settings (``run.json``'s ``"config"``), for the freeze plan.
        accuracy: its validation accuracy (``None`` when unknown).
        seconds: how long it trained (``None`` when unknown).
        trainable_blocks: the names of the backbone blocks that trained (``None`` while
            the block plan is unknown).
        total_blocks: how many blocks the backbone has (``None`` when unknown).
        confusions: ``(true class, predicted class) → images`` off the diagonal.
    """

    label: str
    config: Mapping[str, Any]
    accuracy: float | None = None
    seconds: float | None = None
    trainable_blocks: tuple[str, ...] | None = None
    total_blocks: int | None = None
    confusions: Mapping[tuple[str, str], int] = field(default_factory=dict)


def summary_sentences(facts: Sequence[RunFacts]) -> list[str]:
    """Say in plain words what changed from the first run (the baseline) to each other run.

    The first sentence describes the baseline; each other run gets one sentence: its
    freeze plan, the validation accuracy it reached against the baseline's, the training
    time it cost or saved, the baseline's most confused pair of classes and how that count
    changed, and which blocks trained.

    Args:
        facts: the runs, baseline first.

    Example:
        >>> base = RunFacts("#1", {"freeze": "feature-extraction"}, 0.81, 60.0, (), 19,
        ...                 {("bee", "ant"): 29})
        >>> tuned = RunFacts("#2", {"freeze": "fine-tune", "unfreeze_last": 2}, 0.93, 240.0,
        ...                  ("block_16", "top"), 19, {("bee", "ant"): 6})
        >>> print(summary_sentences([base, tuned])[1])  # doctest: +NORMALIZE_WHITESPACE
        Fine-tuning the top 2 blocks (block_16 and top, 2 of 19) raised validation accuracy
        from 81% to 93% for 3 more minutes of training; bees taken for ants fell from 29 to 6.
    """
    if not facts:
        return []
    base, *others = facts
    sentences = [_baseline_sentence(base)]
    for other in others:
        parts = [_change_clause(base, other)]
        confusion = _confusion_clause(base, other)
        if confusion:
            parts.append(confusion)
        sentences.append("; ".join(parts) + ".")
    return sentences


def _baseline_sentence(base: RunFacts) -> str:
    reached = (
        f" reached {_percent(base.accuracy)} validation accuracy"
        if base.accuracy is not None
        else " has no validation accuracy yet"
    )
    took = f" in {_duration(base.seconds)}" if base.seconds is not None else ""
    return f"The baseline, {base.label},{reached}{took}."


def _change_clause(base: RunFacts, other: RunFacts) -> str:
    subject = _setup_phrase(other.config)
    subject = subject[0].upper() + subject[1:]
    blocks = _blocks_phrase(other)
    if blocks:
        subject += f" ({blocks})"
    if base.accuracy is None or other.accuracy is None:
        clause = f"{subject} reached {_percent(other.accuracy)} validation accuracy"
    elif _percent(base.accuracy) == _percent(other.accuracy):
        clause = f"{subject} left validation accuracy at {_percent(other.accuracy)}"
    else:
        verb = "raised" if other.accuracy > base.accuracy else "lowered"
        clause = (
            f"{subject} {verb} validation accuracy from {_percent(base.accuracy)} "
            f"to {_percent(other.accuracy)}"
        )
    return clause + _time_phrase(base.seconds, other.seconds)


def _setup_phrase(config: Mapping[str, Any]) -> str:
    """The freeze plan as the subject of a sentence: ``"fine-tuning the top 4 blocks"``."""
    if _setting(config, "two_phase"):
        depth = _setting(config, "fine_tune_blocks")
        return f"training the head first, then the top {_blocks(depth)}"
    words = describe_freeze(config)
    if words == "feature extraction":
        return "feature extraction (the head alone trains)"
    if words == "head only":
        return "training the head alone"
    if words == "from scratch":
        return "training every block from scratch"
    if words == "fine-tune all":
        return "fine-tuning every block"
    if words.startswith("fine-tune top"):
        return f"fine-tuning the top {_blocks(_setting(config, 'unfreeze_last'))}"
    return f"training {_blocks(len(_setting(config, 'trainable_blocks') or ()))} of your choice"


def _setting(config: Mapping[str, Any], name: str) -> Any:
    """The config's value of `name`, or the `RunConfig` default (older runs lack new keys)."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    return config.get(name, defaults.get(name))


def _blocks(count: int) -> str:
    return "1 block" if count == 1 else f"{count} blocks"


def _blocks_phrase(facts: RunFacts) -> str:
    """``"block_16 and top, 2 of 19"``: which blocks trained, when that is known."""
    names = facts.trainable_blocks
    if not names:
        return ""
    listed = (
        " and ".join(names)
        if len(names) <= 2
        else (", ".join(names[:-1]) + " and " + names[-1] if len(names) <= 4 else "")
    )
    if not listed:
        listed = f"{names[0]} to {names[-1]}"
    total = f", {len(names)} of {facts.total_blocks}" if facts.total_blocks else ""
    return listed + total


def _time_phrase(base: float | None, other: float | None) -> str:
    if base is None or other is None:
        return ""
    change = other - base
    # A few seconds either way is noise on a shared machine, not a cost.
    if abs(change) < max(5.0, 0.05 * base):
        return " in about the same training time"
    if change > 0:
        return f" for {_duration(change, more='more')} of training"
    return f" and saved {_duration(-change)} of training"


def _duration(seconds: float, *, more: str = "") -> str:
    """``"45 seconds"``, ``"3 minutes"``, ``"1.5 hours"``; with `more`, ``"3 more minutes"``."""
    extra = f"{more} " if more else ""
    if seconds < 90:
        count = max(1, round(seconds))
        return f"{count} {extra}second" + ("" if count == 1 else "s")
    if seconds < 90 * 60:
        count = round(seconds / 60)
        return f"{count} {extra}minutes"
    return f"{seconds / 3600:.1f} {extra}hours"


def _confusion_clause(base: RunFacts, other: RunFacts) -> str:
    """How the baseline's worst confusion (or, without any, the other run's) changed."""
    pair = _worst_pair(base.confusions) or _worst_pair(other.confusions)
    if pair is None:
        return ""
    before, after = base.confusions.get(pair, 0), other.confusions.get(pair, 0)
    true, predicted = (_plural(name) for name in pair)
    if before == after:
        return f"{true} taken for {predicted} stayed at {before}"
    verb = "fell" if after < before else "rose"
    return f"{true} taken for {predicted} {verb} from {before} to {after}"


def _worst_pair(confusions: Mapping[tuple[str, str], int]) -> tuple[str, str] | None:
    pairs = [(count, pair) for pair, count in confusions.items() if count > 0]
    return max(pairs, key=lambda item: item[0])[1] if pairs else None


def _plural(name: str) -> str:
    """A class name as a plural noun: ``"bee"`` → ``"bees"``; names ending in s stay."""
    return name if name.endswith("s") or not name[-1:].isalpha() else f"{name}s"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def report_question(labels: Sequence[str], configs: Sequence[Mapping[str, Any]]) -> str:
    """The question a comparison answers, from its runs' freeze plans.

    Example:
        >>> print(report_question(["#1", "#2"], [{"freeze": "feature-extraction"},
        ...       {"freeze": "fine-tune", "unfreeze_last": 4}]))  # doctest: +NORMALIZE_WHITESPACE
        What changes when fine-tuning the top 4 blocks instead of feature extraction
        (the head alone trains)?
    """
    phrases = [_setup_phrase(config) for config in configs]
    if len(phrases) == 2 and phrases[0] != phrases[1]:
        return f"What changes when {phrases[1]} instead of {phrases[0]}?"
    return f"What changes from {labels[0]} to " + ", ".join(labels[1:]) + "?"


# --- gathering the evidence -------------------------------------------------------------------


@dataclass
class _Evidence:
    """Everything the report shows of one run; a missing piece has a note instead."""

    run: ComparedRun
    root: Path
    doc: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    evaluation_note: str | None = None
    embeddings: dict[str, Any] | None = None
    embeddings_note: str | None = None
    gradcam: dict[str, dict[str, Any]] = field(default_factory=dict)
    gradcam_note: str | None = None

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.root)

    @property
    def seconds(self) -> float | None:
        return self.run.summary.duration()

    def facts(self) -> RunFacts:
        """The run's numbers for `summary_sentences`."""
        blocks = [b for b in self.doc.get("blocks") or [] if isinstance(b, dict)]
        evaluation = self.evaluation or {}
        accuracy = evaluation.get("accuracy", self.run.summary.best_val_accuracy)
        return RunFacts(
            label=self.run.label,
            config=self.run.config,
            accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
            seconds=self.seconds,
            trainable_blocks=tuple(b["name"] for b in blocks if b.get("trainable"))
            if blocks
            else None,
            total_blocks=len(blocks) or None,
            confusions={
                (pair["true"], pair["predicted"]): int(pair["count"])
                for pair in evaluation.get("most_confused", [])
            },
        )


def _gather(
    run_ids: Sequence[str], home: Path | None, actor: Identity | None, compute: bool
) -> list[_Evidence]:
    require_report_access(actor, run_ids, home=home)
    evidence = []
    for run in load_compared_runs(list(dict.fromkeys(run_ids)), home):
        root = run_path(run.run_id, home)
        item = _Evidence(run, root, read_json(RunFiles(root).config, {}) or {})
        item.evaluation, item.evaluation_note = _evaluation(root, compute)
        item.embeddings, item.embeddings_note = _embeddings(root, compute)
        evidence.append(item)
    return evidence


def _evaluation(root: Path, compute: bool) -> tuple[dict[str, Any] | None, str | None]:
    from tl_core.analysis.evaluate import evaluate_run

    if not compute:
        doc = read_json(root / EVAL_FILE)
        if isinstance(doc, dict) and "confusion_matrix" in doc:
            return doc, None
        return None, _not_computed("evaluation")
    try:
        return evaluate_run(root), None
    except TLError as exc:
        return None, _note(exc, root)


def _embeddings(root: Path, compute: bool) -> tuple[dict[str, Any] | None, str | None]:
    kept = result_path(root, embeddings_args(root))
    doc = read_json(kept)
    if isinstance(doc, dict) and "after" in doc:
        return doc, None
    if not compute:
        return None, _not_computed("embeddings")
    if not RunFiles(root).model.is_file():
        return None, _no_model(root)
    from tl_core.analysis.evaluate import embeddings

    try:
        doc = embeddings(root, max_images=EMBEDDING_IMAGES)
    except TLError as exc:
        return None, _note(exc, root)
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(kept, doc)  # the Evaluate page shows it without computing again
    return doc, None


def _not_computed(what: str) -> str:
    return (
        f"This run has no {what} yet. Open it on the Evaluate page, or write the report "
        "with `python -m tl_core report`, which computes what is missing."
    )


def _no_model(root: Path) -> str:
    return f"Run {root.name} has no trained model (it has not finished), so nothing to show."


def _note(error: TLError, root: Path) -> str:
    """Why a piece is missing, in the error's words, without the server's folders (the
    report leaves the server)."""
    text = " ".join(str(error).split())
    return text.replace(str(root), f"run {root.name}").replace(str(root.parent), "the runs")


@dataclass(frozen=True)
class _Picture:
    """A validation image shown with every run's Grad-CAM."""

    path: str
    true: str
    name: str
    file: Path


def _pictures(evidence: Sequence[_Evidence], home: Path | None) -> list[_Picture]:
    """The validation images every run explains (at most `GRADCAM_IMAGES`)."""
    from tl_core.data import load_dataset
    from tl_core.data.dataset import split_dataset
    from tl_core.workspace import safe_join

    base = evidence[0]
    dataset_id = base.run.config.get("dataset_id")
    try:
        report = load_dataset(str(dataset_id), home=home)
    except TLError:
        return []
    if report.root is None:
        return []
    splits = split_dataset(
        report,
        val_fraction=float(_setting(base.run.config, "val_fraction")),
        seed=int(_setting(base.run.config, "seed")),
    )
    by_path = {record.path: record for record in splits.val}
    mistakes = [row["path"] for row in (base.evaluation or {}).get("misclassified", [])]
    mistakes = [path for path in mistakes if path in by_path]
    # One picture per class first, the baseline's worst mistake on it where it made one,
    # so that the pictures show the classes; then more mistakes while there is room.
    chosen: list[str] = []
    for name in splits.class_names:
        of_class = [path for path in mistakes if by_path[path].label == name]
        of_class += [record.path for record in splits.val if record.label == name]
        if of_class:
            chosen.append(of_class[0])
    chosen += [path for path in mistakes if path not in chosen]
    chosen = chosen[:GRADCAM_IMAGES]
    return [
        _Picture(
            path,
            by_path[path].label,
            PurePosixPath(by_path[path].source or path).name,
            safe_join(report.root, path),
        )
        for path in chosen
    ]


def _gradcam(item: _Evidence, pictures: Sequence[_Picture], compute: bool) -> None:
    """Fill `item.gradcam` (image path → prediction with ``gradcam`` overlay file)."""
    missing = []
    for picture in pictures:
        kept = read_json(result_path(item.root, gradcam_args(item.root, picture.file)))
        if isinstance(kept, list) and kept and Path(str(kept[0].get("gradcam", ""))).is_file():
            item.gradcam[picture.path] = kept[0]
        else:
            missing.append(picture)
    if not missing:
        return
    if not compute:
        item.gradcam_note = _not_computed("Grad-CAM")
        return
    if not item.files.model.is_file():
        item.gradcam_note = _no_model(item.root)
        return
    from tl_core.analysis.predict import predict_images

    folder = analysis_folder(item.root) / "gradcam"
    try:
        results = predict_images(item.root, [p.file for p in missing], gradcam_dir=folder)
    except TLError as exc:
        item.gradcam_note = _note(exc, item.root)
        return
    for picture, result in zip(missing, results, strict=True):
        item.gradcam[picture.path] = result
        # Kept under the Evaluate page's key, so the page shows it without computing again.
        write_json_atomic(result_path(item.root, gradcam_args(item.root, picture.file)), [result])


# --- the HTML ---------------------------------------------------------------------------------


def build_report(
    run_ids: Sequence[str],
    *,
    home: Path | None = None,
    actor: Identity | None = None,
    compute: bool = True,
    question: str | None = None,
) -> bytes:
    """Return the comparison of `run_ids` as one self-contained HTML file (UTF-8 bytes).

    Args:
        run_ids: the runs, baseline first (deltas and the summary are against it).
        home: the workspace root (default ``TL_HOME``).
        actor: who asks (default ``None``: the operator); a student may report on their
            own runs and the shared ones.
        compute: compute missing evaluations, Grad-CAM and embeddings in this process
            (default True; loads TensorFlow). False uses only results already kept, for
            a process that must not load a model (a web page).
        question: the question the report answers (default: one made from the runs'
            freeze plans, see `report_question`).

    Raises:
        ConfigError: no run ids.
        JobError: an id is malformed or names no run.
        AccessDenied: `actor` may not analyse one of the runs; nothing is computed then.

    Example:
        >>> runs = ["20261207-090000-aaaaaa", "20261207-091500-bbbbbb"]
        >>> Path("report.html").write_bytes(build_report(runs))  # doctest: +SKIP
    """
    if compute:
        # Several models predict one after another here: TensorFlow's retracing notes are
        # expected, and would bury the command's output.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    evidence = _gather(run_ids, home, actor, compute)
    pictures = _pictures(evidence, home) if evidence[0].evaluation is not None else []
    for item in evidence:
        _gradcam(item, pictures, compute)
    labels = [item.run.label for item in evidence]
    asked = question or report_question(labels, [item.run.config for item in evidence])
    body = "\n".join(
        [
            _header(asked, evidence, home),
            _summary_section(evidence),
            _setups_section(evidence),
            _curves_section(evidence),
            _metrics_section(evidence),
            _confusion_section(evidence),
            _per_class_section(evidence),
            _gradcam_section(evidence, pictures),
            _drift_section(evidence),
            _embeddings_section(evidence),
        ]
    )
    return _page(asked, body).encode("utf-8")


def write_report(
    run_ids: Sequence[str],
    out: Path | str,
    *,
    home: Path | None = None,
    actor: Identity | None = None,
    compute: bool = True,
    question: str | None = None,
) -> Path:
    """Write `build_report` of `run_ids` to `out` (atomically; folders are created).

    Arguments as for `build_report`. Returns the path written.

    Example:
        >>> write_report(["20261207-090000-aaaaaa", "20261207-091500-bbbbbb"],
        ...              "report.html")  # doctest: +SKIP
        PosixPath('report.html')
    """
    data = build_report(run_ids, home=home, actor=actor, compute=compute, question=question)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data, durable=False)
    return path


def _e(value: Any) -> str:
    """Any value as HTML text: every name from a user passes here."""
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    import plotly.offline

    # plotly.js holds no "</script" (checked by the tests), so it may sit in a <script>.
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style>"
        f"<script>{plotly.offline.get_plotlyjs()}</script></head>\n"
        f"<body><main>{body}</main><script>{_RESIZE}</script></body></html>\n"
    )


#: Charts are drawn while the page is read; once it is laid out, each takes its box's size.
_RESIZE = (
    "window.addEventListener('load',()=>document.querySelectorAll('.js-plotly-plot')"
    ".forEach(plot=>Plotly.Plots.resize(plot)));"
)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#0f172a;
background:#f8fafc}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:1.9rem;margin:.2em 0}h2{font-size:1.35rem;margin:1.6em 0 .4em;
border-bottom:2px solid #e2e8f0;padding-bottom:.2em}h3{font-size:1rem;margin:.6em 0 .2em}
.meta,.note,.caption{color:#475569;font-size:.9rem}.note{font-style:italic}
.summary{font-size:1.15rem;line-height:1.5;background:#fff7ed;border-left:4px solid #f97316;
padding:12px 20px}
.grid{display:grid;gap:16px}.cols-1{grid-template-columns:minmax(0,1fr)}
.cols-2{grid-template-columns:repeat(2,minmax(0,1fr))}
@media (max-width:800px){.cols-2{grid-template-columns:minmax(0,1fr)}}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px;min-width:0}
table{border-collapse:collapse;background:#fff;font-size:.92rem}
th,td{border:1px solid #e2e8f0;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
.up{color:#15803d}.down{color:#b91c1c}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;
vertical-align:middle}
figure{margin:0}figcaption{font-size:.85rem;color:#334155}
.pictures td{text-align:center;vertical-align:top}.pictures img{max-width:200px;height:auto}
"""


def _section(title: str, content: str, note: str = "") -> str:
    caption = f"<p class='caption'>{note}</p>" if note else ""
    return f"<section><h2>{_e(title)}</h2>{caption}{content}</section>"


def _grid(cards: Sequence[str]) -> str:
    """Cards side by side, two to a row. The columns are fixed before any chart is drawn:
    a chart takes its width once, from the column it is drawn in."""
    columns = min(2, len(cards))
    return f"<div class='grid cols-{columns}'>{''.join(cards)}</div>"


def _figure(figure: Any) -> str:
    """One Plotly chart, without plotly.js (the page's head has it once)."""
    chart = figure.to_html(full_html=False, include_plotlyjs=False, config=_PLOTLY_CONFIG)
    return f"<div class='chart'>{chart}</div>"


def _header(question: str, evidence: Sequence[_Evidence], home: Path | None) -> str:
    from tl_core.data import load_dataset

    names = []
    for dataset_id in dict.fromkeys(str(i.run.config.get("dataset_id")) for i in evidence):
        try:
            names.append(load_dataset(dataset_id, home=home).source_name)
        except TLError:
            names.append(dataset_id)
    owners = sorted({str(i.doc["owner"]) for i in evidence if i.doc.get("owner")})
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    meta = f"Dataset: {_e(', '.join(names))} · {len(evidence)} runs · written {made}"
    if owners:
        meta += f" · by {_e(', '.join(owners))}"
    return f"<header><h1>{_e(question)}</h1><p class='meta'>{meta}</p></header>"


def _summary_section(evidence: Sequence[_Evidence]) -> str:
    sentences = summary_sentences([item.facts() for item in evidence])
    items = "".join(f"<li>{_e(sentence)}</li>" for sentence in sentences)
    return _section("In short", f"<ul class='summary'>{items}</ul>")


def _setups_section(evidence: Sequence[_Evidence]) -> str:
    from tl_core.models.blocks import BlockInfo
    from tl_core.viz.plots import FROZEN_COLOR, TRAINABLE_COLOR, freeze_strip_figure

    cards = []
    for item in evidence:
        config = item.run.config
        rows = [b for b in item.doc.get("blocks") or [] if isinstance(b, dict) and "name" in b]
        if rows:
            blocks = [BlockInfo(str(b["name"]), (), int(b.get("params") or 0), ()) for b in rows]
            trainable = {str(b["name"]) for b in rows if b.get("trainable")}
            strip = _figure(freeze_strip_figure(blocks, trainable))
            strip += f"<p class='caption'>{len(trainable)} of {len(blocks)} blocks train.</p>"
        else:
            strip = "<p class='note'>The block plan is written when the run starts.</p>"
        details = (
            f"{_e(config.get('backbone'))}, weights {_e(_weights_words(config))}, "
            f"{_e(item.run.summary.image_size or config.get('image_size'))} px, "
            f"{_e(config.get('epochs'))} epochs, learning rate {_e(config.get('learning_rate'))}"
        )
        owner = f" · {_e(item.doc['owner'])}" if item.doc.get("owner") else ""
        cards.append(
            f"<div class='card'><h3>{_e(item.run.label)}{owner}</h3>"
            f"<p>{_e(_setup_phrase(config))}</p><p class='caption'>{details}</p>{strip}</div>"
        )
    legend = (
        f"<p class='legend caption'>Input side on the left.<span style='background:"
        f"{FROZEN_COLOR}'></span>frozen<span style='background:{TRAINABLE_COLOR}'>"
        "</span>trains</p>"
    )
    return _section("The setups", legend + _grid(cards))


def _weights_words(config: Mapping[str, Any]) -> str:
    weights = str(config.get("weights") or "imagenet")
    if weights in ("imagenet", "none"):
        return {"imagenet": "ImageNet", "none": "random (from scratch)"}[weights]
    return f"file {PurePosixPath(weights).name}"


def _curves_section(evidence: Sequence[_Evidence]) -> str:
    from tl_core.viz.plots import compare_curves_figure, plotly_text

    runs = [(plotly_text(item.run.label), item.run.epochs) for item in evidence]
    return _section(
        "Learning curves",
        _figure(compare_curves_figure(runs, show_training=True)),
        "Validation (solid) and training (dashed) per epoch, one colour per run.",
    )


def _metrics_section(evidence: Sequence[_Evidence]) -> str:
    # (row name, value per run, how to write it, whether a rise is good news)
    rows: list[tuple[str, list[float | None], str, bool]] = [
        (
            "Validation accuracy (evaluated)",
            [_number((i.evaluation or {}).get("accuracy")) for i in evidence],
            "percent",
            True,
        ),
        (
            "Best val. accuracy",
            [i.run.summary.best_val_accuracy for i in evidence],
            "percent",
            True,
        ),
        (
            "Final val. loss",
            [_number((i.run.epochs[-1] if i.run.epochs else {}).get("val_loss")) for i in evidence],
            "decimal",
            False,
        ),
        ("Training time", [i.seconds for i in evidence], "seconds", False),
        ("Median s / epoch", [median_epoch_seconds(i.run.epochs) for i in evidence], "s", False),
        (
            "Trainable params",
            [float(i.run.trainable_params) if i.run.trainable_params else None for i in evidence],
            "count",
            True,
        ),
        ("Epochs", [float(i.run.summary.epochs_done) for i in evidence], "count", True),
    ]
    head = "".join(f"<th>{_e(item.run.label)}</th>" for item in evidence)
    body = []
    for name, values, kind, higher_is_up in rows:
        if all(value is None for value in values):
            continue
        cells = [_cell(values[0], kind)]
        for value in values[1:]:
            cells.append(_cell(value, kind) + _delta(values[0], value, kind, higher_is_up))
        body.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    states = "".join(f"<td>{_e(item.run.summary.state)}</td>" for item in evidence)
    body.append(f"<tr><td>State</td>{states}</tr>")
    table = f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"
    return _section("Metrics", table, "Changes in brackets are against the first run.")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cell(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{value:.1%}"
    if kind == "decimal":
        return f"{value:.3f}"
    if kind == "seconds":
        return _clock(value)
    if kind == "s":
        return f"{value:.1f} s"
    return f"{value:,.0f}"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _delta(base: float | None, value: float | None, kind: str, higher_is_up: bool) -> str:
    if base is None or value is None or value == base:
        return ""
    change = value - base
    if kind == "percent":
        text = f"{change * 100:+.1f} pts"
    elif kind == "decimal":
        text = f"{change:+.3f}"
    elif kind == "seconds":
        text = ("+" if change > 0 else "−") + _clock(abs(change))
    elif kind == "s":
        text = f"{change:+.1f} s"
    else:
        text = f"{change:+,.0f}"
    good = (change > 0) == higher_is_up
    return f" <span class='{'up' if good else 'down'}'>({text})</span>"


def _confusion_section(evidence: Sequence[_Evidence]) -> str:
    from tl_core.viz.evaluation import confusion_matrix_figure

    cards = []
    for item in evidence:
        if item.evaluation is None:
            content = f"<p class='note'>{_e(item.evaluation_note)}</p>"
        else:
            figure = confusion_matrix_figure(
                item.evaluation["confusion_matrix"], item.evaluation["class_names"]
            )
            content = _figure(figure)
        cards.append(f"<div class='card'><h3>{_e(item.run.label)}</h3>{content}</div>")
    return _section(
        "Confusion matrices",
        _grid(cards),
        "Rows: the true class; columns: what the run took it for.",
    )


def _per_class_section(evidence: Sequence[_Evidence]) -> str:
    evaluated = [item for item in evidence if item.evaluation is not None]
    if not evaluated:
        return _section("Per class", "<p class='note'>No run has been evaluated yet.</p>")
    names = list(
        dict.fromkeys(name for item in evaluated for name in item.evaluation["class_names"])
    )
    head = "".join(f"<th>{_e(item.run.label)}</th>" for item in evaluated)
    rows = []
    for name in names:
        recalls = [
            _number(item.evaluation["per_class"].get(name, {}).get("recall")) for item in evaluated
        ]
        cells = [_cell(recalls[0], "percent")]
        cells += [_cell(r, "percent") + _delta(recalls[0], r, "percent", True) for r in recalls[1:]]
        rows.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"
    return _section(
        "Per class",
        table,
        "Recall: the share of each class's validation images the run got right.",
    )


def _gradcam_section(evidence: Sequence[_Evidence], pictures: Sequence[_Picture]) -> str:
    if not pictures:
        return _section(
            "Grad-CAM",
            "<p class='note'>No validation images to explain: the first run has not been "
            "evaluated, or its dataset is no longer stored.</p>",
        )
    base_dataset = evidence[0].run.config.get("dataset_id")
    head = "<th>picture</th>" + "".join(f"<th>{_e(item.run.label)}</th>" for item in evidence)
    rows = []
    for picture in pictures:
        original = _picture(picture.file, f"{picture.true}: {picture.name}")
        cells = [f"<td>{original}<figcaption>{_e(picture.true)}</figcaption></td>"]
        for item in evidence:
            cells.append(f"<td>{_gradcam_cell(item, picture, base_dataset)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table class='pictures'><tr>{head}</tr>{''.join(rows)}</table>"
    return _section(
        "Grad-CAM: where each run looked",
        table,
        "The same validation pictures explained by each run: red and yellow pushed the run "
        "towards its prediction most, blue little.",
    )


def _gradcam_cell(item: _Evidence, picture: _Picture, base_dataset: Any) -> str:
    if item.run.config.get("dataset_id") != base_dataset:
        return "<p class='note'>trained on another dataset</p>"
    result = item.gradcam.get(picture.path)
    if result is None:
        return f"<p class='note'>{_e(item.gradcam_note or 'not computed')}</p>"
    label = str(result.get("label"))
    verdict = "right" if label == picture.true else "wrong"
    confidence = _number(result.get("confidence"))
    said = f"{label} ({confidence:.0%})" if confidence is not None else label
    image = _picture(Path(str(result["gradcam"])), f"Grad-CAM of {item.run.label}")
    return (
        f"{image}<figcaption class='{'up' if verdict == 'right' else 'down'}'>"
        f"{_e(said)}, {verdict}</figcaption>"
    )


def _picture(path: Path, alt: str) -> str:
    """An ``<img>`` with the picture inside it, at most `PICTURE_SIDE` pixels, as JPEG."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
    except OSError:
        return f"<p class='note'>{_e(alt)}: the picture is no longer stored.</p>"
    picture.thumbnail((PICTURE_SIDE, PICTURE_SIDE), Image.Resampling.LANCZOS)
    if max(picture.size) < PICTURE_SIDE // 2:  # tiny inputs: enlarge, keeping pixels sharp
        scale = PICTURE_SIDE // max(picture.size)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=82)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"<img src='data:image/jpeg;base64,{data}' alt='{_e(alt)}' "
        f"width='{picture.width}' height='{picture.height}'>"
    )


def _drift_section(evidence: Sequence[_Evidence]) -> str:
    from tl_core.viz.evaluation import drift_figure

    cards = []
    for item in evidence:
        table = drift_over_epochs(item.root)
        content = (
            _figure(drift_figure(table))
            if table["epochs"]
            else "<p class='note'>This run recorded no weight drift.</p>"
        )
        cards.append(f"<div class='card'><h3>{_e(item.run.label)}</h3>{content}</div>")
    return _section(
        "Weight drift",
        _grid(cards),
        "How far each backbone block's weights moved from where they started, per epoch; "
        "grey blocks stayed frozen.",
    )


def _embeddings_section(evidence: Sequence[_Evidence]) -> str:
    from tl_core.viz.evaluation import embedding_figure

    rows = []
    for item in evidence:
        doc = item.embeddings
        if doc is None:
            rows.append(
                f"<h3>{_e(item.run.label)}</h3><p class='note'>{_e(item.embeddings_note)}</p>"
            )
            continue
        ratios = doc.get("explained_variance") or {}
        panels = []
        for key, title in (("before", "Before training"), ("after", "After training")):
            if doc.get(key) is None:
                note = doc.get("before_note") or "Not available."
                panels.append(f"<div class='card'><p class='note'>{_e(note)}</p></div>")
                continue
            figure = embedding_figure(
                doc[key],
                doc["labels"],
                doc["class_names"],
                title=title,
                explained_variance=ratios.get(key),
            )
            panels.append(f"<div class='card'>{_figure(figure)}</div>")
        rows.append(f"<h3>{_e(item.run.label)}</h3>{_grid(panels)}")
    return _section(
        "Embeddings before and after",
        "".join(rows),
        "Validation images placed by what the backbone sees (PCA of its pooled features): "
        "classes that form their own clusters are easy to tell apart.",
    )
