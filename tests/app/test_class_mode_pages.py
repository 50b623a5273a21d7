"""The pages in class mode: each acts as the signed-in person and lists what they may see.

Class mode is on (a class code and a teacher password in the environment); each test puts
who is signed in into the session before the first run, as the sign-in would. Runs are
folders written by hand or jobs of a fake queue (`tests/app/run_support.py`): nothing trains.
"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

from tests.app.class_support import sign_in
from tests.app.run_support import (
    FakeRunner,
    chart_traces,
    epoch_line,
    fabricate_run,
    texts,
    write_metrics,
)
from tests.app.wizard_support import assert_no_exception, store_sample
from tl_core import DatasetReport
from tl_core.classroom import Identity, share_run
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied
from tl_core.jobs.queue import get, list_jobs, request_stop, submit
from tl_core.jobs.runs import RunFiles, read_json, run_path, write_json_atomic
from tl_core.jobs.scheduler import Scheduler
from ui import compare_view, runs_view
from ui import predict_export_view as predict_view

RUNS_PAGE = "pages/runs.py"
TRAIN_PAGE = "pages/train.py"
PREDICT_PAGE = "pages/predict_export.py"
COMPARE_PAGE = "pages/compare.py"
ADA = Identity.student("Ada")
GRACE = Identity.student("Grace")
TEACHER = Identity.teacher()
ADA_RUN = "20261121-090000-aaaaaa"
GRACE_RUN = "20261122-090000-bbbbbb"
SHARED_RUN = "20261123-090000-cccccc"
OLD_RUN = "20261120-090000-dddddd"

pytestmark = pytest.mark.usefixtures("class_mode", "queue")


@pytest.fixture
def finished_runs() -> None:
    """Ended runs: Ada's, Grace's, one of Grace's that the teacher shares, and one from
    before class mode (no owner); created in that order, a day apart."""
    fabricate_run(OLD_RUN, state="completed", val_accuracies=(0.5,), created=1_795_165_200.0)
    fabricate_run(
        ADA_RUN, state="completed", val_accuracies=(0.6,), created=1_795_251_600.0, owner="Ada"
    )
    fabricate_run(
        GRACE_RUN, state="stopped", val_accuracies=(0.7,), created=1_795_338_000.0, owner="Grace"
    )
    fabricate_run(
        SHARED_RUN,
        state="completed",
        val_accuracies=(0.8,),
        created=1_795_424_400.0,
        owner="Grace",
    )
    share_run(TEACHER, SHARED_RUN)


def _open(app: AppTest, person: Identity, page: str, **params: str) -> AppTest:
    """Open `page` as `person`, signed in, with `params` in the URL."""
    sign_in(app, person)
    for name, value in params.items():
        app.query_params[name] = value
    app.switch_page(page)
    return app.run()


def _submit(person: Identity, dataset_id: str = "0123456789ab") -> str:
    return submit(RunConfig(dataset_id=dataset_id, weights="none"), actor=person)


def _running(person: Identity, scheduler: Scheduler) -> str:
    """A run of `person` that the fake scheduler has started."""
    run_id = _submit(person)
    scheduler.tick()
    assert get(run_id).state == "running"
    return run_id


def _labels(app: AppTest) -> list[str]:
    return [button.label for button in app.button]


def _button(app: AppTest, label: str) -> Button:
    (button,) = [button for button in app.button if button.label == label]
    return button


# --- watching and stopping -------------------------------------------------------------------


def test_a_student_watches_someone_elses_run_opened_by_its_link_without_its_buttons(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    grace_run = _running(GRACE, queue[0])

    _open(app, ADA, RUNS_PAGE, run=grace_run)

    assert_no_exception(app)
    assert app.selectbox(key=runs_view.RUN_PICKER).value == grace_run
    assert app.get("plotly_chart"), "the live curves show"
    assert "Grace's run — you can watch it; only Grace or the teacher can stop or export it." in (
        texts(app, "caption")
    )
    assert "Stop" not in _labels(app)
    # The core refuses the stop that the page does not offer, and nothing changes.
    with pytest.raises(AccessDenied, match="belongs to Grace"):
        request_stop(grace_run, actor=ADA)
    assert not RunFiles(run_path(grace_run)).stop_flag.exists()


def test_a_student_stops_their_own_running_run(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    ada_run = _running(ADA, queue[0])
    _open(app, ADA, RUNS_PAGE, run=ada_run)
    assert not any("you can watch it" in caption for caption in texts(app, "caption"))

    _button(app, "Stop").click().run()

    assert_no_exception(app)
    assert get(ada_run).stop_requested
    assert RunFiles(run_path(ada_run)).stop_flag.exists()


def test_the_teacher_sees_every_run_with_its_owner_and_stops_a_students_run(
    app: AppTest, queue: tuple[Scheduler, FakeRunner], finished_runs: None
) -> None:
    grace_run = _running(GRACE, queue[0])
    _open(app, TEACHER, RUNS_PAGE)

    table = app.dataframe[0].value
    owners = dict(zip(table["Run"], table["Owner"], strict=True))
    assert owners == {
        grace_run: "Grace",
        SHARED_RUN: "Grace",
        GRACE_RUN: "Grace",
        ADA_RUN: "Ada",
        OLD_RUN: "you",
    }

    app.selectbox(key=runs_view.RUN_PICKER).select(grace_run).run()
    _button(app, "Stop").click().run()

    assert_no_exception(app)
    assert get(grace_run).stop_requested


def test_a_queued_run_says_its_place_and_its_wait(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    _running(GRACE, queue[0])
    _submit(GRACE)
    ada_run = _submit(ADA)

    _open(app, ADA, RUNS_PAGE, run=ada_run)

    assert_no_exception(app)
    # Grace has a run training, so Ada's turn comes before Grace's second run, as soon as
    # Grace's first ends (a run is assumed to take a minute before any has completed).
    assert any("1st in the queue · less than a minute to wait" in i for i in texts(app, "info"))


# --- lists -----------------------------------------------------------------------------------


def test_a_students_runs_page_lists_their_own_and_the_shared_runs(
    app: AppTest, finished_runs: None
) -> None:
    _open(app, ADA, RUNS_PAGE)

    assert_no_exception(app)
    table = app.dataframe[0].value
    assert table["Run"].tolist() == [SHARED_RUN, ADA_RUN]
    assert table["Owner"].tolist() == ["Grace", "you"]
    assert app.selectbox(key=runs_view.RUN_PICKER).options == [
        f"{SHARED_RUN} · Grace · mobilenet_v2 · completed · best 80.0%",
        f"{ADA_RUN} · mobilenet_v2 · completed · best 60.0%",
    ]


def _trained(run_id: str, owner: str | None) -> None:
    """A completed run with four classes and a (placeholder) trained model."""
    root = fabricate_run(run_id, state="completed", val_accuracies=(0.75,), owner=owner)
    doc = read_json(RunFiles(root).config)
    classes = ["circle", "square", "star", "triangle"]
    write_json_atomic(RunFiles(root).config, doc | {"class_names": classes, "preprocess": "tf"})
    RunFiles(root).model.touch()


def test_predict_offers_a_student_their_own_and_shared_models_and_exports_only_their_own(
    app: AppTest,
) -> None:
    _trained(ADA_RUN, "Ada")
    _trained(GRACE_RUN, "Grace")
    _trained(SHARED_RUN, "Grace")
    share_run(TEACHER, SHARED_RUN)

    _open(app, ADA, PREDICT_PAGE, run=ADA_RUN)

    assert_no_exception(app)
    picker = app.selectbox(key=predict_view.RUN_PICKER)
    assert [option.split(" · ")[0] for option in picker.options] == [SHARED_RUN, ADA_RUN]
    assert "Export Keras model" in " ".join(_labels(app))

    picker.select(SHARED_RUN).run()

    assert_no_exception(app)
    assert not any(label.startswith("Export") for label in _labels(app))
    assert any("only Grace or the teacher can export it" in info for info in texts(app, "info"))


# --- deleting --------------------------------------------------------------------------------


def test_a_student_deletes_their_own_ended_run_after_confirming(
    app: AppTest, finished_runs: None
) -> None:
    _open(app, ADA, RUNS_PAGE, run=ADA_RUN)

    _button(app, "Delete run").click().run()
    assert any("Delete run " + ADA_RUN in warning for warning in texts(app, "warning"))
    assert run_path(ADA_RUN).is_dir(), "nothing is deleted before the confirmation"
    _button(app, "Delete for good").click().run()

    assert_no_exception(app)
    assert not run_path(ADA_RUN).exists()
    assert any("was deleted" in message for message in texts(app, "success"))
    assert app.dataframe[0].value["Run"].tolist() == [SHARED_RUN]
    assert "run" not in app.query_params


def test_keep_it_cancels_the_deletion(app: AppTest, finished_runs: None) -> None:
    _open(app, ADA, RUNS_PAGE, run=ADA_RUN)

    _button(app, "Delete run").click().run()
    _button(app, "Keep it").click().run()

    assert_no_exception(app)
    assert run_path(ADA_RUN).is_dir()
    assert "Delete run" in _labels(app)


def test_a_shared_run_of_someone_else_offers_no_delete(app: AppTest, finished_runs: None) -> None:
    _open(app, ADA, RUNS_PAGE, run=SHARED_RUN)

    assert_no_exception(app)
    assert "Delete run" not in _labels(app)
    assert "Resume" not in _labels(app)


# --- the class's limit -----------------------------------------------------------------------


@pytest.fixture
def sample() -> DatasetReport:
    """The sample dataset, stored in this test's workspace (open to the whole class)."""
    return store_sample()


