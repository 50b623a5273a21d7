"""The one-file report: the summary in words, escaping, one plotly.js, nothing external, size.

Runs are fabricated with every analysis already kept (`report_helpers.fabricate_runs`),
so these tests need no TensorFlow.
"""

from __future__ import annotations

import re
from pathlib import Path

import plotly.offline
import pytest

from tests.unit.analysis.report_helpers import HOSTILE, fabricate_runs, sample_dataset
from tl_core.analysis.background import result_path
from tl_core.analysis.report import (
    RunFacts,
    build_report,
    embeddings_args,
    report_args,
    report_question,
    require_report_access,
    summary_sentences,
    write_report,
)
from tl_core.classroom.identity import Identity
from tl_core.errors import AccessDenied, ConfigError, JobError
from tl_core.jobs.runs import RunFiles, read_json, run_path, write_json_atomic

FEATURES = {"freeze": "feature-extraction"}
TOP_4 = {"freeze": "fine-tune", "unfreeze_last": 4}
TOP_BLOCKS = ("block_14", "block_15", "block_16", "top")


def _plotly_free(page: str) -> str:
    """The page without the inlined plotly.js (whose source names its own URLs)."""
    return page.replace(plotly.offline.get_plotlyjs(), "")


@pytest.fixture
def dataset(tmp_path: Path):
    return sample_dataset(tmp_path)


# --- the summary in words ----------------------------------------------------------------------


def test_the_summary_says_what_fine_tuning_changed_in_accuracy_time_and_confusion() -> None:
    base = RunFacts("#1", FEATURES, 0.81, 120.0, (), 19, {("bee", "ant"): 29})
    tuned = RunFacts("#2", TOP_4, 0.93, 300.0, TOP_BLOCKS, 19, {("bee", "ant"): 6})

    sentences = summary_sentences([base, tuned])

    assert sentences == [
        "The baseline, #1, reached 81% validation accuracy in 2 minutes.",
        "Fine-tuning the top 4 blocks (block_14, block_15, block_16 and top, 4 of 19) raised "
        "validation accuracy from 81% to 93% for 3 more minutes of training; bees taken for "
        "ants fell from 29 to 6.",
    ]


def test_a_worse_and_faster_run_is_said_to_lower_accuracy_and_save_time() -> None:
    base = RunFacts("#1", TOP_4, 0.90, 100.0, TOP_BLOCKS, 19, {("cat", "dog"): 2})
    other = RunFacts("#2", FEATURES, 0.75, 40.0, (), 19, {("cat", "dog"): 9})

    sentence = summary_sentences([base, other])[1]

    assert sentence == (
        "Feature extraction (the head alone trains) lowered validation accuracy from 90% to "
        "75% and saved 60 seconds of training; cats taken for dogs rose from 2 to 9."
    )


def test_equal_rounded_accuracy_and_close_times_are_said_to_stay_the_same() -> None:
    base = RunFacts("#1", FEATURES, 0.801, 100.0)
    other = RunFacts("#2", {"freeze": "full", "weights": "none"}, 0.804, 102.0)

    assert summary_sentences([base, other])[1] == (
        "Training every block from scratch left validation accuracy at 80% in about the "
        "same training time."
    )


def test_without_confusion_in_the_baseline_the_other_runs_worst_pair_is_named() -> None:
    base = RunFacts("#1", FEATURES, 1.0, None, confusions={})
    other = RunFacts("#2", TOP_4, 0.9, None, confusions={("glass", "cup"): 3, ("cup", "x"): 1})

    assert summary_sentences([base, other])[1].endswith("; glass taken for cups rose from 0 to 3.")


def test_many_trained_blocks_are_named_by_their_first_and_last() -> None:
    names = (*(f"block_{i}" for i in range(10, 17)), "top")
    base = RunFacts("#1", FEATURES, 0.5)
    other = RunFacts(
        "#2",
        {"freeze": "fine-tune", "unfreeze_last": 8},
        0.6,
        trainable_blocks=names,
        total_blocks=19,
    )

    assert "(block_10 to top, 8 of 19)" in summary_sentences([base, other])[1]


def test_the_question_names_both_setups() -> None:
    assert report_question(["#1", "#2"], [FEATURES, TOP_4]) == (
        "What changes when fine-tuning the top 4 blocks instead of feature extraction "
        "(the head alone trains)?"
    )


# --- the file --------------------------------------------------------------------------------


