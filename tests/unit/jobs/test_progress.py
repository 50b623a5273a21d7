"""Training progress from the metrics lines: epoch, batch, speed and time left."""

from __future__ import annotations

import pytest

from tl_core.jobs.progress import describe_duration, training_progress


def _batch(epoch: int, batch: int, batches: int = 10, speed: float = 64.0) -> dict[str, object]:
    return {
        "type": "batch",
        "epoch": epoch,
        "batch": batch,
        "batches": batches,
        "phase": "train",
        "images_per_s": speed,
    }


def test_there_is_no_progress_before_the_first_batch() -> None:
    assert training_progress(None, [], 10, batch_size=32) is None


def test_progress_counts_finished_epochs_and_batches_of_this_one() -> None:
    progress = training_progress(_batch(3, 5), [{"epoch": 1}, {"epoch": 2}], 10, batch_size=32)

    assert progress is not None
    assert (progress.epoch, progress.batch, progress.batches) == (3, 5, 10)
    assert progress.fraction == pytest.approx(0.25)
    assert progress.label.startswith("Epoch 3/10 · batch 5/10 · 64 images/s · about ")


def test_between_epochs_the_next_one_has_not_started() -> None:
    progress = training_progress(_batch(2, 10), [{"epoch": 1}, {"epoch": 2}], 4, batch_size=32)

    assert progress is not None
    assert (progress.epoch, progress.batch) == (3, 0)


def test_time_left_leaves_out_each_phases_first_epoch_which_compiles_the_model() -> None:
    epochs = [
        {"epoch": 1, "phase": "train", "seconds": 90.0},
        {"epoch": 2, "phase": "train", "seconds": 6.0},
    ]
    # Half a second per batch (32 images at 64 images/s): 5 batches left in epoch 3,
    # then epochs 4 and 5 at the 6 s the second epoch took.
    progress = training_progress(_batch(3, 5), epochs, 5, batch_size=32)

    assert progress is not None
    assert progress.eta_seconds == pytest.approx(2.5 + 2 * 6.0)


def test_before_a_steady_epoch_the_batch_speed_sets_the_pace() -> None:
    epochs = [{"epoch": 1, "phase": "train", "seconds": 90.0}]

    progress = training_progress(_batch(2, 5), epochs, 3, batch_size=32)

    assert progress is not None
    assert progress.eta_seconds == pytest.approx(2.5 + 5.0)


def test_without_a_speed_or_a_batch_size_there_is_no_time_left() -> None:
    assert training_progress(_batch(1, 1), [], 3, batch_size=None).eta_seconds is None
    no_speed = training_progress(_batch(1, 1, speed=0.0), [], 3, batch_size=32)
    assert no_speed.images_per_s is None
    assert no_speed.label == "Epoch 1/3 · batch 1/10"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.4, "0 s"), (59.6, "1 min"), (61, "1 min 1 s"), (3600, "1 h"), (7380, "2 h 3 min")],
)
def test_durations_are_said_the_way_people_say_them(seconds: float, said: str) -> None:
    assert describe_duration(seconds) == said
