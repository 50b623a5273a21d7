"""Lessons: their files, export and import, arms, locks, predictions and runs
(`tl_core.classroom.lessons`)."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from tl_core import DatasetReport
from tl_core.classroom import roster
from tl_core.classroom.identity import Identity, load_class_config
from tl_core.classroom.lessons import (
    BUILTIN_IDS,
    OPERATOR_NAME,
    Lesson,
    board_rows,
    builtin_lessons,
    delete_lesson,
    export_lesson,
    import_lesson,
    lesson_config,
    lesson_from_builtin,
    lesson_from_run,
    lesson_of_run,
    list_lessons,
    load_lesson,
    locked_reason,
    open_lesson,
    open_lessons,
    prediction_for,
    predictions,
    record_prediction,
    save_lesson,
    submit_lesson_run,
    variant_for,
)
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied, ConfigError
from tl_core.fsutil import read_json
from tl_core.jobs.queue import get, submit
from tl_core.jobs.runs import RunFiles, run_path

DATASET = "0123456789ab"
CODE = "MAPLE-7"
TEACHER = Identity.teacher()
RUN_FIELDS = {f.name for f in fields(RunConfig)}


@pytest.fixture(autouse=True)
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roster, "SIGNIN_DELAY_S", 0.0)


def _join(*names: str) -> list[Identity]:
    config = load_class_config({"code": CODE, "teacher_password": "pw"}, environ={})
    assert config is not None
    return [roster.join_class(name, CODE, config).identity for name in names]


def _lesson(builtin: str = "fe-vs-ft", *, opened: bool = True) -> Lesson:
    lesson = lesson_from_builtin(TEACHER, builtin, dataset_id=DATASET)
    return open_lesson(TEACHER, lesson.lesson_id) if opened else lesson


# --- files -----------------------------------------------------------------------------------


def test_a_lesson_is_a_json_file_under_tl_home_and_reads_back_equal(tl_home: Path) -> None:
    lesson = _lesson(opened=False)

    path = tl_home / "lessons" / "fe-vs-ft.json"
    assert json.loads(path.read_text())["title"] == "Feature extraction vs fine-tuning"
    assert load_lesson("fe-vs-ft") == lesson
    assert list_lessons() == [lesson]
    assert open_lessons() == []


def test_opening_and_closing_is_kept_in_the_file() -> None:
    lesson = _lesson(opened=False)

    assert open_lesson(TEACHER, lesson.lesson_id).is_open
    assert [found.lesson_id for found in open_lessons()] == ["fe-vs-ft"]
    assert not open_lesson(TEACHER, lesson.lesson_id, False).is_open
    assert open_lessons() == []


def test_a_second_lesson_from_the_same_builtin_gets_a_free_id() -> None:
    _lesson()
    second = _lesson()

    assert second.lesson_id == "fe-vs-ft-2"
    assert len(list_lessons()) == 2


def test_delete_removes_the_lesson_and_its_predictions(tl_home: Path) -> None:
    lesson = _lesson()
    record_prediction(TEACHER, lesson.lesson_id, "Feature extraction wins")

    delete_lesson(TEACHER, lesson.lesson_id)

    assert list(p for p in (tl_home / "lessons").iterdir() if not p.name.startswith(".")) == []
    with pytest.raises(ConfigError, match="There is no lesson 'fe-vs-ft'"):
        load_lesson(lesson.lesson_id)


@pytest.mark.parametrize("bad_id", ["../secret", "Fe-vs-ft", "", "a" * 41, "x/y", "a.json"])
def test_ids_that_are_not_slugs_are_refused_before_any_path_is_built(bad_id: str) -> None:
    with pytest.raises(ConfigError, match="lowercase letters, digits and hyphens"):
        load_lesson(bad_id)
    with pytest.raises(ConfigError, match="lowercase letters, digits and hyphens"):
        delete_lesson(TEACHER, bad_id)


def test_a_damaged_lesson_file_is_left_out_of_the_list(tl_home: Path) -> None:
    _lesson()
    (tl_home / "lessons" / "broken.json").write_text("{not json")
    (tl_home / "lessons" / "wrong.json").write_text(json.dumps({"lesson_id": "wrong"}))

    assert [lesson.lesson_id for lesson in list_lessons()] == ["fe-vs-ft"]


# --- export and import -----------------------------------------------------------------------


def test_export_then_import_gives_the_same_lesson_closed_under_a_free_id() -> None:
    lesson = _lesson("unfreeze-depth")

    text = export_lesson(lesson.lesson_id)
    imported = import_lesson(TEACHER, text)

    assert json.loads(text)["is_open"] is False
    assert imported.lesson_id == "unfreeze-depth-2"
    assert not imported.is_open
    assert replace(imported, lesson_id=lesson.lesson_id, is_open=True) == lesson


def test_import_binds_the_lesson_to_a_dataset_of_this_machine() -> None:
    text = export_lesson(_lesson().lesson_id)

    imported = import_lesson(TEACHER, text, dataset_id="abcdefabcdef")

    assert imported.settings["dataset_id"] == "abcdefabcdef"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"lesson_id": "../x", "title": "T"}), "lowercase letters"),
        (json.dumps({"lesson_id": "x", "title": "T", "settings": {"colour": 1}}), "colour"),
        (json.dumps({"lesson_id": "x", "title": "T", "chart": "pie"}), "chart"),
        (
            json.dumps(
                {"lesson_id": "x", "title": "T", "settings": {"dataset_id": DATASET, "epochs": 0}}
            ),
            "epochs",
        ),
        (
            json.dumps(
                {
                    "lesson_id": "x",
                    "title": "T",
                    "settings": {"dataset_id": DATASET, "weights": "/etc/weights.h5"},
                }
            ),
            "weights file",
        ),
    ],
)
def test_import_refuses_what_is_not_a_sound_lesson_and_stores_nothing(
    text: str | bytes, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        import_lesson(TEACHER, text)

    assert list_lessons() == []


# --- the built-ins ---------------------------------------------------------------------------


def test_the_four_builtins_name_only_run_settings_and_make_valid_runs_in_every_arm() -> None:
    builtins = builtin_lessons()

    assert [lesson.lesson_id for lesson in builtins] == list(BUILTIN_IDS)
    for lesson in builtins:
        assert lesson.question and lesson.explanation and lesson.prediction_choices
        assert set(lesson.settings) <= RUN_FIELDS
        assert set(lesson.editable) <= RUN_FIELDS
        assert set(lesson.locked_reasons) <= RUN_FIELDS
        for variant in lesson.variants:
            assert set(variant.settings) <= RUN_FIELDS
            assert not set(variant.settings) & set(lesson.editable)
            RunConfig(dataset_id=DATASET, **{**lesson.settings, **variant.settings})


def test_the_builtins_split_the_experiment_as_the_lessons_describe() -> None:
    by_id = {lesson.lesson_id: lesson for lesson in builtin_lessons()}

    fe, ft = by_id["fe-vs-ft"].variants
    assert (fe.settings["freeze"], ft.settings["freeze"]) == ("feature-extraction", "fine-tune")
    assert ft.settings["unfreeze_last"] == 4
    ladder = by_id["unfreeze-depth"]
    assert ladder.chart == "ladder"
    assert [v.x for v in ladder.variants] == [0, 1, 2, 4, 8]
    assert [v.settings["unfreeze_last"] for v in ladder.variants] == [0, 1, 2, 4, 8]
    bn = by_id["batchnorm-pitfall"]
    assert [v.settings["train_bn"] for v in bn.variants] == [False, True]
    assert bn.settings["freeze"] == "fine-tune"
    datasize = by_id["data-size"]
    assert datasize.chart == "datasize"
    assert len(datasize.variants) == 8
    assert sorted({v.x for v in datasize.variants}) == [0.1, 0.25, 0.5, 1.0]
    scratch = [v for v in datasize.variants if v.settings["weights"] == "none"]
    assert [v.settings["train_fraction"] for v in scratch] == [0.1, 0.25, 0.5, 1.0]


def test_a_lesson_from_a_builtin_takes_the_dataset_backbone_and_weights() -> None:
    lesson = lesson_from_builtin(
        TEACHER, "data-size", dataset_id=DATASET, backbone="resnet50", weights="imagenet"
    )

    assert lesson.settings["dataset_id"] == DATASET
    assert lesson.settings["backbone"] == "resnet50"
    assert lesson.builtin == "data-size"
    assert not lesson.is_open
    with pytest.raises(ConfigError, match="no built-in lesson 'nope'"):
        lesson_from_builtin(TEACHER, "nope", dataset_id=DATASET)


def test_a_lesson_on_a_stored_dataset_takes_the_image_size_the_wizard_suggests(
    easy_dataset: DatasetReport,
) -> None:
    lesson = lesson_from_builtin(TEACHER, "fe-vs-ft", dataset_id=easy_dataset.dataset_id)

    assert lesson.settings["image_size"] == 32  # the easy images' side, not 224
    assert (
        lesson_from_builtin(TEACHER, "fe-vs-ft", dataset_id=DATASET).settings["image_size"] is None
    )
    with pytest.raises(ConfigError, match="nonet"):
        lesson_from_builtin(TEACHER, "fe-vs-ft", dataset_id=DATASET, backbone="nonet")


def test_a_lesson_from_a_run_fixes_its_settings_and_lets_students_change_the_chosen_ones() -> None:
    run_id = submit(RunConfig(dataset_id=DATASET, weights="none", freeze="full", epochs=4))

    lesson = lesson_from_run(
        TEACHER, run_id, title="Scratch on flowers", question="How far?", editable=("epochs",)
    )

    assert lesson.lesson_id == "scratch-on-flowers"
    assert lesson.settings["weights"] == "none"
    assert lesson.editable == ("epochs",)
    assert lesson_config(lesson, "Ada", {"epochs": 9}).epochs == 9


# --- arms and locks --------------------------------------------------------------------------


def test_arms_are_handed_out_in_turn_so_half_the_class_freezes_and_half_fine_tunes() -> None:
    lesson = _lesson()
    students = _join("Ada", "Grace", "Alan", "Barbara")

    arms = [variant_for(lesson, student.name).name for student in students]

    assert arms == ["Feature extraction", "Fine-tune top 4"] * 2
    assert variant_for(lesson, "ada") == variant_for(lesson, "Ada")  # names compare as joined


def test_someone_outside_the_roster_always_gets_the_same_arm() -> None:
    lesson = _lesson("unfreeze-depth")

    assert variant_for(lesson, "Teacher") == variant_for(lesson, "Teacher")
    assert variant_for(lesson, OPERATOR_NAME) in lesson.variants


def test_lesson_config_keeps_the_lesson_and_the_arm_and_applies_editable_changes() -> None:
    lesson = _lesson()
    _join("Ada", "Grace")

    config = lesson_config(lesson, "Grace", {"augmentation": ["zoom"], "epochs": 8})

    assert config.freeze == "fine-tune" and config.unfreeze_last == 4
    assert config.augmentation == ("zoom",)
    assert config.dataset_id == DATASET


@pytest.mark.parametrize(
    ("requested", "field"),
    [({"epochs": 20}, "epochs"), ({"freeze": "full"}, "freeze"), ({"dataset_id": "f" * 12}, "")],
)
def test_lesson_config_refuses_a_change_to_a_locked_setting_naming_it(
    requested: dict[str, object], field: str
) -> None:
    lesson = _lesson()

    with pytest.raises(AccessDenied, match=f"`{field or 'dataset_id'}` is locked"):
        lesson_config(lesson, "Ada", requested)


def test_an_arms_setting_is_locked_even_when_the_lesson_lists_it_as_editable() -> None:
    lesson = _lesson()

    with pytest.raises(ConfigError, match="set by the lesson's arms"):
        save_lesson(TEACHER, replace(lesson, editable=("freeze",)))
    arm = lesson.variants[1]
    assert locked_reason(lesson, "unfreeze_last", arm) is not None
    assert locked_reason(lesson, "augmentation", arm) is None


# --- who may do what -------------------------------------------------------------------------


def test_only_the_teacher_or_the_operator_saves_opens_deletes_and_imports() -> None:
    lesson = _lesson(opened=False)
    (ada,) = _join("Ada")

    with pytest.raises(AccessDenied, match="Only the teacher"):
        save_lesson(ada, lesson)
    with pytest.raises(AccessDenied, match="Only the teacher"):
        open_lesson(ada, lesson.lesson_id)
    with pytest.raises(AccessDenied, match="Only the teacher"):
        delete_lesson(ada, lesson.lesson_id)
    with pytest.raises(AccessDenied, match="Only the teacher"):
        import_lesson(ada, export_lesson(lesson.lesson_id))
    with pytest.raises(AccessDenied, match="Only the teacher"):
        lesson_from_builtin(ada, "fe-vs-ft", dataset_id=DATASET)
    assert open_lesson(None, lesson.lesson_id).is_open


def test_a_lesson_without_a_dataset_cannot_be_opened() -> None:
    unbound = builtin_lessons()[0]
    save_lesson(TEACHER, unbound)

    with pytest.raises(ConfigError, match="has no dataset yet"):
        open_lesson(TEACHER, unbound.lesson_id)


# --- predictions and runs --------------------------------------------------------------------


def test_a_prediction_is_kept_per_person_and_replaced_by_a_new_one() -> None:
    lesson = _lesson()
    ada, grace = _join("Ada", "Grace")

    record_prediction(ada, lesson.lesson_id, "  Fine-tuning wins by 1 to 5 points ")
    record_prediction(grace, lesson.lesson_id, "Feature extraction wins")
    record_prediction(ada, lesson.lesson_id, "About the same (within 1 point)")

    assert predictions(lesson.lesson_id) == {
        "Grace": "Feature extraction wins",
        "Ada": "About the same (within 1 point)",
    }
    assert prediction_for(lesson.lesson_id, "ADA") == "About the same (within 1 point)"
    assert prediction_for(lesson.lesson_id, "Alan") is None
    with pytest.raises(ConfigError, match="Write or pick a prediction"):
        record_prediction(ada, lesson.lesson_id, "   ")


def test_a_student_cannot_start_before_predicting_and_the_core_says_why() -> None:
    lesson = _lesson()
    (ada,) = _join("Ada")

    with pytest.raises(AccessDenied, match="Save your prediction first"):
        submit_lesson_run(ada, lesson.lesson_id, {})


def test_a_students_run_records_the_lesson_their_arm_and_their_prediction() -> None:
    lesson = _lesson()
    _, grace = _join("Ada", "Grace")
    record_prediction(grace, lesson.lesson_id, "Fine-tuning wins by more than 5 points")

    run_id = submit_lesson_run(grace, lesson.lesson_id, {"augmentation": ["flip", "zoom"]})

    doc = read_json(RunFiles(run_path(run_id)).config)
    assert doc["owner"] == "Grace"
    assert doc["lesson"] == {
        "id": lesson.lesson_id,
        "variant": "Fine-tune top 4",
        "prediction": "Fine-tuning wins by more than 5 points",
    }
    assert doc["config"]["freeze"] == "fine-tune"
    assert doc["config"]["augmentation"] == ["flip", "zoom"]
    assert lesson_of_run(run_id) == doc["lesson"]
    assert get(run_id).owner == "Grace"


def test_a_student_cannot_pick_another_arm_or_change_a_locked_setting() -> None:
    lesson = _lesson()
    (ada,) = _join("Ada")
    record_prediction(ada, lesson.lesson_id, "Feature extraction wins")

    with pytest.raises(AccessDenied, match="Your arm"):
        submit_lesson_run(ada, lesson.lesson_id, {}, variant="Fine-tune top 4")
    with pytest.raises(AccessDenied, match="`epochs` is locked"):
        submit_lesson_run(ada, lesson.lesson_id, {"epochs": 50})


def test_a_student_cannot_predict_or_run_in_a_closed_lesson_but_the_teacher_can() -> None:
    lesson = _lesson(opened=False)
    (ada,) = _join("Ada")

    with pytest.raises(AccessDenied, match="is closed"):
        record_prediction(ada, lesson.lesson_id, "Feature extraction wins")
    with pytest.raises(AccessDenied, match="is closed"):
        submit_lesson_run(ada, lesson.lesson_id, {})
    record_prediction(TEACHER, lesson.lesson_id, "Feature extraction wins")
    run_id = submit_lesson_run(TEACHER, lesson.lesson_id, {}, variant="Fine-tune top 4")
    assert lesson_of_run(run_id)["variant"] == "Fine-tune top 4"


def test_a_self_learner_runs_every_arm_in_turn_after_one_prediction() -> None:
    lesson = _lesson("unfreeze-depth", opened=False)
    record_prediction(None, lesson.lesson_id, "It rises, then levels off")

    run_ids = [
        submit_lesson_run(None, lesson.lesson_id, {}, variant=arm.name) for arm in lesson.variants
    ]

    depths = [read_json(RunFiles(run_path(r)).config)["config"]["unfreeze_last"] for r in run_ids]
    assert depths == [0, 1, 2, 4, 8]
    rows = board_rows(lesson.lesson_id)
    assert [(row.student, row.x) for row in rows] == [(OPERATOR_NAME, d) for d in depths]
    assert {row.prediction for row in rows} == {"It rises, then levels off"}


def test_a_lesson_without_a_question_needs_no_prediction() -> None:
    lesson = save_lesson(
        TEACHER,
        Lesson(
            lesson_id="free-play",
            title="Free play",
            question="",
            explanation="",
            settings={"dataset_id": DATASET},
            editable=("epochs",),
            locked_reasons={},
            is_open=True,
        ),
    )
    (ada,) = _join("Ada")

    run_id = submit_lesson_run(ada, lesson.lesson_id, {"epochs": 3})

    assert lesson_of_run(run_id) == {"id": "free-play", "variant": "", "prediction": None}


# --- the board -------------------------------------------------------------------------------


def test_the_board_has_a_row_per_student_with_their_latest_run_and_prediction() -> None:
    lesson = _lesson()
    ada, grace, alan = _join("Ada", "Grace", "Alan")
    for student in (ada, grace):
        record_prediction(student, lesson.lesson_id, "Feature extraction wins")
    submit_lesson_run(ada, lesson.lesson_id, {})
    latest = submit_lesson_run(ada, lesson.lesson_id, {"augmentation": []})
    graces = submit_lesson_run(grace, lesson.lesson_id, {})
    submit(RunConfig(dataset_id=DATASET), actor=alan)  # not a lesson run

    rows = board_rows(lesson.lesson_id)

    assert [(r.student, r.variant, r.run_id, r.state) for r in rows] == [
        ("Ada", "Feature extraction", latest, "queued"),
        ("Grace", "Fine-tune top 4", graces, "queued"),
        ("Alan", "Feature extraction", None, "not started"),
    ]
    assert [r.prediction for r in rows] == ["Feature extraction wins"] * 2 + [None]


def test_the_board_shows_the_prediction_a_run_started_with_not_a_later_change() -> None:
    lesson = _lesson()
    (ada,) = _join("Ada")
    record_prediction(ada, lesson.lesson_id, "Fine-tuning wins by more than 5 points")
    submit_lesson_run(ada, lesson.lesson_id, {})

    record_prediction(ada, lesson.lesson_id, "Feature extraction wins")

    (row,) = board_rows(lesson.lesson_id)
    assert row.prediction == "Fine-tuning wins by more than 5 points"
