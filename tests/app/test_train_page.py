"""The Train page, run through the whole app by AppTest, with no training at all.

The server's scheduler is replaced by a real `Scheduler` over a `FakeRunner`: Start
queues a real job, ``tick()`` "starts" it, and the test writes what a worker would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

from tests.app.run_support import (
    FakeRunner,
    batch_line,
    chart_traces,
    epoch_line,
    fabricate_run,
    texts,
    write_metrics,
)
from tests.app.wizard_support import (
    assert_no_exception,
    offline_app,
    seed_blocks,
    settle_ingest,
    store_sample,
)
from tl_core import DatasetReport
from tl_core.config import RunConfig, unavailable_options
from tl_core.jobs.queue import get, list_jobs, submit
from tl_core.jobs.runs import RunFiles, read_json, run_path
from tl_core.jobs.scheduler import Scheduler
from tl_core.models.backbones import get_backbone
from ui import run_view, state

PAGE = "pages/train.py"


# Every test here gets the fake queue (`tests/app/conftest.py`), used or not.
pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ImageNet weights; AppTest runs ``app.py`` on every run (see `offline_app`)."""
    return offline_app(monkeypatch, tmp_path)


@pytest.fixture
def sample() -> DatasetReport:
    """The sample dataset (64 px images), stored in this test's workspace."""
    return store_sample()


def _open(app: AppTest, sample: DatasetReport | None, run_id: str | None = None) -> AppTest:
    """Open the Train page as a link would: dataset, backbone and run in the URL."""
    if sample is not None:
        app.query_params["dataset"] = sample.dataset_id
        app.query_params["backbone"] = "mobilenet_v2"
    if run_id is not None:
        app.query_params["run"] = run_id
    app.switch_page(PAGE)
    return app.run()


def _button(app: AppTest, label: str) -> Button:
    (button,) = [b for b in app.button if b.label == label]
    return button


def _running_run(
    sample: DatasetReport, queue: tuple[Scheduler, FakeRunner], **config: object
) -> str:
    """Submit a run and let the fake scheduler start it."""
    scheduler, _ = queue
    run_id = submit(RunConfig(**({"dataset_id": sample.dataset_id, "weights": "none"} | config)))
    scheduler.tick()
    assert get(run_id).state == "running"
    return run_id


def test_the_form_starts_with_defaults_for_a_first_run_from_scratch(
    app: AppTest, sample: DatasetReport
) -> None:
    _open(app, sample)

    assert_no_exception(app)
    assert app.number_input(key="epochs_input").value == 10
    assert app.select_slider(key="batch_size_input").value == 32
    assert app.select_slider(key="learning_rate_input").value == 2e-3
    assert app.radio(key="optimizer_input").value == "adam"
    assert app.radio(key="schedule_input").value == "constant"
    assert app.toggle(key="two_phase_input").disabled
    assert "fast_input" not in [toggle.key for toggle in app.toggle], "every block trains"
    assert [box.value for box in app.checkbox] == [True, False, False, False]
    assert len(app.get("image")) == 3, "a row of previews for each of 3 classes"
    assert "Start training" in [b.label for b in app.button]
    assert "Suggested for training from scratch." in texts(app, "caption")


def test_from_scratch_two_phases_are_off_with_the_run_configs_reason(
    app: AppTest, sample: DatasetReport
) -> None:
    reason = unavailable_options({"weights": "none"})["two_phase"][1]

    _open(app, sample)

    assert app.toggle(key="two_phase_input").disabled
    assert app.toggle(key="two_phase_input").value is False
    assert reason in texts(app, "caption")


