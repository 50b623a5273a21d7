"""The demo as a background process: started once, shared, refused to a student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tl_core.analysis.background import result_path
from tl_core.analysis.demo_job import (
    DEMO_ARGS,
    demo_folder,
    forget_demo,
    request_demo,
    require_demo_access,
)
from tl_core.classroom.identity import Identity
from tl_core.errors import AccessDenied
from tl_core.jobs.runs import write_json_atomic


@pytest.fixture(autouse=True)
def tl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TL_HOME", str(home))
    return home


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The processes started: recorded, not run."""
    argvs: list[list[str]] = []

    def spawn(argv: list[str], **_: Any) -> None:
        argvs.append(list(argv))

    monkeypatch.setattr("tl_core.analysis.background.spawn_tracked", spawn)
    return argvs


def test_the_operator_starts_the_demo_command_in_the_background_once(
    started: list[list[str]], tl_home: Path
) -> None:
    first = request_demo()
    second = request_demo()

    assert (first.state, second.state) == ("running", "running")
    ((*_, folder, key, command),) = started
    assert (Path(folder), command) == (tl_home / "demo" / "analysis", "demo")
    assert key.startswith("demo-")


def test_the_teacher_gets_the_kept_demo_without_a_new_process(
    started: list[list[str]],
) -> None:
    doc = {"run_ids": ["20261207-090000-aaaaaa", "20261207-090130-bbbbbb"], "report": "r.html"}
    kept = result_path(demo_folder(), DEMO_ARGS)
    kept.parent.mkdir(parents=True)
    write_json_atomic(kept, doc)

    demo = request_demo(actor=Identity.teacher())

    assert (demo.state, demo.result) == ("ready", doc)
    assert started == []


def test_a_student_is_refused_the_demo_and_nothing_starts(
    started: list[list[str]], tl_home: Path
) -> None:
    ada = Identity.student("Ada")

    with pytest.raises(AccessDenied, match="Only the teacher can prepare a demo"):
        request_demo(actor=ada)
    with pytest.raises(AccessDenied):
        forget_demo(actor=ada)
    with pytest.raises(AccessDenied):
        require_demo_access(ada)

    assert started == []
    assert not (tl_home / "demo").exists()


def test_forgetting_the_demo_makes_the_next_request_prepare_it_again(
    started: list[list[str]],
) -> None:
    kept = result_path(demo_folder(), DEMO_ARGS)
    kept.parent.mkdir(parents=True)
    write_json_atomic(kept, {"run_ids": []})

    forget_demo()

    assert request_demo(start=False).state == "failed"
    assert request_demo().state == "running"
    assert len(started) == 1
