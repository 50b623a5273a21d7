"""Model work for the web app (evaluate, explain, embed, export), run in background processes.

The web process never imports TensorFlow and never loads a model: a model file is code as
much as data (Keras's ``safe_mode`` has had many bypasses), TensorFlow costs seconds and hundreds of
megabytes per process, and a Streamlit script thread must stay responsive. So every
analysis of a trained run is one ``python -m tl_core`` CLI command (``evaluate``,
``embeddings``, ``predict --gradcam``, ``export``) run in a process of its own by
``python -m tl_core.analysis.background``, which keeps its JSON result on disk::

    RUN_DIR/analysis/<key>.json        the command's JSON document, once it succeeded
    RUN_DIR/analysis/<key>.error.json  {"error", "exit_code"} once it failed
    RUN_DIR/analysis/<key>.pid         while it runs: {"pid", "start_time", "started_at"}
                                       (and "requested_by": who asked, in class mode)
    RUN_DIR/analysis/<key>.waiting     while it waits for a free slot (see below)
    RUN_DIR/analysis/<key>.log         what the process printed (TensorFlow's notes, a crash)

The key hashes the command and the model file's size and time, so a resumed run that
wrote a new model gets fresh analyses, and every session that asks for the same analysis
of the same model shares one process and one result: a class of twenty opening the same
run's Evaluate page starts one evaluation. Results survive reloads and app restarts.

Each process loads TensorFlow and a model (about half a gigabyte), so at most
`analysis_slots` of them work at once per workspace (``TL_ANALYSIS_SLOTS``, default half
the CPU cores, 1 to 4): the others wait their turn on a lock file, before importing
TensorFlow, and say so. A class opening twenty different runs at once queues, rather
than running the shared box out of memory.

In class mode a student analyses only their own runs and the ones the teacher shares,
and exports only their own (`tl_core.classroom.ownership`); the run's id is its folder's
name.

Example:
    >>> first = request_analysis(run_dir, ["evaluate", str(run_dir)])  # doctest: +SKIP
    >>> first.state  # doctest: +SKIP
    'running'
    >>> request_analysis(run_dir, ["evaluate", str(run_dir)]).result["accuracy"]  # doctest: +SKIP
    0.91
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import require_run_analysis, require_run_control
from tl_core.errors import JobError
from tl_core.jobs.processes import marker_alive, reap_children, spawn_tracked
from tl_core.jobs.runs import RunFiles, read_json, write_json_atomic
from tl_core.workspace import tl_home

__all__ = [
    "ANALYSIS_DIR",
    "SLOTS_ENV",
    "Analysis",
    "analysis_folder",
    "analysis_slots",
    "forget_analysis",
    "request_analysis",
    "result_path",
]

#: Folder of a run directory that holds its analyses.
ANALYSIS_DIR = "analysis"

#: Environment variable: how many analyses may work at once in one workspace.
SLOTS_ENV = "TL_ANALYSIS_SLOTS"

#: How much of the log a failure report quotes.
_LOG_TAIL_CHARS = 2000

#: Seconds between two tries for a free slot.
_SLOT_POLL_S = 0.25

#: Processes this process started, kept until they end so that they are reaped (no
#: zombies in a long-lived web server) and not reported as leaked while still running.


@dataclass(frozen=True)
class Analysis:
    """Where one analysis stands.

    Args:
        state: ``"ready"`` (``result`` holds the command's JSON document), ``"running"``
            or ``"failed"`` (``error`` says what went wrong, what to do).
        result: the command's JSON document once ready.
        error: the failure in plain words.
        internal: the failure is a bug (exit 1 or a crash), not bad input (exit 2).
        started_at: Unix time the process started, while it runs.
        log: path of the process's output, for a failure report.
        waiting: while running, the process still waits for a free slot
            (`analysis_slots`).
        requested_by: while running, the name of the person who started it in class
            mode (``None`` for the operator).
    """

    state: str
    result: Any = None
    error: str | None = None
    internal: bool = False
    started_at: float | None = None
    log: Path | None = None
    waiting: bool = False
    requested_by: str | None = None


def analysis_folder(run_dir: Path | str) -> Path:
    """Return ``RUN_DIR/analysis`` (not created)."""
    return Path(run_dir) / ANALYSIS_DIR


def _key(run_dir: Path, args: Sequence[str]) -> str:
    model = RunFiles(run_dir).model
    try:
        stat = model.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except FileNotFoundError:
        stamp = "no-model"
    digest = hashlib.sha256(json.dumps([list(args), stamp]).encode()).hexdigest()
    return f"{args[0]}-{digest[:16]}"


@dataclass(frozen=True)
class _Paths:
    result: Path
    error: Path
    pid: Path
    log: Path
    waiting: Path

    @classmethod
    def of(cls, folder: Path, key: str) -> _Paths:
        return cls(
            folder / f"{key}.json",
            folder / f"{key}.error.json",
            folder / f"{key}.pid",
            folder / f"{key}.log",
            folder / f"{key}.waiting",
        )


def _paths(run_dir: Path, args: Sequence[str]) -> _Paths:
    if not args:
        raise JobError("An analysis needs a command, e.g. ['evaluate', RUN_DIR]; got none.")
    return _Paths.of(analysis_folder(run_dir), _key(run_dir, args))


def result_path(run_dir: Path | str, args: Sequence[str]) -> Path:
    """Return where the result of the analysis `args` of `run_dir` is (or will be) kept."""
    return _paths(Path(run_dir), args).result


def request_analysis(
    run_dir: Path | str,
    args: Sequence[str],
    *,
    start: bool = True,
    actor: Identity | None = None,
) -> Analysis:
    """Return the analysis ``python -m tl_core ARGS --json`` of a run, starting it if needed.

    Args:
        run_dir: the run the analysis belongs to (its ``analysis/`` folder keeps it).
        args: the CLI command and its arguments, without ``--json``, e.g.
            ``["evaluate", str(run_dir)]``.
        start: start the process when there is neither a result, an error nor a running
            process (default True); with False, such an analysis reads as ``"failed"``.
        actor: who asks (default ``None``: the operator, who may analyse every run); a
            student may analyse their own and shared runs, and export only their own.

    Returns:
        The `Analysis`: ready, running or failed.

    Raises:
        JobError: `args` is empty, or the process cannot be started.
        AccessDenied: `actor` may not analyse (or export) this run; nothing is read,
            started or written then.

    Example:
        >>> request_analysis(run_dir, ["evaluate", str(run_dir)], actor=ada).state  # doctest: +SKIP
        'running'
    """
    run = Path(run_dir)
    paths = _paths(run, args)
    _require_access(actor, run, args[0])
    reap_children()
    for _ in range(2):  # a process may finish between the checks; look twice
        settled = _settled(paths)
        if settled is not None:
            return settled
        running = _running(paths)
        if running is not None:
            return running
    if not start:
        return Analysis("failed", error="This analysis has not been started.", log=paths.log)
    return _start(run, list(args), paths, actor)


def _require_access(actor: Identity | None, run: Path, command: str) -> None:
    """Refuse a student someone else's run: an export needs the run to be theirs (it is a
    copy of the model to take away), any other analysis only needs it shared."""
    if actor is None:
        return  # the operator; and single-user mode never creates the class's records
    if command == "export":
        require_run_control(actor, run.name, action="export")
    else:
        require_run_analysis(actor, run.name)


def forget_analysis(run_dir: Path | str, args: Sequence[str]) -> None:
    """Delete an analysis's result or error, so that the next request runs it again."""
    paths = _paths(Path(run_dir), args)
    for path in (paths.result, paths.error):
        path.unlink(missing_ok=True)


