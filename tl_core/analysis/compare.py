"""Runs side by side: labels, the settings that differ, final metrics, and ghost curves.

Everything here is read from run directories (`tl_core.jobs.runs`); nothing trains or loads a
model. The Compare page turns these into tables and figures (`tl_core.viz.plots`), and the
Train page draws earlier runs on the same dataset behind a live run (`ghost_curves`).

Runs are numbered in the order they were created (``#1`` is the oldest on this server),
so that a label such as ``"#3 mobilenet_v2 · fine-tune top 2"`` stays short and tells two
runs of the same model apart.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from tl_core.analysis.evaluate import EVAL_FILE
from tl_core.config import RunConfig
from tl_core.errors import JobError
from tl_core.jobs.runs import (
    FINAL_STATES,
    RunFiles,
    RunSummary,
    read_json,
    read_metrics,
    run_path,
    runs_dir,
    summarize_run,
)

__all__ = [
    "ComparedRun",
    "config_diff",
    "default_selection",
    "describe_freeze",
    "ghost_curves",
    "load_compared_runs",
    "median_epoch_seconds",
    "metrics_table",
    "run_label",
    "run_labels",
    "run_numbers",
]

#: How many earlier runs a live view draws behind its own curves, at most.
MAX_GHOSTS = 5
#: What a table cell shows for a value a run does not have.
MISSING = "—"

_CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
_CONFIG_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig)} | {
    "augmentation": ("flip",)  # a default_factory, not a default
}


@dataclass(frozen=True)
class ComparedRun:
    """One run as the Compare page shows it, read from its directory.

    Attributes:
        summary: what the runs list knows about it (state, best epoch, …).
        number: its place in creation order on this server (1 = the oldest).
        config: its `RunConfig` fields as stored in ``run.json``, with ``image_size``
            resolved to the size the run trained at when the config left it to the backbone.
        epochs: its epoch lines of ``metrics.jsonl``.
        trainable_params: parameters that trained (``None`` until the worker built the model).
        eval_accuracy: accuracy in ``eval.json`` (``None`` when it was not evaluated).
    """

    summary: RunSummary
    number: int
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    trainable_params: int | None = None
    eval_accuracy: float | None = None

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.summary.run_id

    @property
    def label(self) -> str:
        """``"#3 mobilenet_v2 · fine-tune top 2"`` (see `run_label`)."""
        return run_label(self.number, self.config)


def run_numbers(home: Path | None = None) -> dict[str, int]:
    """Return every run's number: its place in creation order, 1 for the oldest.

    Run ids begin with their UTC creation time, so sorting the folder names orders them
    without reading a file.

    Example:
        >>> run_numbers()  # doctest: +SKIP
        {'20261120-090000-aaaaaa': 1, '20261123-131500-bbbbbb': 2}
    """
    ids = sorted(entry.name for entry in runs_dir(home).iterdir() if _is_run_dir(entry))
    return {run_id: index for index, run_id in enumerate(ids, start=1)}


def describe_freeze(config: Mapping[str, Any]) -> str:
    """Say in a few words which blocks of the backbone a config trains.

    Example:
        >>> describe_freeze({"freeze": "fine-tune", "unfreeze_last": 2})
        'fine-tune top 2'
        >>> describe_freeze({"freeze": "full", "weights": "none"})
        'from scratch'
    """
    if _setting(config, "two_phase"):
        return f"two-phase, top {_setting(config, 'fine_tune_blocks')}"
    freeze = _setting(config, "freeze")
    if freeze == "fine-tune":
        depth = _setting(config, "unfreeze_last")
        return "head only" if depth == 0 else f"fine-tune top {depth}"
    if freeze == "full":
        return "from scratch" if _setting(config, "weights") == "none" else "fine-tune all"
    if freeze == "custom":
        return f"custom: {len(_setting(config, 'trainable_blocks') or ())} blocks"
    return "feature extraction"


def run_label(number: int, config: Mapping[str, Any]) -> str:
    """Return a short, readable name for a run: its number, backbone and freeze plan.

    Example:
        >>> run_label(3, {"backbone": "mobilenet_v2", "freeze": "fine-tune", "unfreeze_last": 2})
        '#3 mobilenet_v2 · fine-tune top 2'
    """
    return f"#{number} {config.get('backbone') or 'unknown backbone'} · {describe_freeze(config)}"


def median_epoch_seconds(epochs: Sequence[Mapping[str, Any]]) -> float | None:
    """Return the median of the epoch lines' ``seconds``; ``None`` without any.

    The median, because the first epoch also pays for tracing the model and warming up
    the input pipeline (and, with ``fast``, for caching the features).

    Example:
        >>> median_epoch_seconds([{"seconds": 9.0}, {"seconds": 3.0}, {"seconds": 3.2}])
        3.2
    """
    seconds = [line["seconds"] for line in epochs if _is_number(line.get("seconds"))]
    return float(statistics.median(seconds)) if seconds else None


def load_compared_runs(run_ids: Sequence[str], home: Path | None = None) -> list[ComparedRun]:
    """Read the runs `run_ids` (in that order) for a comparison.

    Args:
        run_ids: the runs to read.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        JobError: when an id is malformed or names no run.

    Example:
        >>> [run.label for run in load_compared_runs(["20261123-131500-bbbbbb"])]  # doctest: +SKIP
        ['#2 mobilenet_v2 · fine-tune top 2']
    """
    numbers = run_numbers(home)
    compared = []
    for run_id in run_ids:
        root = run_path(run_id, home)
        epochs, _ = read_metrics(root)
        summary = summarize_run(run_id, home, epochs=epochs)
        doc = read_json(RunFiles(root).config, {})
        config = dict(doc.get("config") or {})
        if config.get("image_size") is None and summary.image_size is not None:
            config["image_size"] = summary.image_size
        evaluation = read_json(root / EVAL_FILE)
        eval_accuracy = evaluation.get("accuracy") if isinstance(evaluation, dict) else None
        trainable = doc.get("trainable_params")
        compared.append(
            ComparedRun(
                summary=summary,
                number=numbers.get(run_id, 0),
                config=config,
                epochs=epochs,
                trainable_params=trainable if isinstance(trainable, int) else None,
                eval_accuracy=float(eval_accuracy) if _is_number(eval_accuracy) else None,
            )
        )
    return compared


def default_selection(runs: Sequence[RunSummary], dataset_id: str | None = None) -> list[str]:
    """Return the runs a comparison starts with: the two newest finished runs on
    `dataset_id`, else the two newest finished runs, else the two newest runs of all.

    Args:
        runs: every run, newest first (as `tl_core.jobs.runs.list_runs` returns them).
        dataset_id: the session's dataset (default ``None``: no preference).

    Example:
        >>> default_selection(list_runs(), "0123456789ab")  # doctest: +SKIP
        ['20261123-131500-bbbbbb', '20261120-090000-aaaaaa']
    """
    finished = [run for run in runs if run.state in FINAL_STATES]
    on_dataset = [run for run in finished if run.dataset_id == dataset_id]
    for candidates in (on_dataset, finished):
        if len(candidates) >= 2:
            return [run.run_id for run in candidates[:2]]
    return [run.run_id for run in runs[:2]]


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Return the settings on which the runs differ: one row per setting, one column per run.

    Settings missing from a config (written by an older version) count as their
    `RunConfig` default. Rows follow the order of the `RunConfig` fields (then any other
    key, sorted); cells are text, lists joined with commas.

    Args:
        configs: run label → its config (``run.json``'s ``"config"``).

    Example:
        >>> config_diff({"#1": {"epochs": 5, "seed": 0}, "#2": {"epochs": 8}}).to_dict("index")
        {'epochs': {'#1': '5', '#2': '8'}}
    """
    extra = sorted({key for config in configs.values() for key in config} - set(_CONFIG_FIELDS))
    rows = {}
    for name in (*_CONFIG_FIELDS, *extra):
        values = [_comparable(_setting(config, name)) for config in configs.values()]
        if len(set(values)) > 1:
            rows[name] = [_cell(value) for value in values]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(configs))
    table.index.name = "setting"
    return table


