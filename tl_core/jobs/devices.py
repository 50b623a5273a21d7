"""What the training can run on, seen from outside TensorFlow: GPUs (with memory) or the CPU.

`probe_devices` asks ``nvidia-smi`` and never imports TensorFlow, so the web process and
the scheduler can show the device and count GPU slots cheaply.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

__all__ = ["DeviceInfo", "probe_devices"]


@dataclass(frozen=True)
class DeviceInfo:
    """The accelerators training will use.

    ``kind`` is ``"gpu"`` or ``"cpu"``; ``names`` and ``memory_mb`` have one entry per
    GPU (``memory_mb`` entries may be ``None`` when unknown).
    """

    kind: str
    names: tuple[str, ...] = ()
    memory_mb: tuple[int | None, ...] = ()
    cpu_count: int = 1

    @property
    def count(self) -> int:
        """Number of GPUs (0 on CPU)."""
        return len(self.names) if self.kind == "gpu" else 0

    def describe(self) -> str:
        """One line for people: "NVIDIA H100 (80 GB)" or "CPU only (8 cores)"."""
        if self.kind != "gpu":
            return f"CPU only ({self.cpu_count} cores)"
        parts = []
        for name, memory in zip(self.names, self.memory_mb, strict=False):
            parts.append(f"{name} ({memory / 1024:.0f} GB)" if memory else name)
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The device as recorded in ``run.json``."""
        return {
            "kind": self.kind,
            "names": list(self.names),
            "memory_mb": list(self.memory_mb),
            "count": self.count,
            "cpu_count": self.cpu_count,
        }


def probe_devices(timeout: float = 5.0) -> DeviceInfo:
    """Return the GPUs ``nvidia-smi`` reports, or the CPU; never imports TensorFlow.

    Example:
        >>> probe_devices().kind in ("gpu", "cpu")
        True
    """
    cpus = os.cpu_count() or 1
    smi = shutil.which("nvidia-smi")
    if smi is None or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return DeviceInfo("cpu", cpu_count=cpus)
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return DeviceInfo("cpu", cpu_count=cpus)
    names: list[str] = []
    memory: list[int | None] = []
    for line in out.strip().splitlines():
        name, _, total = line.partition(",")
        names.append(name.strip())
        memory.append(int(total) if total.strip().isdigit() else None)
    if not names:
        return DeviceInfo("cpu", cpu_count=cpus)
    return DeviceInfo("gpu", tuple(names), tuple(memory), cpus)
