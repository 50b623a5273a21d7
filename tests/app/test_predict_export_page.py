"""The Predict & Export page, run through the whole app by AppTest, over a hand-made run.

No model is loaded and no process starts: the run is a folder written by hand (its
``model.keras`` an empty placeholder), and each prediction or export is a result stored
under the very arguments the page asks for (`ui.predict_export_view`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.analysis_support import store_analysis
from tests.app.run_support import fabricate_run, texts
from tests.app.wizard_support import assert_no_exception, offline_app, plain, store_sample
from tests.helpers import png_bytes
from tl_core import tl_home
from tl_core.analysis.background import analysis_folder, result_path
from tl_core.analysis.export import export_model, model_card
from tl_core.errors import ExportError
from tl_core.jobs import processes
from tl_core.jobs.runs import RunFiles, read_json, write_json_atomic
from ui import predict_export_view as view
from ui import state

PAGE = "pages/predict_export.py"
RUN_ID = "20261123-100000-aaaaaa"
CLASSES = ["circle", "square", "star", "triangle"]

# Every test here gets the fake queue (`tests/app/conftest.py`): the app's scheduler
# starts no worker.
pytestmark = pytest.mark.usefixtures("queue")


@pytest.fixture(autouse=True)
def navigation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AppTest runs ``app.py`` on every run (see `offline_app`)."""
    offline_app(monkeypatch, tmp_path)


@pytest.fixture
def run_dir() -> Path:
    """A completed run with four classes and a (placeholder) trained model."""
    root = fabricate_run(RUN_ID, state="completed", val_accuracies=(0.5, 0.75), total_epochs=2)
    doc = read_json(RunFiles(root).config)
    doc["config"] |= {"val_fraction": 0.2, "seed": 0}
    write_json_atomic(RunFiles(root).config, doc | {"class_names": CLASSES, "preprocess": "tf"})
    RunFiles(root).model.touch()
    return root


def _open(app: AppTest) -> AppTest:
    """Open the page: AppTest can switch to a page only once a first run has registered
    the pages with ``st.navigation``."""
    app.run()
    app.switch_page(PAGE)
    return app.run()


def _overlay(run: Path, name: str) -> Path:
    """A Grad-CAM overlay as the predict command writes it."""
    path = analysis_folder(run) / "gradcam" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (250, 80, 0)).save(path)
    return path


def _prediction(image: Path, overlay: Path, label: str = "square") -> dict[str, Any]:
    """One image's entry of ``predict --json``: `label` at 60 %, then the others."""
    others = [name for name in CLASSES if name != label]
    probabilities = {label: 0.6, others[0]: 0.25, others[1]: 0.1, others[2]: 0.05}
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return {
        "image": str(image),
        "label": label,
        "confidence": 0.6,
        "top": [{"label": name, "probability": p} for name, p in ranked],
        "probabilities": probabilities,
        "gradcam": str(overlay),
        "gradcam_layer": "block_13_expand_relu",
    }


def _stored_upload(data: bytes, suffix: str = ".png") -> Path:
    """Where the page stores an upload: named by its content."""
    return tl_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:12]}{suffix}"


def _upload(app: AppTest, *files: tuple[str, bytes]) -> AppTest:
    app.file_uploader(key=view.UPLOADER).set_value([(n, d, "image/png") for n, d in files])
    return app.run()


def test_without_a_trained_run_the_page_points_to_the_train_page(app: AppTest) -> None:
    fabricate_run(RUN_ID, state="running", val_accuracies=(0.5,))  # no model.keras yet

    _open(app)

    assert_no_exception(app)
    assert texts(app, "info") == [
        "No trained model yet: train one on the Train page, then come back here."
    ]
    assert [link.proto.label for link in app.get("page_link")] == ["Go to Train"]


