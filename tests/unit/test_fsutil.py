"""Atomic writes and the writer lock: what readers and liveness checks rely on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.lock_support import lock_held_elsewhere
from tl_core.fsutil import (
    FolderLock,
    atomic_write,
    lock_held,
    temporary_name,
    write_json_atomic,
    write_text_atomic,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_replaced_file_holds_the_new_content_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    write_text_atomic(target, "old")

    write_json_atomic(target, {"state": "running", "path": Path("x")})

    assert target.read_text() == '{\n "state": "running",\n "path": "x"\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failing_writer_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("committed")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, broken)

    assert target.read_text() == "committed"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_temporaries_are_unique_per_thread_and_keep_the_suffix(tmp_path: Path) -> None:
    names: list[Path] = []
    thread = threading.Thread(target=lambda: names.append(temporary_name(tmp_path / "a.npz")))
    thread.start()
    thread.join()

    assert names[0] != temporary_name(tmp_path / "a.npz")
    assert names[0].name.endswith(".tmp.a.npz")
    assert names[0].name.startswith(f".{os.getpid()}-")


def test_concurrent_writers_never_mix_their_content(tmp_path: Path) -> None:
    target = tmp_path / "doc.txt"
    texts = [str(i) * 50_000 for i in range(8)]
    threads = [threading.Thread(target=write_text_atomic, args=(target, t)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert target.read_text() in texts


def test_a_second_process_cannot_take_a_held_lock_until_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    with lock_held_elsewhere(tmp_path):
        assert lock_held(tmp_path)
        assert not FolderLock(tmp_path).acquire(timeout=0.1)

    assert not lock_held(tmp_path)
    with FolderLock(tmp_path) as lock:
        assert lock.held and lock_held(tmp_path)
    assert not lock_held(tmp_path)


def test_a_probe_does_not_turn_the_rightful_writer_away(tmp_path: Path) -> None:
    stop = time.monotonic() + 0.5
    probes = threading.Thread(
        target=lambda: [lock_held(tmp_path) for _ in iter(lambda: time.monotonic() < stop, False)]
    )
    probes.start()
    try:
        for _ in range(20):
            lock = FolderLock(tmp_path)
            assert lock.acquire()
            lock.release()
    finally:
        probes.join()


def test_a_folder_that_was_never_locked_has_no_writer(tmp_path: Path) -> None:
    assert not lock_held(tmp_path / "missing")
    assert not lock_held(tmp_path)
