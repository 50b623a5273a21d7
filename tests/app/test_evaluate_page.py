"""The Evaluate page, run through the whole app by AppTest, over runs and analyses on disk.

No TensorFlow and no process: runs are written by hand (`fabricate_run`, with an empty
``model.keras``), and each analysis result is stored where the page looks for it, under
the arguments `ui.evaluate_view` builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.analysis_support import store_analysis
from tests.app.run_support import fabricate_run, texts
from tests.app.wizard_support import assert_no_exception, offline_app
from tl_core import DatasetReport, ingest_archive
from tl_core.analysis.background import result_path
from tl_core.analysis.report import report_args
from tl_core.data.dataset import split_dataset
from tl_core.jobs.runs import RunFiles, append_jsonl, read_json, run_path, write_json_atomic
from ui import evaluate_view, report_view, state

PAGE = "pages/evaluate.py"
FEATURE_RUN = "20261123-100000-aaaaaa"  # older: feature extraction
FINE_TUNE_RUN = "20261123-110000-bbbbbb"  # newer: fine-tune of the top 2 blocks
CLASSES = ("circle", "square")
VAL_FRACTION = 0.5
BLOCKS = 4

# Every test here gets the fake queue (`tests/app/conftest.py`), used or not.
pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def navigation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AppTest runs ``app.py`` on every run (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test whose page would start an analysis process: every result is stored."""
    started: list[Sequence[str]] = []

    def spawn(argv: Sequence[str], **_: Any) -> None:
        started.append(argv)
        raise OSError("no processes in page tests")

    monkeypatch.setattr("tl_core.jobs.processes.spawn_detached", spawn)
    yield
    assert not started, started


@pytest.fixture
def dataset(image_zip: Callable[..., bytes], tmp_path: Path) -> DatasetReport:
    """A stored dataset of two classes, six pictures each (three of them validate)."""
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(image_zip({name: 6 for name in CLASSES}))
    return ingest_archive(archive)


def _trained_run(run_id: str, report: DatasetReport, *, trainable: int, created: float) -> Path:
    """A finished run on `report` with a (placeholder) model and two epochs of drift."""
    root = fabricate_run(
        run_id,
        state="completed",
        val_accuracies=(0.5, 0.75),
        total_epochs=2,
        trainable_blocks=trainable,
        total_blocks=BLOCKS,
        created=created,
    )
    files = RunFiles(root)
    doc = read_json(files.config)
    doc["config"] |= {"dataset_id": report.dataset_id, "val_fraction": VAL_FRACTION, "seed": 0}
    write_json_atomic(files.config, doc)
    files.model.write_bytes(b"")
    for epoch in (1, 2):
        drift = {
            f"block_{i}": 0.0 if i < BLOCKS - trainable else 0.01 * epoch * (i + 1)
            for i in range(BLOCKS)
        }
        append_jsonl(files.drift_history, {"epoch": epoch, "phase": "train", "drift": drift})
    return root


@pytest.fixture
def two_runs(dataset: DatasetReport) -> tuple[Path, Path]:
    """The feature-extraction run and the (newer) fine-tune run, both on `dataset`."""
    return (
        _trained_run(FEATURE_RUN, dataset, trainable=0, created=1_795_400_000.0),
        _trained_run(FINE_TUNE_RUN, dataset, trainable=2, created=1_795_403_600.0),
    )


def _evaluation(report: DatasetReport, *, wrong: int = 2) -> dict[str, Any]:
    """An ``evaluate`` document: `wrong` circles of the validation split taken for squares."""
    val = split_dataset(report, val_fraction=VAL_FRACTION, seed=0).val
    circles = [record for record in val if record.label == "circle"]
    misclassified = [
        {
            "path": record.path,
            "source": record.source,
            "true": "circle",
            "predicted": "square",
            "confidence": 0.6 + 0.1 * index,
            "loss": 1.0 + index,  # listed best first here: the page puts the worst first
        }
        for index, record in enumerate(circles[:wrong])
    ]
    right = len(circles) - wrong
    matrix = [[right, wrong], [0, len(val) - len(circles)]]
    return {
        "accuracy": (len(val) - wrong) / len(val),
        "loss": 0.4321,
        "confusion_matrix": matrix,
        "per_class": {
            "circle": {"precision": 1.0, "recall": right / 3, "f1": 0.5, "support": 3},
            "square": {"precision": 0.6, "recall": 1.0, "f1": 0.75, "support": 3},
        },
        "class_names": list(CLASSES),
        "most_confused": [{"true": "circle", "predicted": "square", "count": wrong}]
        if wrong
        else [],
        "misclassified": misclassified,
        "num_images": len(val),
        "max_misclassified": 50,
        "dataset_id": report.dataset_id,
        "val_source": "drawn",
    }


