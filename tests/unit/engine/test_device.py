"""Devices: the CPU when no GPU is visible, nvidia-smi parsed without TensorFlow."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tl_core.engine import device
from tl_core.jobs.devices import DeviceInfo, probe_devices


def fake_smi(monkeypatch: pytest.MonkeyPatch, stdout: str = "", *, fails: bool = False) -> None:
    """Pretend ``nvidia-smi`` exists and answers `stdout` (or fails)."""
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert args[0] == "/usr/bin/nvidia-smi"
        if fails:
            raise subprocess.CalledProcessError(9, args)
        return subprocess.CompletedProcess(args, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(subprocess, "run", run)


def test_probe_devices_returns_the_cpu_when_nvidia_smi_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    info = probe_devices()

    assert info == DeviceInfo("cpu", cpu_count=os.cpu_count() or 1)
    assert info.count == 0
    assert info.describe() == f"CPU only ({os.cpu_count() or 1} cores)"


def test_probe_devices_reads_names_and_memory_from_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_smi(monkeypatch, "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, [N/A]\n")

    info = probe_devices()

    assert (info.kind, info.count) == ("gpu", 2)
    assert info.memory_mb == (81559, None)
    assert info.describe() == "NVIDIA H100 80GB HBM3 (80 GB), NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_cuda_visible_devices_can_hide_every_gpu(
    monkeypatch: pytest.MonkeyPatch, hidden: str
) -> None:
    fake_smi(monkeypatch, "NVIDIA H100 80GB HBM3, 81559\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)

    assert probe_devices().kind == "cpu"


@pytest.mark.parametrize("answer", [{"fails": True}, {"stdout": ""}])
def test_a_failing_or_silent_nvidia_smi_means_the_cpu(
    monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any]
) -> None:
    fake_smi(monkeypatch, **answer)

    assert probe_devices().kind == "cpu"


def test_describe_and_to_json_of_a_cpu() -> None:
    info = DeviceInfo("cpu", cpu_count=2)

    assert info.describe() == "CPU only (2 cores)"
    assert info.to_json() == {
        "kind": "cpu",
        "names": [],
        "memory_mb": [],
        "count": 0,
        "cpu_count": 2,
    }


def test_the_worker_sees_what_tensorflow_sees_and_uses_the_default_strategy_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tensorflow as tf

    monkeypatch.delenv(device.MIRRORED_CPUS_ENV, raising=False)
    gpus = tf.config.list_physical_devices("GPU")

    info = device.worker_devices()
    _strategy, name = device.distribution_strategy(info)

    assert info.kind == ("gpu" if gpus else "cpu")
    assert name == ("mirrored" if len(gpus) > 1 else "default")


# --- mixed precision ---------------------------------------------------------------------


def test_mixed_precision_runs_on_gpus_of_compute_capability_seven_or_more() -> None:
    assert device.mixed_precision_refusal(DeviceInfo("gpu", ("A", "B")), [(7, 0), (9, 0)]) is None


def test_mixed_precision_falls_back_to_float32_on_older_gpus_and_on_the_cpu() -> None:
    older = device.mixed_precision_refusal(DeviceInfo("gpu", ("A", "B")), [(8, 6), (6, 1)])
    unknown = device.mixed_precision_refusal(DeviceInfo("gpu", ("A",)), [None])
    cpu = device.mixed_precision_refusal(DeviceInfo("cpu"), [])

    assert older is not None and "(found 6.1); float32 instead" in older
    assert unknown is not None and "found unknown" in unknown
    assert cpu is not None and "needs a GPU" in cpu
