"""The Runs page, run through the whole app by AppTest, over run folders written by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.run_support import (
    FakeRunner,
    chart_traces,
    fabricate_run,
    texts,
)
from tests.app.wizard_support import assert_no_exception, offline_app
from tl_core.analysis.background import result_path
from tl_core.analysis.demo_job import DEMO_ARGS, demo_folder, request_demo
from tl_core.classroom.identity import Identity
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied
from tl_core.fsutil import FolderLock
from tl_core.jobs.queue import get, submit
from tl_core.jobs.runs import RunStatus, run_path, write_json_atomic, write_status
from tl_core.jobs.scheduler import Scheduler
from ui import demo_view, identity, runs_view, state

PAGE = "pages/runs.py"
OLD_RUN = "20261120-090000-aaaaaa"
NEW_RUN = "20261123-131500-bbbbbb"
ADA = Identity.student("Ada")


# Every test here gets the fake queue (`tests/app/conftest.py`), used or not.
pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def navigation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AppTest runs ``app.py`` on every run (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)


@pytest.fixture
def two_runs() -> None:
    """A completed run from three days ago and a stopped one from today, on disk only."""
    fabricate_run(
        OLD_RUN,
        state="completed",
        val_accuracies=(0.5, 0.8125),
        total_epochs=2,
        trainable_blocks=19,
        created=1_795_165_200.0,
    )
    fabricate_run(NEW_RUN, state="stopped", val_accuracies=(0.25, 0.5, 0.625))


def _open(app: AppTest, run_id: str | None = None) -> AppTest:
    if run_id is not None:
        app.query_params["run"] = run_id
    app.switch_page(PAGE)
    return app.run()


def test_every_run_on_disk_is_listed_newest_first(app: AppTest, two_runs: None) -> None:
    _open(app)

    assert_no_exception(app)
    table = app.dataframe[0].value
    assert table["Run"].tolist() == [NEW_RUN, OLD_RUN]
    assert table["Best val. accuracy"].tolist() == [0.625, 0.8125]
    assert table["Layers"].tolist() == ["3/19 blocks trainable", "19/19 blocks trainable"]
    assert table["Backbone"].tolist() == ["mobilenet_v2", "mobilenet_v2"]
    assert table["Epochs"].tolist() == ["3/10", "2/2"]
    assert table["Duration"].tolist() == ["1 min", "1 min"]
    assert [value.split()[-1] for value in table["State"]] == ["stopped", "completed"]
    assert app.selectbox(key=runs_view.RUN_PICKER).value is None
    assert not app.get("plotly_chart")


def test_opening_a_run_shows_its_curves_and_makes_it_the_sessions_run(
    app: AppTest, two_runs: None
) -> None:
    _open(app)

    app.selectbox(key=runs_view.RUN_PICKER).select(OLD_RUN).run()

    assert_no_exception(app)
    accuracy = chart_traces(app)[1]
    assert accuracy["y"] == [0.5, 0.8125]
    assert app.query_params["run"] == OLD_RUN
    assert app.session_state[state.RUN_ID] == OLD_RUN
    assert texts(app, "success")[0].startswith("Finished: best validation accuracy **81.2%**")


def test_a_run_in_the_url_is_opened(app: AppTest, two_runs: None) -> None:
    _open(app, NEW_RUN)

    assert_no_exception(app)
    assert app.selectbox(key=runs_view.RUN_PICKER).value == NEW_RUN
    assert len(chart_traces(app)[0]["x"]) == 3
    assert "Resume" in [button.label for button in app.button]


def _interrupted_run(scheduler: Scheduler, runner: FakeRunner) -> str:
    """Queue a run, start it and let its worker die without a word; return its id."""
    run_id = submit(RunConfig(dataset_id="0123456789ab", weights="none"))
    scheduler.tick()
    runner.end(run_id)
    scheduler.tick()
    return run_id


def test_resume_requeues_an_interrupted_run(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _interrupted_run(*queue)
    _open(app, run_id)
    assert [value.split()[-1] for value in app.dataframe[0].value["State"]] == ["interrupted"]

    next(button for button in app.button if button.label == "Resume").click().run()

    assert_no_exception(app)
    assert get(run_id).state == "queued"
    assert [value.split()[-1] for value in app.dataframe[0].value["State"]] == ["queued"]
    assert any("Starting in a moment" in info for info in texts(app, "info"))


def test_without_runs_the_page_points_to_the_train_page(app: AppTest) -> None:
    _open(app)

    assert_no_exception(app)
    assert texts(app, "info") == ["No runs yet: start one on the Train page."]
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Train"]


def test_the_queue_state_shows_until_the_worker_writes_its_final_one(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    started = submit(RunConfig(dataset_id="0123456789ab", weights="none"))
    waiting = submit(RunConfig(dataset_id="0123456789ab", weights="none"))
    scheduler.tick()
    runner.end(started, "stopped")  # its worker wrote "stopped"; the queue is not told yet
    _open(app)

    table = app.dataframe[0].value
    states = dict(zip(table["Run"], table["State"], strict=True))

    assert get(started).state == "running"
    assert states[started].endswith("stopped")
    assert states[waiting].endswith("queued")


def test_a_run_a_worker_still_writes_offers_stop_not_resume_and_says_why(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _interrupted_run(*queue)
    assert get(run_id).state == "interrupted"

    root = run_path(run_id)
    with FolderLock(root):  # its worker was alive after all (a lost worker), and writes
        write_status(root, RunStatus(state="running", pid=4242, epoch=1, total_epochs=10))
        _open(app, run_id)

        assert_no_exception(app)
        labels = [button.label for button in app.button]
        assert "Resume" not in labels and "Stop" in labels
        (info,) = [text for text in texts(app, "info") if "still training this run" in text]
        assert "Wait for it or stop it" in info
        assert "/" not in info.replace("Wait for it or stop it", "")
        assert [value.split()[-1] for value in app.dataframe[0].value["State"]] == ["running"]


def test_a_resume_clicked_after_a_worker_took_the_run_starts_nothing_and_says_why(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _interrupted_run(*queue)
    _open(app, run_id)
    resume_button = next(button for button in app.button if button.label == "Resume")

    with FolderLock(run_path(run_id)):  # a worker took the run between drawing and the click
        resume_button.click().run()

    assert_no_exception(app)
    assert any("Wait for it or stop it" in info for info in texts(app, "info"))
    assert get(run_id).state == "interrupted"


def test_a_run_re_attached_after_a_restart_says_so(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, _ = queue
    run_id = submit(RunConfig(dataset_id="0123456789ab", weights="none"))
    scheduler.tick()
    scheduler.stop()  # the server restarts; the worker lives on
    restarted = Scheduler(scheduler.home, runner=scheduler.runner, slots=1)
    restarted.tick()
    restarted.stop()

    _open(app, run_id)

    assert_no_exception(app)
    assert any("Re-attached after a server restart" in text for text in texts(app, "caption"))


def test_delete_removes_an_ended_run_after_a_confirmation(app: AppTest, two_runs: None) -> None:
    _open(app, OLD_RUN)

    next(button for button in app.button if button.label == "Delete run").click().run()
    assert run_path(OLD_RUN).is_dir(), "nothing is deleted before the confirmation"
    next(button for button in app.button if button.label == "Delete for good").click().run()

    assert_no_exception(app)
    assert not run_path(OLD_RUN).exists()
    assert texts(app, "success") == [
        f"Run {OLD_RUN} was deleted with its checkpoints, metrics and model."
    ]
    assert app.dataframe[0].value["Run"].tolist() == [NEW_RUN]
    assert "Owner" not in app.dataframe[0].value.columns
    assert app.selectbox(key=runs_view.RUN_PICKER).value is None


def test_a_running_run_offers_no_delete(app: AppTest, queue: tuple[Scheduler, FakeRunner]) -> None:
    scheduler, _ = queue
    run_id = submit(RunConfig(dataset_id="0123456789ab", weights="none"))
    scheduler.tick()

    _open(app, run_id)

    assert_no_exception(app)
    labels = [button.label for button in app.button]
    assert "Stop" in labels and "Delete run" not in labels


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The background processes the page starts: recorded, never run (their markers
    stay, so the page waits for them as for a process still starting)."""
    started: list[list[str]] = []
    monkeypatch.setattr(
        "tl_core.analysis.background.spawn_tracked",
        lambda argv, **_: started.append(list(argv)),
    )
    return started


