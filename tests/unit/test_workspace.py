"""The workspace root and the path guard every outside name goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_core.workspace import DEFAULT_HOME, datasets_dir, safe_join, tl_home


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
