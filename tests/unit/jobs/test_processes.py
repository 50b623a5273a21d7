"""Background processes are told apart by pid and start time."""

from __future__ import annotations

import os
import subprocess
import sys

from tl_core.jobs.processes import process_alive, process_start_time, spawn_detached


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    me = os.getpid()
    finished = subprocess.run([sys.executable, "-c", "pass"], check=True)

    assert process_alive(me, process_start_time(me))
    assert process_alive(me, None)
    assert not process_alive(None, None)
    assert finished.returncode == 0
    # A pid with another start time is another process (the pid was reused).
    assert not process_alive(me, (process_start_time(me) or 0) + 1)


def test_a_detached_process_has_its_own_session_and_finds_tl_core(tmp_path) -> None:
    log = tmp_path / "out.log"
    code = "import os, tl_core.jobs.processes; print(os.getsid(0) == os.getpid())"
    with log.open("wb") as out:
        process = spawn_detached([sys.executable, "-c", code], env=dict(os.environ), output=out)
        assert process.wait(timeout=60) == 0

    assert log.read_text().strip() == "True"
    assert not process_alive(process.pid, process_start_time(process.pid))
