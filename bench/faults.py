"""Fault-injection cases survived: the tests/faults suite, run and counted.

Each case kills a real process (worker, server, background analysis) at a named point, or
damages run files, then checks that no run is lost, no run has two writers, and the state
reads as one the pages explain. ``survived`` counts the cases that held; ``failed`` names
the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench faults``."""
    parser.add_argument("-k", dest="keyword", default=None, help="only cases matching (pytest -k)")


def _cases(report: Path) -> list[tuple[str, bool]]:
    tree = ET.parse(report)
    cases = []
    for case in tree.iter("testcase"):
        failed = any(child.tag in {"failure", "error"} for child in case)
        skipped = any(child.tag == "skipped" for child in case)
        if not skipped:
            cases.append((case.get("name", "?"), not failed))
    return cases


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the fault suite in a pytest subprocess and count the cases that held."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "faults.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/faults",
            f"--junitxml={report}",
        ]
        if args.keyword:
            command += ["-k", args.keyword]
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        cases = _cases(report) if report.is_file() else []
    return {
        "bench": "faults",
        "cases": len(cases),
        "survived": sum(ok for _, ok in cases),
        "failed": [name for name, ok in cases if not ok],
        "seconds": round(seconds, 1),
    }
