"""TensorFlow's own view of the devices, for the worker.

`worker_devices` lists what TensorFlow sees (memory growth switched on) and
`distribution_strategy` picks MirroredStrategy over several devices. The web-side probe
(`tl_core.jobs.devices.probe_devices`) answers without TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Any

from tl_core.jobs.devices import DeviceInfo, probe_devices

__all__ = [
    "MIXED_PRECISION_MIN_CAPABILITY",
    "distribution_strategy",
    "gpu_compute_capabilities",
    "mixed_precision_refusal",
    "quiet_tensorflow",
    "worker_devices",
]

log = logging.getLogger("tl_core.engine.device")

#: Set to N >= 2 to split the CPU into N logical devices and train with MirroredStrategy
#: across them (used by tests and demos of multi-device training on a laptop).
MIRRORED_CPUS_ENV = "TL_MIRRORED_CPUS"


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


#: float16 runs on Tensor Cores from compute capability 7.0 (Volta) on; older GPUs run it
#: slower than float32, and some of their kernels fail.
MIXED_PRECISION_MIN_CAPABILITY = (7, 0)


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """The compute capability of each visible GPU (``None`` where TensorFlow gives none)."""
    import tensorflow as tf

    found: list[tuple[int, int] | None] = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(capability) if capability else None)  # type: ignore[arg-type]
    return found


def mixed_precision_refusal(
    device: DeviceInfo, capabilities: list[tuple[int, int] | None]
) -> str | None:
    """Why mixed precision cannot run on `device` (``None``: it can).

    Example:
        >>> mixed_precision_refusal(DeviceInfo("gpu", ("T4",)), [(7, 5)]) is None
        True
        >>> mixed_precision_refusal(DeviceInfo("gpu", ("K80",)), [(3, 7)])
        'mixed precision needs a GPU of compute capability 7.0 or more (found 3.7); float32 instead'
    """
    if device.kind != "gpu" or not capabilities:
        return "mixed precision needs a GPU (training on the CPU); float32 instead"
    found = [c for c in capabilities if c is None or c < MIXED_PRECISION_MIN_CAPABILITY]
    if not found:
        return None
    shown = ", ".join("unknown" if c is None else f"{c[0]}.{c[1]}" for c in found)
    return (
        "mixed precision needs a GPU of compute capability "
        f"{MIXED_PRECISION_MIN_CAPABILITY[0]}.{MIXED_PRECISION_MIN_CAPABILITY[1]} or more "
        f"(found {shown}); float32 instead"
    )


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
