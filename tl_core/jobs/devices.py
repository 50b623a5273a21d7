"""What the training can run on, seen from outside TensorFlow: GPUs (with memory) or the CPU.

`probe_devices` asks ``nvidia-smi`` and never imports TensorFlow, so the web process and
the scheduler can show the device and count GPU slots cheaply.

``nvidia-smi`` lists every GPU of the machine whatever ``CUDA_VISIBLE_DEVICES`` says, while
CUDA (and so TensorFlow) sees only the GPUs named there. An administrator who sets
``CUDA_VISIBLE_DEVICES=2,3`` for the server hands it GPUs 2 and 3: the probe keeps those
two, in that order, and records each one's name as the administrator spelled it (an index
or a UUID) in ``DeviceInfo.ids``, so that a worker on slot 0 gets ``CUDA_VISIBLE_DEVICES=2``.
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

    ``kind`` is ``"gpu"`` or ``"cpu"``; ``names``, ``memory_mb`` and ``ids`` have one
    entry per visible GPU (``memory_mb`` entries may be ``None`` when unknown). ``ids`` are
    the values a worker's ``CUDA_VISIBLE_DEVICES`` takes to use that GPU alone.
    """

    kind: str
    names: tuple[str, ...] = ()
    memory_mb: tuple[int | None, ...] = ()
    cpu_count: int = 1
    ids: tuple[str, ...] = ()

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
    """Return the GPUs ``nvidia-smi`` reports that ``CUDA_VISIBLE_DEVICES`` lets us use, or
    the CPU; never imports TensorFlow.

    Example:
        >>> probe_devices().kind in ("gpu", "cpu")
        True
    """
    cpus = os.cpu_count() or 1
    smi = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if smi is None or (visible is not None and visible.strip() in ("", "-1")):
        return DeviceInfo("cpu", cpu_count=cpus)
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,index,uuid", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return DeviceInfo("cpu", cpu_count=cpus)
    lines = [line for line in out.strip().splitlines() if line.strip()]
    gpus = [_Gpu.parse(line, position) for position, line in enumerate(lines)]
    chosen = _visible(gpus, visible)
    if not chosen:
        return DeviceInfo("cpu", cpu_count=cpus)
    return DeviceInfo(
        "gpu",
        tuple(gpu.name for _, gpu in chosen),
        tuple(gpu.memory_mb for _, gpu in chosen),
        cpus,
        tuple(token for token, _ in chosen),
    )


@dataclass(frozen=True)
class _Gpu:
    """One line of ``nvidia-smi --query-gpu=name,memory.total,index,uuid``."""

    index: str
    uuid: str
    name: str
    memory_mb: int | None

    @classmethod
    def parse(cls, line: str, position: int) -> _Gpu:
        """Read one line; a missing index is the line's position (nvidia-smi's own order)."""
        name, total, index, uuid = [*(part.strip() for part in line.split(",")), "", "", ""][:4]
        memory = int(total) if total.isdigit() else None
        return cls(index if index.isdigit() else str(position), uuid, name, memory)

    def matches(self, token: str) -> bool:
        """Whether `token` of ``CUDA_VISIBLE_DEVICES`` names this GPU (CUDA accepts an index,
        or a unique prefix of the UUID)."""
        if token.isdigit():
            return int(token) == int(self.index)
        return bool(self.uuid) and self.uuid.startswith(token)


def _visible(gpus: list[_Gpu], visible: str | None) -> list[tuple[str, _Gpu]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` makes visible, each with the token that names it.

    Unset: every GPU, by index. Set: the named ones in the order given; like CUDA, an entry
    that names no GPU ends the list (the ones after it stay hidden).
    """
    if visible is None:
        return [(gpu.index, gpu) for gpu in gpus]
    chosen: list[tuple[str, _Gpu]] = []
    for token in (part.strip() for part in visible.split(",")):
        gpu = next((gpu for gpu in gpus if gpu.matches(token)), None)
        if gpu is None or any(gpu is seen for _, seen in chosen):
            break
        chosen.append((token, gpu))
    return chosen
