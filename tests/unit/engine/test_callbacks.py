"""Callbacks, one job each, tested by calling their hooks with fake logs (no training run)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.unit.engine_helpers import EPOCH_KEYS, read_jsonl
from tl_core.engine.callbacks import (
    BatchNormRecalibrator,
    BestWeights,
    Checkpoint,
    DriftTracker,
    EpochSummaries,
    MetricsStream,
    RunProgress,
    StatusUpdater,
    StopFlag,
    Validation,
    current_learning_rate,
)
from tl_core.engine.checkpoints import load_variables, read_last_checkpoint
from tl_core.jobs.runs import RunFiles, RunStatus, read_status, write_status


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tiny_model(learning_rate: float = 0.01) -> keras.Model:
    """A compiled 4 → 3 softmax model whose optimizer variables exist."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.optimizer.build(model.trainable_variables)
    return model


def bn_model() -> tuple[keras.Model, keras.layers.BatchNormalization]:
    """Input(2) → BatchNormalization, momentum 0.99 (Keras's default)."""
    inputs = keras.Input((2,))
    layer = keras.layers.BatchNormalization()
    return keras.Model(inputs, layer(inputs)), layer


@pytest.fixture
def files(tmp_path: Path) -> RunFiles:
    return RunFiles(tmp_path)


# --- MetricsStream ---------------------------------------------------------------------


def test_metrics_stream_throttles_batch_lines_but_always_writes_the_last_batch(
    files: RunFiles,
) -> None:
    clock = FakeClock()
    stream = MetricsStream(
        files.metrics, RunProgress(phase="head"), batches=4, batch_size=16, clock=clock
    )
    stream.on_epoch_begin(0)

    for batch, at in enumerate((100.25, 100.5, 100.8, 100.9)):
        clock.now = at
        stream.on_train_batch_end(batch, {"loss": 1.0 - batch / 10, "accuracy": 0.5})

    lines = read_jsonl(files.metrics)
    assert [(d["type"], d["batch"]) for d in lines] == [("batch", 1), ("batch", 3), ("batch", 4)]
    first = lines[0]
    assert first["epoch"] == 1
    assert first["batches"] == 4
    assert first["phase"] == "head"
    assert first["images_per_s"] == pytest.approx(16 / 0.25)
    assert lines[1]["loss"] == pytest.approx(0.8)


def test_metrics_stream_writes_an_epoch_line_with_the_contract_keys(files: RunFiles) -> None:
    clock = FakeClock()
    stream = MetricsStream(
        files.metrics, RunProgress(phase="fine-tune"), batches=2, batch_size=8, clock=clock
    )
    stream.set_model(tiny_model(learning_rate=0.01))
    stream.on_epoch_begin(2)
    clock.now += 2.5

    stream.on_epoch_end(
        2, {"loss": np.float32(0.5), "accuracy": 0.75, "val_loss": 0.6, "val_accuracy": 0.7}
    )

    (line,) = read_jsonl(files.metrics)
    assert set(line) >= EPOCH_KEYS
    assert "type" not in line
    assert line["epoch"] == 3
    assert line["phase"] == "fine-tune"
    assert line["loss"] == 0.5
    assert line["val_accuracy"] == 0.7
    assert line["lr"] == pytest.approx(0.01)
    assert line["seconds"] == 2.5


def test_metrics_stream_skips_an_epoch_cut_short_by_a_stop(files: RunFiles) -> None:
    stream = MetricsStream(files.metrics, RunProgress(stop_requested=True), batches=2, batch_size=8)
    stream.on_epoch_begin(0)

    stream.on_epoch_end(0, {"loss": 1.0})

    assert not files.metrics.exists()


def test_current_learning_rate_evaluates_a_schedule_at_the_current_step() -> None:
    model = tiny_model()
    model.optimizer.learning_rate = keras.optimizers.schedules.ExponentialDecay(
        0.1, decay_steps=1, decay_rate=0.5
    )

    assert current_learning_rate(model) == pytest.approx(0.1)
    assert current_learning_rate(SimpleNamespace()) is None  # type: ignore[arg-type]