def _finish_demo(run_ids: list[str]) -> None:
    """Leave what ``python -m tl_core demo`` leaves: its runs, its report, its result."""
    for run_id in run_ids:
        fabricate_run(run_id, state="completed", val_accuracies=(0.5, 0.75))
    report = demo_folder() / "report.html"
    report.write_bytes(b"<!DOCTYPE html><title>demo</title>")
    kept = result_path(demo_folder(), DEMO_ARGS)
    write_json_atomic(kept, {"run_ids": run_ids, "report": str(report)})
    kept.with_suffix(".pid").unlink()


def _demo_buttons(app: AppTest) -> list[str]:
    return [button.label for button in app.button if button.key.startswith(demo_view.DEMO)]


def test_prepare_a_demo_trains_in_the_background_then_opens_its_runs(
    app: AppTest, spawned: list[list[str]]
) -> None:
    _open(app)
    assert _demo_buttons(app) == ["Prepare a demo"]

    app.button(key=f"{demo_view.DEMO}_prepare").click().run()

    assert_no_exception(app)
    ((*_, command),) = spawned
    assert command == "demo"
    assert any(text.startswith("Preparing the demo") for text in texts(app, "info"))

    _finish_demo([OLD_RUN, NEW_RUN])
    app.run()

    assert_no_exception(app)
    assert "The demo is ready." in texts(app, "success")
    assert _demo_buttons(app) == [f"Open {OLD_RUN}", f"Open {NEW_RUN}", "Open Compare"]
    (present,) = app.get("link_button")
    assert present.proto.url == f"?present=1&runs={OLD_RUN},{NEW_RUN}"
    assert [b.proto.label for b in app.get("download_button")] == ["Download report"]

    app.button(key=f"{demo_view.DEMO}_open_{NEW_RUN}").click().run()

    assert app.session_state[state.RUN_ID] == NEW_RUN
    assert app.query_params["run"] == NEW_RUN
    assert len(spawned) == 1


