"""Fixtures shared by every test: an isolated workspace and an archive factory.

Image and zip builders live in `tests.helpers` (plain functions, importable anywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Entries, make_zip

#: Environment variables that change what `tl_core` does; no test inherits them.
_TL_SETTINGS = (
    "TL_MAX_ARCHIVE_MB",
    "TL_MAX_TOTAL_MB",
    "TL_MAX_ENTRY_MB",
    "TL_MAX_ENTRIES",
    "TL_DEBUG",
)


@pytest.fixture(autouse=True)
def tl_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``TL_HOME`` at a fresh folder for every test, with no ``TL_*`` overrides set."""
    home = tmp_path_factory.mktemp("tl_home")
    monkeypatch.setenv("TL_HOME", str(home))
    for name in _TL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def make_archive(tmp_path: Path) -> Callable[..., Path]:
    """Return ``build(entries, name="data.zip", **options)``: a zip written under tmp_path.

    `entries` and `options` are those of `tests.helpers.zip_bytes`.
    """

    def build(entries: Entries, name: str = "data.zip", **options: object) -> Path:
        return make_zip(tmp_path / name, entries, **options)

    return build
