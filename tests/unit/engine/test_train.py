"""The training worker end to end on tiny data: run files, phases, stop, kill and resume.

`trained_run` (tests/unit/conftest.py) is one finished two-phase MobileNetV2 run shared
by the read-only tests here. The stop, kill and MirroredStrategy tests are about the
worker's mechanics, not the network: they train VGG16, whose 19 layers trace in a
fraction of MobileNetV2's time (traced once per replica under MirroredStrategy).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.engine_helpers import (
    EASY_CLASSES,
    EPOCH_KEYS,
    ROOT,
    cli_env,
    epoch_lines,
    read_jsonl,
    run_tl_core,
    tiny_config,
    tl_core_command,
)
from tl_core import cli
from tl_core.config import RunConfig
from tl_core.data import DatasetReport
from tl_core.engine.train import (
    Phase,
    ResumePoint,
    main_worker,
    plan_phases,
    resume_point,
    steps_per_execution,
    train_run,
)
from tl_core.errors import JobError
from tl_core.fsutil import FolderLock
from tl_core.jobs.runs import (
    RunFiles,
    RunStatus,
    append_jsonl,
    best_epoch,
    new_run_id,
    prepare_run,
    read_metrics,
    read_status,
    run_path,
    write_status,
)

MOBILENET_V2_PARAMS = 2_257_984
HEAD_PARAMS = 1280 * 3 + 3


def run_json(run_dir: Path) -> dict:
    return json.loads(RunFiles(run_dir).config.read_text())


def wait_for_epochs(
    run_dir: Path, count: int, timeout: float, alive: Callable[[], bool] | None = None
) -> None:
    """Wait until ``metrics.jsonl`` holds `count` epoch lines (`alive()` false: give up).

    Reads as the UI does (`read_metrics`), so a line being written is no error.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_metrics(run_dir)[0]) >= count:
            return
        if alive is not None and not alive():
            pytest.fail("the training process ended before the expected epochs")
        time.sleep(0.02)
    pytest.fail(f"no {count} epoch lines after {timeout} s")


def assert_each_epoch_once(run_dir: Path, total: int) -> None:
    epochs = [line["epoch"] for line in epoch_lines(run_dir)]
    assert epochs == list(range(1, total + 1))


# --- phases and run folders (no training) ------------------------------------------------


def test_one_phase_follows_the_freeze_preset() -> None:
    config = RunConfig(dataset_id="0" * 12, freeze="fine-tune", unfreeze_last=1, epochs=4)

    phases = plan_phases(config, ["stem", "block_1", "top"])

    assert phases == [Phase("train", 0, 4, ("top",), 1e-3, cached=True, boundary="block_1")]


def test_two_phases_train_the_head_then_fine_tune_at_a_lower_rate() -> None:
    config = RunConfig(
        dataset_id="0" * 12,
        freeze="full",
        two_phase=True,
        epochs=3,
        fine_tune_epochs=2,
        fine_tune_blocks=2,
        learning_rate=1e-2,
    )

    head, fine_tune = plan_phases(config, ["stem", "block_1", "top"])

    assert (head.name, head.epochs, head.trainable) == ("head", 3, ())
    assert (fine_tune.name, fine_tune.epochs, fine_tune.trainable) == (
        "fine-tune",
        2,
        ("block_1", "top"),
    )
    assert fine_tune.learning_rate == pytest.approx(head.learning_rate * 0.1)


TWO_PHASES = [Phase("head", 0, 2, (), 1e-3), Phase("fine-tune", 1, 3, ("top",), 1e-4)]


def test_a_run_without_a_checkpoint_starts_at_the_beginning() -> None:
    assert resume_point(None, TWO_PHASES) == ResumePoint()


def test_a_checkpoint_inside_a_phase_continues_that_phase_with_its_optimizer_and_counters() -> None:
    early = {"best": [0.8, -0.5], "best_epoch": 3, "wait": 1, "file": "best-epoch-0003.npz"}
    record = {"epoch": 3, "phase_index": 1, "phase_start": 2, "file": "e.npz"}

    point = resume_point(record | {"early_stopping": early}, TWO_PHASES)

    assert point == ResumePoint(3, 1, 2, True, early, "e.npz")


def test_a_finished_or_ended_phase_resumes_at_the_next_phase_with_fresh_patience() -> None:
    early = {"best": [0.8, -0.5], "best_epoch": 1, "wait": 1, "file": "best-epoch-0001.npz"}
    done = {"epoch": 2, "phase_index": 0, "phase_start": 0, "file": "e.npz"}
    ended = {"epoch": 1, "phase_index": 0, "phase_done": True, "file": "e.npz"}

    for record in (done, ended):
        point = resume_point(record | {"early_stopping": early}, TWO_PHASES)
        assert (point.phase_index, point.phase_start, point.mid_phase) == (
            1,
            record["epoch"],
            False,
        )
        assert point.early_stopping == early | {"wait": 0}


def test_prepare_run_writes_the_config_and_a_queued_status_and_never_overwrites(
    tmp_path: Path,
) -> None:
    config = RunConfig(dataset_id="0" * 12, two_phase=True, epochs=2, fine_tune_epochs=3)

    files = prepare_run(tmp_path / "run", config)

    assert RunConfig.from_json(run_json(files.root)["config"]) == config
    status = read_status(files.root)
    assert status is not None and (status.state, status.total_epochs) == ("queued", 5)
    with pytest.raises(JobError, match="already holds a run"):
        prepare_run(files.root, config)


def test_a_folder_without_run_json_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="is not a run folder"):
        train_run(tmp_path)


def test_a_completed_run_cannot_be_resumed(tmp_path: Path) -> None:
    files = prepare_run(tmp_path / "run", RunConfig(dataset_id="0" * 12))
    write_status(files.root, RunStatus(state="completed", epoch=10, total_epochs=10))

    with pytest.raises(JobError, match="already completed"):
        train_run(files.root, resume=True)


def test_a_run_whose_dataset_is_gone_fails_with_a_message_for_the_user(tmp_path: Path) -> None:
    files = prepare_run(tmp_path / "run", tiny_config("0123456789ab"))

    exit_code = main_worker(files.root)

    status = read_status(files.root)
    assert exit_code == 1
    assert status is not None
    assert (status.state, status.error_kind, status.pid) == ("failed", "input", None)
    assert "No stored dataset '0123456789ab'" in (status.error or "")
    assert "run failed" in files.log.read_text()


# --- one finished two-phase run ----------------------------------------------------------


def test_run_json_records_config_classes_blocks_params_device_and_versions(
    trained_run: Path,
) -> None:
    import tensorflow as tf

    doc = run_json(trained_run)

    config = RunConfig.from_json(doc["config"])
    assert (config.two_phase, config.fine_tune_blocks, config.weights) == (True, 2, "none")
    assert doc["class_names"] == list(EASY_CLASSES)
    blocks = doc["blocks"]
    assert sum(b["params"] for b in blocks) == MOBILENET_V2_PARAMS
    assert [b["trainable"] for b in blocks] == [False] * (len(blocks) - 2) + [True, True]
    assert all({"name", "params", "trainable", "layers"} <= set(b) for b in blocks)
    assert doc["trainable_params"] + doc["non_trainable_params"] == MOBILENET_V2_PARAMS + (
        HEAD_PARAMS
    )
    assert doc["trainable_params"] > HEAD_PARAMS
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert (doc["device"]["kind"], doc["device"]["count"]) == ("gpu" if gpus else "cpu", gpus)
    assert doc["device"]["strategy"] == ("mirrored" if gpus > 1 else "default")
    assert doc["device"]["mixed_precision"] is False
    assert set(doc["versions"]) >= {"python", "tensorflow", "keras", "numpy", "tl_core"}
    assert doc["weights_source"] == {"kind": "none", "pretrained": False}
    assert [p["name"] for p in doc["phases"]] == ["head", "fine-tune"]
    assert (doc["image_size"], doc["preprocess"], doc["val_source"]) == (32, "tf", "drawn")
    assert doc["num_train"] + doc["num_val"] == 72


def test_status_says_completed_with_every_epoch_counted(trained_run: Path) -> None:
    status = read_status(trained_run)

    assert status is not None
    assert (status.state, status.epoch, status.total_epochs) == ("completed", 2, 2)
    assert (status.pid, status.error, status.phase) == (None, None, "fine-tune")
    assert status.finished_at is not None


def test_metrics_hold_one_contract_line_per_epoch_with_phases_and_rates(
    trained_run: Path,
) -> None:
    lines = epoch_lines(trained_run)

    assert all(set(line) >= EPOCH_KEYS for line in lines)
    assert [(line["epoch"], line["phase"]) for line in lines] == [(1, "head"), (2, "fine-tune")]
    assert lines[0]["lr"] == pytest.approx(1e-3)
    assert lines[1]["lr"] == pytest.approx(lines[0]["lr"] * 0.1)
    for line in lines:
        assert 0.0 <= line["val_accuracy"] <= 1.0
        assert line["loss"] > 0 and line["val_loss"] > 0 and line["seconds"] > 0


def test_metrics_hold_batch_progress_lines_ending_each_epoch(trained_run: Path) -> None:
    batches = [d for d in read_jsonl(RunFiles(trained_run).metrics) if d.get("type") == "batch"]

    assert batches
    assert all(0 < d["batch"] <= d["batches"] == 4 for d in batches)
    assert {(d["epoch"], d["phase"]) for d in batches if d["batch"] == d["batches"]} == {
        (1, "head"),
        (2, "fine-tune"),
    }


def test_drift_is_exactly_zero_for_frozen_blocks_and_positive_for_fine_tuned_ones(
    trained_run: Path,
) -> None:
    drift = json.loads(RunFiles(trained_run).drift.read_text())
    blocks = [b["name"] for b in run_json(trained_run)["blocks"]]

    assert list(drift) == blocks
    assert all(drift[name] == 0.0 for name in blocks[:-2])
    assert all(drift[name] > 0.0 for name in blocks[-2:])
    history = read_jsonl(RunFiles(trained_run).drift_history)
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]["drift"].values()) == {0.0}  # the head phase moves no block


def test_only_the_committed_checkpoint_and_the_best_weights_are_kept(trained_run: Path) -> None:
    folder = RunFiles(trained_run).checkpoints

    last = json.loads((folder / "last.json").read_text())

    assert (last["epoch"], last["phase"], last["phase_index"]) == (2, "fine-tune", 1)
    assert last["keep"] == [last["early_stopping"]["file"]]
    assert sorted(p.name for p in folder.glob("*.npz")) == sorted(
        [last["file"], *last["keep"], "initial.npz"]
    )
    assert "run completed after 2 epochs" in RunFiles(trained_run).log.read_text()


def test_model_keras_is_the_float32_inference_graph(trained_run: Path) -> None:
    import keras

    model = keras.saving.load_model(RunFiles(trained_run).model, compile=False)

    assert "augmentation" not in [layer.name for layer in model.layers]  # trained with flips
    assert {v.dtype for v in model.variables if "float" in v.dtype} == {"float32"}
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert getattr(model, "optimizer", None) is None


# --- stop, kill, resume ------------------------------------------------------------------


@pytest.mark.slow
def test_a_stop_file_ends_the_run_as_stopped_with_the_model_kept(
    easy_dataset: DatasetReport, tmp_path: Path
) -> None:
    import keras

    config = tiny_config(
        easy_dataset.dataset_id, backbone="vgg16", freeze="fine-tune", unfreeze_last=1, epochs=4
    )
    files = prepare_run(tmp_path / "run", config)

    def stop_after_first_epoch() -> None:
        wait_for_epochs(files.root, 1, timeout=300)
        files.stop_flag.touch()

    watcher = threading.Thread(target=stop_after_first_epoch, daemon=True)
    watcher.start()
    status = train_run(files.root)
    watcher.join(timeout=5)

    assert status.state == "stopped"
    assert 1 <= status.epoch < 4
    assert read_status(files.root) == status
    assert_each_epoch_once(files.root, status.epoch)
    last = json.loads((files.checkpoints / "last.json").read_text())
    assert last["epoch"] == status.epoch
    assert keras.saving.load_model(files.model).output_shape == (None, 3)


