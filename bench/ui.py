"""Live view: how soon a new epoch shows on the Train page, and server memory while watching.

A real app server (``streamlit run app.py``, its own ``TL_HOME``) shows a fabricated run
that is "running": this bench appends to its ``metrics.jsonl`` as a worker would, and a
real browser (Playwright, Debian's Chromium) keeps ``/train?run=<id>`` open. No training
and no scheduler work happen, so what is measured is the page alone.

- ``lag_s``: an epoch line is appended at time t; the browser's plotly graph is read
  (``.js-plotly-plot`` → ``data[0].x.length``) every 20 ms until the point is there. The
  live view polls every `ui.run_view.POLL_SECONDS`, so lags spread from the redraw cost
  to that plus the redraw cost. Goal: median and p95 ≤ 1 s.
- ``memory_mb``: the server's resident memory (``VmRSS``), sampled every few seconds for
  ``--minutes`` while batch lines arrive at 2 Hz and an epoch line every 5 s. ``growth``
  is the last sample minus the first one taken after a warm-up. Goal: ≤ 50 MB. The
  server's CPU use over the same time is reported too (``server_cpu_percent``, of one core).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, serve_app
from tl_core.config import RunConfig
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    append_jsonl,
    new_run_id,
    prepare_run,
    run_path,
    write_status,
)

#: Batch lines per second while memory is watched (the worker writes at most 2).
BATCH_HZ = 2.0
#: Seconds between epoch lines while memory is watched.
EPOCH_EVERY_S = 5.0
#: Seconds between memory samples, and before the first one (the page's first paints).
SAMPLE_EVERY_S = 5.0
WARM_UP_S = 15.0
_BATCHES = 20
_PLOT_POINTS = (
    "() => { const g = document.querySelector('.js-plotly-plot');"
    " return g && g.data ? g.data[0].x.length : -1; }"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench ui``."""
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="how long to watch memory (default 10)"
    )
    parser.add_argument("--lines", type=int, default=10, help="epoch lines timed for the lag")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server and the browser, measure lag then memory; return the results."""
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="tl-bench-ui-"))
    run_id = _fabricate_running_run(home)
    writer = _MetricsWriter(RunFiles(run_path(run_id, home)).metrics)
    server = serve_app(home, home / "streamlit.log", extra_args=["--server.fileWatcherType=none"])
    with server as (url, pid), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/train?run={run_id}")
        page.wait_for_function(f"({_PLOT_POINTS})() >= 0", timeout=60_000)
        lags = [_time_one_epoch(page, writer) for _ in range(args.lines)]
        memory = _watch_memory(pid, writer, args.minutes * 60)
        errors = page.locator('[data-testid="stException"]').count()
        browser.close()
    return {
        "run_id": run_id,
        "lag_s": {
            "median": round(statistics.median(lags), 3),
            "p95": round(_percentile(lags, 0.95), 3),
            "max": round(max(lags), 3),
            "samples": [round(lag, 3) for lag in lags],
            "goal": 1.0,
        },
        "memory_mb": memory | {"goal_growth": 50.0},
        "minutes": args.minutes,
        "epoch_lines": writer.epochs,
        "batch_lines": writer.batches,
        "exceptions_on_page": errors,
    }


def _fabricate_running_run(home: Path) -> str:
    """A run folder that says it is running, with no worker and no queued job."""
    run_id = new_run_id()
    root = run_path(run_id, home)
    prepare_run(root, RunConfig(dataset_id="0" * 12, weights="none", epochs=1000), run_id=run_id)
    now = time.time()
    write_status(root, RunStatus(state="running", total_epochs=1000, phase="train", started_at=now))
    return run_id


class _MetricsWriter:
    """Appends epoch and batch lines as `tl_core.engine.callbacks.MetricsStream` does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epochs = 0
        self.batches = 0
        self._lock = threading.Lock()

    def epoch(self) -> int:
        """Append the next epoch line; return how many there are now."""
        with self._lock:
            self.epochs += 1
            n = self.epochs
            append_jsonl(
                self.path,
                {
                    "epoch": n,
                    "phase": "train",
                    "loss": 1 / n,
                    "accuracy": 1 - 0.5 / n,
                    "val_loss": 1.2 / n,
                    "val_accuracy": 1 - 0.6 / n,
                    "lr": 1e-3,
                    "seconds": EPOCH_EVERY_S,
                    "time": time.time(),
                },
            )
        return n

    def batch(self) -> None:
        """Append a batch line within the current epoch."""
        with self._lock:
            self.batches += 1
            append_jsonl(
                self.path,
                {
                    "type": "batch",
                    "epoch": self.epochs + 1,
                    "batch": self.batches % _BATCHES + 1,
                    "batches": _BATCHES,
                    "phase": "train",
                    "loss": 0.5,
                    "accuracy": 0.8,
                    "images_per_s": 100.0,
                    "time": time.time(),
                },
            )


def _time_one_epoch(page: Any, writer: _MetricsWriter) -> float:
    """Append an epoch line; return the seconds until the browser's chart has its point."""
    # A random phase against the page's 1 s poll, so the lags sample it evenly.
    time.sleep(random.uniform(1.0, 2.0))
    expected = writer.epoch()
    start = time.monotonic()
    while page.evaluate(_PLOT_POINTS) < expected:
        if time.monotonic() - start > 30:
            raise RuntimeError(f"epoch {expected} did not show within 30 s")
        page.wait_for_timeout(20)
    return time.monotonic() - start


def _watch_memory(pid: int, writer: _MetricsWriter, seconds: float) -> dict[str, Any]:
    """Feed lines while the page watches; sample the server's RSS every `SAMPLE_EVERY_S`."""
    halt = threading.Event()

    def feed() -> None:
        last_epoch = time.monotonic()
        while not halt.wait(1 / BATCH_HZ):
            writer.batch()
            if time.monotonic() - last_epoch >= EPOCH_EVERY_S:
                writer.epoch()
                last_epoch = time.monotonic()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(WARM_UP_S)
        samples = [_rss_mb(pid)]
        started, cpu_start = time.monotonic(), _cpu_seconds(pid)
        deadline = started + seconds
        while time.monotonic() < deadline:
            time.sleep(min(SAMPLE_EVERY_S, max(0.0, deadline - time.monotonic())))
            samples.append(_rss_mb(pid))
        cpu = (_cpu_seconds(pid) - cpu_start) / max(time.monotonic() - started, 1e-9)
    finally:
        halt.set()
        feeder.join()
    return {
        "start": round(samples[0], 1),
        "end": round(samples[-1], 1),
        "max": round(max(samples), 1),
        "growth": round(samples[-1] - samples[0], 1),
        "samples": len(samples),
        "server_cpu_percent": round(100 * cpu, 1),
    }


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds `pid` has used, from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
