"""Start, kill and inspect real workers for the fault-injection cases."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.unit.engine_helpers import epoch_lines, run_tl_core, tiny_config
from tl_core.jobs.runs import new_run_id, prepare_run, run_path

KILLED = -signal.SIGKILL


def new_run(home: Path, dataset_id: str, **changes: Any) -> Path:
    """Prepare a queued run of the tiny settings in `home`; return its folder."""
    run_id = new_run_id()
    root = run_path(run_id, home)
    prepare_run(root, tiny_config(dataset_id, **changes), run_id=run_id)
    return root


def tl_core(home: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tl_core ARGS`` in `home` to its end, killed at `fault` when given."""
    return run_tl_core(*args, home=home, **({"TL_FAULT_AT": fault} if fault else {}))


def worker(
    home: Path, root: Path, *, fault: str | None = None, resume: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the queue's worker on `root` to its end (or to its fault)."""
    args = ["worker", root.name, *(["--resume"] if resume else [])]
    return tl_core(home, *args, fault=fault)


def epochs_once(root: Path, total: int) -> None:
    """Every epoch 1..total has exactly one line in ``metrics.jsonl``."""
    epochs = [line["epoch"] for line in epoch_lines(root)]
    assert epochs == list(range(1, total + 1)), epochs


def digest(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under `root` (names relative), leaving out `skip` folders."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


def killed_mid_epoch(home: Path, dataset_id: str, epochs: int = 2) -> Path:
    """A run whose worker was SIGKILLed during its second epoch (epoch 1 committed)."""
    root = new_run(home, dataset_id, epochs=epochs)
    killed = worker(home, root, fault="batch@4")
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    return root


def resumed_to_the_end(home: Path, root: Path, total: int) -> None:
    """``python -m tl_core resume`` finishes the run, each epoch recorded once."""
    resumed = tl_core(home, "resume", str(root))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs_once(root, total)