@pytest.mark.slow
def test_resume_after_a_sigkill_records_every_epoch_exactly_once(
    easy_archive: Path, tmp_path: Path, tl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "killed"
    log = (tmp_path / "train.err").open("w")
    train = subprocess.Popen(
        tl_core_command(
            "train", str(easy_archive), "--backbone", "vgg16", "--weights", "none",
            "--image-size", "32", "--unfreeze-last", "1", "--epochs", "4",
            "--batch-size", "16", "--augment", "", "--out", str(run_dir), "--json",
        ),
        env=cli_env(tl_home),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    try:
        wait_for_epochs(run_dir, 2, timeout=300, alive=lambda: train.poll() is None)
        os.kill(train.pid, signal.SIGKILL)
    finally:
        train.kill()
        train.wait(timeout=60)
        log.close()
    assert train.returncode == -signal.SIGKILL
    killed = read_status(run_dir)
    assert killed is not None and killed.state == "running"  # nobody wrote an end state
    # Whatever the kill interrupted, also leave what a kill between an epoch's metrics and
    # its checkpoint leaves: lines of an epoch to be trained again, and half a line.
    files = RunFiles(run_dir)
    committed = json.loads((files.checkpoints / "last.json").read_text())["epoch"]
    append_jsonl(files.metrics, {"epoch": committed + 1, "phase": "train", "loss": 99.0})
    append_jsonl(files.drift_history, {"epoch": committed + 1, "phase": "train", "drift": {}})
    with files.metrics.open("a") as fh:
        fh.write('{"type": "batch", "epo')

    exit_code = cli.main(["resume", str(run_dir), "--json"])

    assert exit_code == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["state"], doc["epochs"]) == ("completed", 4)
    assert_each_epoch_once(run_dir, 4)
    assert all(line["loss"] != 99.0 for line in epoch_lines(run_dir))
    assert [d["epoch"] for d in read_jsonl(files.drift_history)] == [1, 2, 3, 4]
    status = read_status(run_dir)
    assert status is not None and (status.state, status.epoch) == ("completed", 4)


@pytest.mark.slow
def test_the_worker_trains_with_mirrored_strategy_over_two_logical_cpus(
    easy_dataset: DatasetReport, tl_home: Path
) -> None:
    run_id = new_run_id()
    config = tiny_config(easy_dataset.dataset_id, backbone="vgg16")  # feature extraction
    files = prepare_run(run_path(run_id), config, run_id=run_id)

    result = run_tl_core("worker", run_id, home=tl_home, TL_MIRRORED_CPUS="2")

    assert result.returncode == 0, result.stderr[-2000:]
    assert run_json(files.root)["device"]["strategy"] == "mirrored"
    status = read_status(files.root)
    assert status is not None and (status.state, status.epoch) == ("completed", 1)
    assert_each_epoch_once(files.root, 1)


# --- one writer per run ------------------------------------------------------------------


def test_train_run_refuses_a_run_another_process_is_writing(tmp_path: Path) -> None:
    files = prepare_run(tmp_path / "run", tiny_config("0123456789ab"))
    before = files.status.read_bytes()

    with FolderLock(files.root), pytest.raises(JobError, match="Another process is training"):
        train_run(files.root)

    assert files.status.read_bytes() == before


def test_the_worker_refuses_a_second_writer_and_touches_nothing(tl_home: Path) -> None:
    run_id = new_run_id()
    files = prepare_run(run_path(run_id), tiny_config("0123456789ab"), run_id=run_id)
    before = files.status.read_bytes()

    with FolderLock(files.root):
        result = run_tl_core("worker", run_id, home=tl_home, timeout=120)

    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: Another process is training")
    assert files.status.read_bytes() == before
    assert not files.metrics.exists() and not files.log.exists()


# --- the best epoch ----------------------------------------------------------------------


def scripted_validation(
    monkeypatch: pytest.MonkeyPatch, results: list[tuple[float, float]]
) -> None:
    """Make validation report `results[epoch]` as ``(val_accuracy, val_loss)``."""
    from tl_core.engine.callbacks import Validation

    def on_epoch_end(self: Validation, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and not self.progress.epoch_incomplete:
            logs["val_accuracy"], logs["val_loss"] = results[epoch]

    monkeypatch.setattr(Validation, "on_epoch_end", on_epoch_end)


def test_a_run_whose_last_epoch_is_not_the_best_saves_and_checkpoints_the_best(
    easy_dataset: DatasetReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras
    import numpy as np

    scripted_validation(monkeypatch, [(0.9, 0.8), (0.5, 0.3)])  # epoch 2: lower loss, worse
    config = tiny_config(
        easy_dataset.dataset_id,
        backbone="vgg16",
        freeze="fine-tune",
        unfreeze_last=1,
        epochs=2,
        augmentation=("flip",),
        mixed_precision=True,
    )
    files = prepare_run(tmp_path / "run", config)

    status = train_run(files.root)

    assert status.state == "completed", status.error
    assert best_epoch(epoch_lines(files.root))["epoch"] == 1
    last = json.loads((files.checkpoints / "last.json").read_text())
    assert (last["epoch"], last["phase_done"], last["keep"]) == (2, True, ["best-epoch-0001.npz"])
    with np.load(files.checkpoints / "best-epoch-0001.npz") as best:
        best_head = best["model:head/kernel"]
    with np.load(files.checkpoints / last["file"]) as committed:
        np.testing.assert_array_equal(committed["model:head/kernel"], best_head)
    model = keras.saving.load_model(files.model, compile=False)
    np.testing.assert_array_equal(model.get_layer("head").get_weights()[0], best_head)
    assert "augmentation" not in [layer.name for layer in model.layers]
    device = run_json(files.root)["device"]
    assert device["mixed_precision"] is False  # no GPU here: float32, and run.json says why
    assert "float32 instead" in device["mixed_precision_note"]
    assert "float32 instead" in files.log.read_text()


@pytest.mark.parametrize(
    ("steps", "most", "expected"), [(10, 32, 10), (64, 32, 32), (37, 32, 1), (12, 5, 4), (1, 32, 1)]
)
def test_steps_per_execution_divides_the_epoch_so_no_execution_crosses_its_end(
    steps: int, most: int, expected: int
) -> None:
    assert steps_per_execution(steps, most) == expected