def _store_evaluation(run: Path, doc: dict[str, Any]) -> None:
    store_analysis(run, evaluate_view.evaluate_args(run), doc)


def _store_gradcam(run: Path, image: Path, label: str) -> Path:
    overlay = evaluate_view.gradcam_folder(run) / f"{run.name[-6:]}.png"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(overlay)
    store_analysis(
        run,
        evaluate_view.gradcam_args(run, image),
        [
            {
                "image": str(image),
                "label": label,
                "confidence": 0.875,
                "top": [{"label": label, "probability": 0.875}],
                "probabilities": {"circle": 0.125, "square": 0.875},
                "gradcam": str(overlay),
                "gradcam_layer": "block_3_project",
            }
        ],
    )
    return overlay


def _evaluation_file(run: Path, suffix: str) -> Path:
    """Where `tl_core.analysis.background` keeps the run's evaluation error (``.error.json``) or
    running marker (``.pid``)."""
    path = result_path(run, evaluate_view.evaluate_args(run)).with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _open(app: AppTest, tab: str | None = None) -> AppTest:
    if tab is not None:
        app.session_state[evaluate_view.TABS] = tab
    app.switch_page(PAGE)
    return app.run()


def _image_captions(app: AppTest) -> list[str]:
    return [caption.replace("\\", "") for image in app.image for caption in image.captions]


def test_without_a_trained_run_the_page_points_to_train(app: AppTest) -> None:
    fabricate_run(FEATURE_RUN, state="running")  # no model.keras yet

    _open(app)

    assert_no_exception(app)
    assert texts(app, "info") == [
        "No trained run yet: train one on the Train page, then evaluate it here."
    ]
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Train"]
    assert not app.tabs


def test_the_metrics_of_the_picked_run_are_shown(
    app: AppTest, dataset: DatasetReport, two_runs: tuple[Path, Path]
) -> None:
    _store_evaluation(two_runs[1], _evaluation(dataset))

    _open(app)

    assert_no_exception(app)
    assert app.selectbox(key=evaluate_view.RUN_PICKER).value == FINE_TUNE_RUN
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics == {
        "Accuracy": "66.7%",
        "Chance level": "50.0%",
        "Loss": "0.432",
        "Validation images": "6",
    }
    (heatmap,) = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    assert heatmap["type"] == "heatmap"
    assert heatmap["text"] == [["1", "2"], ["0", "3"]]
    table = app.dataframe[0].value
    assert list(table.columns) == ["Precision", "Recall", "F1", "Support"]
    assert table.loc["square"].tolist() == [0.6, 1.0, 0.75, 3]
    assert "- circle taken for square: 2 times" in texts(app, "markdown")
    assert _image_captions(app) == [
        "circle taken for square · 70%",
        "circle taken for square · 60%",
    ]
    assert app.session_state[state.EVALUATED] is True


def test_a_run_without_mistakes_says_so_and_many_mistakes_hide_behind_a_toggle(
    app: AppTest, dataset: DatasetReport, two_runs: tuple[Path, Path]
) -> None:
    perfect, sloppy = _evaluation(dataset, wrong=0), _evaluation(dataset, wrong=1)
    sloppy["misclassified"] *= evaluate_view.MISCLASSIFIED_SHOWN + 2
    _store_evaluation(two_runs[1], perfect)
    _store_evaluation(two_runs[0], sloppy)

    _open(app)

    assert_no_exception(app)
    assert "Every validation image was classified correctly." in texts(app, "success")
    assert not app.image

    app.selectbox(key=evaluate_view.RUN_PICKER).select(FEATURE_RUN).run()

    assert len(_image_captions(app)) == evaluate_view.MISCLASSIFIED_SHOWN
    app.toggle(key=evaluate_view.SHOW_ALL_MISCLASSIFIED).set_value(True).run()
    assert len(_image_captions(app)) == evaluate_view.MISCLASSIFIED_SHOWN + 2
    assert_no_exception(app)