def _settled(paths: _Paths) -> Analysis | None:
    result = read_json(paths.result)
    if result is not None:
        return Analysis("ready", result=result, log=paths.log)
    error = read_json(paths.error)
    if isinstance(error, dict):
        return Analysis(
            "failed",
            error=str(error.get("error") or "The analysis failed."),
            internal=error.get("exit_code") != 2,
            log=paths.log,
        )
    return None


def _running(paths: _Paths) -> Analysis | None:
    marker = read_json(paths.pid)
    if not isinstance(marker, dict):
        return None
    started_at = float(marker.get("started_at") or 0.0)
    if marker_alive(marker):
        requested_by = marker.get("requested_by")
        return Analysis(
            "running",
            started_at=started_at,
            log=paths.log,
            waiting=paths.waiting.exists(),
            requested_by=requested_by if isinstance(requested_by, str) else None,
        )
    if _settled(paths) is None:  # died without a word: a crash, an OOM kill
        _record_failure(paths, 1, "The analysis process ended without a result.")
    paths.pid.unlink(missing_ok=True)
    paths.waiting.unlink(missing_ok=True)
    return None


def _start(run: Path, args: list[str], paths: _Paths, actor: Identity | None) -> Analysis:
    paths.pid.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    # Who asked is kept with the process, so that a running analysis has an owner.
    facts: dict[str, Any] = {"started_at": started_at}
    if actor is not None:
        facts["requested_by"] = actor.name
    try:
        # Exclusive creation: of several sessions asking at once, one starts the process.
        with paths.pid.open("x", encoding="utf-8") as marker:
            json.dump({"pid": None, **facts}, marker)
    except FileExistsError:
        return request_analysis(run, args, start=False, actor=actor)
    argv = [
        sys.executable,
        "-m",
        "tl_core.analysis.background",
        str(paths.pid.parent),
        paths.pid.stem,
        *args,
    ]
    env = os.environ | {"TL_HOME": str(tl_home())}
    try:
        spawn_tracked(argv, env=env, log=paths.log, marker=paths.pid, args=args, **facts)
    except OSError as exc:
        paths.pid.unlink(missing_ok=True)
        raise JobError(
            f"Could not start a background process for {args[0]} "
            f"({exc.strerror or type(exc).__name__}). Check that "
            "this machine has free memory and process slots, then try again."
        ) from exc
    requested_by = actor.name if actor is not None else None
    return Analysis("running", started_at=started_at, log=paths.log, requested_by=requested_by)


