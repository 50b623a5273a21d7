"""The workspace root and the path guard every outside name goes through."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_core.fsutil import FolderLock
from tl_core.workspace import DEFAULT_HOME, clean_staging, datasets_dir, safe_join, tl_home


def test_tl_home_is_the_tl_home_variable_and_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wanted = tmp_path / "deep" / "er" / "home"
    monkeypatch.setenv("TL_HOME", str(wanted))

    home = tl_home()

    assert home == wanted.resolve()
    assert home.is_dir()


def test_tl_home_is_the_autouse_fixture_folder_in_tests(tl_home: Path) -> None:
    from tl_core.workspace import tl_home as current_home

    assert current_home() == tl_home.resolve()


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_without_tl_home_the_workspace_is_a_folder_in_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    if value is None:
        monkeypatch.delenv("TL_HOME")
    else:
        monkeypatch.setenv("TL_HOME", value)

    assert tl_home() == (tmp_path / DEFAULT_HOME).resolve()
    assert (tmp_path / DEFAULT_HOME).is_dir()


def test_tl_home_expands_the_user_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TL_HOME", "~/studio")

    assert tl_home() == (tmp_path / "studio").resolve()


def test_tl_home_relative_to_the_current_directory_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TL_HOME", "rel/home")

    home = tl_home()

    assert home.is_absolute()
    assert home == (tmp_path / "rel" / "home").resolve()


def test_datasets_dir_is_created_under_the_given_home(tmp_path: Path) -> None:
    path = datasets_dir(tmp_path)

    assert path == tmp_path / "datasets"
    assert path.is_dir()


def test_datasets_dir_defaults_to_tl_home(tl_home: Path) -> None:
    assert datasets_dir() == tl_home.resolve() / "datasets"


@pytest.mark.parametrize(
    "parts",
    [("cat",), ("train", "cat", "000001.jpg"), ("a", "..", "b"), (".",), ("café",)],
)
def test_safe_join_accepts_paths_that_stay_inside(tmp_path: Path, parts: tuple[str, ...]) -> None:
    joined = safe_join(tmp_path, *parts)

    root = tmp_path.resolve()
    assert joined == root.joinpath(*parts).resolve()
    assert joined == root or root in joined.parents


@pytest.mark.parametrize(
    "parts",
    [("..",), ("..", "x.png"), ("cat", "..", "..", "x.png"), ("/etc/passwd",), ("a", "/tmp")],
    ids=["parent", "parent file", "climbs out", "absolute", "absolute later"],
)
def test_safe_join_refuses_paths_that_leave_the_root(
    tmp_path: Path, parts: tuple[str, ...]
) -> None:
    with pytest.raises(DataError) as caught:
        safe_join(tmp_path / "root", *parts)

    message = str(caught.value)
    assert message.startswith(f"Refused the path {'/'.join(parts)!r}: it points outside")
    assert "rename the entry" in message


def test_safe_join_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)

    with pytest.raises(DataError, match="points outside"):
        safe_join(root, "link", "secret.txt")


def test_safe_join_accepts_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "link").symlink_to(root / "real")

    assert safe_join(root, "link", "x") == (root / "real" / "x").resolve()


# --- leftovers of killed writers ----------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _age(path: Path, seconds: float) -> Path:
    """Make `path` (and what it holds) look untouched for `seconds`."""
    then = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (then, then))
    return path


def _leftovers(home: Path) -> dict[str, Path]:
    """One leftover of each kind a killed writer leaves, all untouched for an hour."""
    dead = _dead_pid()
    run = home / "runs" / "20261123-131500-a1b2c3"
    (run / "checkpoints").mkdir(parents=True)
    paths = {
        "ingest": home / "datasets" / ".ingest-0123456789ab-x1y2z3",
        "ingest_by_pid": home / "datasets" / f".ingest-0123456789ab-{dead}-x1y2z3",
        "cache": home / "cache" / ".0123456789abcdef0123-k9j8h7",
        "upload": home / "weights" / ".upload-abc123.part",
        "model_tmp": run / "model.tmp.keras",
        "temporary": run / "checkpoints" / f".{dead}-140000.tmp.epoch-0003.variables.npz",
    }
    for name, path in paths.items():
        if name in ("ingest", "ingest_by_pid", "cache"):
            (path / "images").mkdir(parents=True)
            (path / "images" / "a.png").write_bytes(b"png")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half written")
        _age(path, 3600)
    return paths


def test_clean_staging_removes_what_killed_writers_left_and_says_what(tl_home: Path) -> None:
    paths = _leftovers(tl_home)
    kept = [
        tl_home / "datasets" / "0123456789ab" / "report.json",
        tl_home / "cache" / "0123456789abcdef0123" / "features.npy",
        tl_home / "runs" / "20261123-131500-a1b2c3" / "status.json",
        tl_home / "weights" / "0123456789ab-mine.weights.h5",
    ]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        _age(path, 3600)

    removed = clean_staging(tl_home)

    expected = {path.relative_to(tl_home).as_posix() for path in paths.values()}
    assert set(removed) == expected
    assert not any(path.exists() for path in paths.values())
    assert all(path.exists() for path in kept)
    assert clean_staging(tl_home) == []


def test_clean_staging_keeps_what_live_writers_are_writing(tl_home: Path) -> None:
    paths = _leftovers(tl_home)
    live_tmp = paths["temporary"].with_name(f".{os.getpid()}-1.tmp.status.json")
    live_tmp.write_text("{}")
    live_ingest = tl_home / "datasets" / f".ingest-0123456789ab-{os.getpid()}-abcdef"
    live_ingest.mkdir()
    fresh_upload = tl_home / "weights" / ".upload-fresh.part"
    fresh_upload.write_bytes(b"arriving")
    run = paths["model_tmp"].parent

    with FolderLock(run):  # a worker trains this run: its half-written files are its own
        removed = clean_staging(tl_home)

    assert paths["model_tmp"].exists() and paths["temporary"].exists()
    assert live_tmp.exists() and live_ingest.exists() and fresh_upload.exists()
    assert not any(name.startswith("runs/") for name in removed)
    assert "datasets/.ingest-0123456789ab-x1y2z3" in removed


def test_clean_staging_of_an_empty_workspace_removes_nothing(tl_home: Path) -> None:
    assert clean_staging(tl_home) == []
