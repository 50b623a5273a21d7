"""Fault points kill the process only when a test names them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tl_core.faults import FAULT_ENV, fault_point

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = (
    "from tl_core.faults import fault_point\n"
    "for i in range(1, 4):\n"
    "    print(i, flush=True)\n"
    "    fault_point('batch')\n"
)


def _run(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env[FAULT_ENV] = env_value
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_named_point_kills_the_process_with_sigkill_the_nth_time() -> None:
    done = _run("batch@2")

    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]


def test_a_point_may_be_named_by_a_pattern_that_counts_every_match() -> None:
    assert _run("ba*").stdout.split() == ["1"]
    assert _run("b?tch@3").stdout.split() == ["1", "2", "3"]


def test_one_passage_may_count_as_several_points() -> None:
    script = "from tl_core.faults import fault_point\nfault_point('batch', times=3)\nprint('alive')"
    env = {"PATH": "/usr/bin:/bin", FAULT_ENV: "batch@3"}

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == -signal.SIGKILL
    assert done.stdout == ""


def test_other_points_and_an_unset_variable_do_nothing() -> None:
    assert _run("epoch-end").stdout.split() == ["1", "2", "3"]
    assert _run(None).returncode == 0
    fault_point("batch")  # this test process has no TL_FAULT_AT
