"""GPU slots follow the GPUs the administrator made visible with ``CUDA_VISIBLE_DEVICES``.

A fake ``nvidia-smi`` on ``PATH`` lists four GPUs, as the real one does whatever
``CUDA_VISIBLE_DEVICES`` says.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.jobs.queue_support import CONFIG, state, wait_for, worker_calls
from tl_core.jobs import queue as jobs
from tl_core.jobs.devices import probe_devices
from tl_core.jobs.scheduler import SLOTS_ENV, LocalProcessRunner, Scheduler

FOUR_GPUS = [
    "0, GPU-aaaaaaaa-0000, NVIDIA H100, 81559",
    "1, GPU-bbbbbbbb-1111, NVIDIA H100, 81559",
    "2, GPU-cccccccc-2222, NVIDIA H100, 81559",
    "3, GPU-dddddddd-3333, NVIDIA H100, 81559",
]


@pytest.fixture
def four_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put an ``nvidia-smi`` that reports four GPUs first on ``PATH``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            import sys
            fields = [a for a in sys.argv if a.startswith("--query-gpu=")][0]
            fields = fields.split("=", 1)[1].split(",")
            rows = [dict(zip(["index", "uuid", "name", "memory.total"], line.split(", ")))
                    for line in {FOUR_GPUS!r}]
            for row in rows:
                print(", ".join(row[field] for field in fields))
            """
        )
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(SLOTS_ENV, raising=False)


@pytest.mark.usefixtures("four_gpus")
def test_without_cuda_visible_devices_every_gpu_is_a_slot() -> None:
    devices = probe_devices()

    assert devices.count == 4
    assert devices.ids == ("0", "1", "2", "3")


@pytest.mark.usefixtures("four_gpus")
def test_only_the_gpus_named_in_cuda_visible_devices_are_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")

    devices = probe_devices()

    assert (devices.kind, devices.count, devices.ids) == ("gpu", 2, ("2", "3"))
    assert devices.describe() == "NVIDIA H100 (80 GB), NVIDIA H100 (80 GB)"


@pytest.mark.usefixtures("four_gpus")
def test_gpus_named_by_uuid_keep_the_administrators_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-dddddddd,1")

    assert probe_devices().ids == ("GPU-dddddddd", "1")


@pytest.mark.usefixtures("four_gpus")
@pytest.mark.parametrize("hidden", ["", "-1"])
def test_cuda_visible_devices_that_hides_every_gpu_means_the_cpu(
    monkeypatch: pytest.MonkeyPatch, hidden: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)

    assert probe_devices().kind == "cpu"


@pytest.mark.usefixtures("four_gpus")
def test_an_unknown_entry_ends_the_list_as_cuda_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7,1")

    assert probe_devices().ids == ("3",)


@pytest.mark.usefixtures("four_gpus")
def test_workers_get_the_visible_gpus_not_the_first_ones(
    monkeypatch: pytest.MonkeyPatch, make_scheduler: Callable[..., Scheduler]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    scheduler = make_scheduler("wait", gpus=None, slots=None)
    run_ids = [jobs.submit(CONFIG) for _ in range(3)]

    scheduler.tick()

    assert scheduler.slots == 2
    assert [state(r) for r in run_ids] == ["running", "running", "queued"]
    wait_for(lambda: all(worker_calls(r) for r in run_ids[:2]))
    assert sorted(worker_calls(r)[0]["cuda"] for r in run_ids[:2]) == ["2", "3"]


def test_a_runner_given_device_ids_hands_them_out_by_slot() -> None:
    runner = LocalProcessRunner(gpus=["5", "GPU-x"])

    assert [runner.device_for(slot) for slot in range(3)] == ["5", "GPU-x", "5"]
    assert LocalProcessRunner(gpus=0).device_for(0) is None
    assert LocalProcessRunner(gpus=2).device_for(3) == "1"
