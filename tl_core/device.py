"""What the training can run on: GPUs (with memory) or the CPU.

`probe_devices` answers without importing TensorFlow (it asks ``nvidia-smi``), so the web
process can show the device cheaply. The worker uses `worker_devices` (TensorFlow's own
view, with memory growth switched on) and `distribution_strategy`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DeviceInfo",
    "distribution_strategy",
    "probe_devices",
    "quiet_tensorflow",
    "worker_devices",
]

log = logging.getLogger("tl_core.device")

#: Set to N >= 2 to split the CPU into N logical devices and train with MirroredStrategy
#: across them (used by tests and demos of multi-device training on a laptop).
MIRRORED_CPUS_ENV = "TL_MIRRORED_CPUS"


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


def worker_devices() -> DeviceInfo:
    """Return the devices TensorFlow sees in this process (memory growth switched on)."""
    import tensorflow as tf

    cpus = os.cpu_count() or 1
    gpus = tf.config.list_physical_devices("GPU")
    names: list[str] = []
    for gpu in gpus:
        # RuntimeError: TensorFlow already initialised the GPU; growth is then fixed.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    if not gpus:
        return DeviceInfo("cpu", cpu_count=cpus)
    probed = probe_devices()
    memory = probed.memory_mb if probed.count == len(names) else (None,) * len(names)
    return DeviceInfo("gpu", tuple(names), memory, cpus)


def distribution_strategy(device: DeviceInfo) -> tuple[Any, str]:
    """Return ``(strategy, name)``: MirroredStrategy over several GPUs, else the default.

    With ``TL_MIRRORED_CPUS=N`` (N >= 2) and no GPU, the CPU is split into N logical
    devices and mirrored across them. Must run before TensorFlow initialises its devices.
    """
    import tensorflow as tf

    if device.count > 1:
        return tf.distribute.MirroredStrategy(), "mirrored"
    logical = int(os.environ.get(MIRRORED_CPUS_ENV, "0") or 0)
    if device.kind == "cpu" and logical >= 2:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical)]
        )
        names = [f"/cpu:{i}" for i in range(logical)]
        return tf.distribute.MirroredStrategy(names), "mirrored"
    return tf.distribute.get_strategy(), "default"


def quiet_tensorflow() -> Any:
    """Import TensorFlow and find its devices with its start-up chatter kept off stderr.

    TensorFlow 2.21 writes several ``I0000 …`` lines (oneDNN, CUDA drivers, CPU features)
    to file descriptor 2 before its logging is configured; no environment variable stops
    them, and they would bury the CLI's one-line ``error:`` messages. They are captured
    and logged at debug level; if the import itself fails, they are written back to stderr
    before the error propagates.

    Returns:
        The ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            if failed:
                sys.stderr.write(text)
            elif text.strip():
                log.debug("TensorFlow start-up messages:\n%s", text)
    return tf
