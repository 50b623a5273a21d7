"""Choosing where jobs train: ``TL_RUNNER`` (this machine by default, or a Ray cluster)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.engine_helpers import ROOT
from tl_core.errors import ConfigError
from tl_core.jobs.runners import runner_from_env, scheduler_from_env
from tl_core.jobs.scheduler import LocalProcessRunner


def test_jobs_train_on_this_machine_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TL_RUNNER", raising=False)

    scheduler = scheduler_from_env()

    assert isinstance(scheduler.runner, LocalProcessRunner)
    assert scheduler.slots == 1


def test_an_unknown_runner_is_refused_with_the_names_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TL_RUNNER", "slurm")

    with pytest.raises(ConfigError, match=r"'local'.*'ray'"):
        runner_from_env()


def test_the_local_runner_never_imports_ray() -> None:
    script = (
        "import json, sys\n"
        "from tl_core.jobs.runners import scheduler_from_env\n"
        "scheduler_from_env().tick()\n"
        "print(json.dumps('ray' in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) is False
