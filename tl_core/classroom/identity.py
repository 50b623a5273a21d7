"""Who is acting, and how a class is configured.

A personal studio has no sign-in: everything is done by the machine's operator, whom the
core's functions see as ``actor=None`` (the CLI, scripts, the single-user app). Class mode
is on when a class code and a teacher password are configured, through the environment
(``TL_CLASS_CODE``, ``TL_TEACHER_PASSWORD`` or ``TL_TEACHER_PASSWORD_HASH``) or the
``[class]`` section of ``.streamlit/secrets.toml`` (``code``, ``teacher_password`` or
``teacher_password_hash``). The password is turned into a salted scrypt hash as soon as
it is read; only the hash is kept, and nothing writes either to disk.

Example:
    >>> config = load_class_config({"code": "ABC123", "teacher_password": "s3cret"}, environ={})
    >>> check_password("s3cret", config.password_hash)
    True
    >>> Identity.student("Ada").may_act_for("Ada")
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tl_core.errors import ConfigError

__all__ = [
    "TEACHER_NAME",
    "ClassConfig",
    "Identity",
    "check_password",
    "hash_password",
    "load_class_config",
    "normalize_name",
]

#: The owner name of everything the teacher creates; no student may take it.
TEACHER_NAME = "Teacher"
#: Longest student name accepted (characters).
MAX_NAME_LENGTH = 40
#: scrypt cost: n=2**14, r=8, p=1 takes ~50 ms and 16 MiB here, enough to make guessing slow.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_NAME = re.compile(r"[^\W_](?:[\w .'\-]*[^\W_])?")

Role = Literal["student", "teacher"]


@dataclass(frozen=True)
class Identity:
    """A signed-in person: a student (by the name they joined with) or the teacher.

    ``name`` is what every dataset, run and analysis they create records as its owner.
    """

    name: str
    role: Role = "student"

    @classmethod
    def student(cls, name: str) -> Identity:
        """A student called `name` (normalized with `normalize_name`)."""
        return cls(normalize_name(name), "student")

    @classmethod
    def teacher(cls) -> Identity:
        """The class's teacher."""
        return cls(TEACHER_NAME, "teacher")

    @property
    def is_teacher(self) -> bool:
        """Whether this is the teacher, who sees and controls everything."""
        return self.role == "teacher"

    def may_act_for(self, owner: str | None) -> bool:
        """Whether this person may stop, resume, delete or export what `owner` created.

        The teacher may act for everyone; a student only for themselves. Things with no
        owner (made before class mode, or by the operator) belong to the teacher.
        """
        return self.is_teacher or (owner is not None and same_name(owner, self.name))


def same_name(a: str, b: str) -> bool:
    """Whether two names are the same person's: equal after NFC and case folding."""
    return _key(a) == _key(b)


def name_key(name: str) -> str:
    """The form of `name` that uniqueness is checked on (NFC, case folded)."""
    return _key(name)


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def normalize_name(raw: str) -> str:
    """Tidy a typed name (NFC, single spaces) and check it.

    Raises:
        ConfigError: when the name is empty, too long, uses other characters than
            letters, digits, spaces, ``.``, ``'`` and ``-``, or is the teacher's.

    Example:
        >>> normalize_name("  Ada   Lovelace ")
        'Ada Lovelace'
    """
    name = " ".join(unicodedata.normalize("NFC", raw or "").split())
    if not name:
        raise ConfigError("Expected a name to join the class with. Received an empty name.")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"Expected a name of at most {MAX_NAME_LENGTH} characters. Received "
            f"{len(name)} characters: use a shorter form, such as a first name and an initial."
        )
    if not _NAME.fullmatch(name):
        raise ConfigError(
            "Expected a name of letters, digits, spaces, dots, apostrophes and hyphens. "
            "Remove the other characters and join again."
        )
    if same_name(name, TEACHER_NAME):
        raise ConfigError(
            f"The name {TEACHER_NAME!r} is kept for the teacher. Join with your own name."
        )
    return name


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Return a salted scrypt hash of `password`: ``scrypt$n$r$p$<salt>$<digest>``.

    Example:
        >>> hash_password("s3cret").startswith("scrypt$16384$8$1$")
        True
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT, dklen=32)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${urlsafe_b64(salt)}${urlsafe_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (a `hash_password` result), in constant time.

    A malformed `stored` matches nothing.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = from_urlsafe_b64(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=from_urlsafe_b64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def urlsafe_b64(data: bytes) -> str:
    """Unpadded URL-safe base64 of `data` (tokens, hashes)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_urlsafe_b64(text: str) -> bytes:
    """Decode `urlsafe_b64`; raises ValueError on malformed text."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassConfig:
    """How a class signs in. ``None`` from `load_class_config` means single-user mode.

    Attributes:
        code: the class code students type to join.
        password_hash: the teacher password's scrypt hash (`hash_password`).
        auth: ``"code"`` (name + class code, the default) or ``"oidc"`` (``st.login``
            with the school's OpenID Connect provider).
        teachers: with ``"oidc"``, the e-mail addresses that sign in as the teacher.
    """

    code: str
    password_hash: str = field(repr=False)
    auth: Literal["code", "oidc"] = "code"
    teachers: tuple[str, ...] = ()

    def code_matches(self, typed: str) -> bool:
        """Whether `typed` is the class code (spaces around it and letter case ignored)."""
        return hmac.compare_digest(
            typed.strip().casefold().encode("utf-8"), self.code.strip().casefold().encode()
        )


def load_class_config(
    secrets_section: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> ClassConfig | None:
    """Read the class configuration; ``None`` when class mode is off.

    The environment wins over the ``[class]`` secrets section, key by key.

    Args:
        secrets_section: the ``[class]`` section of ``.streamlit/secrets.toml`` (default
            ``None``: no section).
        environ: the environment to read (default ``os.environ``).

    Raises:
        ConfigError: when only one of the class code and the teacher password is set,
            or `auth` names an unknown method.

    Example:
        >>> load_class_config(None, environ={}) is None
        True
    """
    env = os.environ if environ is None else environ
    section = dict(secrets_section or {})
    code = env.get("TL_CLASS_CODE") or section.get("code")
    password = env.get("TL_TEACHER_PASSWORD") or section.get("teacher_password")
    stored = env.get("TL_TEACHER_PASSWORD_HASH") or section.get("teacher_password_hash")
    auth = env.get("TL_CLASS_AUTH") or section.get("auth") or "code"
    if not code and not (password or stored):
        return None
    if not code or not (password or stored):
        missing = "TL_TEACHER_PASSWORD" if code else "TL_CLASS_CODE"
        raise ConfigError(
            f"Class mode needs both a class code and a teacher password, but {missing} is not "
            "set (neither in the environment nor in the [class] section of "
            ".streamlit/secrets.toml). Set it, or unset the other for single-user mode."
        )
    if auth not in ("code", "oidc"):
        raise ConfigError(f"Expected `auth` to be 'code' or 'oidc'. Received: auth={auth!r}")
    teachers = tuple(str(t).strip().casefold() for t in section.get("teachers", ()))
    password_hash = str(stored) if stored else hash_password(str(password))
    return ClassConfig(str(code), password_hash, auth, teachers)
