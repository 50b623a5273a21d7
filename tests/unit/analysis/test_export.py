"""Export of a trained run: .keras for plain Keras, TFLite (float32, int8), labels.json,
the model card and the ``export`` command.

The run is the session's learned run (see `test_evaluate`): its predictions differ from
image to image, so agreement between formats means something.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.unit.analysis.test_evaluate import learned_run_dir
from tests.unit.engine_helpers import (
    EASY_CLASSES,
    easy_png,
    run_tl_core,
    tiny_config,
    tl_home_set,
)
from tl_core import cli
from tl_core.analysis.evaluate import classification_metrics
from tl_core.analysis.export import (
    export_keras,
    export_labels,
    export_model,
    export_tflite,
    model_card,
    predict_tflite,
)
from tl_core.analysis.predict import predict_images, prepare_image
from tl_core.classroom.identity import Identity
from tl_core.errors import AccessDenied, ExportError
from tl_core.jobs.runs import RunFiles, prepare_run, run_path


@pytest.fixture(scope="module")
def learned_run(easy_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return learned_run_dir(easy_archive, tmp_path_factory)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Nine fresh pictures of the easy classes (not in the dataset)."""
    folder = tmp_path_factory.mktemp("export-pictures")
    return [
        easy_png(label, folder / f"{label}-{seed}.png", seed=seed)
        for seed in (11, 12, 13)
        for label in EASY_CLASSES
    ]


@pytest.fixture(scope="module")
def keras_probabilities(learned_run: Path, pictures: list[Path]) -> np.ndarray:
    """What `predict_images` says about `pictures`: the reference every format must match."""
    results = predict_images(learned_run, pictures)
    return np.array([[r["probabilities"][c] for c in EASY_CLASSES] for r in results])


@pytest.fixture(scope="module")
def batch(pictures: list[Path]) -> np.ndarray:
    return np.stack([prepare_image(p.read_bytes(), 32) for p in pictures])


def weight_groups(path: Path) -> list[str]:
    """The top-level groups of a .keras file's weights (``optimizer`` when it has one)."""
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        return list(h5py.File(weights, "r").keys())


