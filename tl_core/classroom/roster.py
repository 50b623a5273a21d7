"""Joining a class, signing in as the teacher, and staying signed in across reloads.

Students join with a name and the class code (no e-mail, no password); the teacher signs in
with the teacher password. Either way the person gets a signed token that the browser keeps
(the app puts it in a cookie), so a reload or a server restart keeps who they are. The token
is an HMAC over the name and role, keyed by a random secret in ``TL_HOME/class/secret.key``
and the class's code and password hash: a new code or password signs everyone out.

Names are unique in a class, compared without case: the roster (``TL_HOME/class/
roster.json``) keeps who joined. A student who lost their token (another browser, cleared
cookies) gets their name back when the teacher releases it (`release_name`).

A wrong code or password costs `SIGNIN_DELAY_S` seconds before the refusal, so guessing is
slow.

Example:
    >>> config = load_class_config({"code": "ABC123", "teacher_password": "pw"}, environ={})
    >>> signed = join_class("Ada", "abc123", config)  # doctest: +SKIP
    >>> identity_from_token(signed.token, config)  # doctest: +SKIP
    Identity(name='Ada', role='student')
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.classroom.identity import (
    ClassConfig,
    Identity,
    check_password,
    from_urlsafe_b64,
    name_key,
    normalize_name,
    urlsafe_b64,
)
from tl_core.classroom.store import class_dir, edit_json, read_record
from tl_core.errors import AccessDenied
from tl_core.fsutil import FolderLock, write_bytes_atomic

__all__ = [
    "SIGNIN_DELAY_S",
    "TOKEN_DAYS",
    "SignedIn",
    "Student",
    "identity_from_oidc",
    "identity_from_token",
    "join_class",
    "list_students",
    "release_name",
    "sign_in_teacher",
]

#: Seconds a wrong class code or teacher password waits before it is refused.
SIGNIN_DELAY_S = 1.0
#: Days a sign-in token stays valid (a term's lessons need it across days).
TOKEN_DAYS = 30


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: who, and the token that proves it on the next visit."""

    identity: Identity
    token: str


@dataclass(frozen=True)
class Student:
    """A student in the roster: the name they joined with and when."""

    name: str
    joined_at: float


def join_class(
    name: str, code: str, config: ClassConfig, *, home: Path | None = None, token: str | None = None
) -> SignedIn:
    """Join the class as the student `name` with the class `code`.

    Args:
        name: the name the student types (see `normalize_name`).
        code: the class code they type.
        config: the class's configuration.
        home: the workspace root (default ``TL_HOME``).
        token: the token this browser already holds, if any: it lets a student whose
            name is taken by themselves (same token) join again.

    Raises:
        AccessDenied: a wrong code (after `SIGNIN_DELAY_S`), or a name someone else took.
        ConfigError: a name that is empty, too long or uses odd characters.
    """
    if not config.code_matches(code):
        time.sleep(SIGNIN_DELAY_S)
        raise AccessDenied(
            "That class code is not this class's. Check it with your teacher (it is not case "
            "sensitive) and join again."
        )
    wanted = normalize_name(name)
    holder = identity_from_token(token, config, home=home) if token else None
    with edit_json("roster", home=home) as roster:
        taken = roster.get(name_key(wanted))
        if taken is not None and not (holder is not None and holder.name == taken["name"]):
            raise AccessDenied(
                f"The name {taken['name']!r} is already taken in this class. If that is you in "
                "another browser, ask the teacher to release it; otherwise add an initial."
            )
        if taken is None:
            roster[name_key(wanted)] = {"name": wanted, "joined_at": time.time()}
        identity = Identity(roster[name_key(wanted)]["name"], "student")
    return SignedIn(identity, _sign(identity, config, home))


def sign_in_teacher(password: str, config: ClassConfig, *, home: Path | None = None) -> SignedIn:
    """Sign in as the teacher with the teacher `password`.

    Raises:
        AccessDenied: a wrong password (after `SIGNIN_DELAY_S`).
    """
    if not check_password(password, config.password_hash):
        time.sleep(SIGNIN_DELAY_S)
        raise AccessDenied(
            "That is not the teacher password. Type it again; students join with their name "
            "and the class code instead."
        )
    identity = Identity.teacher()
    return SignedIn(identity, _sign(identity, config, home))


def identity_from_oidc(user: Mapping[str, Any], config: ClassConfig) -> Identity | None:
    """The identity of a person signed in with ``st.login`` (OpenID Connect), or ``None``.

    Their e-mail address is their name (unique by the provider); the addresses in
    ``config.teachers`` sign in as the teacher.
    """
    email = str(user.get("email") or "").strip()
    if not user.get("is_logged_in") or not email:
        return None
    if email.casefold() in config.teachers:
        return Identity.teacher()
    return Identity(email, "student")


def identity_from_token(
    token: str | None, config: ClassConfig, *, home: Path | None = None
) -> Identity | None:
    """Who `token` says its holder is; ``None`` when it is missing, forged, expired, from
    another class, or names a student no longer in the roster."""
    if not token or token.count(".") != 1:
        return None
    body, signature = token.split(".")
    if not hmac.compare_digest(signature, _mac(body, config, home)):
        return None
    try:
        doc = json.loads(from_urlsafe_b64(body))
        identity = Identity(str(doc["n"]), doc["r"])
        expired = float(doc["t"]) + TOKEN_DAYS * 86400 < time.time()
    except (ValueError, KeyError, TypeError):
        return None
    if expired or identity.role not in ("student", "teacher"):
        return None
    if identity.role == "student" and name_key(identity.name) not in _read_roster(home):
        return None
    return identity


def list_students(*, home: Path | None = None) -> list[Student]:
    """Every student who joined, in the order they joined."""
    students = [Student(doc["name"], doc["joined_at"]) for doc in _read_roster(home).values()]
    return sorted(students, key=lambda s: (s.joined_at, s.name))


def release_name(actor: Identity | None, name: str, *, home: Path | None = None) -> None:
    """Take `name` out of the roster: its tokens stop working, and it can be joined again.

    What the student created keeps its owner. Only the teacher (or the operator,
    ``actor=None``) may release a name.

    Raises:
        AccessDenied: when `actor` is a student.
    """
    if actor is not None and not actor.is_teacher:
        raise AccessDenied("Only the teacher can release a student's name.")
    with edit_json("roster", home=home) as roster:
        roster.pop(name_key(name), None)


# --- storage ---------------------------------------------------------------------------------


def _read_roster(home: Path | None) -> dict[str, dict[str, Any]]:
    return read_record("roster", home=home)


def _secret(home: Path | None) -> bytes:
    path = class_dir(home) / "secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    with FolderLock(class_dir(home), ".secret.lock"):
        if not path.exists():
            write_bytes_atomic(path, secrets.token_bytes(32))
            os.chmod(path, 0o600)
    return path.read_bytes()


def _mac(body: str, config: ClassConfig, home: Path | None) -> str:
    key = hashlib.sha256(
        _secret(home) + b"\0" + config.code.encode() + b"\0" + config.password_hash.encode()
    ).digest()
    return urlsafe_b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def _sign(identity: Identity, config: ClassConfig, home: Path | None) -> str:
    doc = {"n": identity.name, "r": identity.role, "t": time.time()}
    body = urlsafe_b64(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    return f"{body}.{_mac(body, config, home)}"
