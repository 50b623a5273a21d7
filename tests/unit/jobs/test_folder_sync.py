"""Copying a run folder from the training node to the server, delta by delta."""

from __future__ import annotations

import os
from pathlib import Path

from tl_core.jobs.folder_sync import (
    apply_delta,
    changes_since,
    pack_folder,
    signatures,
    unpack_folder,
)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _node_and_server(tmp_path: Path) -> tuple[Path, Path]:
    node, server = tmp_path / "node", tmp_path / "server"
    (node / "checkpoints").mkdir(parents=True)
    server.mkdir()
    return node, server


def test_the_first_delta_copies_every_file_and_the_next_ones_only_what_changed(
    tmp_path: Path,
) -> None:
    node, server = _node_and_server(tmp_path)
    (node / "run.json").write_text('{"config": {}}')
    (node / "metrics.jsonl").write_text('{"epoch": 1}\n')
    first = changes_since(node, {})
    apply_delta(server, first)
    with (node / "metrics.jsonl").open("a") as out:
        out.write('{"epoch": 2}\n')

    second = changes_since(node, first.known)
    apply_delta(server, second)

    assert [change.path for change in second.changes] == ["metrics.jsonl"]
    assert second.changes[0].append and second.changes[0].data == b'{"epoch": 2}\n'
    assert _tree(server) == _tree(node)


def test_a_half_written_line_waits_for_its_end(tmp_path: Path) -> None:
    node, server = _node_and_server(tmp_path)
    (node / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')
    delta = changes_since(node, {})
    apply_delta(server, delta)

    assert (server / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
    with (node / "metrics.jsonl").open("a") as out:
        out.write('ch": 2}\n')
    apply_delta(server, changes_since(node, delta.known))
    assert _tree(server) == _tree(node)


def test_a_rewritten_file_replaces_the_servers_copy(tmp_path: Path) -> None:
    node, server = _node_and_server(tmp_path)
    (node / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    delta = changes_since(node, {})
    apply_delta(server, delta)
    rewritten = node / "new.tmp"  # a resumed worker drops epoch 2 with an atomic rewrite
    rewritten.write_text('{"epoch": 1}\n')
    os.replace(rewritten, node / "metrics.jsonl")

    apply_delta(server, changes_since(node, delta.known))

    assert (server / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_checkpoints_come_before_their_pointer_and_the_status_comes_last(tmp_path: Path) -> None:
    node, _ = _node_and_server(tmp_path)
    for name in ("status.json", "checkpoints/last.json", "checkpoints/epoch-0001.001.npz"):
        (node / name).write_text("x")
    (node / "metrics.jsonl").write_text("{}\n")

    order = [change.path for change in changes_since(node, {}).changes]

    assert order == [
        "checkpoints/epoch-0001.001.npz",
        "checkpoints/last.json",
        "metrics.jsonl",
        "status.json",
    ]


def test_pruned_files_go_and_locks_temporaries_and_stop_flags_never_travel(
    tmp_path: Path,
) -> None:
    node, server = _node_and_server(tmp_path)
    (node / "checkpoints" / "epoch-0001.001.npz").write_text("old")
    first = changes_since(node, {})
    apply_delta(server, first)
    (node / "checkpoints" / "epoch-0001.001.npz").unlink()
    for name in (".writer.lock", ".123-4.tmp.model.keras", "STOP"):
        (node / name).write_text("local")

    second = changes_since(node, first.known)
    apply_delta(server, second)

    assert second.removed == ["checkpoints/epoch-0001.001.npz"]
    assert second.changes == []
    assert sorted(p.name for p in server.rglob("*") if p.is_file()) == []


def test_a_packed_folder_unpacks_whole_without_what_was_left_out(tmp_path: Path) -> None:
    node, _ = _node_and_server(tmp_path)
    (node / "run.json").write_text("{}")
    (node / "log.txt").write_text("node log")
    (node / "checkpoints" / "last.json").write_text("{}")

    unpack_folder(pack_folder(node, skip=("log.txt",)), tmp_path / "copy")

    assert _tree(tmp_path / "copy") == {"checkpoints/last.json": b"{}", "run.json": b"{}"}
    assert set(signatures(tmp_path / "copy")) == {"checkpoints/last.json", "run.json"}