def test_a_report_of_two_runs_has_every_section_and_the_computed_summary(dataset) -> None:
    ids = fabricate_runs(dataset, (0.81, 0.93))

    page = build_report(ids).decode("utf-8")

    for heading in (
        "In short",
        "The setups",
        "Learning curves",
        "Metrics",
        "Confusion matrices",
        "Per class",
        "Grad-CAM: where each run looked",
        "Weight drift",
        "Embeddings before and after",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "raised validation accuracy from 81% to 93% for 2 more minutes of training" in page
    assert "(+12.0 pts)" in page  # the delta of the evaluated accuracy
    assert "1 min 00 s" in page and "3 min 00 s" in page  # the time each run took


def test_user_supplied_names_are_escaped_and_never_markup(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9), owner="Ada <b>")

    page = build_report(ids).decode("utf-8")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # class and dataset names as text
    assert "Ada &lt;b&gt;" in page
    assert HOSTILE not in page
    assert "<b>" not in _plotly_free(page).replace("<b>%{y}</b>", "")


def test_plotly_js_is_inlined_exactly_once(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9))

    page = build_report(ids).decode("utf-8")

    assert page.count(plotly.offline.get_plotlyjs()) == 1
    assert "</script" not in plotly.offline.get_plotlyjs().lower()  # safe inside <script>
    assert "plotly.js v" in plotly.offline.get_plotlyjs()[:200]
    assert page.count("plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == page.count("class='chart'") > 10


def test_nothing_in_the_report_points_outside_the_file(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9))

    page = build_report(ids).decode("utf-8")

    outside = _plotly_free(page)
    assert "http://" not in outside and "https://" not in outside
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", outside, re.IGNORECASE)
    assert re.findall(r"<img src='([a-z]+):", page) == ["data"] * page.count("<img ")
    assert "<link" not in outside and "@import" not in outside


def test_four_runs_stay_under_15_mb_with_noisy_pictures(tmp_path: Path) -> None:
    dataset = sample_dataset(tmp_path, classes=("cat", "dog", "fox", "owl"))
    ids = fabricate_runs(
        dataset, (0.7, 0.8, 0.85, 0.9), embedding_points=300, epochs=30, noisy_overlays=True
    )

    page = build_report(ids)

    assert len(page) <= 15 * 1024 * 1024
    assert page.count(b"<img ") == 4 * 5  # 4 pictures: the original and each run's Grad-CAM


def test_write_report_writes_the_file_and_creates_its_folder(dataset, tmp_path: Path) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9))

    path = write_report(ids, tmp_path / "out" / "report.html", question="Does it help?")

    assert path.read_bytes().startswith(b"<!DOCTYPE html>")
    assert "<h1>Does it help?</h1>" in path.read_text(encoding="utf-8")


def test_without_computing_a_missing_analysis_says_how_to_get_it(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9))
    root = run_path(ids[1])
    result_path(root, embeddings_args(root)).unlink()

    page = build_report(ids, compute=False).decode("utf-8")

    assert "This run has no embeddings yet." in page
    assert "Before training" in page  # the first run's are still there


def test_a_run_without_a_model_says_why_without_naming_server_folders(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9))
    root = run_path(ids[1])
    (root / "model.keras").unlink()

    page = build_report(ids).decode("utf-8")

    assert f"run {ids[1]} has no trained model yet" in page
    assert str(root.parent) not in page
    assert "<h2>Grad-CAM: where each run looked</h2>" in page  # the first run's still show


def test_a_student_may_not_report_on_someone_elses_run(dataset) -> None:
    ids = fabricate_runs(dataset, (0.8, 0.9), owner="Bob")

    with pytest.raises(AccessDenied):
        build_report(ids, actor=Identity.student("Ada"))


def test_access_is_checked_for_every_run_not_only_the_first(dataset) -> None:
    ada, bob = fabricate_runs(dataset, (0.8, 0.9), owner="Ada")
    config = RunFiles(run_path(bob)).config
    write_json_atomic(config, read_json(config) | {"owner": "Bob"})

    require_report_access(Identity.student("Ada"), [ada])
    with pytest.raises(AccessDenied):
        require_report_access(Identity.student("Ada"), [ada, bob])


def test_the_report_command_is_spelled_for_a_background_analysis(tmp_path: Path) -> None:
    args = report_args(["20261207-090000-aaaaaa", "20261207-091000-bbbbbb"], tmp_path / "r.html")

    assert args == [
        "report",
        "20261207-090000-aaaaaa",
        "20261207-091000-bbbbbb",
        "--out",
        str(tmp_path / "r.html"),
    ]


def test_a_report_needs_runs_that_exist(dataset) -> None:
    with pytest.raises(ConfigError):
        build_report([])
    with pytest.raises(JobError):
        build_report(["20261207-090000-ffffff"])
    with pytest.raises(JobError):
        build_report(["../../etc"])
