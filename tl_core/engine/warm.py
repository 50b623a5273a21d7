"""A warm worker: a process that imports TensorFlow before its job exists, then trains it.

Importing TensorFlow and Keras costs about 4.5 s of every worker's start on two CPU cores,
more than ten head epochs on cached features. The local runner
(`tl_core.jobs.scheduler.LocalProcessRunner` with ``warm=True``) keeps one such process
per device slot, started with the slot's ``CUDA_VISIBLE_DEVICES`` (TensorFlow reads it at
import, so it cannot change later), so that this cost is paid before the user clicks
Start training.

Protocol (``python -m tl_core warm-worker [--ready FILE]``):

1. import TensorFlow, Keras and the engine (on a CPU machine, also fit a tiny model once:
   Keras's first ``fit`` in a process costs seconds of its own); create ``FILE`` (the
   runner's "ready" sign);
2. read one line from stdin: ``{"args": [RUN_ID, "--resume", ...], "log": PATH}``; an
   empty read (the runner's process ended or closed the pipe) ends the process, exit 0;
3. remove ``FILE``, send stdout and stderr to the run's log, and run exactly what
   ``python -m tl_core worker ARGS`` runs (`tl_core.cli.main`): the writer lock first,
   then training, the same exit codes. The process then exits: one job per process, so
   nothing of one run (graphs, memory Keras never gives back) reaches the next.

Example:
    >>> serve_one_job(Path("/tmp/ready"), io.StringIO(""))  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["import_engine", "serve_one_job"]


def import_engine() -> None:
    """Import what every training job needs, so a job starts without import time.

    Example:
        >>> import_engine()  # doctest: +SKIP
    """
    from tl_core.engine.device import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow's import, as the worker command does
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    import tl_core.data.dataset
    import tl_core.engine.callbacks
    import tl_core.engine.checkpoints
    import tl_core.engine.train
    import tl_core.models.classifier  # noqa: F401

    if _devices_may_be_initialised():
        _run_one_tiny_fit()


def _devices_may_be_initialised() -> bool:
    """Whether running a model now leaves the job's device setup unchanged: only on a CPU
    machine without ``TL_MIRRORED_CPUS``. A GPU's memory growth and the CPU split into
    logical devices must be set before TensorFlow initialises its devices, and an idle
    process holding a GPU context would take memory from the job training beside it."""
    import tensorflow as tf

    from tl_core.engine.device import MIRRORED_CPUS_ENV

    return not tf.config.list_physical_devices("GPU") and not os.environ.get(MIRRORED_CPUS_ENV)


def _run_one_tiny_fit() -> None:
    """Fit a 2-unit model for one step, then clear Keras's session.

    A process's first ``fit`` pays for Keras's lazy imports and TensorFlow's runtime start
    (thread pools, function tracing machinery): 3.2 s for this tiny model the first time,
    1.7 s the second, on two busy CPU cores. Paying it here takes that off the job's first
    epoch. ``clear_session`` resets the layer-name counters, so the job builds its model
    with the names a fresh process gives it.
    """
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = (np.zeros((4, 4), "float32"), np.zeros(4, "int32"))
    model.fit(*data, validation_data=data, epochs=1, verbose=0)
    keras.backend.clear_session()


def serve_one_job(ready: Path | None, requests: TextIO) -> int:
    """Import the engine, wait for one job on `requests`, train it; return the exit code.

    Args:
        ready: a file created once the imports are done and removed when a job arrives
            (``None``: no sign).
        requests: where the job's line arrives (the runner's pipe, stdin).

    Example:
        >>> serve_one_job(None, io.StringIO('{"args": ["RUN_ID"], "log": "log.txt"}\\n'))
        ... # doctest: +SKIP
        0
    """
    import_engine()
    if ready is not None:
        ready.touch()
    line = requests.readline()
    if ready is not None:
        ready.unlink(missing_ok=True)
    if not line.strip():
        return 0  # the runner is gone or recycles this process: nothing to do
    job = json.loads(line)
    _redirect_output(Path(job["log"]))
    from tl_core.cli import main

    return main(["worker", *job["args"]])


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr to the end of `log`, as a cold worker's are."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
