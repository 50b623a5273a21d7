"""The class-mode sign-in: students join with a name and the class code, the teacher signs
in with the teacher password (or, where the school has one, its OpenID Connect provider
through ``st.login``).

`app.py` calls `require_identity` before the navigation: in single-user mode it returns at
once; in class mode it returns the signed-in person, or draws the sign-in and stops the run.
The URL the person opened (``/runs?run=…``) stays in the address bar, so after the sign-in
the navigation shows the page they asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from tl_core import TLError
from tl_core.classroom import (
    ClassConfig,
    Identity,
    SignedIn,
    identity_from_oidc,
    join_class,
    sign_in_teacher,
)
from tl_core.viz.markdown import escape_markdown
from ui import identity

#: Widget keys of the sign-in forms.
NAME_INPUT = "signin_name"
CODE_INPUT = "signin_code"
JOIN_BUTTON = "signin_join"
PASSWORD_INPUT = "signin_password"
TEACHER_BUTTON = "signin_teacher"
#: Session-state key of the last refusal, shown above the forms after the rerun.
_REFUSAL = "signin_refusal"


def require_identity(pages: Callable[[], list[st.Page]]) -> Identity | None:
    """Return who is signed in (``None`` in single-user mode), or draw the sign-in and stop.

    A half-configured class (a code without a password) is shown as an error for the
    operator to fix, and nothing else runs.

    Args:
        pages: the app's pages. Before the sign-in they are registered with a hidden
            navigation: the URL the person opened stays valid, and Streamlit does not
            fall back to listing the ``pages/`` folder's files.
    """
    try:
        config = identity.class_config()
    except TLError as exc:  # the operator's to fix; students see the same sentence
        st.error(escape_markdown(str(exc)), icon=":material/error:")
        st.stop()
    if config is None:
        return None
    identity.write_cookie()
    person = identity.restore_identity(config)
    if person is None and config.auth == "oidc":
        person = _oidc_identity(config)
    if person is not None:
        return person
    st.navigation(pages(), position="hidden")
    _render(config)
    st.stop()


def _oidc_identity(config: ClassConfig) -> Identity | None:
    person = identity_from_oidc(st.user.to_dict(), config)
    if person is not None:
        st.session_state[identity.IDENTITY] = person
    return person


def _render(config: ClassConfig) -> None:
    st.title("Join the class", anchor=False)
    refusal = st.session_state.pop(_REFUSAL, None)
    if refusal:
        st.error(escape_markdown(refusal), icon=":material/block:")
    student, teacher = st.columns(2, gap="large")
    with student:
        if config.auth == "oidc":
            _render_oidc()
        else:
            _render_join(config)
    with teacher:
        _render_teacher(config)


def _render_join(config: ClassConfig) -> None:
    st.subheader("Student", anchor=False)
    with st.form("signin_student", border=True):
        name = st.text_input("Your name", key=NAME_INPUT, max_chars=40)
        code = st.text_input("Class code", key=CODE_INPUT)
        st.caption("No e-mail, no password: the name you pick labels your runs for the class.")
        joined = st.form_submit_button("Join class", key=JOIN_BUTTON, type="primary")
    if joined:
        token = st.context.cookies.get(identity.COOKIE)
        _attempt(lambda: join_class(name, code, config, token=token))


def _render_oidc() -> None:
    st.subheader("Student", anchor=False)
    st.caption("This class signs in with the school's account.")
    if st.button("Sign in with your school account", type="primary", icon=":material/login:"):
        st.login()


def _render_teacher(config: ClassConfig) -> None:
    st.subheader("Teacher", anchor=False)
    with st.form("signin_teacher", border=True):
        password = st.text_input("Teacher password", key=PASSWORD_INPUT, type="password")
        signed = st.form_submit_button("Sign in as teacher", key=TEACHER_BUTTON)
    if signed:
        _attempt(lambda: sign_in_teacher(password, config))


def _attempt(sign_in: Callable[[], SignedIn]) -> None:
    """Run a sign-in; keep its identity, or its refusal for the next run; rerun either way."""
    try:
        identity.remember(sign_in())
    except TLError as exc:
        st.session_state[_REFUSAL] = str(exc)
    st.rerun()


def render_signed_in(person: Identity) -> None:
    """The sidebar's line saying who is signed in, with **Sign out**."""
    role = "teacher" if person.is_teacher else "student"
    st.markdown(f":material/person: **{escape_markdown(person.name)}** · {role}")
    if st.button("Sign out", key="signout", icon=":material/logout:"):
        identity.forget()
        if st.user.to_dict().get("is_logged_in"):  # signed in through the school's provider
            st.logout()
        st.rerun()