def test_caching_is_offered_when_the_bottom_blocks_stay_frozen(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()
    app.session_state[state.FREEZE_PRESET] = "fine-tune"
    app.session_state[state.UNFREEZE_LAST] = 2
    _open(app, sample)

    assert "fast_input" in [toggle.key for toggle in app.toggle], "the bottom stays frozen"
    app.toggle(key="two_phase_input").set_value(True).run()

    assert "fast_input" in [toggle.key for toggle in app.toggle], "phase 1 trains the head"


def test_a_tampered_fast_setting_is_switched_off_not_refused(
    app: AppTest, sample: DatasetReport
) -> None:
    _open(app, sample)
    app.session_state["fast"] = True  # only reachable by tampering: no widget shows

    _button(app, "Start training").click().run()

    assert_no_exception(app)
    (job,) = list_jobs()
    config = read_json(RunFiles(run_path(job.run_id)).config)["config"]
    assert (config["freeze"], config["fast"]) == ("full", False)


def test_pretrained_weights_suggest_a_lower_learning_rate(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()

    _open(app, sample)

    assert app.select_slider(key="learning_rate_input").value == 1e-3
    assert not app.toggle(key="two_phase_input").disabled


def test_the_recipe_options_open_their_own_settings(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()
    seed_blocks("mobilenet_v2", 64)
    _open(app, sample)

    app.toggle(key="two_phase_input").set_value(True).run()
    app.toggle(key="early_stopping_input").set_value(True).run()
    app.number_input(key="patience_input").set_value(2).run()
    _button(app, "Start training").click().run()

    assert_no_exception(app)
    assert app.number_input(key="fine_tune_blocks_input").max == 19
    assert "Phase 1: 10 epochs at 0.001. Phase 2: 5 epochs at 0.0001." in texts(app, "caption")
    (job,) = list_jobs()
    config = read_json(RunFiles(run_path(job.run_id)).config)["config"]
    assert (config["two_phase"], config["fine_tune_epochs"], config["fine_tune_blocks"]) == (
        True,
        5,
        2,
    )
    assert (config["early_stopping"], config["patience"], config["restore_best"]) == (
        True,
        2,
        True,
    )


def test_feature_extraction_can_train_the_head_on_cached_features(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()
    _open(app, sample)

    app.toggle(key="fast_input").set_value(True).run()
    _button(app, "Start training").click().run()

    (job,) = list_jobs()
    config = read_json(RunFiles(run_path(job.run_id)).config)["config"]
    assert (config["freeze"], config["fast"]) == ("feature-extraction", True)


@pytest.fixture
def pretrained(keras_home: Path) -> None:
    """MobileNetV2's ImageNet weights pretended present and its blocks listed: the Train
    form can price the run."""
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()
    seed_blocks("mobilenet_v2", 64)


def _run_time(app: AppTest) -> str:
    (sentence,) = [c for c in texts(app, "caption") if c.startswith(":material/timer:")]
    return sentence


def test_the_form_shows_the_run_time_with_and_without_cached_activations_by_default(
    app: AppTest, sample: DatasetReport, pretrained: None
) -> None:
    _open(app, sample)

    assert_no_exception(app)
    assert app.toggle(key="fast_input").value is True
    sentence = _run_time(app)
    assert " with cached activations (" in sentence
    assert "without) for 10 epochs" in sentence


def test_the_form_says_caching_does_not_apply_to_a_full_fine_tune(
    app: AppTest, sample: DatasetReport, pretrained: None
) -> None:
    app.session_state[state.FREEZE_PRESET] = "full"

    _open(app, sample)

    sentence = _run_time(app)
    assert "every block trains, so nothing is cached" in sentence
    assert "cached activations" not in sentence


def test_switching_caching_off_says_so_before_the_run(
    app: AppTest, sample: DatasetReport, pretrained: None
) -> None:
    _open(app, sample)

    app.toggle(key="fast_input").set_value(False).run()

    assert "caching is switched off" in _run_time(app)


def test_new_samples_draw_other_previews(app: AppTest, sample: DatasetReport) -> None:
    _open(app, sample)
    app.checkbox(key="augmentation_input_rotation").check().run()
    before = [image.proto.imgs[1].url for image in app.get("image")]

    _button(app, "New samples").click().run()

    assert app.session_state[state.AUGMENT_PREVIEW_DRAW] == 1
    assert [image.proto.imgs[1].url for image in app.get("image")] != before


def test_start_queues_a_run_with_the_form_settings_and_shows_it(
    app: AppTest, sample: DatasetReport
) -> None:
    _open(app, sample)
    app.number_input(key="epochs_input").set_value(3).run()
    app.checkbox(key="augmentation_input_rotation").check().run()

    _button(app, "Start training").click().run()

    assert_no_exception(app)
    (job,) = list_jobs()
    assert job.state == "queued"
    assert app.query_params["run"] == job.run_id
    assert app.session_state[state.RUN_ID] == job.run_id
    config = read_json(RunFiles(run_path(job.run_id)).config)["config"]
    assert config["epochs"] == 3
    assert config["augmentation"] == ["flip", "rotation"]
    assert config["weights"] == "none"
    assert config["learning_rate"] == 2e-3
    assert any(f"Run {job.run_id}" in text for text in texts(app, "markdown"))
    assert "Stop" in [b.label for b in app.button]
    assert any(f"Run {job.run_id} · queued" in text for text in texts(app.sidebar, "markdown"))


def test_invalid_settings_show_why_and_keep_the_form(app: AppTest, sample: DatasetReport) -> None:
    _open(app, sample)
    app.session_state["patience"] = 0  # only reachable by tampering: no widget allows it

    _button(app, "Start training").click().run()

    assert_no_exception(app)
    assert texts(app, "error") == [
        "Expected `patience` to be an integer between 1 and 100. Received: patience=0"
    ]
    assert not list_jobs()
    assert app.number_input(key="epochs_input").value == 10


def test_a_queued_run_says_its_place_in_the_queue(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    _running_run(sample, queue)
    submit(RunConfig(dataset_id=sample.dataset_id, weights="none"))
    waiting = submit(RunConfig(dataset_id=sample.dataset_id, weights="none"))

    _open(app, sample, waiting)

    assert_no_exception(app)
    assert any("2nd in the queue · about 2 min to wait" in i for i in texts(app, "info"))
    assert any("1 training · 2 waiting" in text for text in texts(app.sidebar, "markdown"))


def test_the_live_view_draws_curves_and_progress_from_the_metrics_file(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _running_run(sample, queue, epochs=10)
    write_metrics(
        run_id,
        [
            batch_line(1, 8, 8),
            epoch_line(1, 0.5),
            batch_line(2, 8, 8),
            epoch_line(2, 0.75),
            batch_line(3, 4, 8),
        ],
    )

    _open(app, sample, run_id)

    assert_no_exception(app)
    train_accuracy, val_accuracy, *_ = chart_traces(app)
    assert train_accuracy["x"] == [1, 2]
    assert val_accuracy["y"] == [0.5, 0.75]
    (bar,) = app.get("progress")
    assert bar.proto.text.startswith("Epoch 3/10 · batch 4/8 · 32 images/s · about ")
    assert bar.proto.value == 25  # 2.5 of 10 epochs


def test_earlier_runs_on_the_same_dataset_are_ghosts_behind_the_live_curves(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    earlier = time.time() - 600
    fabricate_run(
        "20261120-090000-aaaaaa",
        state="completed",
        val_accuracies=(0.4, 0.6),
        created=earlier,
        config={"dataset_id": sample.dataset_id},
    )
    fabricate_run(
        "20261120-100000-bbbbbb", state="completed", val_accuracies=(0.9,), created=earlier
    )
    run_id = _running_run(sample, queue)
    write_metrics(run_id, [epoch_line(1, 0.5)])

    _open(app, sample, run_id)

    assert_no_exception(app)
    ghost_accuracy, ghost_loss, train_accuracy, val_accuracy, *_ = chart_traces(app)
    assert (ghost_accuracy["name"], ghost_accuracy["legendgroup"]) == (
        "earlier runs",
        "earlier runs",
    )
    assert ghost_accuracy["y"] == [0.4, 0.6]
    assert "#1 mobilenet_v2 · feature extraction" in ghost_loss["hovertemplate"]
    assert (ghost_accuracy["mode"], ghost_accuracy["line"]["width"]) == ("lines", 1)
    assert (train_accuracy["name"], val_accuracy["y"]) == ("training", [0.5])
    assert sum(trace["name"] == "earlier runs" for trace in chart_traces(app)) == 2, (
        "the run on another dataset is no ghost"
    )


def test_a_two_phase_run_names_its_phase(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _running_run(
        sample, queue, weights="imagenet", two_phase=True, epochs=2, fine_tune_epochs=2
    )
    write_metrics(
        run_id,
        [epoch_line(1, 0.5, "head"), epoch_line(2, 0.6, "head"), batch_line(3, 1, 8, "fine-tune")],
    )

    _open(app, sample, run_id)

    assert "Phase 2 of 2: fine-tuning the top blocks at a lower learning rate" in texts(
        app, "caption"
    )


def test_stop_raises_the_stop_flag_of_a_running_run(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    run_id = _running_run(sample, queue)
    _open(app, sample, run_id)

    _button(app, "Stop").click().run()

    assert_no_exception(app)
    assert RunFiles(run_path(run_id)).stop_flag.exists()
    assert get(run_id).stop_requested
    assert _button(app, "Stopping…").disabled


def test_a_run_whose_worker_is_ending_shows_its_final_state_at_once(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    run_id = _running_run(sample, queue)
    write_metrics(run_id, [epoch_line(1, 0.5)])
    # The worker wrote "stopped" and its process ends; the queue settles it at its next tick.
    runner.end(run_id, "stopped", epoch=1)
    assert get(run_id).state == "running"

    _open(app, sample, run_id)

    assert_no_exception(app)
    assert _button(app, "Finishing…").disabled
    assert any(info.startswith("Stopped: ") for info in texts(app, "info"))
    assert any("No run training" in text for text in texts(app.sidebar, "markdown"))

    scheduler.tick()
    app.run()
    assert "Resume" in [b.label for b in app.button]


def test_a_failed_run_shows_its_error_in_plain_words(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    run_id = _running_run(sample, queue)
    message = "Training ran out of memory. Lower the batch size or the image size."
    runner.end(run_id, "failed", error=message, error_kind="input")
    scheduler.tick()

    _open(app, sample, run_id)

    assert_no_exception(app)
    assert message in texts(app, "error")
    assert "Resume" not in [b.label for b in app.button]


def test_a_completed_run_shows_its_result_and_completes_the_step(
    app: AppTest, sample: DatasetReport
) -> None:
    run_id = "20261123-131500-a1b2c3"
    fabricate_run(run_id, state="completed", val_accuracies=(0.5, 0.875, 0.75), total_epochs=3)

    _open(app, sample, run_id)

    assert_no_exception(app)
    (success,) = texts(app, "success")
    assert success.startswith("Finished: best validation accuracy **87.5%** (epoch 2)")
    assert "3 of 3 epochs · took 1 min" in success
    assert "Train · done" in " ".join(texts(app.sidebar, "markdown"))


def test_resume_requeues_an_interrupted_run(
    app: AppTest, sample: DatasetReport, queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    run_id = _running_run(sample, queue)
    runner.end(run_id)  # the worker died without a word
    scheduler.tick()
    assert get(run_id).state == "interrupted"
    _open(app, sample, run_id)
    assert any("worker process ended" in w for w in texts(app, "warning"))

    _button(app, "Resume").click().run()

    assert_no_exception(app)
    assert get(run_id).state == "queued"
    assert get(run_id).resume


def test_a_reload_finds_the_run_in_the_url(app: AppTest, sample: DatasetReport) -> None:
    run_id = "20261123-131500-a1b2c3"
    fabricate_run(run_id, state="running", val_accuracies=(0.5,))

    _open(app, None, run_id)

    assert_no_exception(app)
    assert app.session_state[state.RUN_ID] == run_id
    assert len(chart_traces(app)[0]["x"]) == 1
    assert any(f"Run {run_id} · running" in text for text in texts(app.sidebar, "markdown"))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261123-131500-a1b2c3"])
def test_a_bad_run_link_gets_a_friendly_message(
    app: AppTest, sample: DatasetReport, bad: str
) -> None:
    _open(app, sample, bad)

    assert_no_exception(app)
    (warning,) = texts(app, "warning")
    assert warning.startswith("The run named in this link cannot be opened.")
    assert "run" not in app.query_params
    assert "Start training" in [b.label for b in app.button]


def test_without_a_dataset_the_page_says_where_to_choose_one(app: AppTest) -> None:
    _open(app, None)

    assert_no_exception(app)
    assert texts(app, "info") == ["Choose a dataset first: the images your model learns from."]
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Data"]


def test_without_a_backbone_the_page_says_where_to_choose_one(
    app: AppTest, sample: DatasetReport
) -> None:
    app.query_params["dataset"] = sample.dataset_id
    app.switch_page(PAGE)
    app.run()

    assert_no_exception(app)
    assert texts(app, "info")[0].startswith("Choose a backbone first")
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Backbone"]


def test_golden_path_upload_backbone_layers_start_watch_stop(
    app: AppTest, image_zip: Callable[..., bytes], queue: tuple[Scheduler, FakeRunner]
) -> None:
    scheduler, runner = queue
    app.run()
    app.file_uploader(key=state.UPLOADER).upload(
        "pets.zip", image_zip({"cat": 12, "dog": 12}), "application/zip"
    ).run()
    settle_ingest(app)
    app.switch_page("pages/backbone.py").run()
    app.radio(key=state.WEIGHTS_PICKER).set_value("scratch").run()
    seed_blocks("mobilenet_v2", app.number_input(key=state.IMAGE_SIZE_INPUT).value)
    app.switch_page("pages/layers.py").run()
    (table,) = app.data_editor
    app.session_state[table.key] = {
        "edited_rows": {0: {"Trainable": False}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.run()
    app.switch_page(PAGE).run()

    _button(app, "Start training").click().run()
    (job,) = list_jobs()
    config = read_json(RunFiles(run_path(job.run_id)).config)["config"]
    assert config["freeze"] == "custom"
    assert len(config["trainable_blocks"]) == 18
    scheduler.tick()
    write_metrics(job.run_id, [epoch_line(1, 0.5), batch_line(2, 1, 4)])
    app.run()
    assert len(chart_traces(app)[0]["x"]) == 1

    _button(app, "Stop").click().run()
    assert RunFiles(run_path(job.run_id)).stop_flag.exists()
    runner.end(job.run_id, "stopped", epoch=1)
    scheduler.tick()
    app.run()

    assert_no_exception(app)
    assert get(job.run_id).state == "stopped"
    assert any(text.startswith("Stopped: best validation accuracy") for text in texts(app, "info"))
    assert "Resume" in [b.label for b in app.button]


def _watch_one_epoch(
    app: AppTest,
    sample: DatasetReport,
    queue: tuple[Scheduler, FakeRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, list[int]]:
    """Open a running run with one epoch line, counting the calls of the curves' figure
    builder; return the run and the counter (one item a call)."""
    builds: list[int] = []
    build = run_view.training_curves_figure

    def counting(*args: object, **kwargs: object) -> object:
        builds.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(run_view, "training_curves_figure", counting)
    run_id = _running_run(sample, queue)
    write_metrics(run_id, [epoch_line(1, 0.5)])
    _open(app, sample, run_id)
    return run_id, builds


def test_the_live_view_does_not_rebuild_the_curves_when_nothing_was_written(
    app: AppTest,
    sample: DatasetReport,
    queue: tuple[Scheduler, FakeRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id, builds = _watch_one_epoch(app, sample, queue, monkeypatch)
    assert len(builds) == 1

    app.run()
    write_metrics(run_id, [batch_line(2, 3, 8)])
    app.run()

    assert_no_exception(app)
    assert len(builds) == 1, "no new epoch line, no new figure"
    (bar,) = app.get("progress")
    assert bar.proto.text.startswith("Epoch 2/10 · batch 3/8"), "batch lines move the bar"


def test_the_live_view_rebuilds_the_curves_when_an_epoch_line_arrives(
    app: AppTest,
    sample: DatasetReport,
    queue: tuple[Scheduler, FakeRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id, builds = _watch_one_epoch(app, sample, queue, monkeypatch)

    write_metrics(run_id, [epoch_line(2, 0.75)])
    app.run()

    assert_no_exception(app)
    assert len(builds) == 2
    assert chart_traces(app)[1]["y"] == [0.5, 0.75]


class _Clock:
    """A stand-in for the `time` module that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_polling_slows_while_nothing_is_written_and_speeds_up_at_the_next_line(
    app: AppTest,
    sample: DatasetReport,
    queue: tuple[Scheduler, FakeRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(run_view, "time", clock)
    paces: list[float] = []
    pace = run_view._poll_seconds

    def recorded_pace(run_id: str) -> float:
        paces.append(pace(run_id))
        return paces[-1]

    monkeypatch.setattr(run_view, "_poll_seconds", recorded_pace)
    run_id, _ = _watch_one_epoch(app, sample, queue, monkeypatch)
    assert paces[-1] == run_view.POLL_SECONDS

    clock.now += run_view.IDLE_AFTER_SECONDS + 1
    app.run()
    assert paces[-1] == run_view.IDLE_POLL_SECONDS

    write_metrics(run_id, [batch_line(2, 1, 8)])
    app.run()

    assert_no_exception(app)
    assert paces[-1] == run_view.POLL_SECONDS
