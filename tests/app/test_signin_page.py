"""The class-mode sign-in (`ui.signin`), run through the whole app by AppTest.

Single-user mode has no sign-in (every other page test runs that way). With a class code
and a teacher password configured, nothing but the sign-in runs until the session knows
who is there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.class_support import CODE, PASSWORD
from tests.app.wizard_support import assert_no_exception
from tl_core.classroom import Identity, list_students
from ui import identity, signin

pytestmark = pytest.mark.usefixtures("class_mode", "queue")


def _join(app: AppTest, name: str, code: str = CODE) -> AppTest:
    app.text_input(key=signin.NAME_INPUT).input(name)
    app.text_input(key=signin.CODE_INPUT).input(code)
    return app.button(key=signin.JOIN_BUTTON).click().run()


def _errors(app: AppTest) -> list[str]:
    return [error.value for error in app.error]


def test_a_new_session_sees_only_the_sign_in(app: AppTest) -> None:
    app.run()

    assert_no_exception(app)
    labels = {widget.label for widget in app.text_input}
    assert labels == {"Your name", "Class code", "Teacher password"}
    assert {button.label for button in app.button} >= {"Join class", "Sign in as teacher"}
    assert not any("Upload" in block.value for block in app.markdown)
    assert identity.IDENTITY not in app.session_state


def test_a_student_joins_with_a_name_and_the_code_in_any_case(app: AppTest) -> None:
    _join(app.run(), "  Ada   Lovelace ", code="maple-7")

    assert_no_exception(app)
    assert app.session_state[identity.IDENTITY] == Identity.student("Ada Lovelace")
    assert [student.name for student in list_students()] == ["Ada Lovelace"]
    assert any("Ada Lovelace" in block.value for block in app.sidebar.markdown)
    assert not [w for w in app.text_input if w.label == "Class code"]


def test_a_wrong_code_is_refused_with_a_reason_and_nobody_joins(app: AppTest) -> None:
    _join(app.run(), "Ada", code="OAK-1")

    assert any("class code" in message for message in _errors(app))
    assert identity.IDENTITY not in app.session_state
    assert list_students() == []


def test_two_students_cannot_take_the_same_name(app: AppTest) -> None:
    _join(app.run(), "Ada")
    other = AppTest.from_file(str(Path(app._script_path)), default_timeout=60)

    _join(other.run(), "ada")

    assert any("already taken" in message for message in _errors(other))
    assert identity.IDENTITY not in other.session_state


def test_the_teacher_signs_in_with_the_password_only(app: AppTest) -> None:
    app.run()
    app.text_input(key=signin.PASSWORD_INPUT).input("wrong").run()
    app.button(key=signin.TEACHER_BUTTON).click().run()
    assert any("not the teacher password" in message for message in _errors(app))

    app.text_input(key=signin.PASSWORD_INPUT).input(PASSWORD)
    app.button(key=signin.TEACHER_BUTTON).click().run()

    assert_no_exception(app)
    assert app.session_state[identity.IDENTITY] == Identity.teacher()
    assert any("teacher" in block.value for block in app.sidebar.markdown)


def test_signing_out_shows_the_sign_in_again(app: AppTest) -> None:
    _join(app.run(), "Grace")

    app.sidebar.button(key="signout").click().run()

    assert identity.IDENTITY not in app.session_state
    assert {widget.label for widget in app.text_input} >= {"Your name", "Class code"}


def test_a_half_configured_class_says_what_is_missing(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TL_TEACHER_PASSWORD")

    app.run()

    assert any("TL_TEACHER_PASSWORD" in message.replace("\\", "") for message in _errors(app))
    assert not app.text_input
