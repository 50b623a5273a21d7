"""The teacher's Class page, run through the whole app by AppTest, over a fake queue.

Class mode is on (a class code and a teacher password in the environment); each test puts
who is signed in into the session before the first run, as the sign-in would.
"""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app.class_support import join, sign_in
from tests.app.run_support import FakeRunner, fabricate_run
from tests.app.wizard_support import assert_no_exception, store_sample
from tl_core.classroom import (
    Identity,
    lesson_from_builtin,
    list_lessons,
    list_students,
    load_lesson,
    read_class_settings,
    shared_runs,
)
from tl_core.config import RunConfig
from tl_core.fsutil import read_json
from tl_core.jobs.fairshare import queue_order
from tl_core.jobs.queue import get, submit
from tl_core.jobs.runs import RunFiles, run_path, write_json_atomic
from tl_core.jobs.scheduler import Scheduler
from ui import class_view, wizard

DONE_RUN = "20261120-090000-aaaaaa"
pytestmark = pytest.mark.usefixtures("class_mode", "queue")


def _submit(student: Identity) -> str:
    return submit(RunConfig(dataset_id="0123456789ab", weights="none"), actor=student)


def _owned_run(run_id: str, owner: str, **fields: object) -> None:
    """A finished run on disk whose ``run.json`` names `owner`, as a class server writes it."""
    fabricate_run(run_id, **fields)
    path = RunFiles(run_path(run_id)).config
    write_json_atomic(path, read_json(path) | {"owner": owner})


def _open(app: AppTest, person: Identity) -> AppTest:
    sign_in(app, person)
    app.run()
    app.switch_page(wizard.CLASS_PAGE)
    return app.run()


def _queued_ids() -> list[str]:
    return [job.run_id for job in queue_order()]


def _button(app: AppTest, key: str) -> None:
    app.button(key=key).click().run()
    assert_no_exception(app)


@pytest.fixture
def ada_and_grace() -> tuple[Identity, Identity]:
    """Two students who joined; Ada_Lovelace has a finished run and two queued ones."""
    ada, grace = join("Ada_Lovelace"), join("Grace")
    _owned_run(DONE_RUN, ada.name, state="completed", val_accuracies=(0.5, 0.8), total_epochs=2)
    _submit(ada)
    _submit(ada)
    return ada, grace


def test_the_teacher_sees_every_student_with_their_runs_by_state(
    app: AppTest, ada_and_grace: tuple[Identity, Identity]
) -> None:
    _open(app, Identity.teacher())

    assert_no_exception(app)
    table = app.dataframe[0].value
    assert table["Student"].tolist() == ["Ada_Lovelace", "Grace"]
    assert table["Runs"].tolist() == [3, 0]
    assert table["Waiting"].tolist() == [2, 0]
    assert table["Done"].tolist() == [1, 0]
    assert table["Best val. accuracy"].tolist()[0] == 0.8


def test_the_queue_lists_the_training_run_first_then_the_start_order(
    app: AppTest, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, _ = queue
    ada, grace = join("Ada"), join("Grace")
    training = _submit(ada)
    scheduler.tick()
    waiting = [_submit(ada), _submit(grace)]
    _open(app, Identity.teacher())

    assert_no_exception(app)
    table = app.dataframe[1].value
    assert table["Run"].tolist() == [training, *_queued_ids()]
    assert sorted(_queued_ids()) == sorted(waiting)
    assert table["State"].tolist() == ["training", "waiting", "waiting"]
    assert table["Position"].tolist()[1:] == [1, 2]
    assert table["Owner"].tolist()[0] == "Ada"


def test_move_up_start_next_and_move_down_change_the_start_order(app: AppTest) -> None:
    students = [join(name) for name in ("Ada", "Grace", "Alan")]
    for student in students:
        _submit(student)
    first, second, third = _queued_ids()
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.QUEUE_PICK).select(second).run()
    _button(app, "class_move_up")
    assert _queued_ids() == [second, first, third]
    assert "number 1" in app.success[0].value

    app.selectbox(key=class_view.QUEUE_PICK).select(third).run()
    _button(app, "class_start_next")
    assert _queued_ids() == [third, second, first]

    app.selectbox(key=class_view.QUEUE_PICK).select(second).run()
    _button(app, "class_move_down")
    assert _queued_ids() == [third, first, second]