# --- StopFlag ----------------------------------------------------------------------------


def test_stop_flag_stops_training_only_once_the_stop_file_exists(files: RunFiles) -> None:
    progress = RunProgress()
    model = SimpleNamespace(stop_training=False)
    flag = StopFlag(files.stop_flag, progress)
    flag.set_model(model)

    flag.on_train_batch_end(0)
    assert not model.stop_training

    files.stop_flag.touch()
    flag.on_train_batch_end(1)

    assert model.stop_training
    assert progress.stop_requested
    assert progress.epoch_incomplete


def test_stop_flag_counts_every_step_of_a_grouped_call_at_the_batch_fault_point(
    files: RunFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[int] = []
    monkeypatch.setattr(
        "tl_core.engine.callbacks.fault_point", lambda name, times=1: counted.append(times)
    )
    flag = StopFlag(files.stop_flag, RunProgress())
    flag.set_model(SimpleNamespace(stop_training=False))

    flag.on_epoch_begin(0)
    flag.on_train_batch_end(2)  # steps 0-2 in one execution (steps_per_execution=3)
    flag.on_train_batch_end(5)
    flag.on_epoch_begin(1)
    flag.on_train_batch_end(0)

    assert counted == [3, 3, 1]


def test_stop_flag_is_also_checked_before_an_epoch_begins(files: RunFiles) -> None:
    progress = RunProgress()
    model = SimpleNamespace(stop_training=False)
    flag = StopFlag(files.stop_flag, progress)
    flag.set_model(model)
    files.stop_flag.touch()

    flag.on_epoch_begin(3)

    assert model.stop_training and progress.stop_requested


# --- Checkpoint --------------------------------------------------------------------------


def kernel(model: keras.Model) -> np.ndarray:
    return model.layers[0].kernel.numpy()


def test_checkpoint_commits_a_new_file_then_the_pointer_and_drops_the_previous_file(
    files: RunFiles,
) -> None:
    model = tiny_model()
    progress = RunProgress(phase="fine-tune", phase_index=1)
    checkpoint = Checkpoint(files, progress, lambda: {"phase_start": 2, "phase_done": False})
    checkpoint.set_model(model)

    checkpoint.on_epoch_end(2)
    model.layers[0].kernel.assign(np.ones((4, 3), "float32"))
    checkpoint.on_epoch_end(3)

    assert sorted(p.name for p in files.checkpoints.iterdir()) == [
        "epoch-0004.002.npz",
        "last.json",
    ]
    last = read_last_checkpoint(files)
    assert last is not None
    assert {k: last[k] for k in ("epoch", "phase", "phase_index", "file", "serial")} == {
        "epoch": 4,
        "phase": "fine-tune",
        "phase_index": 1,
        "file": "epoch-0004.002.npz",
        "serial": 2,
    }
    assert (last["phase_start"], last["phase_done"]) == (2, False)
    restored = tiny_model()
    load_variables(restored, files.checkpoints / last["file"])
    np.testing.assert_array_equal(kernel(restored), np.ones((4, 3)))
    with np.load(files.checkpoints / last["file"]) as saved:
        optimizer_state = [name for name in saved.files if name.startswith("optimizer:")]
    assert len(optimizer_state) == len(model.optimizer.variables)


def test_checkpointing_the_same_epoch_again_never_overwrites_the_committed_file(
    files: RunFiles,
) -> None:
    model = tiny_model()
    checkpoint = Checkpoint(files, RunProgress())
    checkpoint.set_model(model)
    first = checkpoint.commit(3)
    committed = (files.checkpoints / first["file"]).read_bytes()

    model.layers[0].kernel.assign(np.ones((4, 3), "float32"))
    second = checkpoint.commit(3)

    assert second["file"] != first["file"]
    assert not (files.checkpoints / first["file"]).exists()  # deleted only after the switch
    assert (files.checkpoints / second["file"]).read_bytes() != committed


def test_checkpoint_skips_an_epoch_cut_short_by_a_stop(files: RunFiles) -> None:
    checkpoint = Checkpoint(files, RunProgress(stop_requested=True))
    checkpoint.set_model(tiny_model())

    checkpoint.on_epoch_end(0)

    assert read_last_checkpoint(files) is None


# --- DriftTracker ------------------------------------------------------------------------


def test_drift_is_exactly_zero_for_untouched_variables_and_positive_for_changed_ones(
    files: RunFiles,
) -> None:
    frozen = keras.Variable(np.full((3, 3), 0.1, "float32"))
    trained = keras.Variable(np.array([3.0, 4.0], "float32"))
    tracker = DriftTracker(files, {"stem": [frozen], "top": [trained]}, RunProgress(phase="x"))
    tracker.on_train_begin()

    trained.assign(np.array([3.0, 4.5], "float32"))
    tracker.on_epoch_end(0)

    drift = json.loads(files.drift.read_text())
    assert drift["stem"] == 0.0
    assert drift["top"] == pytest.approx(0.5 / 5.0)
    assert read_jsonl(files.drift_history) == [{"epoch": 1, "phase": "x", "drift": drift}]


def test_unchanged_drift_is_not_written_again_but_every_epoch_gets_its_history_line(
    files: RunFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tl_core.engine.callbacks as callbacks

    written: list[object] = []
    real = callbacks.write_json_atomic
    monkeypatch.setattr(
        callbacks,
        "write_json_atomic",
        lambda path, doc, **kw: (written.append(doc), real(path, doc, **kw)),
    )
    frozen = keras.Variable(np.ones(3, "float32"))
    tracker = DriftTracker(files, {"stem": [frozen]}, RunProgress(), fixed=["stem"])
    tracker.on_train_begin()

    for epoch in range(3):
        tracker.on_epoch_end(epoch)

    assert written == [{"stem": 0.0}]
    assert json.loads(files.drift.read_text()) == {"stem": 0.0}
    assert [line["epoch"] for line in read_jsonl(files.drift_history)] == [1, 2, 3]


def test_a_resumed_drift_tracker_measures_from_the_saved_start(files: RunFiles) -> None:
    weights = keras.Variable(np.array([3.0, 4.0], "float32"))
    DriftTracker(files, {"top": [weights]}, RunProgress()).snapshot()
    weights.assign(np.array([0.0, 0.0], "float32"))

    resumed = DriftTracker(files, {"top": [weights]}, RunProgress())
    resumed.on_train_begin()

    assert resumed.drift() == {"top": pytest.approx(1.0)}


# --- BestWeights -------------------------------------------------------------------------


def epoch_logs(accuracy: float, loss: float) -> dict[str, float]:
    return {"val_accuracy": accuracy, "val_loss": loss}


def test_best_weights_follows_best_score_not_the_lowest_validation_loss(
    files: RunFiles,
) -> None:
    model = tiny_model()
    early = BestWeights(files, RunProgress(), patience=5, restore=True)
    early.set_model(model)

    early.on_epoch_end(0, epoch_logs(0.5, 0.40))
    model.layers[0].kernel.assign(np.full((4, 3), 2.0, "float32"))
    best_kernel = kernel(model)
    early.on_epoch_end(1, epoch_logs(0.8, 0.60))  # more accurate, higher loss: the best
    model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))
    early.on_epoch_end(2, epoch_logs(0.7, 0.30))  # lowest loss, less accurate
    early.on_train_end()

    assert (early.best_epoch, early.wait) == (2, 1)
    assert early.restored
    np.testing.assert_array_equal(kernel(model), best_kernel)


def test_equal_accuracy_is_broken_by_the_lower_validation_loss(files: RunFiles) -> None:
    early = BestWeights(files, RunProgress(), patience=5, restore=False)
    early.set_model(tiny_model())

    for epoch, loss in enumerate((0.5, 0.4, 0.45)):
        early.on_epoch_end(epoch, epoch_logs(0.75, loss))

    assert early.state() == {"best": [0.75, -0.4], "best_epoch": 2, "wait": 1, "file": None}


def test_best_weights_counts_patience_stops_the_phase_and_restores_the_best(
    files: RunFiles,
) -> None:
    model = tiny_model()
    progress = RunProgress()
    early = BestWeights(files, progress, patience=2, restore=True)
    early.set_model(model)
    best_kernel = kernel(model)

    early.on_epoch_end(0, epoch_logs(0.9, 1.0))
    model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))
    early.on_epoch_end(1, epoch_logs(0.8, 0.9))
    assert (early.wait, model.stop_training) == (1, False)
    early.on_epoch_end(2, epoch_logs(0.9, 1.1))

    assert model.stop_training and progress.early_stopped and progress.phase_done
    early.on_train_end()
    np.testing.assert_array_equal(kernel(model), best_kernel)
    assert early.state()["file"] == "best-epoch-0001.npz"


