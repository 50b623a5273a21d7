"""Who is using this browser session: nobody in particular (single-user) or a class member.

Single-user mode (the default) has no sign-in, and `current_actor` is ``None``: the core's
functions then act for the machine's operator. In class mode (`class_config` is not
``None``) `app.py` shows the sign-in (`ui.signin`) until the session has an identity, and
every page passes `current_actor()` to the core, which enforces who may do what.

The identity lives in session state and, as a signed token, in the ``tl_session`` cookie,
so a reload or a restarted server keeps it (`restore_identity`).
"""

from __future__ import annotations

import json
import os

import streamlit as st

from tl_core.classroom import (
    ClassConfig,
    Identity,
    SignedIn,
    identity_from_token,
    load_class_config,
)
from tl_core.classroom.roster import TOKEN_DAYS

#: Session-state key of the signed-in `Identity`.
IDENTITY = "class_identity"
#: The cookie that carries the sign-in token across reloads.
COOKIE = "tl_session"
#: Session-state key of the token this session's sign-in (or sign-out: "") put in the cookie.
_SESSION_TOKEN = "class_session_token"
#: Session-state flag: signed out in this session, so the cookie the browser sent when the
#: session began (still holding the old token) must not sign the person in again.
_SIGNED_OUT = "class_signed_out"

_ENV_KEYS = (
    "TL_CLASS_CODE",
    "TL_TEACHER_PASSWORD",
    "TL_TEACHER_PASSWORD_HASH",
    "TL_CLASS_AUTH",
)


def class_config() -> ClassConfig | None:
    """The class configuration (environment, then ``[class]`` secrets); ``None`` for
    single-user mode. Raises `ConfigError` for a half-configured class."""
    try:
        section = st.secrets.get("class")
    except FileNotFoundError:  # no secrets.toml at all
        section = None
    values = {key: os.environ.get(key, "") for key in _ENV_KEYS}
    frozen = json.dumps(dict(section or {}), sort_keys=True, default=str)
    return _load(frozen, tuple(sorted(values.items())))


@st.cache_resource(show_spinner=False)
def _load(section: str, environ: tuple[tuple[str, str], ...]) -> ClassConfig | None:
    """Hash the password once per configuration, not on every script run."""
    return load_class_config(json.loads(section), environ=dict(environ))


def class_mode() -> bool:
    """Whether the server runs a class (sign-in, ownership, the teacher's pages)."""
    return class_config() is not None


def signed_in() -> Identity | None:
    """The session's identity, or ``None`` before the sign-in (and in single-user mode)."""
    value = st.session_state.get(IDENTITY)
    return value if isinstance(value, Identity) else None


def current_actor() -> Identity | None:
    """Who acts in this session, for the core's ``actor=`` arguments.

    ``None`` in single-user mode (the operator). In class mode a page only runs after the
    sign-in, so this is the signed-in person; a script that somehow runs without one stops
    here rather than act for the operator.
    """
    if not class_mode():
        return None
    identity = signed_in()
    if identity is None:
        st.stop()
    return identity


def is_teacher() -> bool:
    """Whether this session may use the teacher's pages (the teacher, or single-user mode)."""
    identity = signed_in()
    return not class_mode() or (identity is not None and identity.is_teacher)


def require_teacher_page(why: str) -> None:
    """Stop a teacher's page for anyone else, saying `why` and pointing to the Runs page.

    A student who types the page's address gets here; the core refuses their actions anyway.

    Args:
        why: what the page is and where the student's own things are, in sentences.

    Example:
        >>> require_teacher_page("The Class page is the teacher's.")  # doctest: +SKIP
    """
    if is_teacher():
        return
    st.error(why, icon=":material/lock:")
    st.page_link("pages/runs.py", label="Go to Runs", icon=":material/history:")
    st.stop()


def restore_identity(config: ClassConfig) -> Identity | None:
    """The session's identity, taken from the sign-in cookie on a fresh session."""
    identity = signed_in()
    if identity is None and not st.session_state.get(_SIGNED_OUT):
        identity = identity_from_token(st.context.cookies.get(COOKIE), config)
        if identity is not None:
            st.session_state[IDENTITY] = identity
    return identity


def remember(signed: SignedIn) -> None:
    """Keep `signed` for this session, and its token for the cookie (`write_cookie`)."""
    st.session_state[IDENTITY] = signed.identity
    st.session_state[_SESSION_TOKEN] = signed.token
    st.session_state.pop(_SIGNED_OUT, None)


def forget() -> None:
    """Sign out: drop the identity and expire the cookie."""
    st.session_state.pop(IDENTITY, None)
    st.session_state[_SESSION_TOKEN] = ""
    st.session_state[_SIGNED_OUT] = True


def write_cookie() -> None:
    """Write (or, after `forget`, expire) the sign-in cookie after a sign-in changed it.

    Streamlit cannot set cookies from Python; a line of JavaScript in the page does, with
    ``SameSite=Strict`` so that other sites' requests never carry it. A script run cut
    short by a rerun (a polling fragment, a second click) may never reach the browser, so
    the line is drawn on every run until the browser's cookie (as sent when the session
    connected) holds the token; it is harmless to set the same cookie twice.
    """
    token = st.session_state.get(_SESSION_TOKEN)
    if token is None or st.context.cookies.get(COOKIE, "") == token:
        return
    max_age = TOKEN_DAYS * 86400 if token else 0
    st.sidebar.html(
        f"<script>document.cookie = {json.dumps(f'{COOKIE}={token}')} + "
        f"'; path=/; max-age={max_age}; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )
