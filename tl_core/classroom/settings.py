"""The teacher's class settings: quotas per student and whether the class is paused.

Kept in ``TL_HOME/class/settings.json``, so they survive restarts and every server process
on the same ``TL_HOME`` (and the scheduler) reads the same values. Only the teacher changes
them (`update_class_settings`).

Example:
    >>> read_class_settings().max_active_runs  # doctest: +SKIP
    2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from tl_core.classroom.identity import Identity
from tl_core.classroom.store import edit_json, read_record
from tl_core.errors import AccessDenied, ConfigError

__all__ = ["ClassSettings", "read_class_settings", "update_class_settings"]


@dataclass(frozen=True)
class ClassSettings:
    """Limits that keep a shared box fair.

    Attributes:
        max_active_runs: runs a student may have waiting or training at once (default 2);
            the teacher has no limit.
        max_upload_mb: the largest dataset archive a student may upload, in MiB (default 200).
        paused: while ``True`` no student's run starts; queued runs wait, running ones
            go on, and the teacher's runs still start (default ``False``).
    """

    max_active_runs: int = 2
    max_upload_mb: int = 200
    paused: bool = False

    def check(self) -> ClassSettings:
        """Return self when the values are in range; raise `ConfigError` otherwise."""
        if not 1 <= self.max_active_runs <= 50:
            raise ConfigError(
                "Expected `max_active_runs` to be between 1 and 50. "
                f"Received: max_active_runs={self.max_active_runs}"
            )
        if not 1 <= self.max_upload_mb <= 10_000:
            raise ConfigError(
                "Expected `max_upload_mb` to be between 1 and 10000. "
                f"Received: max_upload_mb={self.max_upload_mb}"
            )
        return self


def read_class_settings(*, home: Path | None = None) -> ClassSettings:
    """The class settings now; the defaults where the file is missing or damaged."""
    defaults = asdict(ClassSettings())
    values = {
        name: value
        for name, value in read_record("settings", home=home).items()
        if name in defaults and type(value) is type(defaults[name])
    }
    try:
        return ClassSettings(**values).check()
    except ConfigError:
        return ClassSettings()


def update_class_settings(
    actor: Identity | None, *, home: Path | None = None, **changes: Any
) -> ClassSettings:
    """Change some class settings (the `ClassSettings` fields) and return the new ones.

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: an unknown name or a value out of range; nothing is written then.

    Example:
        >>> update_class_settings(Identity.teacher(), paused=True).paused  # doctest: +SKIP
        True
    """
    if actor is not None and not actor.is_teacher:
        raise AccessDenied("Only the teacher can change the class settings.")
    unknown = sorted(set(changes) - {f.name for f in fields(ClassSettings)})
    if unknown:
        raise ConfigError(
            f"Unknown class settings {unknown}; expected {list(asdict(ClassSettings()))}."
        )
    with edit_json("settings", home=home) as record:
        settings = replace(read_class_settings(home=home), **changes).check()
        record.clear()
        record.update(asdict(settings))
    return settings