def _open_train(app: AppTest, person: Identity, sample: DatasetReport) -> AppTest:
    return _open(app, person, TRAIN_PAGE, dataset=sample.dataset_id, backbone="mobilenet_v2")


def test_a_student_below_the_limit_starts_a_run_of_their_own(
    app: AppTest, sample: DatasetReport
) -> None:
    _submit(ADA, sample.dataset_id)
    _open_train(app, ADA, sample)
    assert not any("the class limit" in info for info in texts(app, "info"))

    _button(app, "Start training").click().run()

    assert_no_exception(app)
    mine = [job for job in list_jobs() if job.owner == "Ada"]
    assert len(mine) == 2


def test_a_student_at_the_limit_is_told_before_start_and_queues_nothing(
    app: AppTest, sample: DatasetReport
) -> None:
    _submit(ADA, sample.dataset_id)
    _submit(ADA, sample.dataset_id)

    _open_train(app, ADA, sample)

    assert_no_exception(app)
    assert any(
        "You have 2 runs waiting or training, the class limit" in info
        for info in texts(app, "info")
    )
    assert _button(app, "Start training").disabled, "a browser cannot click it"
    assert len(list_jobs()) == 2


def test_the_teacher_has_no_limit(app: AppTest, sample: DatasetReport) -> None:
    _submit(TEACHER, sample.dataset_id)
    _submit(TEACHER, sample.dataset_id)

    _open_train(app, TEACHER, sample)

    assert_no_exception(app)
    assert not _button(app, "Start training").disabled


