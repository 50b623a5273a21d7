"""Fixtures for the AppTest page tests: a fresh workspace, clean caches, tiny zips, the app."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.class_support import configure_class
from tests.app.run_support import FakeRunner, install_fake_scheduler
from tl_core.jobs.scheduler import Scheduler

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Give every test its own ``TL_HOME`` and temp dir, and Streamlit caches emptied.

    AppTest runs the app in this process, so Streamlit's caches outlive one test.
    """
    home = tmp_path / "tl_home"
    monkeypatch.setenv("TL_HOME", str(home))
    uploads = tmp_path / "tmp"
    uploads.mkdir()
    monkeypatch.setenv("TMPDIR", str(uploads))
    # `tempfile` reads TMPDIR once and caches the answer; None makes it read it again.
    monkeypatch.setattr("tempfile.tempdir", None)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield home
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def class_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A configured class (see `tests.app.class_support.configure_class`)."""
    configure_class(monkeypatch, tmp_path)


def _png(seed: int, size: int = 32) -> bytes:
    """A PNG whose colours depend on `seed`, so that no two test images are duplicates."""
    image = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, 128))
    image.putpixel((seed % size, 0), (255 - seed % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _image_zip(folders: Mapping[str, int], extra: Mapping[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    seed = 0
    with zipfile.ZipFile(out, "w") as archive:
        for folder, count in folders.items():
            for index in range(count):
                archive.writestr(f"{folder}/{index:03d}.png", _png(seed))
                seed += 1
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def image_zip() -> Callable[..., bytes]:
    """Return ``build(folders, extra=None)``: the bytes of a zip of tiny, distinct PNGs.

    `folders` maps a folder path in the zip (``"cat"``, ``"train/cat"``) to how many
    images it holds; `extra` adds entries as they are (path → bytes).

    Example:
        >>> image_zip({"cat": 3, "dog": 3}, extra={"dog/notes.txt": b"hi"})  # doctest: +SKIP
    """
    return _image_zip


@pytest.fixture
def app() -> AppTest:
    """Return the whole app (``app.py`` with its navigation), not yet run."""
    return AppTest.from_file(str(APP), default_timeout=60)


@pytest.fixture
def queue(
    app_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Scheduler, FakeRunner]]:
    """The app's scheduler, replaced by one that starts no worker and ticks on demand."""
    scheduler, runner = install_fake_scheduler(monkeypatch)
    yield scheduler, runner
    scheduler.stop()