def test_without_patience_best_weights_never_stops_but_still_restores(files: RunFiles) -> None:
    model = tiny_model()
    progress = RunProgress()
    early = BestWeights(files, progress, patience=None, restore=True)
    early.set_model(model)

    for epoch, accuracy in enumerate((0.9, 0.5, 0.4, 0.3)):
        early.on_epoch_end(epoch, epoch_logs(accuracy, 1.0))
    early.on_train_end()

    assert not model.stop_training and not progress.early_stopped
    assert early.restored and progress.phase_done


def test_nothing_is_restored_when_the_last_epoch_is_the_best(files: RunFiles) -> None:
    early = BestWeights(files, RunProgress(), patience=3, restore=True)
    early.set_model(tiny_model())

    early.on_epoch_end(0, epoch_logs(0.5, 1.0))
    early.on_epoch_end(1, epoch_logs(0.6, 1.0))
    early.on_train_end()

    assert not early.restored
    assert sorted(p.name for p in files.checkpoints.iterdir()) == [
        "best-epoch-0001.npz",
        "best-epoch-0002.npz",
    ]  # the older one goes when a checkpoint commits without it


def test_best_weights_state_round_trips_so_a_resumed_run_keeps_counting(
    files: RunFiles,
) -> None:
    first = BestWeights(files, RunProgress(), patience=2, restore=False)
    first.set_model(tiny_model())
    first.on_epoch_end(0, epoch_logs(0.8, 1.0))
    first.on_epoch_end(1, epoch_logs(0.7, 1.0))
    state = json.loads(json.dumps(first.state()))

    progress = RunProgress()
    resumed = BestWeights(files, progress, patience=2, restore=False, **state)
    model = tiny_model()
    resumed.set_model(model)
    resumed.on_epoch_end(2, epoch_logs(0.8, 1.1))

    assert resumed.state() == {"best": [0.8, -1.0], "best_epoch": 1, "wait": 2, "file": None}
    assert model.stop_training and progress.early_stopped


def test_best_weights_ignores_epochs_without_validation_accuracy_or_cut_short(
    files: RunFiles,
) -> None:
    early = BestWeights(files, RunProgress(), patience=1, restore=True)
    early.set_model(tiny_model())
    early.on_epoch_end(0, {"loss": 0.3, "val_loss": 0.3})
    stopped = BestWeights(files, RunProgress(stop_requested=True), patience=1, restore=True)
    stopped.set_model(tiny_model())
    stopped.on_epoch_end(0, epoch_logs(0.9, 0.3))

    empty = {"best": None, "best_epoch": 0, "wait": 0, "file": None}
    assert early.state() == stopped.state() == empty