def test_an_uploaded_picture_is_stored_and_shown_with_its_prediction_and_grad_cam(
    app: AppTest, run_dir: Path
) -> None:
    data = png_bytes((40, 40), (200, 20, 20))
    stored = _stored_upload(data)
    overlay = _overlay(run_dir, "cam")
    args = view.predict_args(run_dir, [stored], len(CLASSES))
    store_analysis(run_dir, args, [_prediction(stored, overlay)])
    _open(app)

    _upload(app, ("my_red *cat*.png", data))

    assert_no_exception(app)
    assert stored.read_bytes() == data
    (metric,) = app.metric
    assert (metric.label, metric.value) == ("Predicted class", "square")
    assert metric.delta == "60.0% confident"
    bars = [plain(bar.proto.text) for bar in app.get("progress")]
    assert bars == ["square · 60.0%", "circle · 25.0%", "star · 10.0%"]
    assert len(app.get("image")) == 2, "the picture and its Grad-CAM overlay"
    assert any("Grad-CAM" in caption for caption in texts(app, "caption"))
    assert r"**my\_red \*cat\*.png**" in [m.value for m in app.markdown]
    assert app.session_state[state.EXPORTED] is True


def test_listing_more_classes_reuses_the_prediction(app: AppTest, run_dir: Path) -> None:
    data = png_bytes((40, 40), (20, 200, 20))
    stored = _stored_upload(data)
    args = view.predict_args(run_dir, [stored], len(CLASSES))
    store_analysis(run_dir, args, [_prediction(stored, _overlay(run_dir, "cam"), "star")])
    _open(app)
    _upload(app, ("leaf.png", data))

    app.number_input(key=view.TOP_K_INPUT).set_value(4).run()

    assert_no_exception(app)
    assert len(app.get("progress")) == 4
    assert not any(texts(app, "info")), "no new analysis was started"


def test_a_corrupt_upload_says_why_and_the_other_pictures_still_work(
    app: AppTest, run_dir: Path
) -> None:
    good = png_bytes((40, 40), (20, 20, 200))
    stored = _stored_upload(good)
    args = view.predict_args(run_dir, [stored], len(CLASSES))
    store_analysis(run_dir, args, [_prediction(stored, _overlay(run_dir, "cam"), "circle")])
    _open(app)

    _upload(app, ("broken.png", good[:40]), ("sky.png", good))

    assert_no_exception(app)
    (error,) = texts(app, "error")
    assert error.startswith("'broken.png' cannot be classified: ")
    assert "Upload a photo as JPEG, PNG" in error
    assert [metric.value for metric in app.metric] == ["circle"]
    assert sorted(p.name for p in (tl_home() / "uploads").iterdir()) == [stored.name]


def test_validation_images_are_classified_without_any_upload(app: AppTest, run_dir: Path) -> None:
    report = store_sample()
    doc = read_json(RunFiles(run_dir).config)
    doc["config"]["dataset_id"] = report.dataset_id
    write_json_atomic(RunFiles(run_dir).config, doc | {"class_names": report.class_names})
    images = view.validation_images(run_dir)
    overlay = _overlay(run_dir, "cam")
    results = [_prediction(image.path, overlay, image.true_label or "") for image in images]
    results[0] |= {"label": report.class_names[1]}
    args = view.predict_args(run_dir, [image.path for image in images], len(report.classes))
    store_analysis(run_dir, args, results)
    _open(app)

    app.toggle(key=view.SAMPLES_TOGGLE).set_value(True).run()

    assert_no_exception(app)
    assert [image.true_label for image in images] == report.class_names
    assert [metric.value for metric in app.metric] == [r["label"] for r in results]
    verdicts = [c for c in texts(app, "caption") if c.startswith("True class")]
    assert verdicts[0].endswith("(wrong)")
    assert verdicts[1].endswith("(right)")


def test_validation_images_of_a_removed_dataset_are_explained(app: AppTest, run_dir: Path) -> None:
    _open(app)

    app.toggle(key=view.SAMPLES_TOGGLE).set_value(True).run()

    assert_no_exception(app)
    (error,) = texts(app, "error")
    assert error.startswith("The validation images of this run cannot be shown: No stored dataset")
    assert not app.metric


def test_exports_kept_from_earlier_are_offered_for_download_at_once(
    app: AppTest, run_dir: Path
) -> None:
    for target in view.export_targets():
        path = view.export_path(run_dir, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 2048)
        store_analysis(run_dir, view.export_args(run_dir, target), {"path": str(path)})
    view.labels_path(run_dir).write_text('{"class_names": []}\n')

    card = model_card(run_dir)

    _open(app)

    assert_no_exception(app)
    labels = [button.label for button in app.get("download_button")]
    assert labels == [
        f"Download {RUN_ID}.keras (2 KB)",
        f"Download {RUN_ID}.tflite (2 KB)",
        f"Download {RUN_ID}-backbone.weights.h5 (2 KB)",
        "Download labels.json (1 KB)",
        f"Download model_card.md ({view.describe_size(len(card.encode()))})",
    ]
    assert any(f'load_model("{RUN_ID}.keras")' in code.value for code in app.code)
    assert not any(button.label.startswith("Export") for button in app.button)