def metrics_table(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """Return the runs' results side by side: one row per metric, one column per run.

    Rows: best validation accuracy and its epoch, final validation accuracy and loss,
    epochs done, median seconds per epoch, trainable parameters, state, and evaluation
    accuracy when any run has an ``eval.json``. Cells are text (``"87.5%"``).

    Example:
        >>> metrics_table(load_compared_runs(ids)).loc["Best val. accuracy"]  # doctest: +SKIP
    """
    rows: dict[str, list[str]] = {
        "Best val. accuracy": [],
        "Best epoch": [],
        "Final val. accuracy": [],
        "Final val. loss": [],
        "Epochs": [],
        "Median s / epoch": [],
        "Trainable params": [],
        "State": [],
    }
    for run in runs:
        last = run.epochs[-1] if run.epochs else {}
        seconds = median_epoch_seconds(run.epochs)
        rows["Best val. accuracy"].append(_percent(run.summary.best_val_accuracy))
        rows["Best epoch"].append(_text(run.summary.best_epoch))
        rows["Final val. accuracy"].append(_percent(last.get("val_accuracy")))
        rows["Final val. loss"].append(_decimal(last.get("val_loss")))
        rows["Epochs"].append(f"{run.summary.epochs_done}/{run.summary.total_epochs}")
        rows["Median s / epoch"].append(MISSING if seconds is None else f"{seconds:.1f} s")
        rows["Trainable params"].append(
            MISSING if run.trainable_params is None else f"{run.trainable_params:,}"
        )
        rows["State"].append(run.summary.state)
    if any(run.eval_accuracy is not None for run in runs):
        rows["Evaluation accuracy"] = [_percent(run.eval_accuracy) for run in runs]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[run.label for run in runs])
    table.index.name = "metric"
    return table


