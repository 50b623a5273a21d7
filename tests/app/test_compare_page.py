"""The Compare page, run through the whole app by AppTest, over run folders written by hand.

Nothing trains: runs are folders written as a worker would leave them, and the ladder's
runs go into the fake queue (`tests/app/conftest.py`), which starts no worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.analysis_support import store_analysis
from tests.app.run_support import FakeRunner, fabricate_run, texts, write_metrics
from tests.app.run_support import epoch_line as line
from tests.app.wizard_support import assert_no_exception, offline_app
from tl_core.analysis.background import result_path
from tl_core.analysis.ladder import list_ladders
from tl_core.analysis.report import report_args
from tl_core.fsutil import FolderLock
from tl_core.jobs.queue import list_jobs
from tl_core.jobs.runs import RunFiles, read_json, run_path, write_json_atomic
from tl_core.jobs.scheduler import Scheduler
from ui import compare_view, report_view, state

PAGE = "pages/compare.py"
OLD_RUN = "20261120-090000-aaaaaa"
MID_RUN = "20261121-090000-bbbbbb"
NEW_RUN = "20261123-131500-cccccc"
#: Config fields of a run that fine-tunes the top 2 blocks of an ImageNet backbone.
PRETRAINED = {"weights": "imagenet", "freeze": "fine-tune", "unfreeze_last": 2}

# Every test here gets the fake queue (`tests/app/conftest.py`), used or not.
pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def navigation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AppTest runs ``app.py`` on every run (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)


def _open(app: AppTest, run_id: str | None = None) -> AppTest:
    if run_id is not None:
        app.query_params["run"] = run_id
    app.switch_page(PAGE)
    return app.run()


def _traces(app: AppTest, key: str) -> list[dict[str, Any]]:
    """The traces of the plotly chart with the widget key `key`."""
    (chart,) = [chart for chart in app.get("plotly_chart") if chart.proto.id.endswith(f"-{key}")]
    return json.loads(chart.proto.spec)["data"]


def _button(app: AppTest, key: str) -> Any:
    (button,) = [button for button in app.button if button.key == key]
    return button


def test_without_runs_the_page_points_to_the_train_page(app: AppTest) -> None:
    _open(app)

    assert_no_exception(app)
    assert texts(app, "info") == [
        "No runs yet: train one on the Train page, then compare it with the next."
    ]
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Train"]


def test_with_one_run_the_page_says_why_and_offers_the_ladder(app: AppTest) -> None:
    fabricate_run(NEW_RUN, state="completed", val_accuracies=(0.5,), config=PRETRAINED)

    _open(app)

    assert_no_exception(app)
    assert texts(app, "info")[0].startswith("Comparing needs two runs, and there is one so far.")
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Train"]
    assert not any(widget.key == compare_view.RUN_SELECT for widget in app.multiselect)
    assert _button(app, compare_view.QUEUE_LADDER).label == "Queue 5 runs"


def test_two_runs_side_by_side_curves_differing_settings_and_results(app: AppTest) -> None:
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5, 0.8), total_epochs=2)
    fabricate_run(NEW_RUN, state="stopped", val_accuracies=(0.6, 0.9, 0.7), config=PRETRAINED)
    write_json_atomic(run_path(NEW_RUN) / "eval.json", {"accuracy": 0.75})

    _open(app)

    assert_no_exception(app)
    new, old = "#2 mobilenet_v2 · fine-tune top 2", "#1 mobilenet_v2 · feature extraction"
    assert app.multiselect(key=compare_view.RUN_SELECT).value == [NEW_RUN, OLD_RUN]
    curves = _traces(app, "compare_curves")
    assert [trace["name"] for trace in curves] == [new, new, old, old]
    assert [trace["y"] for trace in curves[::2]] == [[0.6, 0.9, 0.7], [0.5, 0.8]]
    assert [trace["xaxis"] for trace in curves[:2]] == ["x", "x2"]
    assert curves[0]["line"]["color"] != curves[2]["line"]["color"]
    diff, results = (frame.value for frame in app.dataframe)
    assert list(diff.columns) == [new, old]
    assert diff.to_dict("index") == {
        "weights": {new: "imagenet", old: "none"},
        "freeze": {new: "fine-tune", old: "feature-extraction"},
        "epochs": {new: "10", old: "2"},
    }
    assert results[new].to_dict() == {
        "Best val. accuracy": "90.0%",
        "Best epoch": "2",
        "Final val. accuracy": "70.0%",
        "Final val. loss": "0.433",
        "Epochs": "3/10",
        "Median s / epoch": "3.0 s",
        "Trainable params": "—",
        "State": "stopped",
        "Evaluation accuracy": "75.0%",
    }
    assert results[old]["Evaluation accuracy"] == "—"


def test_training_curves_can_be_added_and_runs_chosen(app: AppTest) -> None:
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5,), created=1_000.0)
    fabricate_run(MID_RUN, state="completed", val_accuracies=(0.6,), created=2_000.0)
    fabricate_run(NEW_RUN, state="running", val_accuracies=(0.7,), created=3_000.0)
    # A running run has a live worker: it holds the run's writer lock.
    with FolderLock(run_path(NEW_RUN)):
        app.session_state[state.DATASET_ID] = "0123456789ab"
        _open(app)
        assert app.multiselect(key=compare_view.RUN_SELECT).value == [MID_RUN, OLD_RUN]

        app.toggle(key=compare_view.SHOW_TRAINING).set_value(True).run()
        app.multiselect(key=compare_view.RUN_SELECT).select(NEW_RUN).run()

        assert_no_exception(app)
        curves = _traces(app, "compare_curves")
        assert len(curves) == 12, "validation and training, accuracy and loss, for 3 runs"
        assert [trace["line"].get("dash") for trace in curves[:4]] == [None, None, "dash", "dash"]

        app.multiselect(key=compare_view.RUN_SELECT).unselect(MID_RUN).unselect(OLD_RUN).run()

        assert "Choose at least two runs to compare." in texts(app, "info")


def test_the_ladder_queues_one_run_per_depth_and_plots_them_as_they_finish(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5,))
    fabricate_run(NEW_RUN, state="completed", val_accuracies=(0.7,), config=PRETRAINED)
    _open(app, NEW_RUN)
    assert app.selectbox(key=compare_view.LADDER_BASE).value == NEW_RUN, "the session's run"
    assert app.multiselect(key=compare_view.LADDER_DEPTHS).value == [0, 1, 2, 4, 19]

    app.multiselect(key=compare_view.LADDER_DEPTHS).set_value([4, 0, 2]).run()
    _button(app, compare_view.QUEUE_LADDER).click().run()

    assert_no_exception(app)
    assert texts(app, "success")[0].startswith("Ladder queued.")
    (ladder,) = list_ladders()
    assert (ladder.depths, ladder.base_run_id) == ((0, 2, 4), NEW_RUN)
    jobs = list_jobs()
    assert [job.run_id for job in jobs] == list(ladder.run_ids)
    configs = [read_json(RunFiles(run_path(job.run_id)).config)["config"] for job in jobs]
    assert [(c["freeze"], c["unfreeze_last"]) for c in configs] == [
        ("fine-tune", 0),
        ("fine-tune", 2),
        ("fine-tune", 4),
    ]
    assert _traces(app, f"ladder_figure_{ladder.ladder_id}")[2]["x"] == [0, 2, 4]

    first = ladder.run_ids[0]
    scheduler.tick()
    write_metrics(first, [line(1, 0.6), line(2, 0.8)])
    runner.end(first, "completed", epoch=2)
    scheduler.tick()
    app.run()

    accuracy, seconds, pending = _traces(app, f"ladder_figure_{ladder.ladder_id}")
    assert (accuracy["x"], accuracy["y"]) == ([0], [0.8])
    assert (seconds["x"], seconds["y"]) == ([0], [3.0])
    assert pending["x"] == [2, 4]
    assert app.get("progress")[0].proto.text == "1 of 3 runs finished"

    _button(app, f"{compare_view.LADDER_COMPARE}_{ladder.ladder_id}").click().run()

    assert_no_exception(app)
    assert app.multiselect(key=compare_view.RUN_SELECT).value == list(ladder.run_ids)


def test_a_ladder_from_scratch_comes_with_a_caveat_and_can_still_be_queued(
    app: AppTest,
) -> None:
    fabricate_run(NEW_RUN, state="completed", val_accuracies=(0.5,))

    _open(app)

    assert_no_exception(app)
    assert any("random weights" in text for text in texts(app, "info"))
    assert not texts(app, "warning")
    assert not _button(app, compare_view.QUEUE_LADDER).disabled


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The background analyses the page starts: recorded, never run (their markers stay,
    so the page waits for them as for a process still starting)."""
    started: list[list[str]] = []
    monkeypatch.setattr(
        "tl_core.analysis.background.spawn_tracked",
        lambda argv, **_: started.append(list(argv)),
    )
    return started


