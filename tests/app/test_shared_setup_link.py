"""Setup links, run through the whole app by AppTest: a ``?setup=`` URL pre-fills the wizard,
and the Runs page's "Copy setup link" shows the link of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.run_support import fabricate_run
from tests.app.wizard_support import assert_no_exception, offline_app, seed_blocks, store_sample
from tl_core import DatasetReport
from tl_core.classroom import Identity, record_dataset_owner
from tl_core.classroom import roster as roster_module
from tl_core.config import RunConfig
from tl_core.fsutil import read_json
from tl_core.jobs.runs import RunFiles, run_path, write_json_atomic
from tl_core.setup_link import SETUP_PARAM, config_from_params, setup_params
from ui import identity, setup_link, state

pytestmark = pytest.mark.usefixtures("queue")
RUN = "20261120-090000-aaaaaa"


@pytest.fixture(autouse=True)
def keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ImageNet weights on this machine."""
    return offline_app(monkeypatch, tmp_path)


@pytest.fixture
def sample() -> DatasetReport:
    """The sample dataset, stored in this test's workspace."""
    return store_sample()


def _shared(sample: DatasetReport) -> RunConfig:
    return RunConfig(
        dataset_id=sample.dataset_id,
        backbone="mobilenet_v3_small",
        weights="none",
        image_size=48,
        freeze="fine-tune",
        unfreeze_last=3,
        epochs=4,
        batch_size=16,
        augmentation=("flip", "zoom"),
    )


def _open_link(app: AppTest, config: RunConfig, page: str = "pages/train.py") -> AppTest:
    app.query_params[SETUP_PARAM] = setup_params(config)[SETUP_PARAM]
    app.switch_page(page)
    return app.run()


def test_a_setup_link_pre_fills_the_dataset_backbone_freeze_plan_and_train_settings(
    app: AppTest, sample: DatasetReport
) -> None:
    seed_blocks("mobilenet_v3_small", 48)
    _open_link(app, _shared(sample))

    assert_no_exception(app)
    assert app.session_state[state.DATASET_ID] == sample.dataset_id
    assert app.session_state[state.BACKBONE_ID] == "mobilenet_v3_small"
    assert app.session_state[state.WEIGHTS_SOURCE] == "scratch"
    assert app.session_state[state.IMAGE_SIZE] == 48
    assert app.session_state[state.FREEZE_PRESET] == "fine-tune"
    assert app.session_state[state.UNFREEZE_LAST] == 3
    assert app.number_input(key=state.train_widget_key("epochs")).value == 4
    assert app.session_state["batch_size"] == 16
    assert app.session_state["augmentation"] == ("flip", "zoom")
    assert "MobileNetV3Small" in app.toast[0].value
    assert SETUP_PARAM not in app.query_params
    assert not app.warning


def test_the_link_is_applied_once_so_later_changes_stay(
    app: AppTest, sample: DatasetReport
) -> None:
    _open_link(app, _shared(sample))
    app.session_state["epochs"] = 9
    app.run()

    assert app.session_state["epochs"] == 9


def test_fields_left_at_their_defaults_are_reset_by_the_link(
    app: AppTest, sample: DatasetReport
) -> None:
    app.session_state["epochs"] = 25
    app.session_state[state.FREEZE_PRESET] = "full"
    _open_link(app, RunConfig(dataset_id=sample.dataset_id))

    assert_no_exception(app)
    assert app.session_state["epochs"] == RunConfig.__dataclass_fields__["epochs"].default
    assert app.session_state[state.FREEZE_PRESET] == "feature-extraction"


def test_a_damaged_link_changes_nothing_and_says_so(app: AppTest) -> None:
    app.query_params[SETUP_PARAM] = "bm90IGpzb24"
    app.run()

    assert_no_exception(app)
    assert "cannot be read" in app.warning[0].value
    assert state.BACKBONE_ID not in app.session_state


class TestClassMode:
    """A student opens a link to a run on another student's dataset."""

    @pytest.fixture(autouse=True)
    def class_mode(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TL_CLASS_CODE", "MAPLE-7")
        monkeypatch.setenv("TL_TEACHER_PASSWORD", "correct horse")
        monkeypatch.setattr(roster_module, "SIGNIN_DELAY_S", 0.0)

    def test_another_students_dataset_is_not_applied_but_the_rest_is(
        self, app: AppTest, sample: DatasetReport
    ) -> None:
        record_dataset_owner(sample.dataset_id, Identity.student("Grace"))
        app.session_state[identity.IDENTITY] = Identity.student("Ada")
        _open_link(app, _shared(sample))

        assert_no_exception(app)
        assert state.DATASET_ID not in app.session_state
        assert app.session_state[state.BACKBONE_ID] == "mobilenet_v3_small"
        assert app.session_state["epochs"] == 4
        assert "belongs to another student" in app.warning[0].value

    def test_the_students_own_dataset_is_applied(self, app: AppTest, sample: DatasetReport) -> None:
        record_dataset_owner(sample.dataset_id, Identity.student("Ada"))
        app.session_state[identity.IDENTITY] = Identity.student("Ada")
        _open_link(app, _shared(sample))

        assert_no_exception(app)
        assert app.session_state[state.DATASET_ID] == sample.dataset_id


def test_copy_setup_link_on_the_runs_page_shows_the_runs_link(
    app: AppTest, sample: DatasetReport
) -> None:
    fabricate_run(RUN, state="completed", val_accuracies=(0.5, 0.8), total_epochs=2)
    path = RunFiles(run_path(RUN)).config
    config = _shared(sample)
    write_json_atomic(path, read_json(path) | {"config": config.to_json()})
    app.query_params["run"] = RUN
    app.switch_page("pages/runs.py")
    app.run()

    app.button(key=f"{setup_link.LINK_BUTTON}_{RUN}").click().run()

    assert_no_exception(app)
    (code,) = app.code
    assert code.value.startswith("train?setup=")
    token = code.value.split("=", 1)[1]
    assert RunConfig(**config_from_params({SETUP_PARAM: token}).settings) == config
