"""A class of students in real browsers: each joins, trains a tiny run and watches it live.

One app server in class mode (``TL_CLASS_CODE``, ``TL_TEACHER_PASSWORD``, its own
``TL_HOME``), one headless Chromium, ``--students`` browser contexts (each its own cookies,
so its own Streamlit session). The bench runs in three phases:

1. **Join**, one student after the other (a short pause between them, so that two cores
   keep up): "Student 01" … join with the class code, the Data page chooses the bundled
   sample, the Backbone page gets MobileNetV3Small from scratch at ``--image-size``
   pixels, and the Train form gets ``--epochs`` epochs. Nothing is queued yet.
2. **Start**: every student clicks **Start training**, one tab after the other, as a class
   does when the teacher says "go". The runs go through the server's real scheduler (one
   slot on a CPU box, warm workers) and each tab keeps showing its run.
3. **Watch** until every run has ended, then **idle** for ``--idle-seconds`` with the tabs
   still open.

Figures (one JSON object):

- ``runs_submitted``: the jobs in the server's queue (a Start click that timed out in
  its tab may still have queued one: ``runs_without_tab``); ``runs_completed``;
  ``runs_lost``: runs submitted that did not complete (failed, stopped, interrupted,
  never started, or gone). ``student_errors`` names the students whose tab failed a step.
- ``max_wait_spread_s``: fairness of the queue, the spread (max − min) over the runs of
  the queue wait, ``status.json``'s ``started_at`` minus the job's ``queued_at``.
- ``lag_p95_s`` (and ``lag_median_s``, ``lag_max_s``, ``lag_samples``): for every epoch
  line of every run, the time its point first showed in the student's tab minus the
  line's own ``"time"`` (written by the worker as it appends the line). The tab records
  the moment itself (a 100 ms timer in the page, `tests.e2e.class_support.
  record_epoch_times`), so the driving script's own pace does not count. An epoch whose
  point never showed is counted in ``lag_missed``.
- ``server_cpu_per_watching_tab``: the server process's CPU seconds (``/proc/<pid>/stat``
  utime + stime; the scheduler thread included, the worker processes not) sampled every
  `SAMPLE_EVERY_S` during the watch phase. Each interval's CPU is divided by its length
  and by the tabs whose run was queued or running at its start; the figure is the sum of
  CPU over the sum of (length × watching tabs), a fraction of one core. Tabs whose run had
  ended in the meantime still cost a little, so this reads slightly high.
- ``server_cpu_per_idle_tab``: the server's CPU over the idle window, divided by the window
  and by all open tabs.
- ``server_rss_mb``: the largest resident memory (``VmRSS``) of the server process seen in
  those samples; ``worker_rss_mb_max`` the largest of any process the server started (the
  training workers, warm or not).
- ``exceptions``: ``stException`` boxes across all tabs at the end, plus tracebacks in the
  server's log.

``load_avg`` is the 1, 5 and 15-minute load average at the start: figures taken on a busy
machine read high.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, descendants, serve_app
from tests.e2e.class_support import (
    CLASS_CODE,
    STEP_MS,
    choose_tiny_model,
    class_env,
    exceptions_on,
    join,
    open_train_form,
    record_epoch_times,
    seen_epochs,
    start_run,
)
from tl_core.errors import TLError
from tl_core.jobs.queue import get, list_jobs, run_shown_state
from tl_core.jobs.runs import FINAL_STATES, read_metrics, read_status, run_path

#: Seconds between samples of the server's CPU and memory.
SAMPLE_EVERY_S = 2.0
#: Seconds between two students' joins and between two Start clicks: a class does not click
#: in the same millisecond, and two cores keep up with one script run at a time.
STAGGER_S = 0.5
#: Seconds a run may take from its Start click to its end, over and above the runs ahead
#: of it (a worker's cold start imports TensorFlow: a minute on a busy machine).
RUN_ALLOWANCE_S = 180.0
#: Goals of the class-server issue.
GOAL_LAG_P95_S = 2.0
GOAL_CPU_WATCHING = 0.03
GOAL_SERVER_RSS_MB = 1536.0
#: What a tab's step raises when the page did not do what it should: a timeout, a crashed
#: page (Playwright), or an `expect` that failed.
_TAB_ERRORS = (PlaywrightError, AssertionError)
#: Each tab stands for a student's own window, which is on screen: Chromium would
#: otherwise throttle the timers (Streamlit's polling) of all but one tab.
_VISIBLE_TAB_ARGS = [
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench class``."""
    parser.add_argument("--students", type=int, default=30, help="students (default 30)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--image-size", type=int, default=32, help="pixels per side (default 32)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="how long the tabs stay open after the last run ended (default 20)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="leave out the one-line summary on stderr (the JSON goes to stdout either way)",
    )