def _finish_report(run_ids: list[str], html: bytes) -> None:
    """Write the report file and its result, as the ``report`` process would."""
    out = report_view.report_file(run_ids)
    args = report_args(run_ids, out)
    out.write_bytes(html)
    store_analysis(run_path(run_ids[0]), args, {"run_ids": run_ids, "report": str(out)})
    result_path(run_path(run_ids[0]), args).with_suffix(".pid").unlink()


def test_two_chosen_runs_can_be_presented_as_slides(app: AppTest) -> None:
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5, 0.8))
    fabricate_run(NEW_RUN, state="completed", val_accuracies=(0.6, 0.9), config=PRETRAINED)

    _open(app)

    assert_no_exception(app)
    (present,) = app.get("link_button")
    assert present.proto.label == "Present"
    assert present.proto.url == f"?present=1&runs={OLD_RUN},{NEW_RUN}", "the oldest first"


def test_prepare_report_writes_it_in_the_background_then_offers_the_download(
    app: AppTest, spawned: list[list[str]]
) -> None:
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5, 0.8))
    fabricate_run(NEW_RUN, state="completed", val_accuracies=(0.6, 0.9), config=PRETRAINED)
    _open(app)
    assert not app.get("download_button")

    _button(app, f"{compare_view.REPORT}_prepare").click().run()

    assert_no_exception(app)
    ((*_, command, first, second, flag, out),) = spawned
    assert (command, first, second, flag) == ("report", OLD_RUN, NEW_RUN, "--out")
    assert out == str(report_view.report_file([OLD_RUN, NEW_RUN]))
    assert any(text.startswith("Writing the report") for text in texts(app, "info"))

    _finish_report([OLD_RUN, NEW_RUN], b"<!DOCTYPE html><title>report</title>")
    app.run()

    assert_no_exception(app)
    (download,) = app.get("download_button")
    assert download.proto.label == "Download report"
    assert not any(b.key == f"{compare_view.REPORT}_prepare" for b in app.button)
    assert len(spawned) == 1
