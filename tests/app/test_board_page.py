"""The class board, run through the whole app by AppTest, over a fake queue.

Class mode is on; two students joined the built-in "Feature extraction vs fine-tuning"
lesson, predicted, and have finished runs in their arms (fabricated run folders whose
``run.json`` names the lesson, as `submit_lesson_run` writes it).
"""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app.class_support import join, sign_in
from tests.app.run_support import chart_traces, fabricate_run
from tests.app.wizard_support import assert_no_exception, plain, store_sample
from tl_core.classroom import Identity
from tl_core.classroom.lessons import (
    Lesson,
    lesson_from_builtin,
    load_lesson,
    open_lesson,
    record_prediction,
    variant_for,
)
from tl_core.fsutil import read_json
from tl_core.jobs.runs import RunFiles, run_path, write_json_atomic
from ui import board_view, wizard

pytestmark = pytest.mark.usefixtures("class_mode", "queue")


def _lesson_run(run_id: str, lesson: Lesson, who: Identity | None, accuracy: float) -> str:
    """A finished run of `who` in their arm of `lesson`; returns the arm's name."""
    name = who.name if who is not None else "You"
    arm = variant_for(lesson, name)
    assert arm is not None
    fabricate_run(run_id, state="completed", val_accuracies=(0.3, accuracy), total_epochs=2)
    path = RunFiles(run_path(run_id)).config
    label = {"lesson": {"id": lesson.lesson_id, "variant": arm.name}}
    write_json_atomic(path, read_json(path) | label | ({"owner": who.name} if who else {}))
    return arm.name


@pytest.fixture
def lesson() -> Lesson:
    """The built-in lesson, open, with Ada_Lovelace and Grace's predictions and results."""
    teacher = Identity.teacher()
    made = lesson_from_builtin(teacher, "fe-vs-ft", dataset_id=store_sample().dataset_id)
    open_lesson(teacher, made.lesson_id)
    made = load_lesson(made.lesson_id)
    ada, grace = join("Ada_Lovelace"), join("Grace")
    record_prediction(ada, made.lesson_id, made.prediction_choices[0])
    record_prediction(grace, made.lesson_id, "**Same** <b>either way</b>")
    _lesson_run("20261120-090000-aaaaaa", made, ada, 0.70)
    _lesson_run("20261120-090100-bbbbbb", made, grace, 0.82)
    return made


def _open(app: AppTest, person: Identity | None) -> AppTest:
    if person is not None:
        sign_in(app, person)
    app.run()
    app.switch_page(wizard.BOARD_PAGE)
    return app.run()


def _markdown(app: AppTest) -> list[str]:
    return [plain(element.value) for element in app.markdown]


def test_the_teacher_sees_the_question_every_student_and_their_predictions(
    app: AppTest, lesson: Lesson
) -> None:
    _open(app, Identity.teacher())

    assert_no_exception(app)
    assert lesson.question in _markdown(app)
    students = app.table[0].value
    assert [plain(name) for name in students["Student"]] == ["Ada_Lovelace", "Grace"]
    assert students["Arm"].tolist() == ["Feature extraction", "Fine-tune top 4"]
    assert students["State"].tolist() == ["completed", "completed"]
    assert students["Best val. accuracy"].tolist() == ["70.0%", "82.0%"]
    assert plain(students["Prediction"][0]) == lesson.prediction_choices[0]
    # A prediction's Markdown and HTML show as typed, escaped.
    assert students["Prediction"][1] == "\\*\\*Same\\*\\* \\<b\\>either way\\</b\\>"


def test_predictions_are_counted_beside_the_outcome_of_each_arm(
    app: AppTest, lesson: Lesson
) -> None:
    _open(app, Identity.teacher())

    predicted = app.table[1].value
    assert predicted["Students"].tolist()[0] == 1
    assert "other" in predicted["Prediction"].tolist()
    outcome = app.table[2].value
    assert outcome["Mean best accuracy"].tolist() == ["70.0%", "82.0%"]
    assert any(
        "Fine-tune top 4 leads with 82.0%" in text and "12.0 points ahead" in text
        for text in _markdown(app)
    )


def test_the_leaderboard_is_hidden_until_the_teacher_shows_it(app: AppTest, lesson: Lesson) -> None:
    _open(app, Identity.teacher())
    assert "**Leaderboard**" not in _markdown(app)
    assert len(app.table) == 3

    app.toggle(key=board_view.LEADERBOARD_TOGGLE).set_value(True).run()

    assert_no_exception(app)
    assert "**Leaderboard**" in _markdown(app)
    top = app.table[3].value
    assert [plain(name) for name in top["Student"]] == ["Grace", "Ada_Lovelace"]


def test_the_open_lesson_is_shown_first(app: AppTest, lesson: Lesson) -> None:
    lesson_from_builtin(Identity.teacher(), "batchnorm-pitfall", dataset_id="0123456789ab")
    _open(app, Identity.teacher())

    assert app.selectbox(key=board_view.LESSON_PICKER).value == lesson.lesson_id


def test_the_depth_lesson_draws_accuracy_against_depth_live(app: AppTest) -> None:
    teacher = Identity.teacher()
    made = lesson_from_builtin(teacher, "unfreeze-depth", dataset_id=store_sample().dataset_id)
    open_lesson(teacher, made.lesson_id)
    made = load_lesson(made.lesson_id)
    ada, ben = join("Ada"), join("Ben")
    _lesson_run("20261120-090000-aaaaaa", made, ada, 0.70)
    _lesson_run("20261120-090100-bbbbbb", made, ben, 0.80)

    _open(app, teacher)

    assert_no_exception(app)
    traces = {trace["name"]: trace for trace in chart_traces(app)}
    assert traces["best val. accuracy"]["x"] == ["0", "1"]
    assert traces["best val. accuracy"]["y"] == [0.7, 0.8]
    assert "From 70.0% at 0 to 80.0% at 1." in _markdown(app)


def test_a_student_has_no_board_in_the_navigation(app: AppTest, lesson: Lesson) -> None:
    sign_in(app, join("Alan"))
    app.run()

    assert_no_exception(app)
    with pytest.raises(ValueError, match="navigation page"):
        app.switch_page(wizard.BOARD_PAGE)


def test_a_student_who_opens_the_board_is_refused_and_sees_no_results(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, lesson: Lesson
) -> None:
    listed = wizard.pages
    # A navigation that lists the page anyway: the page itself must refuse.
    monkeypatch.setattr(
        wizard,
        "pages",
        lambda: [*listed(), st.Page(wizard.BOARD_PAGE, title="Board", url_path="board")],
    )
    _open(app, join("Alan"))

    assert_no_exception(app)
    assert "teacher's" in app.error[0].value
    assert not app.table


def test_single_user_mode_has_the_board_for_the_self_learners_lessons(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TL_CLASS_CODE")
    monkeypatch.delenv("TL_TEACHER_PASSWORD")
    made = lesson_from_builtin(None, "fe-vs-ft", dataset_id=store_sample().dataset_id)
    _lesson_run("20261120-090000-aaaaaa", made, None, 0.75)

    _open(app, None)

    assert_no_exception(app)
    students = app.table[0].value
    assert students["Student"].tolist() == ["You"]
    assert students["Best val. accuracy"].tolist() == ["75.0%"]


def test_without_lessons_the_board_says_how_to_make_one(app: AppTest) -> None:
    _open(app, Identity.teacher())

    assert_no_exception(app)
    assert "No lessons yet" in app.info[0].value