@dataclass
class _Student:
    """One student's tab and what happened to their run."""

    name: str
    page: Any
    joined: bool = False
    run_id: str | None = None
    error: str | None = None


@dataclass
class _Samples:
    """The server's CPU and memory, and its workers' memory, sampled in a background thread."""

    pid: int
    server_rss_mb: float = 0.0
    worker_rss_mb: float = 0.0
    _halt: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._halt.set()

    def _loop(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> None:
        """Take one memory sample of the server and of every process it started."""
        self.server_rss_mb = max(self.server_rss_mb, rss_mb(self.pid) or 0.0)
        for worker in descendants(self.pid):
            self.worker_rss_mb = max(self.worker_rss_mb, rss_mb(worker) or 0.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the app in class mode, drive the class, and return the figures."""
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="tl-bench-class-"))
    log = home / "streamlit.log"
    load = [round(value, 2) for value in os.getloadavg()]
    device = _device()
    started = time.monotonic()
    _say(f"TL_HOME {home}; server log {log}")
    server = serve_app(
        home,
        log,
        env=class_env(),
        extra_args=["--server.fileWatcherType=none"],
        start_seconds=120,
    )
    with server as (url, pid), sync_playwright() as playwright:
        samples = _Samples(pid)
        sampler = samples.start()
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *_VISIBLE_TAB_ARGS]
        )
        try:
            students = _join_all(browser, url, args)
            _start_all(students)
            watching = _watch_until_done(students, home, pid)
            idle_cpu = _cpu_over(pid, args.idle_seconds) / max(len(students), 1)
            lags, missed = _lags(students, home)
            exceptions = sum(_safe_exceptions(student.page) for student in students)
        finally:
            samples.stop()
            sampler.join()
            browser.close()
    exceptions += log.read_text(errors="replace").count("Traceback (most recent call last)")
    submitted = [job.run_id for job in list_jobs(home=home)]
    states = _final_states(submitted, home)
    waits = _queue_waits(submitted, home)
    shown = {s.run_id for s in students}
    result = {
        "students": args.students,
        "students_joined": sum(1 for s in students if s.joined),
        "runs_submitted": len(submitted),
        "runs_without_tab": sum(1 for run_id in submitted if run_id not in shown),
        "epochs": args.epochs,
        "image_size": args.image_size,
        "runs_completed": states.get("completed", 0),
        "runs_lost": len(submitted) - states.get("completed", 0),
        "run_states": states,
        "student_errors": [f"{s.name}: {s.error}" for s in students if s.error],
        "max_wait_spread_s": round(max(waits) - min(waits), 2) if waits else None,
        "queue_wait_s": {
            "min": round(min(waits), 2) if waits else None,
            "max": round(max(waits), 2) if waits else None,
        },
        "lag_p95_s": _round(_percentile(lags, 0.95)),
        "lag_median_s": _round(statistics.median(lags) if lags else None),
        "lag_max_s": _round(max(lags, default=None)),
        "lag_samples": len(lags),
        "lag_missed": missed,
        "server_cpu_per_watching_tab": _round(watching, 4),
        "server_cpu_per_idle_tab": _round(idle_cpu, 4),
        "server_rss_mb": round(samples.server_rss_mb, 1),
        "worker_rss_mb_max": round(samples.worker_rss_mb, 1),
        "exceptions": exceptions,
        "goals": {
            "lag_p95_s": GOAL_LAG_P95_S,
            "server_cpu_per_watching_tab": GOAL_CPU_WATCHING,
            "server_rss_mb": GOAL_SERVER_RSS_MB,
        },
        "wall_s": round(time.monotonic() - started, 1),
        "device": device,
        "load_avg": load,
        "home": str(home),
    }
    if not args.json:
        _say(
            f"{result['runs_completed']}/{args.students} completed, lag p95 "
            f"{result['lag_p95_s']} s, {result['server_cpu_per_watching_tab']} core per "
            f"watching tab, server {result['server_rss_mb']} MB, "
            f"{exceptions} exceptions"
        )
    return result


def _join_all(browser: Any, url: str, args: argparse.Namespace) -> list[_Student]:
    """Phase 1: every student joins and fills the Train form; a failure is kept, not raised."""
    students = []
    for index in range(1, args.students + 1):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(STEP_MS)
        student = _Student(f"Student {index:02d}", context.new_page())
        try:
            join(student.page, url, student.name, CLASS_CODE)
            choose_tiny_model(student.page, args.image_size)
            student.joined = True
            open_train_form(student.page, args.epochs)
        except _TAB_ERRORS as exc:  # one student's failure must not end the class
            student.error = f"joining: {_first_line(exc)}"
        students.append(student)
        _say(f"{student.name} {'ready' if student.error is None else student.error}")
        time.sleep(STAGGER_S)
    return students


def _start_all(students: list[_Student]) -> None:
    """Phase 2: every ready student clicks Start training; their tab then records epochs."""
    for student in students:
        if student.error is not None:
            continue
        try:
            student.run_id = start_run(student.page)
            record_epoch_times(student.page)
        except _TAB_ERRORS as exc:  # as in `_join_all`
            student.error = f"starting: {_first_line(exc)}"
        _say(f"{student.name} started {student.run_id or student.error}")
        time.sleep(STAGGER_S)


def _watch_until_done(students: list[_Student], home: Path, pid: int) -> float | None:
    """Phase 3: sample the server's CPU until every queued run has ended (a run whose tab
    lost it included); return the CPU per watching tab.

    Gives up after `RUN_ALLOWANCE_S` per run; the runs still going then count as lost.
    """
    submitted = [job.run_id for job in list_jobs(home=home)]
    shown = {s.run_id for s in students if s.run_id}
    deadline = time.monotonic() + RUN_ALLOWANCE_S * max(len(submitted), 1)
    cpu_total = tab_seconds = 0.0
    last_cpu, last_time = cpu_seconds(pid), time.monotonic()
    going = _going(submitted, home)
    while going and time.monotonic() < deadline:
        time.sleep(SAMPLE_EVERY_S)
        now_cpu, now = cpu_seconds(pid), time.monotonic()
        cpu_total += now_cpu - last_cpu
        tab_seconds += (now - last_time) * len(going & shown)
        last_cpu, last_time = now_cpu, now
        going = _going(submitted, home)
        _say(f"{len(going)} of {len(submitted)} runs queued or running")
    return cpu_total / tab_seconds if tab_seconds else None


def _going(runs: list[str], home: Path) -> set[str]:
    """Those of `runs` not over yet (a tab showing one watches it live)."""
    return {run_id for run_id in runs if _state(run_id, home) not in FINAL_STATES}


def _state(run_id: str, home: Path) -> str:
    """The state the pages show for `run_id` (a dead worker's run reads interrupted)."""
    try:
        return run_shown_state(run_id, home=home)
    except TLError:  # the run or its job vanished
        return "missing"


def _cpu_over(pid: int, seconds: float) -> float:
    """The server's CPU, in cores, over the next `seconds`."""
    _say(f"idle for {seconds:.0f} s")
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / max(time.monotonic() - start, 1e-9)


def _lags(students: list[_Student], home: Path) -> tuple[list[float], int]:
    """Each epoch's lag from its line on disk to its point in the student's tab; and how
    many epoch points never showed."""
    lags: list[float] = []
    missed = 0
    for student in students:
        if student.run_id is None:
            continue
        epochs, _ = read_metrics(run_path(student.run_id, home))
        try:
            seen = seen_epochs(student.page)
        except PlaywrightError:  # a crashed tab saw nothing
            seen = {}
        for line in epochs:
            shown = seen.get(int(line["epoch"]))
            if shown is None:
                missed += 1
            else:
                lags.append(max(0.0, shown - float(line["time"])))
    return lags, missed


def _final_states(runs: list[str], home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run_id in runs:
        state = _state(run_id, home)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _queue_waits(runs: list[str], home: Path) -> list[float]:
    """Seconds each run that started waited: ``started_at`` minus the job's ``queued_at``."""
    waits = []
    for run_id in runs:
        status = read_status(run_path(run_id, home))
        if status is not None and status.started_at is not None:
            try:
                queued_at = get(run_id, home=home).queued_at
            except TLError:  # its job vanished: counted as lost already
                continue
            waits.append(status.started_at - queued_at)
    return waits


def _safe_exceptions(page: Any) -> int:
    try:
        return exceptions_on(page)
    except PlaywrightError:  # a crashed tab: its failure shows as a lost run or a missed lag
        return 0


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` in MB (``/proc/<pid>/status``), ``None`` once it ended."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds `pid` has used, from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _device() -> str:
    from tl_core.jobs.devices import probe_devices

    return probe_devices().describe()


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _say(message: str) -> None:
    """Progress on stderr, so that stdout carries only the JSON."""
    print(f"[class {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
