"""`run_files_signature`: what a live view stats to learn that nothing was written."""

from __future__ import annotations

from pathlib import Path

from tl_core.jobs.runs import RunFiles, RunStatus, append_jsonl, run_files_signature, write_status


def test_the_signature_stays_the_same_while_nothing_is_written(tmp_path: Path) -> None:
    write_status(tmp_path, RunStatus(state="running"))
    append_jsonl(RunFiles(tmp_path).metrics, {"epoch": 1})

    assert run_files_signature(tmp_path) == run_files_signature(tmp_path)


def test_an_appended_line_a_new_status_or_a_stop_flag_change_the_signature(
    tmp_path: Path,
) -> None:
    files = RunFiles(tmp_path)
    write_status(tmp_path, RunStatus(state="running"))
    signatures = [run_files_signature(tmp_path)]

    append_jsonl(files.metrics, {"type": "batch", "batch": 1})
    signatures.append(run_files_signature(tmp_path))
    write_status(tmp_path, RunStatus(state="stopped"))
    signatures.append(run_files_signature(tmp_path))
    files.stop_flag.touch()
    signatures.append(run_files_signature(tmp_path))

    assert len(set(signatures)) == 4


def test_missing_files_have_no_stamp(tmp_path: Path) -> None:
    assert run_files_signature(tmp_path) == (None, None, None)