def test_grad_cam_explains_the_worst_mistake_with_both_runs_side_by_side(
    app: AppTest, dataset: DatasetReport, two_runs: tuple[Path, Path]
) -> None:
    feature, fine_tune = two_runs
    doc = _evaluation(dataset)
    _store_evaluation(fine_tune, doc)
    choices = evaluate_view.image_choices(doc, dataset, val_fraction=VAL_FRACTION, seed=0)
    worst = choices[0]
    image = evaluate_view.image_file(dataset, worst.path)
    _store_gradcam(fine_tune, image, "square")
    _store_gradcam(feature, image, "circle")

    _open(app, "Grad-CAM")

    assert_no_exception(app)
    assert worst.path == doc["misclassified"][1]["path"]  # the higher loss
    assert app.selectbox(key=evaluate_view.IMAGE_PICKER).value == worst.path
    assert app.selectbox(key=evaluate_view.COMPARE_PICKER).value == FEATURE_RUN
    assert len(app.image) == 2
    markdown = texts(app, "markdown")
    assert "Predicted **square** with 87.5% confidence: :red[wrong]." in markdown
    assert "Predicted **circle** with 87.5% confidence: :green[right]." in markdown
    captions = texts(app, "caption")
    assert "Fine-tune: 2 of 4 backbone blocks trained, the other 2 frozen." in captions
    assert "Feature extraction: all 4 backbone blocks frozen, only the new head trained." in (
        captions
    )
    assert any("Explained layer: block_3_project" in caption for caption in captions)
    assert len(choices) == len(doc["misclassified"]) + 3  # 1 circle and 2 squares are left


def test_grad_cam_without_a_second_run_shows_one(
    app: AppTest, dataset: DatasetReport, two_runs: tuple[Path, Path]
) -> None:
    fine_tune = two_runs[1]
    doc = _evaluation(dataset)
    _store_evaluation(fine_tune, doc)
    worst = evaluate_view.image_choices(doc, dataset, val_fraction=VAL_FRACTION, seed=0)[0]
    _store_gradcam(fine_tune, evaluate_view.image_file(dataset, worst.path), "square")
    app.session_state[evaluate_view.COMPARE_PICKER] = evaluate_view.NO_COMPARISON

    _open(app, "Grad-CAM")

    assert_no_exception(app)
    assert len(app.image) == 1
    assert texts(app, "info") == ["Pick a second run above to see where another freeze plan looks."]