def test_cancel_stops_a_queued_run(app: AppTest) -> None:
    run_id = _submit(join("Ada"))
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.QUEUE_PICK).select(run_id).run()
    _button(app, "class_cancel")

    assert get(run_id).state == "stopped"
    assert _queued_ids() == []


def test_pause_class_pauses_it_and_resume_class_resumes_it(app: AppTest) -> None:
    _submit(join("Ada"))
    _open(app, Identity.teacher())

    _button(app, "class_pause")
    assert read_class_settings().paused
    assert any("paused" in warning.value for warning in app.warning)
    assert app.dataframe[1].value["Estimated wait"].tolist() == ["when the class resumes"]

    _button(app, "class_resume")
    assert not read_class_settings().paused


def test_save_limits_persists_the_quotas(app: AppTest) -> None:
    _open(app, Identity.teacher())
    assert app.number_input(key=class_view.MAX_ACTIVE_RUNS).value == 2
    assert app.number_input(key=class_view.MAX_UPLOAD_MB).value == 200

    app.number_input(key=class_view.MAX_ACTIVE_RUNS).set_value(4)
    app.number_input(key=class_view.MAX_UPLOAD_MB).set_value(50)
    _button(app, "class_save_limits")

    settings = read_class_settings()
    assert (settings.max_active_runs, settings.max_upload_mb) == (4, 50)


def test_release_name_asks_first_then_frees_the_name(
    app: AppTest, ada_and_grace: tuple[Identity, Identity]
) -> None:
    _open(app, Identity.teacher())

    _button(app, "class_release")
    assert "Ada\\_Lovelace" in app.warning[0].value
    assert len(list_students()) == 2

    _button(app, "class_release_confirm")
    assert [student.name for student in list_students()] == ["Grace"]


def test_a_run_is_shared_with_the_class_and_unshared(
    app: AppTest, ada_and_grace: tuple[Identity, Identity]
) -> None:
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.SHARE_PICK).select(DONE_RUN).run()
    _button(app, "class_share")
    assert shared_runs() == {DONE_RUN}
    assert app.dataframe[-1].value["Run"].tolist() == [DONE_RUN]

    _button(app, "class_unshare")
    assert shared_runs() == frozenset()


def test_a_student_has_no_class_page_in_the_navigation(app: AppTest) -> None:
    sign_in(app, join("Ada"))
    app.run()

    assert_no_exception(app)
    with pytest.raises(ValueError, match="navigation page"):
        app.switch_page(wizard.CLASS_PAGE)


def test_a_student_who_opens_the_class_page_is_refused_and_sees_no_controls(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, ada_and_grace: tuple[Identity, Identity]
) -> None:
    listed = wizard.pages
    # A navigation that lists the page anyway: the page itself must refuse.
    monkeypatch.setattr(
        wizard,
        "pages",
        lambda: [*listed(), st.Page(wizard.CLASS_PAGE, title="Class", url_path="class")],
    )
    ada, _ = ada_and_grace
    _open(app, ada)

    assert_no_exception(app)
    assert "teacher's" in app.error[0].value
    assert not app.dataframe
    assert not [button for button in app.button if button.key and "class_" in button.key]


