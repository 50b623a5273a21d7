"""Class mode for the AppTest page tests: a configured class, students joining, signing in.

A test module turns class mode on with ``pytest.mark.usefixtures("class_mode")`` (the
fixture in ``tests/app/conftest.py`` calls `configure_class`); `join` adds a student to
the roster as the sign-in would, and `sign_in` puts who is there into the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.wizard_support import offline_app
from tl_core.classroom import Identity, join_class, load_class_config
from tl_core.classroom import roster as roster_module
from ui import identity

CODE = "MAPLE-7"
PASSWORD = "correct horse"


def configure_class(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Turn class mode on: the class code and teacher password in the environment, a wrong
    code or password refused without the usual delay, and pages opened through ``app.py``
    with no ImageNet weights (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)
    monkeypatch.setenv("TL_CLASS_CODE", CODE)
    monkeypatch.setenv("TL_TEACHER_PASSWORD", PASSWORD)
    monkeypatch.setattr(roster_module, "SIGNIN_DELAY_S", 0.0)


def join(name: str) -> Identity:
    """Join the class as the student `name` (``join("Ada")``) and return who they are."""
    config = load_class_config({"code": CODE, "teacher_password": PASSWORD}, environ={})
    return join_class(name, CODE, config).identity


def sign_in(app: AppTest, person: Identity) -> AppTest:
    """Put `person` into `app`'s session as the sign-in would, before its next run."""
    app.session_state[identity.IDENTITY] = person
    return app