def test_compare_offers_a_student_their_own_and_the_shared_runs(
    app: AppTest, finished_runs: None
) -> None:
    _open(app, ADA, COMPARE_PAGE)

    assert_no_exception(app)
    options = app.multiselect(key=compare_view.RUN_SELECT).options
    assert sorted(option.split()[0] for option in options) == ["#2", "#4"]


def test_a_students_live_curves_draw_only_their_own_earlier_runs_behind_them(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    earlier = time.time() - 600
    on_sample = {"created": earlier, "config": {"dataset_id": sample.dataset_id}}
    fabricate_run(ADA_RUN, state="completed", val_accuracies=(0.4, 0.6), **on_sample, owner="Ada")
    fabricate_run(GRACE_RUN, state="completed", val_accuracies=(0.9,), **on_sample, owner="Grace")
    ada_run = _submit(ADA, sample.dataset_id)
    queue[0].tick()
    write_metrics(ada_run, [epoch_line(1, 0.5)])

    _open(app, ADA, TRAIN_PAGE, dataset=sample.dataset_id, run=ada_run)

    assert_no_exception(app)
    ghosts = [trace for trace in chart_traces(app) if trace["name"] == "earlier runs"]
    assert ghosts[0]["y"] == [0.4, 0.6]
    assert len(ghosts) == 2, "Ada's run's accuracy and loss; Grace's run is no ghost"