def test_keras_export_loads_in_plain_keras_without_tl_core_and_predicts_the_same(
    learned_run: Path,
    pictures: list[Path],
    batch: np.ndarray,
    keras_probabilities: np.ndarray,
    tmp_path: Path,
) -> None:
    path = export_keras(learned_run, tmp_path / "out" / "model.keras")
    np.save(tmp_path / "batch.npy", batch)
    script = (
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('tl_core') is None, 'tl_core is importable'\n"
        "import keras, numpy as np\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "probs = model.predict(np.load('batch.npy'), verbose=0)\n"
        "print(json.dumps({'probs': probs.tolist()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    diff = np.abs(np.array(result["probs"]) - keras_probabilities).max()
    assert diff <= 1e-5, diff  # written so that NaN fails too
    assert "optimizer" not in weight_groups(path)
    assert (tmp_path / "out").is_dir()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.keras"]  # no temp left


def test_the_runs_own_model_keras_holds_no_optimizer_state_either(learned_run: Path) -> None:
    assert "optimizer" not in weight_groups(learned_run / "model.keras")


@pytest.fixture(scope="module")
def float_tflite(learned_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learned run exported to float32 TFLite (once: a conversion takes seconds)."""
    return export_tflite(learned_run, tmp_path_factory.mktemp("tflite") / "model.tflite")


def test_tflite_float32_agrees_with_keras(
    float_tflite: Path, batch: np.ndarray, keras_probabilities: np.ndarray
) -> None:
    path = float_tflite

    probabilities = predict_tflite(path, batch)

    diff = np.abs(probabilities - keras_probabilities).max()
    assert diff <= 1e-3, diff  # written so that NaN fails too
    assert probabilities.shape == (9, 3)
    # The batch dimension stays dynamic.
    assert predict_tflite(path, batch[:2]).shape == (2, 3)


@pytest.mark.slow
def test_tflite_int8_is_smaller_and_mostly_agrees_with_keras(
    learned_run: Path,
    float_tflite: Path,
    batch: np.ndarray,
    keras_probabilities: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TL_HOME", str(learned_run.parents[1]))  # calibration images
    full = float_tflite
    small = export_tflite(learned_run, tmp_path / "int8.tflite", quantize="int8")

    probabilities = predict_tflite(small, batch)

    assert small.stat().st_size < full.stat().st_size / 2
    assert np.isfinite(probabilities).all()
    agree = np.mean(probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1))
    assert agree >= 6 / 9, agree  # soft: quantization may flip close calls


def test_int8_without_the_training_images_says_what_to_do(
    learned_run: Path, tmp_path: Path
) -> None:
    # TL_HOME is this test's empty workspace: the dataset is not there.
    with pytest.raises(ExportError, match=r"no longer stored.*export float32"):
        export_tflite(learned_run, tmp_path / "int8.tflite", quantize="int8")


def test_labels_json_names_the_classes_in_index_order_and_the_input(
    learned_run: Path, tmp_path: Path
) -> None:
    path = export_labels(learned_run, tmp_path / "labels.json")

    doc = json.loads(path.read_text())
    assert doc["class_names"] == list(EASY_CLASSES)
    assert doc["image_size"] == 32
    assert doc["input"]["shape"] == [None, 32, 32, 3]
    assert doc["input"]["dtype"] == "float32"
    assert doc["input"]["range"] == [0, 255]
    assert doc["input"]["color"] == "RGB"
    assert "inside the model" in doc["input"]["preprocessing"]
    assert doc["output"] == {
        "shape": [None, 3],
        "activation": "softmax",
        "meaning": "one probability per class, in the order of class_names",
    }
    assert doc["backbone"] == "mobilenet_v3_small"
    assert export_labels(learned_run, tmp_path) == tmp_path / "labels.json"  # a folder: inside


def test_model_card_has_the_key_sections_and_the_evaluation(
    learned_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("run.json", "metrics.jsonl", "status.json"):
        shutil.copy2(learned_run / name, run / name)
    metrics = classification_metrics([0, 1, 2, 2], np.eye(3)[[0, 1, 2, 1]], EASY_CLASSES)
    (run / "eval.json").write_text(json.dumps(metrics))

    with tl_home_set(learned_run.parents[1]):
        card = model_card(run)

    for heading in ("## Data", "## Configuration", "## Metrics", "## Device", "## Versions"):
        assert f"\n{heading}\n" in card
    assert card.startswith("# Model card: learned\n")
    assert "- Dataset: easy.zip (id `" in card
    assert "| blob | 24 |" in card
    assert "57 training / 15 validation images" in card
    assert "`mobilenet_v3_small`" in card
    assert "none (trained from scratch)" in card
    assert "head and all 13 backbone blocks" in card
    assert "- Best validation accuracy: " in card
    assert "| vstripes | 1.000 | 0.500 | 0.667 | 2 |" in card
    assert "vstripes taken for hstripes (1 time)" in card
    assert "- keras: 3." in card
    assert "- Created: 20" in card and "(completed)" in card


def test_model_card_without_the_dataset_or_evaluation_still_describes_the_run(
    learned_run: Path,
) -> None:
    card = model_card(learned_run)  # this test's TL_HOME does not hold the dataset

    assert "(no longer stored here)" in card
    assert "Classes (3): blob, hstripes, vstripes" in card


def test_model_card_escapes_names_that_markdown_would_read_as_markup(
    learned_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    doc = json.loads((learned_run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(doc | {"class_names": ["a|b", "[x](http://e)"]}))

    card = model_card(run)

    assert r"Classes (2): a\|b, \[x\](http://e)" in card


def test_exporting_without_a_model_or_to_a_wrong_name_says_what_to_do_without_paths(
    learned_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "untrained").mkdir()
    shutil.copy2(learned_run / "run.json", tmp_path / "untrained" / "run.json")
    (tmp_path / "dir.tflite").mkdir()
    run, out = learned_run, tmp_path
    refusals = [
        ("no trained model yet", partial(export_keras, out / "untrained", out / "m.keras")),
        ("not a run folder", partial(export_tflite, out, out / "m.tflite")),
        (r"Expected `out` to end with \.keras", partial(export_keras, run, out / "m.h5")),
        ("it is a folder", partial(export_tflite, run, out / "dir.tflite")),
        ("Expected `quantize`", partial(export_tflite, run, out / "m.tflite", quantize="int4")),
        ("TFLite only", partial(export_model, run, fmt="keras", out=out / "m.keras", int8=True)),
        ("not a run folder", partial(model_card, out)),
    ]

    for message, export in refusals:
        with pytest.raises(ExportError, match=message) as refused:
            export()
        # The web app shows these messages as they are: no path on the server in them.
        assert "/" not in str(refused.value), str(refused.value)


# --- class mode --------------------------------------------------------------------------------


def _owned_by(owner: str, run_id: str, source: Path | None = None) -> Path:
    """A run under ``TL_HOME/runs`` submitted by `owner`: a copy of `source`, or an
    untrained one."""
    run_dir = run_path(run_id)
    if source is None:
        prepare_run(run_dir, tiny_config("0123456789ab"), run_id=run_id, owner=owner)
        return run_dir
    shutil.copytree(source, run_dir)
    config = RunFiles(run_dir).config
    config.write_text(json.dumps(json.loads(config.read_text()) | {"owner": owner}))
    return run_dir


def test_a_student_cannot_export_another_students_run_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    run_dir = _owned_by("Grace", "20261123-131500-a1b2c3")
    out = tmp_path / "exports"

    for fmt, name in (("keras", "m.keras"), ("tflite", "m.tflite"), ("backbone", "b.weights.h5")):
        with pytest.raises(AccessDenied, match="belongs to Grace, so you cannot export it"):
            export_model(run_dir, fmt=fmt, out=out / name, actor=Identity.student("Ada"))

    assert not out.exists()


def test_the_runs_owner_and_the_teacher_may_export_it(learned_run: Path, tmp_path: Path) -> None:
    run_dir = _owned_by("Grace", "20261123-131500-a1b2c3", source=learned_run)

    for actor in (Identity.student("Grace"), Identity.teacher()):
        out = tmp_path / actor.name / "m.keras"
        result = export_model(run_dir, fmt="keras", out=out, actor=actor)
        assert result["path"] == str(out.resolve()) and out.stat().st_size > 0


# --- the command ----------------------------------------------------------------------------


def test_cli_export_keras_writes_the_model_and_labels_and_prints_json(
    learned_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "pets.keras"

    done = run_tl_core(
        "export", str(learned_run), "--format", "keras", "--out", str(out), "--json",
        home=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # stdout holds the document and nothing else
    assert result == {
        "path": str(out.resolve()),
        "format": "keras",
        "bytes": out.stat().st_size,
        "labels": str((out.parent / "labels.json").resolve()),
        "quantize": None,
    }
    assert json.loads((out.parent / "labels.json").read_text())["class_names"] == list(EASY_CLASSES)


def test_the_trained_backbone_is_the_pretrained_start_of_the_next_run(
    learned_run: Path, tmp_path: Path
) -> None:
    import keras

    from tl_core.config import RunConfig
    from tl_core.models.classifier import build_classifier

    out = tmp_path / "weights" / "shapes.weights.h5"
    with tl_home_set(learned_run.parents[1]):
        result = export_model(learned_run, fmt="backbone", out=out)
    assert result["path"] == str(out.resolve()) and result["format"] == "backbone"
    assert not list(out.parent.glob(".*tmp*"))

    trained = keras.saving.load_model(learned_run / "model.keras", compile=False)
    (source,) = [layer for layer in trained.layers if layer.name.startswith("MobileNetV3")]
    doc = json.loads((learned_run / "run.json").read_text())
    # The next run: same backbone, another input size, the file as its weights.
    config = RunConfig.from_json(doc["config"]).with_changes(weights=str(out), image_size=48)
    started = build_classifier(config, list(EASY_CLASSES)).backbone

    assert config.from_scratch is False  # a weights file counts as pretrained
    for before, after in zip(source.weights, started.weights, strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_cli_export_refuses_bad_input_with_exit_2(
    learned_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_name = ["--format", "tflite", "--out", str(tmp_path / "m.keras")]
    int8_keras = ["--format", "keras", "--int8", "--out", str(tmp_path / "m.keras")]

    for options, message in (
        (wrong_name, "Expected `out` to end with .tflite"),
        (int8_keras, "--int8 applies to --format tflite only"),
    ):
        assert cli.main(["export", str(learned_run), *options, "--json"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
        assert message in captured.err
    assert list(tmp_path.iterdir()) == []


# --- runs trained with augmentation -----------------------------------------------------------


@pytest.fixture(scope="module")
def default_run(easy_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with the settings a user gets by default (flip augmentation, dropout), kept
    tiny: 32 px, no pretrained weights, one epoch. Its ``TL_HOME`` is two levels up."""
    from tl_core.config import RunConfig
    from tl_core.data import ingest_archive
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run

    home = tmp_path_factory.mktemp("default-home")
    with tl_home_set(home):
        report = ingest_archive(easy_archive)
        config = RunConfig(dataset_id=report.dataset_id, weights="none", image_size=32, epochs=1)
        files = prepare_run(home / "runs" / "default", config)
        status = train_run(files.root)
    assert status.state == "completed", status.error
    return files.root


@pytest.fixture(scope="module")
def default_reference(default_run: Path, batch: np.ndarray) -> np.ndarray:
    """What the default run's own model says about `batch` in inference mode."""
    import keras

    model = keras.saving.load_model(default_run / "model.keras", compile=False)
    return np.asarray(model(batch, training=False))


def keras_file_layer_classes(path: Path) -> list[str]:
    """Every ``class_name`` in a .keras file's config, nested models included."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                found.append(node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def test_the_default_settings_augment_with_flips(default_run: Path) -> None:
    doc = json.loads((default_run / "run.json").read_text())

    assert doc["config"]["augmentation"] == ["flip"]


def test_a_run_with_default_augmentation_exports_to_tflite_that_agrees_with_keras(
    default_run: Path, batch: np.ndarray, default_reference: np.ndarray, tmp_path: Path
) -> None:
    path = export_tflite(default_run, tmp_path / "default.tflite")

    probabilities = predict_tflite(path, batch)

    diff = np.abs(probabilities - default_reference).max()
    assert diff <= 1e-4, diff  # written so that NaN fails too


@pytest.mark.slow
def test_a_run_with_default_augmentation_exports_to_int8_tflite(
    default_run: Path, batch: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_HOME", str(default_run.parents[1]))  # calibration images

    path = export_tflite(default_run, tmp_path / "default-int8.tflite", quantize="int8")

    probabilities = predict_tflite(path, batch)
    assert probabilities.shape == (9, 3)
    assert np.isfinite(probabilities).all()


def test_a_keras_export_of_a_default_run_holds_no_augmentation_and_predicts_the_same(
    default_run: Path, batch: np.ndarray, default_reference: np.ndarray, tmp_path: Path
) -> None:
    import keras

    path = export_keras(default_run, tmp_path / "default.keras")

    classes = keras_file_layer_classes(path)
    assert "Rescaling" in classes and "Dense" in classes  # the walk sees the layers
    assert not [name for name in classes if name.startswith("Random")]
    exported = keras.saving.load_model(path, compile=False)
    assert "augmentation" not in [layer.name for layer in exported.layers]
    assert exported.input.name == "image"
    diff = np.abs(np.asarray(exported(batch)) - default_reference).max()
    assert diff <= 1e-6, diff  # written so that NaN fails too


@pytest.fixture(scope="module")
def older_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as older versions left it: its ``model.keras`` holds the augmentation
    block, here with every augmentation. Untrained weights do: only the graph matters."""
    from tests.unit.engine_helpers import tiny_config
    from tl_core.config import AUGMENTATIONS
    from tl_core.models.classifier import build_classifier

    config = tiny_config("0123456789ab", augmentation=AUGMENTATIONS)
    run = tmp_path_factory.mktemp("older-home") / "runs" / "older"
    run.mkdir(parents=True)
    doc = {"config": config.to_json(), "class_names": list(EASY_CLASSES), "image_size": 32}
    (run / "run.json").write_text(json.dumps(doc))
    build_classifier(config, EASY_CLASSES).model.save(run / "model.keras")
    return run


@pytest.mark.slow
def test_an_older_runs_model_with_augmentation_still_exports_to_every_format(
    older_run: Path, batch: np.ndarray, tmp_path: Path
) -> None:
    import keras

    saved = keras.saving.load_model(older_run / "model.keras", compile=False)
    assert "augmentation" in [layer.name for layer in saved.layers]  # the case at hand
    reference = np.asarray(saved(batch, training=False))

    tflite = export_model(older_run, fmt="tflite", out=tmp_path / "older.tflite")
    keras_file = export_model(older_run, fmt="keras", out=tmp_path / "older.keras")
    backbone = export_model(older_run, fmt="backbone", out=tmp_path / "older.weights.h5")

    diff = np.abs(predict_tflite(tflite["path"], batch) - reference).max()
    assert diff <= 1e-4, diff  # written so that NaN fails too
    classes = keras_file_layer_classes(Path(keras_file["path"]))
    assert not [name for name in classes if name.startswith("Random")]
    assert Path(backbone["path"]).stat().st_size > 0


def test_a_tflite_model_that_outputs_nan_is_refused_and_not_written(
    default_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tl_core.analysis.export as export

    # A conversion that "succeeds" with a model whose every output is NaN.
    monkeypatch.setattr(export, "_convert", lambda *_: b"tflite")
    monkeypatch.setattr(export, "_interpreter", lambda **_: None)
    monkeypatch.setattr(export, "_run_tflite", lambda _, images: np.full((len(images), 3), np.nan))

    with pytest.raises(ExportError, match=r"does not match the Keras model.*Nothing was written"):
        export_tflite(default_run, tmp_path / "nan.tflite")

    assert list(tmp_path.iterdir()) == []
