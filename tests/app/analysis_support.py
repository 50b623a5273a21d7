"""Analyses for page tests without TensorFlow: results stored where the background looks.

The background analyses (`tl_core.analysis.background`) keep results on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tl_core.analysis.background import result_path
from tl_core.jobs.runs import write_json_atomic


def store_analysis(run_dir: Path, args: Sequence[str], result: Any) -> Path:
    """Write `result` as the finished analysis `args` of `run_dir`; return its path.

    A page that asks for the same analysis then renders it at once, with no process.
    """
    path = result_path(run_dir, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path
