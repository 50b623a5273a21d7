"""Named points where a fault-injection test can kill this process, as a power cut would.

The fault suite (``tests/faults``) starts real workers, servers and analyses with
``TL_FAULT_AT=POINT`` (or ``POINT@N`` for the N-th time the point is reached; POINT may be
a shell pattern such as ``before-rename:*.npz``) and checks
that every run survives: no run lost, never two writers, a state the pages explain. At a
matching point the process sends itself SIGKILL, so no ``finally`` block, ``atexit`` hook
or buffered write gets a chance to tidy up. Unset (always, outside tests) a point costs one
dictionary lookup.

Points: ``batch`` (after a training batch), ``epoch-end`` (metrics written, checkpoint
not yet), ``before-rename:<file name>`` (a complete temporary, not yet renamed into place:
checkpoints, ``model.keras``, exports), ``phase-end``, ``claimed`` (the scheduler committed
a claim, no worker yet), ``analysis``.

Example:
    >>> fault_point("batch")  # TL_FAULT_AT unset: nothing happens
"""

from __future__ import annotations

import fnmatch
import os
import signal
from collections import Counter

__all__ = ["FAULT_ENV", "fault_point"]

FAULT_ENV = "TL_FAULT_AT"

_reached: Counter[str] = Counter()


def fault_point(name: str, times: int = 1) -> None:
    """SIGKILL this process when ``TL_FAULT_AT`` names `name` (and its count is reached).

    `times` counts this passage as that many points: one call after several training
    steps run in one execution (``steps_per_execution``) still counts every step.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    pattern, _, nth = spec.partition("@")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _reached[pattern] += times  # a pattern counts every point it matches
    if _reached[pattern] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
