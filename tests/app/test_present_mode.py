"""Presentation mode (``?present=1``), run through the whole app by AppTest, over run
folders written by hand: slides instead of the navigation, page and sidebar."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.run_support import fabricate_run, texts
from tests.app.wizard_support import assert_no_exception, offline_app
from tl_core.analysis.background import analysis_folder, result_path
from tl_core.analysis.evaluate import EVAL_FILE
from tl_core.classroom.identity import Identity
from tl_core.fsutil import FolderLock
from tl_core.jobs.runs import run_path, write_json_atomic
from ui import identity, present

BASE_RUN = "20261120-090000-aaaaaa"
TUNED_RUN = "20261121-090000-bbbbbb"
LIVE_RUN = "20261122-090000-cccccc"
HOSTILE = "<script>alert(1)</script>"
FEATURES = {"weights": "imagenet", "freeze": "feature-extraction"}
TUNED = {"weights": "imagenet", "freeze": "fine-tune", "unfreeze_last": 3}

pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def navigation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AppTest runs ``app.py`` on every run (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)


@pytest.fixture
def two_runs() -> list[str]:
    """Two finished runs: feature extraction, then fine-tuning the top 3 blocks."""
    fabricate_run(BASE_RUN, state="completed", val_accuracies=(0.6, 0.7), config=FEATURES)
    fabricate_run(TUNED_RUN, state="completed", val_accuracies=(0.7, 0.9), config=TUNED)
    return [BASE_RUN, TUNED_RUN]


def _evaluate(run_id: str, classes: list[str], confused: int) -> None:
    """Keep an evaluation of `run_id`, as the Evaluate page's analysis leaves it."""
    write_json_atomic(
        run_path(run_id) / EVAL_FILE,
        {
            "accuracy": 0.5,
            "loss": 0.9,
            "class_names": classes,
            "confusion_matrix": [[5, confused], [0, 5]],
            "most_confused": [{"true": classes[0], "predicted": classes[1], "count": confused}],
            "num_images": 10 + confused,
            "misclassified": [],
        },
    )


def _present(app: AppTest, run_ids: list[str], **params: str) -> AppTest:
    for name, value in (present.present_params(run_ids) | params).items():
        app.query_params[name] = value
    return app.run()


def _headings(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if m.value.startswith("# ")]


def _counter(app: AppTest) -> str:
    (counter,) = [m.value for m in app.markdown if " / " in m.value and m.value.startswith("**")]
    return counter.strip("*")


def _button(app: AppTest, key: str) -> object:
    (button,) = [button for button in app.button if button.key == key]
    return button


def test_the_first_slide_asks_the_question_without_the_app_around_it(
    app: AppTest, two_runs: list[str]
) -> None:
    _present(app, two_runs)

    assert_no_exception(app)
    assert _headings(app) == [
        "# What changes when fine-tuning the top 3 blocks instead of feature extraction "
        "(the head alone trains)?"
    ]
    assert _counter(app).startswith("1 / ")
    assert not app.sidebar.children  # no navigation, no dataset, no progress
    assert not [widget for widget in app.selectbox]  # no page behind the slides
    assert _button(app, present.PREVIOUS_KEY).disabled


def test_next_and_previous_move_between_slides_and_keep_the_place_in_the_url(
    app: AppTest, two_runs: list[str]
) -> None:
    _present(app, two_runs)
    count = int(_counter(app).split(" / ")[1])

    _button(app, present.NEXT_KEY).click().run()

    assert _counter(app) == f"2 / {count}"
    assert app.query_params[present.SLIDE_PARAM] == "2"
    assert _headings(app) == ["# Setup: \\#1 mobilenet\\_v2 · feature extraction"]

    _button(app, present.PREVIOUS_KEY).click().run()

    assert _counter(app) == f"1 / {count}"
    assert app.query_params[present.SLIDE_PARAM] == "1"


def test_the_last_slide_stops_and_offers_a_way_back(app: AppTest, two_runs: list[str]) -> None:
    _present(app, two_runs, slide="99")

    assert_no_exception(app)
    count = int(_counter(app).split(" / ")[1])
    assert _counter(app) == f"{count} / {count}"
    assert _headings(app) == ["# Thank you"]
    assert _button(app, present.NEXT_KEY).disabled
    assert [link.proto.label for link in app.get("page_link")] == ["Leave the presentation"]


def test_every_slide_draws_and_a_missing_evaluation_says_how_to_get_it(
    app: AppTest, two_runs: list[str]
) -> None:
    _present(app, two_runs)
    titles = []
    while True:
        assert_no_exception(app)
        titles.append(_headings(app)[0])
        if "Where they go wrong" in titles[-1]:
            assert any("has not been evaluated yet" in text for text in texts(app, "info"))
        if _button(app, present.NEXT_KEY).disabled:
            break
        _button(app, present.NEXT_KEY).click().run()

    assert titles[1:] == [
        "# Setup: \\#1 mobilenet\\_v2 · feature extraction",
        "# Setup: \\#2 mobilenet\\_v2 · fine-tune top 3",
        "# Learning curves",
        "# The numbers",
        "# In short",
        "# Where they go wrong",
        "# Which weights moved",
        "# Thank you",
    ]