def test_best_weights_does_not_restore_when_the_run_was_stopped(files: RunFiles) -> None:
    progress = RunProgress()
    model = tiny_model()
    early = BestWeights(files, progress, patience=5, restore=True)
    early.set_model(model)
    early.on_epoch_end(0, epoch_logs(0.9, 1.0))
    early.on_epoch_end(1, epoch_logs(0.5, 1.0))
    model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))

    progress.stop_requested = True
    early.on_train_end()

    np.testing.assert_array_equal(kernel(model), np.zeros((4, 3)))


def test_a_checkpoint_after_a_restore_holds_the_best_weights_and_keeps_its_file(
    files: RunFiles,
) -> None:
    model = tiny_model()
    progress = RunProgress()
    early = BestWeights(files, progress, patience=None, restore=True)
    checkpoint = Checkpoint(
        files, progress, lambda: {"phase_done": progress.phase_done}, best=early
    )
    for callback in (early, checkpoint):
        callback.set_model(model)
    best_kernel = kernel(model)
    for epoch, accuracy in enumerate((0.9, 0.5)):
        early.on_epoch_end(epoch, epoch_logs(accuracy, 1.0))
        model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))
        checkpoint.on_epoch_end(epoch)
    early.on_train_end()

    last = checkpoint.commit(2)

    assert last["phase_done"] and last["early_stopping"]["best_epoch"] == 1
    assert sorted(p.name for p in files.checkpoints.iterdir()) == [
        "best-epoch-0001.npz",
        last["file"],
        "last.json",
    ]
    committed = tiny_model()
    committed.layers[0].kernel.assign(np.ones((4, 3), "float32"))
    load_variables(committed, files.checkpoints / last["file"])
    np.testing.assert_array_equal(kernel(committed), best_kernel)


# --- Validation and BatchNorm recalibration ---------------------------------------------


def test_validation_adds_val_loss_and_val_accuracy_to_the_epoch_logs() -> None:
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.integers(0, 3, 10).astype("int32")
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    validation = Validation(val, RunProgress())
    validation.set_model(model)
    logs = {"loss": 0.1}

    validation.on_epoch_end(0, logs)

    expected = model.evaluate(val, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "val_loss", "val_accuracy"}
    assert logs["val_loss"] == pytest.approx(expected["loss"])
    assert logs["val_accuracy"] == pytest.approx(expected["accuracy"])
    assert isinstance(logs["val_accuracy"], float)


@pytest.mark.parametrize("one_hot", [False, True])
def test_validation_on_arrays_gives_what_evaluate_gives_on_the_batches(
    one_hot: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tl_core.engine.callbacks as callbacks

    monkeypatch.setattr(callbacks, "VALIDATION_CHUNK_ROWS", 4)  # 10 rows: chunks 4, 4, 2
    model = tiny_model()
    if one_hot:
        model.compile(
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.integers(0, 3, 10).astype("int32")
    if one_hot:
        y = np.eye(3, dtype="float32")[y]
    validation = Validation((x, y), RunProgress())
    validation.set_model(model)
    expected = model.evaluate(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(3), verbose=0, return_dict=True
    )

    for _ in range(2):  # the metrics start over every epoch
        logs: dict[str, float] = {}
        validation.on_epoch_end(0, logs)
        assert logs["val_loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert logs["val_accuracy"] == pytest.approx(expected["accuracy"])


def test_validation_skips_an_epoch_cut_short_by_a_stop() -> None:
    validation = Validation([], RunProgress(stop_requested=True))
    logs = {"loss": 0.1}

    validation.on_epoch_end(0, logs)

    assert logs == {"loss": 0.1}


def test_validation_recalibrates_batch_norm_before_evaluating() -> None:
    model, layer = bn_model()
    model.compile(loss="mse", metrics=[keras.metrics.MeanAbsoluteError(name="accuracy")])
    train = [(np.array([[1.0, 10.0], [3.0, 30.0]], "float32"), None)]
    val = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 2), "float32"), np.zeros((2, 2), "float32"))
    ).batch(2)
    recalibrate = (BatchNormRecalibrator(model, [layer]), train)
    validation = Validation(val, RunProgress(), recalibrate=recalibrate)
    validation.set_model(model)
    logs: dict[str, float] = {}

    validation.on_epoch_end(0, logs)

    np.testing.assert_allclose(layer.moving_mean.numpy(), [2.0, 20.0], rtol=1e-6)
    assert "val_loss" in logs