def test_a_demo_whose_runs_were_deleted_offers_to_prepare_it_again(
    app: AppTest, spawned: list[list[str]]
) -> None:
    _open(app)
    app.button(key=f"{demo_view.DEMO}_prepare").click().run()
    _finish_demo([OLD_RUN, NEW_RUN])
    shutil.rmtree(run_path(NEW_RUN))

    app.run()

    assert_no_exception(app)
    assert texts(app, "warning") == [
        "The prepared demo's runs or report were deleted since. Prepare it again."
    ]
    app.button(key=f"{demo_view.DEMO}_again").click().run()
    assert len(spawned) == 2


@pytest.mark.parametrize(("person", "offered"), [(Identity.teacher(), True), (ADA, False)])
def test_in_class_mode_only_the_teacher_is_offered_the_demo(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, person: Identity, offered: bool
) -> None:
    monkeypatch.setenv("TL_CLASS_CODE", "MAPLE-7")
    monkeypatch.setenv("TL_TEACHER_PASSWORD", "correct horse")
    app.session_state[identity.IDENTITY] = person

    _open(app)

    assert_no_exception(app)
    assert (_demo_buttons(app) == ["Prepare a demo"]) is offered
    if not offered:
        with pytest.raises(AccessDenied, match="Only the teacher can prepare a demo"):
            request_demo(actor=person)