def test_single_user_mode_has_no_class_page(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TL_CLASS_CODE")
    monkeypatch.delenv("TL_TEACHER_PASSWORD")
    app.run()

    assert_no_exception(app)
    with pytest.raises(ValueError, match="navigation page"):
        app.switch_page(wizard.CLASS_PAGE)


# --- lessons ---------------------------------------------------------------------------------


def _lesson_row(app: AppTest) -> list[str]:
    (table,) = [frame.value for frame in app.dataframe if "Lesson" in frame.value.columns]
    return table["Lesson"].tolist()


def test_the_teacher_creates_a_builtin_lesson_with_the_defaults_and_opens_and_closes_it(
    app: AppTest,
) -> None:
    sample = store_sample()
    _open(app, Identity.teacher())
    assert any("No lessons yet" in info.value for info in app.info)

    _button(app, "class_lesson_create_builtin")

    (lesson,) = list_lessons()
    assert lesson.title == "Feature extraction vs fine-tuning"
    assert lesson.settings["dataset_id"] == sample.dataset_id
    assert lesson.settings["backbone"] == "mobilenet_v2"
    assert not lesson.is_open
    assert _lesson_row(app) == ["Feature extraction vs fine-tuning"]
    assert "ready, closed" in app.success[0].value

    _button(app, "class_lesson_open")
    assert load_lesson(lesson.lesson_id).is_open
    _button(app, "class_lesson_close")
    assert not load_lesson(lesson.lesson_id).is_open


def test_the_teacher_picks_another_builtin_and_from_scratch_weights(app: AppTest) -> None:
    store_sample()
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.BUILTIN_PICK).select("unfreeze-depth").run()
    app.radio(key=class_view.BUILTIN_WEIGHTS).set_value("none").run()
    _button(app, "class_lesson_create_builtin")

    (lesson,) = list_lessons()
    assert (lesson.lesson_id, lesson.chart) == ("unfreeze-depth", "ladder")
    assert lesson.settings["weights"] == "none"


def test_without_a_dataset_the_builtin_form_says_where_to_get_one(app: AppTest) -> None:
    _open(app, Identity.teacher())

    assert_no_exception(app)
    assert any("needs a dataset" in info.value for info in app.info)
    assert not [b for b in app.button if b.key == "class_lesson_create_builtin"]


def test_the_teacher_makes_a_lesson_of_a_runs_settings_with_chosen_editable_settings(
    app: AppTest,
) -> None:
    _owned_run(DONE_RUN, "Teacher", state="completed", val_accuracies=(0.7,))
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.FROM_RUN_PICK).select(DONE_RUN).run()
    app.text_input(key=class_view.FROM_RUN_TITLE).input("Scratch or not").run()
    app.text_area(key=class_view.FROM_RUN_QUESTION).input("Will it beat 70 %?").run()
    app.text_area(key=class_view.FROM_RUN_CHOICES).input("Yes\nNo\n").run()
    app.multiselect(key=class_view.FROM_RUN_EDITABLE).set_value(["epochs", "seed"]).run()
    _button(app, "class_lesson_create_run")

    (lesson,) = list_lessons()
    assert (lesson.lesson_id, lesson.question) == ("scratch-or-not", "Will it beat 70 %?")
    assert lesson.prediction_choices == ("Yes", "No")
    assert lesson.editable == ("epochs", "seed")
    assert lesson.settings["weights"] == "none"


def test_a_lesson_without_a_title_is_refused_in_place(app: AppTest) -> None:
    _owned_run(DONE_RUN, "Teacher", state="completed", val_accuracies=(0.7,))
    _open(app, Identity.teacher())

    app.selectbox(key=class_view.FROM_RUN_PICK).select(DONE_RUN).run()
    app.button(key="class_lesson_create_run").click().run()

    assert "needs a title" in app.error[0].value
    assert list_lessons() == []


def test_delete_removes_the_lesson_from_the_list(app: AppTest) -> None:
    lesson = lesson_from_builtin(
        Identity.teacher(), "batchnorm-pitfall", dataset_id=store_sample().dataset_id
    )
    _open(app, Identity.teacher())
    assert _lesson_row(app) == [lesson.title]

    _button(app, "class_lesson_delete")

    assert list_lessons() == []
    assert any("No lessons yet" in info.value for info in app.info)
