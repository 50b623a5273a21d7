"""The Layers page, run through the whole app by AppTest.

One test lists the blocks for real (a ``python -m tl_core blocks`` subprocess, seconds);
the others read a block list seeded into the cache, as a second visit would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.wizard_support import (
    MOBILENET_V2_NAMES,
    assert_no_exception,
    offline_app,
    open_page,
    plain,
    seed_blocks,
    store_sample,
)
from tl_core import DatasetReport
from tl_core.config import RunConfig
from tl_core.models import catalog
from tl_core.models.backbones import get_backbone
from ui import state

PAGE = "pages/layers.py"
#: The sample has 4 classes; MobileNetV2 hands 1280 features to the head.
HEAD_PARAMS = (1280 + 1) * 4


@pytest.fixture(autouse=True)
def keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Keras cache, and pages opened through ``app.py`` (see `offline_app`)."""
    return offline_app(monkeypatch, tmp_path)


@pytest.fixture
def sample() -> DatasetReport:
    """The sample dataset (64 px images, so MobileNetV2 runs at 64 px), stored here."""
    return store_sample()


@pytest.fixture
def imagenet(keras_home: Path) -> None:
    """Pretend MobileNetV2's ImageNet weights are on this machine (nothing loads them)."""
    (keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)).touch()


@pytest.fixture
def layers(app: AppTest, sample: DatasetReport) -> AppTest:
    """The Layers page for MobileNetV2 at 64 px, its blocks read from a seeded cache."""
    seed_blocks("mobilenet_v2", 64)
    return open_page(app, PAGE, sample)


def _trainable_in_table(app: AppTest) -> list[str]:
    table = app.dataframe[0].value
    return table.loc[table["Trainable"], "Block"].tolist()


def _metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def _tick(app: AppTest, row: int, trainable: bool) -> AppTest:
    """Change one tick box of the block table, as a click in the browser does."""
    (table,) = app.data_editor
    app.session_state[table.key] = {
        "edited_rows": {row: {"Trainable": trainable}},
        "added_rows": [],
        "deleted_rows": [],
    }
    return app.run()


@pytest.mark.slow
def test_the_blocks_are_listed_by_a_subprocess_once_and_then_cached(
    app: AppTest, sample: DatasetReport
) -> None:
    open_page(app, PAGE, sample)

    assert_no_exception(app)
    table = app.dataframe[0].value
    assert table["Block"].tolist() == list(MOBILENET_V2_NAMES)
    assert table["Parameters"].sum() == get_backbone("mobilenet_v2").params
    assert table["Output"].iloc[-1] == "2 × 2 × 1280"
    assert catalog.cached_backbone_blocks("mobilenet_v2", 64) is not None
    assert len(app.get("plotly_chart")) == 1


