"""Live view: how soon a new epoch shows on the Train page, and what watching tabs cost.

A real app server (``streamlit run app.py``, its own ``TL_HOME``) shows a fabricated run
that is "running": this bench appends to its ``metrics.jsonl`` as a worker would, and one
real browser (Playwright, Debian's Chromium) keeps ``/train?run=<id>`` open in ``--tabs``
tabs (one browser context each, so each is its own Streamlit session). No training and
no scheduler work happen, so what is measured is the page alone.

- ``lag_s``: an epoch line is appended at time t; every tab's plotly graph is read
  (``.js-plotly-plot`` → ``data[0].x.length``) every 20 ms until the point is there (one
  sample per tab and line). The live view polls every `ui.run_view.POLL_SECONDS`, so lags
  spread from the redraw cost to that plus the redraw cost. Goal: median and p95 ≤ 1 s.
- ``server_cpu_per_watching_tab``: the server's CPU seconds (``/proc/<pid>/stat`` utime +
  stime) over ``--minutes`` while batch lines arrive at 2 Hz and an epoch line every 5 s,
  divided by the window and by the number of tabs: a fraction of one core. Goal ≤ 0.03.
- ``server_cpu_per_idle_tab``: the same over ``--idle-minutes`` while nothing is written
  (the run still says "running"). Goal ≤ 0.01.
- ``memory_mb``: the server's resident memory (``VmRSS``), sampled every few seconds over
  the watching window; ``growth`` is the last sample minus the first one taken after a
  warm-up. Goal: ≤ 50 MB.

The 1-minute load average before the server starts is reported too: CPU figures taken on
a busy machine read high.
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
from tl_core.fsutil import FolderLock
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
#: Seconds after the last line before the idle window opens (the tabs' last redraws).
SETTLE_S = 5.0
#: Goals of the class-server issue, in fractions of one core per tab.
GOAL_CPU_WATCHING = 0.03
GOAL_CPU_IDLE = 0.01
_BATCHES = 20
#: Each tab stands for a student's own window, which is on screen: Chromium would
#: otherwise throttle the timers (Streamlit's polling) of all but one tab.
_VISIBLE_TAB_ARGS = [
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
]
_PLOT_POINTS = (
    "() => { const g = document.querySelector('.js-plotly-plot');"
    " return g && g.data ? g.data[0].x.length : -1; }"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench ui``."""
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="how long to watch memory (default 10)"
    )
    parser.add_argument(
        "--idle-minutes",
        type=float,
        default=None,
        help="how long to watch the idle tabs (default: --minutes)",
    )
    parser.add_argument("--lines", type=int, default=10, help="epoch lines timed for the lag")
    parser.add_argument("--tabs", type=int, default=4, help="browser tabs watching (default 4)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server and the browser, measure lag, then watching and idle cost."""
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="tl-bench-ui-"))
    run_id = _fabricate_running_run(home)
    writer = _MetricsWriter(RunFiles(run_path(run_id, home)).metrics)
    idle_minutes = args.minutes if args.idle_minutes is None else args.idle_minutes
    load = os.getloadavg()[0]
    server = serve_app(home, home / "streamlit.log", extra_args=["--server.fileWatcherType=none"])
    # The bench holds the run's writer lock as its worker would: a "running" run that no
    # process writes is shown as interrupted, and is not watched live.
    writer_lock = FolderLock(run_path(run_id, home))
    with writer_lock, server as (url, pid), sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *_VISIBLE_TAB_ARGS]
        )
        pages = [_open_tab(browser, f"{url}/train?run={run_id}") for _ in range(args.tabs)]
        lags = [lag for _ in range(args.lines) for lag in _time_one_epoch(pages, writer)]
        watching = _watch(pid, writer, args.minutes * 60, feed=True)
        time.sleep(SETTLE_S)
        idle = _watch(pid, writer, idle_minutes * 60, feed=False)
        errors = sum(page.locator('[data-testid="stException"]').count() for page in pages)
        browser.close()
    return {
        "run_id": run_id,
        "tabs": args.tabs,
        "load_average_1min_at_start": round(load, 2),
        "server_cpu_per_watching_tab": round(watching["cpu"] / args.tabs, 4),
        "server_cpu_per_idle_tab": round(idle["cpu"] / args.tabs, 4),
        "goal_cpu_per_watching_tab": GOAL_CPU_WATCHING,
        "goal_cpu_per_idle_tab": GOAL_CPU_IDLE,
        "lag_s": {
            "median": round(statistics.median(lags), 3),
            "p95": round(_percentile(lags, 0.95), 3),
            "max": round(max(lags), 3),
            "samples": [round(lag, 3) for lag in lags],
            "goal": 1.0,
        },
        "memory_mb": watching["memory"] | {"goal_growth": 50.0},
        "minutes": args.minutes,
        "idle_minutes": idle_minutes,
        "epoch_lines": writer.epochs,
        "batch_lines": writer.batches,
        "exceptions_on_page": errors,
    }


def _open_tab(browser: Any, url: str) -> Any:
    """A page in a context of its own (its own cookies, so its own session), showing `url`."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.wait_for_function(f"({_PLOT_POINTS})() >= 0", timeout=60_000)
    return page


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


def _time_one_epoch(pages: list[Any], writer: _MetricsWriter) -> list[float]:
    """Append an epoch line; return, for each tab, the seconds until its chart has the point."""
    # A random phase against the pages' polling, so the lags sample it evenly.
    time.sleep(random.uniform(1.0, 2.0))
    expected = writer.epoch()
    start = time.monotonic()
    lags: dict[int, float] = {}
    while len(lags) < len(pages):
        for index, page in enumerate(pages):
            if index not in lags and page.evaluate(_PLOT_POINTS) >= expected:
                lags[index] = time.monotonic() - start
        if time.monotonic() - start > 30:
            raise RuntimeError(f"epoch {expected} did not show in every tab within 30 s")
        pages[0].wait_for_timeout(20)
    return list(lags.values())


def _watch(pid: int, writer: _MetricsWriter, seconds: float, *, feed: bool) -> dict[str, Any]:
    """Measure the server's CPU (cores) and memory for `seconds` while the tabs watch.

    With `feed`, batch lines arrive at `BATCH_HZ` and an epoch line every `EPOCH_EVERY_S`
    (after a `WARM_UP_S` warm-up); without, nothing is written: the tabs are idle.
    """
    halt = threading.Event()

    def feed_lines() -> None:
        last_epoch = time.monotonic()
        while not halt.wait(1 / BATCH_HZ):
            writer.batch()
            if time.monotonic() - last_epoch >= EPOCH_EVERY_S:
                writer.epoch()
                last_epoch = time.monotonic()

    feeder = threading.Thread(target=feed_lines, daemon=True)
    if feed:
        feeder.start()
    try:
        if feed:
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
        if feed:
            feeder.join()
    memory = {
        "start": round(samples[0], 1),
        "end": round(samples[-1], 1),
        "max": round(max(samples), 1),
        "growth": round(samples[-1] - samples[0], 1),
        "samples": len(samples),
        "server_cpu_percent": round(100 * cpu, 1),
    }
    return {"cpu": cpu, "memory": memory}


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
