"""The Train page in a lesson, run through the whole app by AppTest, over a fake queue.

Class mode is on; the teacher's lesson is made with the core (the Class page's tests make
it by clicking), and each test signs a student or the teacher in through the session.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

from tests.app.class_support import join, sign_in
from tests.app.run_support import texts
from tests.app.wizard_support import assert_no_exception, seed_blocks, store_sample
from tl_core import DatasetReport
from tl_core.classroom import (
    Identity,
    lesson_from_builtin,
    open_lesson,
    prediction_for,
    record_prediction,
)
from tl_core.classroom.lessons import Lesson, lesson_of_run
from tl_core.jobs.queue import list_jobs
from tl_core.jobs.runs import summarize_run
from ui import state, training

PAGE = "pages/train.py"
TEACHER = Identity.teacher()

pytestmark = pytest.mark.usefixtures("class_mode", "queue")


@pytest.fixture
def sample() -> DatasetReport:
    return store_sample()


@pytest.fixture
def lesson(sample: DatasetReport) -> Lesson:
    """The feature extraction vs fine-tuning lesson on the sample, open to the class."""
    made = lesson_from_builtin(TEACHER, "fe-vs-ft", dataset_id=sample.dataset_id)
    return open_lesson(TEACHER, made.lesson_id)


def _open(app: AppTest, person: Identity, lesson_id: str | None = None) -> AppTest:
    """Open the Train page as `person`, with no dataset or backbone chosen before."""
    sign_in(app, person)
    if lesson_id is not None:
        app.query_params["lesson"] = lesson_id
    app.switch_page(PAGE)
    app.run()
    assert_no_exception(app)
    return app


def _start(app: AppTest) -> Button:
    return app.button(key=training.LESSON_START)


def test_a_student_picks_the_open_lesson_and_it_needs_no_dataset_or_backbone_step(
    app: AppTest, lesson: Lesson
) -> None:
    _open(app, join("Ada"))
    assert app.selectbox(key=training.LESSON_PICKER).value == ""

    app.selectbox(key=training.LESSON_PICKER).set_value(lesson.lesson_id).run()

    assert_no_exception(app)
    assert app.query_params["lesson"] == lesson.lesson_id
    assert lesson.title in [h.value for h in app.subheader]
    assert not any("Choose a dataset first" in info for info in texts(app, "info"))
    assert any("Your arm: **Feature extraction**" in info for info in texts(app, "info"))


def test_a_locked_setting_is_greyed_with_the_teachers_value_and_its_reason(
    app: AppTest, lesson: Lesson, sample: DatasetReport
) -> None:
    _open(app, join("Ada"), lesson.lesson_id)

    dataset = app.text_input(key="lesson_dataset")
    assert dataset.disabled
    assert dataset.value == sample.source_name
    assert "same images" in dataset.help

    epochs = app.number_input(key=state.train_widget_key("epochs"))
    assert epochs.disabled
    assert epochs.value == 8
    assert "Fixed by the teacher" in epochs.help
    freeze = app.selectbox(key="lesson_freeze_input")
    assert freeze.disabled
    assert freeze.value == "feature-extraction"
    assert "arm of the lesson" in freeze.help
    assert any("arm of the lesson" in caption.value for caption in app.caption)
    # Augmentation is the lesson's one editable setting.
    assert not app.checkbox(key=f"{state.train_widget_key('augmentation')}_zoom").disabled


def test_start_stays_disabled_until_a_prediction_is_saved(app: AppTest, lesson: Lesson) -> None:
    ada = join("Ada")
    _open(app, ada, lesson.lesson_id)
    assert _start(app).disabled
    assert any("Save your prediction" in caption.value for caption in app.caption)

    key = f"lesson_prediction_{lesson.lesson_id}"
    app.selectbox(key=key).set_value(lesson.prediction_choices[1]).run()
    assert _start(app).disabled  # picked, not saved yet
    app.button(key=f"{key}_save").click().run()

    assert_no_exception(app)
    assert prediction_for(lesson.lesson_id, "Ada") == lesson.prediction_choices[1]
    assert not _start(app).disabled


def test_start_queues_a_run_in_the_students_arm_with_their_prediction(
    app: AppTest, lesson: Lesson
) -> None:
    join("Ada")
    grace = join("Grace")  # joined second: the fine-tuning arm
    record_prediction(grace, lesson.lesson_id, "About the same (within 1 point)")
    _open(app, grace, lesson.lesson_id)
    app.checkbox(key=f"{state.train_widget_key('augmentation')}_zoom").check().run()

    _start(app).click().run()

    assert_no_exception(app)
    (job,) = list_jobs()
    assert job.owner == "Grace"
    label = lesson_of_run(job.run_id)
    assert label == {
        "id": lesson.lesson_id,
        "variant": "Fine-tune top 4",
        "prediction": "About the same (within 1 point)",
    }
    config = summarize_run(job.run_id)
    assert config.owner == "Grace"
    # The run page shows the prediction beside the run.
    assert any("About the same" in info for info in texts(app, "info"))


def test_a_closed_lesson_is_not_offered_to_students_and_its_link_says_so(
    app: AppTest, lesson: Lesson
) -> None:
    open_lesson(TEACHER, lesson.lesson_id, False)

    _open(app, join("Ada"), lesson.lesson_id)

    assert any("not open any more" in warning for warning in texts(app, "warning"))
    assert "lesson" not in app.query_params
    assert not [box for box in app.selectbox if box.key == training.LESSON_PICKER]
    assert any("Choose a dataset first" in info for info in texts(app, "info"))


def test_the_teacher_picks_an_arm_and_runs_a_closed_lesson(app: AppTest, lesson: Lesson) -> None:
    open_lesson(TEACHER, lesson.lesson_id, False)
    record_prediction(TEACHER, lesson.lesson_id, "Feature extraction wins")
    _open(app, TEACHER, lesson.lesson_id)
    arm = app.selectbox(key=f"{training.LESSON_ARM_PICK}_{lesson.lesson_id}")
    arm.set_value("Fine-tune top 4").run()

    _start(app).click().run()

    assert_no_exception(app)
    (job,) = list_jobs()
    assert lesson_of_run(job.run_id)["variant"] == "Fine-tune top 4"


def test_a_self_learner_gets_every_lesson_and_runs_the_arm_they_pick(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, sample: DatasetReport
) -> None:
    monkeypatch.delenv("TL_CLASS_CODE")
    monkeypatch.delenv("TL_TEACHER_PASSWORD")
    seed_blocks("mobilenet_v2", 64)
    lesson = lesson_from_builtin(None, "unfreeze-depth", dataset_id=sample.dataset_id)
    app.switch_page(PAGE)
    app.run()
    app.selectbox(key=training.LESSON_PICKER).set_value(lesson.lesson_id).run()
    assert_no_exception(app)
    assert any("An estimate" in caption.value for caption in app.caption)

    app.selectbox(key=f"{training.LESSON_ARM_PICK}_{lesson.lesson_id}").set_value("depth 4").run()
    key = f"lesson_prediction_{lesson.lesson_id}"
    app.selectbox(key=key).set_value(lesson.prediction_choices[2]).run()
    app.button(key=f"{key}_save").click().run()
    _start(app).click().run()

    assert_no_exception(app)
    (job,) = list_jobs()
    assert job.owner is None
    assert lesson_of_run(job.run_id)["variant"] == "depth 4"
    assert summarize_run(job.run_id).backbone == "mobilenet_v2"
