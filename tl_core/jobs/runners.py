"""Which runner trains the queue's jobs: this machine (default) or a Ray cluster.

``TL_RUNNER=local`` (the default) starts workers as subprocesses of this machine
(`tl_core.jobs.scheduler.LocalProcessRunner`); ``TL_RUNNER=ray`` sends them to the Ray
cluster at ``RAY_ADDRESS`` (`tl_core.jobs.ray_runner.RayRunner`; Ray is imported only
then). The web server and ``python -m tl_core scheduler`` both build their scheduler with
`scheduler_from_env`.

Example:
    >>> scheduler = scheduler_from_env(warm=True)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from tl_core.errors import ConfigError
from tl_core.jobs.fairshare import SLOTS_ENV
from tl_core.jobs.scheduler import LocalProcessRunner, Runner, Scheduler

__all__ = ["RUNNERS", "RUNNER_ENV", "runner_from_env", "runner_name", "scheduler_from_env"]

#: Where jobs train: ``local`` (default) or ``ray``.
RUNNER_ENV = "TL_RUNNER"
RUNNERS = ("local", "ray")


def runner_name() -> str:
    """The runner ``TL_RUNNER`` names (``local`` when unset).

    Raises:
        ConfigError: for a name other than ``local`` or ``ray``.

    Example:
        >>> runner_name()  # doctest: +SKIP
        'local'
    """
    name = (os.environ.get(RUNNER_ENV) or "local").strip().lower()
    if name not in RUNNERS:
        raise ConfigError(
            f"TL_RUNNER={name!r} is not a runner this studio knows. Set it to 'local' (train "
            "on this machine, the default) or 'ray' (train on the Ray cluster at RAY_ADDRESS)."
        )
    return name


def runner_from_env(home: Path | None = None, *, warm: bool = False) -> Runner:
    """The runner ``TL_RUNNER`` names, for the workspace `home` (default ``TL_HOME``).

    Args:
        home: the workspace root (default ``TL_HOME``).
        warm: keep warm workers (the local runner only; default False).

    Raises:
        ConfigError: an unknown ``TL_RUNNER``, or Ray missing or unreachable.

    Example:
        >>> runner_from_env(warm=True)  # doctest: +SKIP
        <tl_core.jobs.scheduler.LocalProcessRunner object at ...>
    """
    if runner_name() == "ray":
        from tl_core.jobs.ray_runner import RayRunner

        return RayRunner(home)
    return LocalProcessRunner(home, warm=warm)


def scheduler_from_env(home: Path | None = None, *, warm: bool = False) -> Scheduler:
    """A scheduler over `runner_from_env`; on a cluster its slot count is the cluster's
    (unless ``TL_GPU_SLOTS`` says otherwise).

    Example:
        >>> scheduler_from_env().slots  # doctest: +SKIP
        1
    """
    runner = runner_from_env(home, warm=warm)
    cluster_slots = getattr(runner, "slots", None)
    slots = (
        cluster_slots if isinstance(cluster_slots, int) and not os.environ.get(SLOTS_ENV) else None
    )
    return Scheduler(home, runner=runner, slots=slots)