def ghost_curves(
    run_id: str, *, limit: int = MAX_GHOSTS, home: Path | None = None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Return the runs to draw faintly behind `run_id`: the `limit` most recent runs
    created before it on the same dataset that have at least one epoch line.

    Only ``run.json`` is read from the other runs until a candidate is found, and
    ``metrics.jsonl`` from the candidates alone, so that this stays cheap with many runs.

    Args:
        run_id: the run being watched.
        limit: most ghosts returned (default `MAX_GHOSTS`).
        home: the workspace root (default ``TL_HOME``).

    Returns:
        ``(label, epoch lines)`` pairs, newest run first (labels as `run_label`).

    Raises:
        JobError: when `run_id` is malformed.

    Example:
        >>> [label for label, _ in ghost_curves("20261123-131500-bbbbbb")]  # doctest: +SKIP
        ['#1 mobilenet_v2 · feature extraction']
    """
    run_path(run_id, home)  # refuses a malformed id before it becomes a path
    numbers = run_numbers(home)
    own = _run_docs([run_id], home).get(run_id)
    if own is None or not _is_number(own.get("created")):
        return []
    dataset_id, created = own["config"].get("dataset_id"), own["created"]
    earlier = sorted(
        (
            (doc["created"], other_id, doc["config"])
            for other_id, doc in _run_docs(numbers, home).items()
            if other_id != run_id
            and doc["config"].get("dataset_id") == dataset_id
            and _is_number(doc.get("created"))
            and doc["created"] < created
        ),
        reverse=True,
    )
    ghosts = []
    for _, other_id, config in earlier:
        epochs, _ = read_metrics(runs_dir(home) / other_id)
        if epochs:
            ghosts.append((run_label(numbers[other_id], config), epochs))
        if len(ghosts) == limit:
            break
    return ghosts


def run_labels(home: Path | None = None) -> dict[str, str]:
    """Return every run's label (`run_label`), read from the ``run.json`` files alone.

    Example:
        >>> run_labels()  # doctest: +SKIP
        {'20261120-090000-aaaaaa': '#1 mobilenet_v2 · feature extraction'}
    """
    numbers = run_numbers(home)
    return {
        run_id: run_label(numbers[run_id], doc["config"])
        for run_id, doc in _run_docs(numbers, home).items()
    }


def _run_docs(run_ids: Iterable[str], home: Path | None) -> dict[str, dict[str, Any]]:
    """The ``run.json`` of each of `run_ids` that has a readable one with a config."""
    docs = {}
    for run_id in run_ids:
        doc = read_json(RunFiles(runs_dir(home) / run_id).config)
        if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
            docs[run_id] = doc
    return docs


def _setting(config: Mapping[str, Any], name: str) -> Any:
    """The config's value of `name`, or the `RunConfig` default when it has none."""
    return config.get(name, _CONFIG_DEFAULTS.get(name))


def _is_run_dir(entry: Path) -> bool:
    try:
        run_path(entry.name, entry.parent.parent)
    except JobError:
        return False
    return entry.is_dir()


def _comparable(value: Any) -> Any:
    """A hashable form of a config value (JSON gives lists where the config has tuples)."""
    return tuple(value) if isinstance(value, list) else value


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value) or "none"
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _percent(value: Any) -> str:
    return f"{value:.1%}" if _is_number(value) else MISSING


def _decimal(value: Any) -> str:
    return f"{value:.3f}" if _is_number(value) else MISSING


def _text(value: Any) -> str:
    return MISSING if value is None else str(value)