def test_a_block_listing_that_fails_is_explained(
    app: AppTest, sample: DatasetReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing_cli(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 2, "", "error: Out of cheese. Add cheese.\n")

    monkeypatch.setattr(catalog.subprocess, "run", refusing_cli)

    open_page(app, PAGE, sample)

    assert_no_exception(app)
    (error,) = app.error
    assert (
        plain(error.value)
        == "Cannot list the blocks of MobileNetV2 at 64 px: Out of cheese. Add cheese."
    )
    assert not app.get("plotly_chart")
    assert "Layers · done" not in " ".join(m.value for m in app.sidebar.markdown)


def test_pretrained_weights_start_with_feature_extraction(layers: AppTest, imagenet: None) -> None:
    layers.run()

    assert_no_exception(layers)
    assert layers.radio(key=state.PRESET_PICKER).value == "feature-extraction"
    assert _trainable_in_table(layers) == []
    assert len(layers.get("plotly_chart")) == 1
    assert not layers.warning
    assert "Layers · done" in " ".join(m.value for m in layers.sidebar.markdown)
    assert any("0 of 19 blocks trainable" in c.value for c in layers.sidebar.caption)


def test_random_weights_start_with_every_block_training(layers: AppTest) -> None:
    assert_no_exception(layers)
    assert layers.radio(key=state.PRESET_PICKER).value == "scratch"
    assert _trainable_in_table(layers) == list(MOBILENET_V2_NAMES)
    assert any("weights source on the Backbone page" in plain(i.value) for i in layers.info)


@pytest.mark.parametrize(
    ("preset", "trainable"),
    [
        ("feature-extraction", []),
        ("fine-tune", ["block_16", "top"]),
        ("full", list(MOBILENET_V2_NAMES)),
    ],
)
def test_a_preset_sets_the_trainable_blocks(
    layers: AppTest, imagenet: None, preset: str, trainable: list[str]
) -> None:
    layers.run()

    layers.radio(key=state.PRESET_PICKER).set_value(preset).run()

    assert_no_exception(layers)
    assert _trainable_in_table(layers) == trainable


def test_the_slider_picks_how_many_top_blocks_train(layers: AppTest, imagenet: None) -> None:
    layers.run()
    layers.radio(key=state.PRESET_PICKER).set_value("fine-tune").run()

    layers.slider(key=state.UNFREEZE_SLIDER).set_value(5).run()

    assert _trainable_in_table(layers) == ["block_13", "block_14", "block_15", "block_16", "top"]
    assert any("5 of 19 blocks trainable" in c.value for c in layers.sidebar.caption)


def test_from_scratch_makes_the_weights_random_and_says_so(layers: AppTest, imagenet: None) -> None:
    layers.run()

    layers.radio(key=state.PRESET_PICKER).set_value("scratch").run()

    assert layers.session_state[state.WEIGHTS_SOURCE] == "scratch"
    assert _trainable_in_table(layers) == list(MOBILENET_V2_NAMES)
    (info,) = [plain(i.value) for i in layers.info]
    assert "weights source on the Backbone page is now **From scratch**" in info


def test_leaving_random_weights_turns_from_scratch_into_full_fine_tuning(
    layers: AppTest, imagenet: None
) -> None:
    layers.run()
    layers.radio(key=state.PRESET_PICKER).set_value("scratch").run()
    layers.switch_page("pages/backbone.py").run()

    layers.radio(key=state.WEIGHTS_PICKER).set_value("imagenet").run()

    assert layers.session_state[state.FREEZE_PRESET] == "full"
    assert "now *Full fine-tune*" in layers.toast[0].value
    layers.switch_page(PAGE).run()
    assert layers.radio(key=state.PRESET_PICKER).value == "full"
    assert _trainable_in_table(layers) == list(MOBILENET_V2_NAMES)


def test_ticking_a_block_makes_the_plan_custom(layers: AppTest, imagenet: None) -> None:
    layers.run()

    _tick(layers, MOBILENET_V2_NAMES.index("block_2"), True)

    assert_no_exception(layers)
    assert layers.radio(key=state.PRESET_PICKER).value == "custom"
    assert layers.session_state[state.TRAINABLE_BLOCKS] == ("block_2",)
    assert _trainable_in_table(layers) == ["block_2"]

    _tick(layers, MOBILENET_V2_NAMES.index("top"), True)

    assert _trainable_in_table(layers) == ["block_2", "top"]


def test_unticking_the_last_block_is_feature_extraction(layers: AppTest, imagenet: None) -> None:
    layers.run()
    layers.radio(key=state.PRESET_PICKER).set_value("fine-tune").run()
    layers.slider(key=state.UNFREEZE_SLIDER).set_value(1).run()

    _tick(layers, MOBILENET_V2_NAMES.index("top"), False)

    assert layers.radio(key=state.PRESET_PICKER).value == "feature-extraction"
    assert _trainable_in_table(layers) == []


def test_the_cost_panel_counts_parameters_and_estimates_time(
    layers: AppTest, imagenet: None
) -> None:
    layers.run()
    total = get_backbone("mobilenet_v2").params + HEAD_PARAMS

    frozen = _metrics(layers)
    layers.radio(key=state.PRESET_PICKER).set_value("full").run()
    full = _metrics(layers)

    assert frozen["Trainable parameters"] == f"{HEAD_PARAMS:,}"
    assert frozen["Frozen parameters"] == f"{total - HEAD_PARAMS:,}"
    assert full["Trainable parameters"] == f"{total:,}"
    assert full["Frozen parameters"] == "0"
    for metrics in (frozen, full):
        assert metrics["Time per epoch (estimate)"].startswith(("about", "under"))
        assert metrics["Memory (estimate)"].startswith("about")
    assert any(
        "Estimates, not measurements, for 256 training images" in c.value for c in layers.caption
    )


def _run_time(app: AppTest) -> str:
    (sentence,) = [m.value for m in app.markdown if m.value.startswith(":material/timer:")]
    return sentence


def test_the_run_time_is_shown_with_and_without_cached_activations_by_default(
    layers: AppTest, imagenet: None
) -> None:
    layers.run()

    sentence = _run_time(layers)
    assert layers.radio(key=state.PRESET_PICKER).value == "feature-extraction"
    assert " with cached activations (" in sentence
    assert "without) for 10 epochs" in sentence
    assert "per epoch" in sentence


def test_a_full_fine_tune_says_caching_does_not_apply(layers: AppTest, imagenet: None) -> None:
    layers.radio(key=state.PRESET_PICKER).set_value("full").run()

    sentence = _run_time(layers)
    assert "every block trains, so nothing is cached" in sentence
    assert "cached activations" not in sentence


def test_without_a_dataset_only_the_parameters_are_counted(app: AppTest) -> None:
    seed_blocks("mobilenet_v2", 224)

    open_page(app, PAGE, None)

    assert_no_exception(app)
    assert set(_metrics(app)) == {"Trainable parameters", "Frozen parameters"}
    assert any("Choose a dataset on the Data page" in c.value for c in app.caption)


def test_random_weights_with_frozen_blocks_get_a_warning(layers: AppTest) -> None:
    layers.radio(key=state.PRESET_PICKER).set_value("feature-extraction").run()

    (warning,) = [plain(w.value) for w in layers.warning]
    assert warning.startswith("A frozen random backbone passes almost nothing through")

    layers.radio(key=state.PRESET_PICKER).set_value("fine-tune").run()

    (warning,) = [plain(w.value) for w in layers.warning]
    assert warning.startswith("Frozen blocks with random weights (17 of 19) only pass noise")


def test_batchnorm_may_train_only_with_pretrained_weights(layers: AppTest, imagenet: None) -> None:
    assert layers.toggle(key=state.TRAIN_BN_TOGGLE).disabled

    layers.run()
    layers.toggle(key=state.TRAIN_BN_TOGGLE).set_value(True).run()

    assert not layers.toggle(key=state.TRAIN_BN_TOGGLE).disabled
    assert layers.session_state[state.TRAIN_BN] is True


def test_a_block_shows_its_layers(layers: AppTest) -> None:
    layers.selectbox(key="block_layers_picker").select("block_3").run()

    assert layers.dataframe[1].value["Layer"].tolist() == [
        "block_3_conv",
        "block_3_BN",
        "block_3_relu",
    ]


def test_another_backbone_drops_a_custom_plan_and_a_depth_it_cannot_take(
    layers: AppTest, imagenet: None
) -> None:
    layers.run()
    layers.session_state[state.UNFREEZE_LAST] = 17  # MobileNetV3-Small has 13 blocks
    _tick(layers, 3, True)
    seed_blocks("mobilenet_v3_small", 64)

    layers.switch_page("pages/backbone.py").run()
    layers.selectbox(key=state.BACKBONE_PICKER).select("mobilenet_v3_small").run()
    layers.switch_page(PAGE).run()

    assert_no_exception(layers)
    assert state.TRAINABLE_BLOCKS not in layers.session_state
    assert state.UNFREEZE_LAST not in layers.session_state
    assert layers.radio(key=state.PRESET_PICKER).value != "custom"


def test_the_choices_make_a_valid_run_config(layers: AppTest, imagenet: None) -> None:
    layers.run()
    layers.radio(key=state.PRESET_PICKER).set_value("fine-tune").run()
    dataset_id = layers.session_state[state.DATASET_ID]

    draft = AppTest.from_function(_draft_script, kwargs={"dataset_id": dataset_id})
    for key in (state.BACKBONE_ID, state.FREEZE_PRESET, state.UNFREEZE_LAST):
        if key in layers.session_state:
            draft.session_state[key] = layers.session_state[key]
    draft.run()

    assert_no_exception(draft)
    config = RunConfig.from_json(draft.json[0].value)
    assert config.backbone == "mobilenet_v2"
    assert config.weights == "imagenet"
    assert config.image_size == 64
    assert (config.freeze, config.unfreeze_last) == ("fine-tune", 2)


def _draft_script(dataset_id: str) -> None:
    import streamlit as st

    from tl_core.config import RunConfig
    from ui import state

    st.json(RunConfig(**state.run_config_draft(dataset_id), epochs=3).to_json())