def test_a_download_click_marks_the_last_step_done(app: AppTest, run_dir: Path) -> None:
    _open(app)
    assert state.EXPORTED not in app.session_state

    app.get("download_button")[-1].click().run()

    assert_no_exception(app)
    assert app.session_state[state.EXPORTED] is True


def test_an_export_starts_only_when_asked_and_shows_that_it_runs(
    app: AppTest, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []
    real = processes.spawn_detached

    def spawn(argv: list[str], **options: Any) -> Any:
        if "tl_core.analysis.background" not in argv:
            return real(argv, **options)  # the sample's ingest on a first visit
        started.append(argv)
        # Its pid is this test's, alive throughout; `poll` says it ended, so that the
        # analysis module keeps no reference to it once it reaps its children.
        return SimpleNamespace(pid=os.getpid(), poll=lambda: 0)

    monkeypatch.setattr(processes, "spawn_detached", spawn)
    _open(app)
    app.checkbox(key=view.INT8_CHECKBOX).check().run()
    assert [button.label for button in app.button if button.label.startswith("Export")] == [
        "Export Keras model (.keras)",
        "Export TensorFlow Lite, float32 (.tflite)",
        "Export TensorFlow Lite, int8 (.tflite)",
        "Export Backbone weights (.weights.h5)",
    ]
    assert not started

    app.button(key=f"{view.EXPORT_BUTTON}_tflite-int8").click().run()

    assert_no_exception(app)
    target = view.TFLITE_INT8_TARGET
    assert [argv[-len(view.export_args(run_dir, target)) :] for argv in started] == [
        view.export_args(run_dir, target)
    ]
    assert any(info.startswith("Exporting TensorFlow Lite, int8") for info in texts(app, "info"))


def test_the_model_card_is_shown_in_an_expander(app: AppTest, run_dir: Path) -> None:
    _open(app)

    assert_no_exception(app)
    (card,) = [e for e in app.expander if e.label == "Model card"]
    assert plain(card.markdown[0].value).startswith(f"# Model card: {RUN_ID}")


def test_a_failed_export_says_why_without_any_server_path(
    app: AppTest, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spawn(argv: list[str], **_: Any) -> None:
        raise AssertionError(f"a failed export is shown, not run again: {argv}")

    monkeypatch.setattr("tl_core.jobs.processes.spawn_detached", spawn)
    # Bad input: the export's own message, as the command reports it (exit 2).
    tflite = view.TFLITE_TARGET
    view.export_path(run_dir, tflite).mkdir(parents=True)
    with pytest.raises(ExportError) as refused:
        export_model(run_dir, fmt=tflite.fmt, out=view.export_path(run_dir, tflite))
    _store_failure(run_dir, tflite, " ".join(str(refused.value).split()), exit_code=2)
    # A bug: the crash's text names a file on the server (exit 1).
    crash = f"internal failure (OSError: [Errno 28] No space left: '{run_dir}/export/m.keras')"
    _store_failure(run_dir, view.KERAS_TARGET, crash, exit_code=1)
    _open(app)

    for target in (view.KERAS_TARGET, tflite):
        app.button(key=f"{view.EXPORT_BUTTON}_{target.kind}").click().run()

    assert_no_exception(app)
    errors = texts(app, "error")
    assert len(errors) == 2
    assert errors[0].startswith("The analysis stopped on an internal error (ref export-")
    assert plain(errors[1]).startswith(f"Cannot write '{RUN_ID}.tflite': it is a folder.")
    assert not [error for error in errors if "/" in error or str(tl_home()) in error]


def _store_failure(run: Path, target: view.ExportTarget, message: str, *, exit_code: int) -> None:
    """Keep a failed export of `target` where the background analyses keep their errors."""
    args = view.export_args(run, target)
    path = result_path(run, args).with_suffix(".error.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"error": message, "exit_code": exit_code, "log_tail": message})
