"""The Backbone page, run through the whole app by AppTest, offline and without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.analysis_support import store_analysis
from tests.app.run_support import fabricate_run
from tests.app.wizard_support import (
    assert_no_exception,
    offline_app,
    open_page,
    plain,
    seed_blocks,
    store_sample,
)
from tl_core import DatasetReport, tl_home
from tl_core.jobs.runs import RunFiles
from tl_core.models import catalog
from tl_core.models.backbones import BACKBONES, get_backbone
from ui import state
from ui.predict_export_view import BACKBONE_TARGET, export_args

PAGE = "pages/backbone.py"
RUN_ID = "20261123-100000-aaaaaa"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@pytest.fixture(autouse=True)
def keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Keras cache, and pages opened through ``app.py`` (see `offline_app`)."""
    return offline_app(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def prefetches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Record block prefetches instead of starting TensorFlow in the background."""
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(catalog, "warm_cache", lambda *args, **kwargs: calls.append(args))
    return calls


@pytest.fixture
def sample() -> DatasetReport:
    """The sample dataset (64 px images), stored in this test's workspace."""
    return store_sample()


def _messages(app: AppTest) -> list[str]:
    return [plain(m.value) for m in (*app.info, *app.warning, *app.error)]


def test_the_default_backbone_is_shown_and_recorded(app: AppTest, sample: DatasetReport) -> None:
    open_page(app, PAGE, sample)

    assert_no_exception(app)
    assert app.selectbox(key=state.BACKBONE_PICKER).value == "mobilenet_v2"
    assert app.session_state[state.BACKBONE_ID] == "mobilenet_v2"
    assert app.query_params[state.BACKBONE_PARAM] == "mobilenet_v2"
    table = app.dataframe[0].value
    assert len(table) == len(BACKBONES)
    assert table.loc[0, "Backbone"] == "MobileNetV2"
    assert table.loc[0, "Speed"] == 1.0
    assert set(table["Ready offline"]) == {"needs download"}
    assert any("python -m tl_core weights fetch ID" in c.value for c in app.caption)
    assert app.number_input(key=state.IMAGE_SIZE_INPUT).value == 64
    assert any("about 64 px" in c.value for c in app.caption)
    assert [link.label for link in app.get("page_link")] == ["Next: Layers"]
    assert "Backbone · done" in " ".join(m.value for m in app.sidebar.markdown)


def test_choosing_another_backbone_updates_the_session_and_the_url(
    app: AppTest, sample: DatasetReport
) -> None:
    open_page(app, PAGE, sample)

    app.selectbox(key=state.BACKBONE_PICKER).select("xception").run()

    assert_no_exception(app)
    assert app.session_state[state.BACKBONE_ID] == "xception"
    assert app.query_params[state.BACKBONE_PARAM] == "xception"
    # Xception takes at least 71 px, more than the sample's 64 px images.
    assert app.number_input(key=state.IMAGE_SIZE_INPUT).value == 71
    assert any("the smallest size Xception takes, 71 px" in c.value for c in app.caption)
    assert "Xception" in " ".join(m.value for m in app.sidebar.markdown)


def test_missing_imagenet_weights_preselect_scratch_and_say_why(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    open_page(app, PAGE, sample)

    assert app.radio(key=state.WEIGHTS_PICKER).value == "scratch"
    (info,) = [m for m in _messages(app) if "not on this machine" in m]
    assert info.startswith("**From scratch is preselected**")
    assert "ImageNet weights for MobileNetV2 are not on this machine" in info
    assert get_backbone("mobilenet_v2").weights_file_for(64) in info
    assert str(keras_home / "models") in info
    assert "training will try to download them if this machine is online" in info


def test_imagenet_weights_on_this_machine_are_preselected(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    weights = keras_home / "models" / get_backbone("mobilenet_v2").weights_file_for(64)
    weights.write_bytes(HDF5_SIGNATURE)

    open_page(app, PAGE, sample)

    assert app.radio(key=state.WEIGHTS_PICKER).value == "imagenet"
    assert not [m for m in _messages(app) if "not on this machine" in m]
    assert any("ImageNet weights for MobileNetV2 are here" in c.value for c in app.caption)


def test_the_table_marks_backbones_whose_weights_are_here_ready_offline(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    for spec in BACKBONES:
        (keras_home / "models" / spec.weights_file).write_bytes(HDF5_SIGNATURE)
    (keras_home / "models" / get_backbone("resnet50").weights_file).unlink()

    open_page(app, PAGE, sample)

    table = app.dataframe[0].value
    ready = dict(zip(table["Backbone"], table["Ready offline"], strict=True))
    assert ready["ResNet50"] == "needs download"
    assert ready["MobileNetV2"] == ready["VGG16"] == "✓"
    assert any("weights import FILE" in c.value for c in app.caption)


def test_with_every_backbone_ready_offline_the_page_does_not_explain_fetching(
    app: AppTest, sample: DatasetReport, keras_home: Path
) -> None:
    for spec in BACKBONES:
        (keras_home / "models" / spec.weights_file).write_bytes(HDF5_SIGNATURE)

    open_page(app, PAGE, sample)

    assert set(app.dataframe[0].value["Ready offline"]) == {"✓"}
    assert not any("weights fetch" in c.value for c in app.caption)


def test_choosing_imagenet_offline_warns_but_keeps_the_choice(
    app: AppTest, sample: DatasetReport
) -> None:
    open_page(app, PAGE, sample)

    app.radio(key=state.WEIGHTS_PICKER).set_value("imagenet").run()

    assert app.session_state[state.WEIGHTS_SOURCE] == "imagenet"
    (warning,) = [plain(w.value) for w in app.warning]
    assert warning.startswith("ImageNet weights for MobileNetV2 are not on this machine")


def test_an_uploaded_weights_file_is_stored_in_the_workspace(
    app: AppTest, sample: DatasetReport
) -> None:
    open_page(app, PAGE, sample)
    app.radio(key=state.WEIGHTS_PICKER).set_value("file").run()
    assert state.WEIGHTS_PATH not in app.session_state

    content = HDF5_SIGNATURE + b"weights" * 1000
    app.file_uploader(key=state.WEIGHTS_UPLOADER).upload(
        "my model.weights.h5", content, "application/octet-stream"
    )
    app.run()

    assert_no_exception(app)
    stored = Path(app.session_state[state.WEIGHTS_PATH])
    assert stored.parent == tl_home() / "weights"
    assert stored.name.endswith("-my_model.weights.h5")
    assert stored.read_bytes() == content
    assert any(stored.name in plain(c.value) for c in app.caption)


def test_a_trained_runs_backbone_can_be_the_weights_file(
    app: AppTest, sample: DatasetReport
) -> None:
    run = fabricate_run(RUN_ID, state="completed", val_accuracies=(0.6,))
    RunFiles(run).model.touch()
    exported = run / "export" / f"{RUN_ID}-backbone.weights.h5"
    store_analysis(run, export_args(run, BACKBONE_TARGET), {"path": str(exported)})
    open_page(app, PAGE, sample)
    app.radio(key=state.WEIGHTS_PICKER).set_value("file").run()
    assert app.selectbox(key=state.WEIGHTS_RUN_PICKER).value == RUN_ID

    app.button(key=state.WEIGHTS_RUN_BUTTON).click().run()

    assert_no_exception(app)
    assert app.session_state[state.WEIGHTS_PATH] == str(exported)
    assert state.WEIGHTS_FROM_RUN not in app.session_state
    assert any(exported.name in plain(c.value) for c in app.caption)
    assert app.session_state[state.WEIGHTS_SOURCE] == "file"


def test_without_a_trained_run_of_this_backbone_the_page_says_how_to_get_one(
    app: AppTest, sample: DatasetReport
) -> None:
    fabricate_run(RUN_ID, state="completed", config={"backbone": "resnet50"})
    open_page(app, PAGE, sample)
    app.radio(key=state.WEIGHTS_PICKER).set_value("file").run()

    assert_no_exception(app)
    assert not [box for box in app.selectbox if box.key == state.WEIGHTS_RUN_PICKER]
    assert any("none with MobileNetV2 yet" in plain(c.value) for c in app.caption)


def test_a_file_that_is_not_hdf5_is_refused(app: AppTest, sample: DatasetReport) -> None:
    open_page(app, PAGE, sample)
    app.radio(key=state.WEIGHTS_PICKER).set_value("file").run()

    app.file_uploader(key=state.WEIGHTS_UPLOADER).upload("notes.h5", b"not weights", "text/plain")
    app.run()

    assert_no_exception(app)
    (error,) = app.error
    assert "is not an HDF5 file" in plain(error.value)
    assert state.WEIGHTS_PATH not in app.session_state
    assert "Backbone · done" not in " ".join(m.value for m in app.sidebar.markdown)


def test_a_chosen_image_size_is_kept(app: AppTest, sample: DatasetReport) -> None:
    open_page(app, PAGE, sample)

    app.number_input(key=state.IMAGE_SIZE_INPUT).set_value(128).run()

    assert app.session_state[state.IMAGE_SIZE] == 128
    assert "From scratch · 128 px" in " ".join(m.value for m in app.sidebar.markdown)


def test_a_reload_with_the_backbone_in_the_url_restores_it(
    app: AppTest, sample: DatasetReport
) -> None:
    app.query_params[state.BACKBONE_PARAM] = "resnet50"

    open_page(app, PAGE, sample)

    assert_no_exception(app)
    assert app.selectbox(key=state.BACKBONE_PICKER).value == "resnet50"
    assert not app.warning


def test_an_unknown_backbone_in_the_url_gets_a_friendly_message(
    app: AppTest, sample: DatasetReport
) -> None:
    app.query_params[state.BACKBONE_PARAM] = "../resnet9000"

    open_page(app, PAGE, sample)

    assert_no_exception(app)
    warnings = [plain(w.value) for w in app.warning]
    assert any("'../resnet9000') is not one the studio knows" in w for w in warnings)
    assert app.selectbox(key=state.BACKBONE_PICKER).value == "mobilenet_v2"
    assert app.query_params[state.BACKBONE_PARAM] == "mobilenet_v2"


def test_the_block_list_is_prefetched_unless_cached(
    app: AppTest, sample: DatasetReport, prefetches: list[tuple[object, ...]]
) -> None:
    open_page(app, PAGE, sample)
    assert prefetches == [("mobilenet_v2", 64)]

    seed_blocks("mobilenet_v2", 64)
    app.run()

    assert len(prefetches) == 1