def test_recalibration_sets_the_moving_statistics_to_those_of_the_batch() -> None:
    model, layer = bn_model()
    batch = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]], "float32")

    used = BatchNormRecalibrator(model, [layer])([(batch, None)])

    assert used == 1
    np.testing.assert_allclose(layer.moving_mean.numpy(), batch.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), batch.var(axis=0), rtol=1e-5)
    assert layer.momentum == 0.99


def test_recalibration_averages_the_batches_and_stops_at_max_batches() -> None:
    model, layer = bn_model()
    batches = [(np.full((2, 2), value, "float32"), None) for value in (1.0, 2.0, 6.0, 100.0)]
    recalibrate = BatchNormRecalibrator(model, [layer], max_batches=3)

    used = recalibrate(batches)

    assert used == 3
    np.testing.assert_allclose(layer.moving_mean.numpy(), [3.0, 3.0], rtol=1e-6)
    assert recalibrate(batches[3:]) == 1
    np.testing.assert_allclose(layer.moving_mean.numpy(), [100.0, 100.0], rtol=1e-6)


def test_recalibration_leaves_frozen_batch_norm_alone() -> None:
    model, layer = bn_model()
    layer.trainable = False

    BatchNormRecalibrator(model, [layer])([(np.full((2, 2), 5.0, "float32"), None)])

    np.testing.assert_array_equal(layer.moving_mean.numpy(), [0.0, 0.0])
    assert BatchNormRecalibrator(model, [])([(np.ones((2, 2), "float32"), None)]) == 0


# --- EpochSummaries ----------------------------------------------------------------------


def _scalars(folder: Path) -> dict[tuple[str, int], float]:
    """``{(tag, step): value}`` of the scalar summaries in the event files of `folder`."""
    found = {}
    for path in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return found


def test_epoch_summaries_write_keras_tensorboard_tags_when_training_ends(
    files: RunFiles,
) -> None:
    progress = RunProgress()
    summaries = EpochSummaries(files.tensorboard, progress)
    summaries.set_model(tiny_model(learning_rate=0.01))

    summaries.on_epoch_end(0, {"loss": 1.5, "accuracy": 0.25, "val_loss": 2.0, "val_accuracy": 0.5})
    summaries.on_epoch_end(1, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.75})
    progress.stop_requested = True
    summaries.on_epoch_end(2, {"loss": 9.0, "accuracy": 0.0})
    assert not files.tensorboard.exists()  # nothing is written during training
    summaries.on_train_end()

    train = _scalars(files.tensorboard / "train")
    assert train == pytest.approx(
        {
            ("epoch_loss", 0): 1.5,
            ("epoch_accuracy", 0): 0.25,
            ("epoch_learning_rate", 0): 0.01,
            ("epoch_loss", 1): 1.0,
            ("epoch_accuracy", 1): 0.5,
            ("epoch_learning_rate", 1): 0.01,
        }
    )
    assert _scalars(files.tensorboard / "validation") == pytest.approx(
        {
            ("epoch_loss", 0): 2.0,
            ("epoch_accuracy", 0): 0.5,
            ("epoch_loss", 1): 1.5,
            ("epoch_accuracy", 1): 0.75,
        }
    )


# --- StatusUpdater -----------------------------------------------------------------------


def test_status_updater_records_the_finished_epoch_and_phase(files: RunFiles) -> None:
    write_status(files.root, RunStatus(state="running", total_epochs=5))
    updater = StatusUpdater(files, RunProgress(phase="head"))

    updater.on_epoch_end(2)

    status = read_status(files.root)
    assert status is not None
    assert (status.state, status.epoch, status.phase) == ("running", 3, "head")