def test_embeddings_before_and_after_training_are_drawn_side_by_side(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    run = two_runs[1]
    store_analysis(
        run,
        evaluate_view.embeddings_args(run),
        {
            "before": [[0.0, 0.1], [0.1, 0.0], [0.05, 0.05]],
            "after": [[-2.0, 0.0], [2.0, 0.1], [2.1, -0.1]],
            "labels": [0, 1, 1],
            "paths": ["images/all/circle/1.jpg", "images/all/square/1.jpg", "x/2.jpg"],
            "class_names": list(CLASSES),
            "explained_variance": {"before": [0.6, 0.3], "after": [0.9, 0.05]},
            "method": "pca",
            "before_source": "random initialisation (seed 0)",
            "before_note": None,
            "num_images": 3,
        },
    )

    _open(app, "Embeddings")

    assert_no_exception(app)
    before, after = (json.loads(chart.proto.spec) for chart in app.get("plotly_chart"))
    assert before["layout"]["title"]["text"] == "Before training"
    assert after["layout"]["xaxis"]["title"]["text"] == "PC1 (90.0% of variance)"
    assert [trace["name"] for trace in after["data"]] == list(CLASSES)
    assert [t["marker"]["color"] for t in before["data"]] == [
        t["marker"]["color"] for t in after["data"]
    ]
    assert "Starting weights: random initialisation (seed 0)." in texts(app, "caption")


def test_without_the_starting_weights_the_before_picture_is_explained(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    run = two_runs[1]
    note = "The starting weights are no longer available; the 'before' picture cannot be drawn."
    store_analysis(
        run,
        evaluate_view.embeddings_args(run),
        {
            "before": None,
            "after": [[0.0, 1.0], [1.0, 0.0]],
            "labels": [0, 1],
            "class_names": list(CLASSES),
            "explained_variance": {"before": None, "after": [0.7, 0.3]},
            "before_note": note,
            "num_images": 2,
        },
    )

    _open(app, "Embeddings")

    assert_no_exception(app)
    assert texts(app, "info") == [note]
    assert len(app.get("plotly_chart")) == 1


def test_the_weight_drift_strip_shows_frozen_blocks_apart(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    _open(app, "Weight drift")

    assert_no_exception(app)
    moved, frozen = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    assert moved["y"] == [f"block_{i}" for i in range(BLOCKS)]
    assert frozen["z"][0] == [0.0, 0.0]
    assert moved["z"][3] == [0.04, 0.08]
    (caption,) = [c for c in texts(app, "caption") if "relative change" in c]
    assert "2 of 4 blocks stayed frozen (grey)" in caption
    assert (
        "moved the weights of 2 blocks (block_2, block_3), most in block_3 (0.08 by epoch 2)"
        in caption
    )


def test_a_run_without_drift_history_says_so(app: AppTest, two_runs: tuple[Path, Path]) -> None:
    RunFiles(two_runs[1]).drift_history.unlink()

    _open(app, "Weight drift")

    assert_no_exception(app)
    assert texts(app, "info")[0].startswith("This run recorded no weight drift")
    assert not app.get("plotly_chart")


def test_a_failed_evaluation_shows_its_error_and_a_retry(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    message = "The dataset of this run has no validation images, so there is nothing to evaluate."
    write_json_atomic(
        _evaluation_file(two_runs[1], ".error.json"),
        {"error": message, "exit_code": 2, "log_tail": ""},
    )

    _open(app)

    assert_no_exception(app)
    assert texts(app, "error") == [message]
    assert app.button(key=f"{evaluate_view.EVALUATE_ANALYSIS}_retry").label == "Try again"
    assert not app.metric
    assert state.EVALUATED not in app.session_state


def test_a_running_evaluation_shows_that_it_is_waited_for(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    run = two_runs[1]
    # A starter between creating the marker and spawning: running, without any process.
    write_json_atomic(_evaluation_file(run, ".pid"), {"pid": None, "started_at": time.time()})

    _open(app)

    assert_no_exception(app)
    assert any(
        info.startswith("Evaluating the model on its validation images in a background process")
        for info in texts(app, "info")
    )
    assert not app.metric
    assert not list(run_path(FINE_TUNE_RUN).glob("analysis/*.json"))


def test_an_evaluation_waiting_for_a_free_slot_says_so(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    run = two_runs[1]
    write_json_atomic(_evaluation_file(run, ".pid"), {"pid": None, "started_at": time.time()})
    _evaluation_file(run, ".waiting").touch()

    _open(app)

    assert_no_exception(app)
    assert any("waiting for other analyses" in info for info in texts(app, "info"))


def test_the_report_holds_the_run_and_the_one_grad_cam_compares_it_with(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(
        "tl_core.analysis.background.spawn_tracked",
        lambda argv, **_: started.append(list(argv)),
    )
    app.session_state[evaluate_view.COMPARE_PICKER] = FEATURE_RUN
    _open(app, "Weight drift")
    assert not app.get("download_button")

    (prepare,) = [b for b in app.button if b.key == f"{evaluate_view.REPORT}_prepare"]
    prepare.click().run()

    assert_no_exception(app)
    ((*_, command, first, second, flag, out),) = started
    assert (command, first, second, flag) == ("report", FEATURE_RUN, FINE_TUNE_RUN, "--out")
    ids = [FEATURE_RUN, FINE_TUNE_RUN]
    assert out == str(report_view.report_file(ids))

    Path(out).write_bytes(b"<!DOCTYPE html><title>report</title>")
    args = report_args(ids, Path(out))
    store_analysis(two_runs[0], args, {"run_ids": ids, "report": out})
    result_path(two_runs[0], args).with_suffix(".pid").unlink()
    app.run()

    assert_no_exception(app)
    (download,) = app.get("download_button")
    assert download.proto.label == "Download report"


def test_without_a_second_run_the_report_holds_the_evaluated_run_alone(
    app: AppTest, two_runs: tuple[Path, Path]
) -> None:
    app.session_state[evaluate_view.COMPARE_PICKER] = evaluate_view.NO_COMPARISON

    _open(app, "Weight drift")

    assert_no_exception(app)
    caption = next(c for c in texts(app, "caption") if c.startswith("One HTML file"))
    assert f"for {FINE_TUNE_RUN} that opens offline" in caption
    assert any(b.key == f"{evaluate_view.REPORT}_prepare" for b in app.button)