def _record_failure(paths: _Paths, exit_code: int, message: str) -> None:
    try:
        tail = paths.log.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
    except OSError:
        tail = ""
    write_json_atomic(paths.error, {"error": message, "exit_code": exit_code, "log_tail": tail})


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else "The analysis failed."


def analysis_slots() -> int:
    """Return how many analyses may work at once: ``TL_ANALYSIS_SLOTS``, or half the CPU
    cores (at least 1, at most 4).

    Raises:
        JobError: ``TL_ANALYSIS_SLOTS`` is set but not a positive whole number.
    """
    value = os.environ.get(SLOTS_ENV, "").strip()
    if not value:
        return max(1, min(4, (os.cpu_count() or 2) // 2))
    if not value.isdigit() or int(value) < 1:
        raise JobError(
            f"Expected `{SLOTS_ENV}` to be a whole number of at least 1. "
            f"Received: {SLOTS_ENV}={value!r}"
        )
    return int(value)


@contextmanager
def _analysis_slot(paths: _Paths) -> Iterator[None]:
    """Hold one of the workspace's `analysis_slots` while the block runs; wait for one,
    with ``KEY.waiting`` on disk meanwhile. A slot is an exclusive lock on a file, so the
    system frees it when its holder dies."""
    locks = tl_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    slots = analysis_slots()
    while True:
        for index in range(slots):
            with (locks / f"analysis-{index}.lock").open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                paths.waiting.unlink(missing_ok=True)
                yield  # closing the file at the end of `with` releases the lock
                return
        paths.waiting.touch()
        time.sleep(_SLOT_POLL_S)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tl_core.analysis.background FOLDER KEY ARGS…``: run one analysis.

    Waits for a slot, runs ``tl_core ARGS --json``, keeps the result as ``FOLDER/KEY.json``
    (or the error as ``FOLDER/KEY.error.json``), then removes ``FOLDER/KEY.pid``. Returns the
    exit code.
    """
    from tl_core import cli

    folder, key, *args = sys.argv[1:] if argv is None else list(argv)
    paths = _Paths.of(Path(folder), key)
    out, err = io.StringIO(), io.StringIO()
    try:
        with _analysis_slot(paths), redirect_stdout(out), redirect_stderr(err):
            code = cli.main([*args, "--json"])
        sys.stderr.write(err.getvalue())
        if code == 0:
            write_json_atomic(paths.result, json.loads(out.getvalue()))
        else:
            _record_failure(paths, code, _error_line(err.getvalue()))
        return code
    finally:
        paths.waiting.unlink(missing_ok=True)
        paths.pid.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