def test_a_class_name_with_a_script_tag_shows_as_text(app: AppTest, two_runs: list[str]) -> None:
    _evaluate(BASE_RUN, [HOSTILE, "dog"], confused=4)
    _evaluate(TUNED_RUN, [HOSTILE, "dog"], confused=1)

    _present(app, two_runs, slide="6")

    assert_no_exception(app)
    assert _headings(app) == ["# In short"]
    said = " ".join(m.value for m in app.markdown)
    assert "\\<script\\>alert(1)\\</script\\>" in said
    assert HOSTILE not in said
    html = [element.proto.body for element in app.get("html")]
    assert html and all(HOSTILE not in body for body in html)


def test_a_run_named_live_gets_a_slide_with_its_curves(app: AppTest, two_runs: list[str]) -> None:
    fabricate_run(LIVE_RUN, state="running", val_accuracies=(0.4,), config=TUNED)

    _present(app, two_runs, live=LIVE_RUN, slide="5")

    assert_no_exception(app)
    assert _headings(app) == ["# Training now"]
    assert app.get("plotly_chart")  # the run's live curves


def test_runs_that_cannot_be_shown_are_left_out_with_a_warning(
    app: AppTest, two_runs: list[str]
) -> None:
    _present(app, [*two_runs, "20261124-090000-zzzzzz"])

    assert_no_exception(app)
    assert texts(app, "warning")[0].startswith("1 of the runs in this link cannot be shown")
    assert _headings(app)[0].startswith("# What changes when")


def _keep_gradcam(run_id: str, image: str, label: str) -> None:
    """Keep a Grad-CAM prediction of `image` by `run_id`, as the Evaluate page leaves it."""
    root = run_path(run_id)
    overlay = analysis_folder(root) / "gradcam" / f"{run_id[-6:]}.png"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(overlay)
    row = {"image": image, "label": label, "confidence": 0.875, "gradcam": str(overlay)}
    write_json_atomic(result_path(root, ["predict", str(root), image, "--gradcam", "x"]), [row])


def test_grad_cam_already_computed_by_both_runs_gets_a_slide_of_pairs(
    app: AppTest, two_runs: list[str], tmp_path: Path
) -> None:
    _evaluate(BASE_RUN, ["cat", "dog"], confused=2)
    _evaluate(TUNED_RUN, ["cat", "dog"], confused=1)
    picture = str(tmp_path / "cat_001.png")
    _keep_gradcam(BASE_RUN, picture, "dog")
    _keep_gradcam(TUNED_RUN, picture, "cat")
    _keep_gradcam(TUNED_RUN, str(tmp_path / "alone.png"), "cat")  # no pair: not shown

    _present(app, two_runs, slide="8")

    assert_no_exception(app)
    assert _headings(app) == ["# Where each run looks"]
    assert len(app.image) == 2
    assert [c for c in texts(app, "caption") if "87%" in c or "88%" in c] == [
        "#1 mobilenet_v2 · feature extraction: dog (88%)",
        "#2 mobilenet_v2 · fine-tune top 3: cat (88%)",
    ]


def test_a_presented_run_still_training_gets_a_live_slide_of_its_curves(
    app: AppTest, two_runs: list[str]
) -> None:
    fabricate_run(LIVE_RUN, state="running", val_accuracies=(0.4,), config=TUNED)
    # A running run has a live worker: it holds the run's writer lock.
    with FolderLock(run_path(LIVE_RUN)):
        _present(app, [*two_runs, LIVE_RUN], slide="6")

        assert_no_exception(app)
        assert _headings(app) == ["# Training now"]
        charts = [chart.proto.id for chart in app.get("plotly_chart")]
        assert any(chart.endswith(f"training_curves_{LIVE_RUN}") for chart in charts)


def test_in_class_mode_a_student_is_shown_only_the_runs_they_may_see(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_CLASS_CODE", "MAPLE-7")
    monkeypatch.setenv("TL_TEACHER_PASSWORD", "correct horse")
    fabricate_run(BASE_RUN, state="completed", val_accuracies=(0.6,), owner="Ada")
    fabricate_run(TUNED_RUN, state="completed", val_accuracies=(0.8,), owner="Grace")
    app.session_state[identity.IDENTITY] = Identity.student("Ada")

    _present(app, [BASE_RUN, TUNED_RUN])

    assert_no_exception(app)
    assert texts(app, "warning")[0].startswith("1 of the runs in this link cannot be shown")
    assert _headings(app) == ["# How \\#1 mobilenet\\_v2 · feature extraction learned"]
