"""Fixtures of the queue and scheduler tests: recorded processes and schedulers over a fake."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.jobs.queue_support import FAKE_WORKER
from tl_core.jobs.scheduler import LocalProcessRunner, Scheduler


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Record every process started during the test; kill and reap the ones left running."""
    processes: list[subprocess.Popen[bytes]] = []

    class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            processes.append(self)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    yield processes
    for process in processes:
        if process.poll() is None:
            # Still our unreaped child, so the pid cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def make_scheduler(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> Iterator[Callable[..., Scheduler]]:
    """Return ``make(mode="wait", slots=1, gpus=0, command=None, **options)``: a scheduler
    over the fake worker; `options` go to `Scheduler`."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    made: list[Scheduler] = []

    def make(
        mode: str = "wait",
        *,
        slots: int = 1,
        gpus: int | None = 0,
        command: list[str] | None = None,
        **options: object,
    ) -> Scheduler:
        runner = LocalProcessRunner(
            command=command or [sys.executable, str(script), mode], gpus=gpus
        )
        scheduler = Scheduler(runner=runner, slots=slots, **options)  # type: ignore[arg-type]
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop()
