"""Evaluation of a trained run: metrics (checked against scikit-learn), eval.json, embeddings,
drift over epochs, and the ``evaluate`` command.

The run that most tests read (`learned_run`) trains every block of a MobileNetV3-Small
from scratch for one epoch at 32 px: unlike a frozen random backbone it gives predictions
that differ from image to image, a few of them wrong. It is trained once per session and
shared with `test_export`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from tests.unit.engine_helpers import (
    EASY_CLASSES,
    ROOT,
    run_tl_core,
    tiny_config,
    tl_home_set,
)
from tl_core import cli
from tl_core.analysis.evaluate import (
    EVAL_FILE,
    classification_metrics,
    drift_over_epochs,
    embeddings,
    evaluate_run,
    rank_misclassified,
)
from tl_core.data import ingest_archive
from tl_core.errors import DataError, JobError
from tl_core.jobs.runs import RunFiles, append_jsonl, read_status, write_json_atomic


def learned_run_dir(archive: Path, factory: pytest.TempPathFactory) -> Path:
    """Return the session's learned run, training it on first use (about 40 s).

    It lives at ``<session temp>/learned-home/runs/learned`` (its ``TL_HOME`` is two levels
    up), so every test module of the session finds the same run.
    """
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run

    home = factory.getbasetemp() / "learned-home"
    run = home / "runs" / "learned"
    status = read_status(run)
    if status is not None and status.state == "completed":
        return run
    shutil.rmtree(run, ignore_errors=True)
    with tl_home_set(home):
        report = ingest_archive(archive)
        config = tiny_config(report.dataset_id, backbone="mobilenet_v3_small", freeze="full")
        files = prepare_run(run, config)
        status = train_run(files.root)
    assert status.state == "completed", status.error
    return run


@pytest.fixture(scope="module")
def learned_run(easy_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return learned_run_dir(easy_archive, tmp_path_factory)


@pytest.fixture
def run_dir(learned_run: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The learned run, with ``TL_HOME`` pointing at the workspace holding its dataset."""
    monkeypatch.setenv("TL_HOME", str(learned_run.parents[1]))
    return learned_run


@pytest.fixture(scope="module")
def evaluation(learned_run: Path) -> dict:
    with tl_home_set(learned_run.parents[1]):
        return evaluate_run(learned_run, refresh=True)


# --- metrics from fixed predictions --------------------------------------------------------

NAMES = ["cat", "dog", "fox"]
TRUTH = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
PROBS = np.array(
    [
        [0.8, 0.1, 0.1],  # right
        [0.2, 0.7, 0.1],  # cat → dog
        [0.3, 0.6, 0.1],  # cat → dog
        [0.1, 0.8, 0.1],  # right
        [0.1, 0.2, 0.7],  # dog → fox
        [0.2, 0.5, 0.3],  # right
        [0.05, 0.05, 0.9],  # right
        [0.6, 0.3, 0.1],  # fox → cat
        [0.1, 0.1, 0.8],  # right
        [0.2, 0.2, 0.6],  # right
    ]
)


def test_metrics_equal_scikit_learn_on_fixed_predictions() -> None:
    doc = classification_metrics(TRUTH, PROBS, NAMES)

    predicted = PROBS.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        TRUTH, predicted, labels=[0, 1, 2], zero_division=0
    )
    assert doc["accuracy"] == accuracy_score(TRUTH, predicted) == 0.6
    assert doc["confusion_matrix"] == confusion_matrix(TRUTH, predicted).tolist()
    assert doc["confusion_matrix"] == [[1, 2, 0], [0, 2, 1], [1, 0, 3]]
    for i, name in enumerate(NAMES):
        assert doc["per_class"][name] == {
            "precision": pytest.approx(precision[i]),
            "recall": pytest.approx(recall[i]),
            "f1": pytest.approx(f1[i]),
            "support": int(support[i]),
        }
    assert doc["class_names"] == NAMES
    assert doc["num_images"] == 10
    expected_loss = -np.mean(np.log(PROBS[np.arange(10), TRUTH]))
    assert doc["loss"] == pytest.approx(expected_loss)
    json.dumps(doc)  # plain JSON types only


def test_a_class_never_predicted_gets_zero_precision_without_a_warning() -> None:
    doc = classification_metrics([0, 1, 2], [[0.9, 0.1, 0], [0.9, 0.1, 0], [0.1, 0.9, 0]], NAMES)

    assert doc["per_class"]["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert doc["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_most_confused_pairs_come_most_frequent_first_then_in_class_order() -> None:
    doc = classification_metrics(TRUTH, PROBS, NAMES)

    assert doc["most_confused"] == [
        {"true": "cat", "predicted": "dog", "count": 2},
        {"true": "dog", "predicted": "fox", "count": 1},
        {"true": "fox", "predicted": "cat", "count": 1},
    ]


def test_misclassified_images_are_sorted_by_loss_worst_first() -> None:
    paths = [f"img{i}.jpg" for i in range(10)]

    rows = rank_misclassified(TRUTH, PROBS, NAMES, paths)

    assert [r["path"] for r in rows] == ["img7.jpg", "img1.jpg", "img4.jpg", "img2.jpg"]
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    assert rows[0] == {
        "path": "img7.jpg",
        "true": "fox",
        "predicted": "cat",
        "confidence": pytest.approx(0.6),
        "loss": pytest.approx(-np.log(0.1)),
    }
    assert rank_misclassified(TRUTH, PROBS, NAMES, paths, limit=2) == rows[:2]


def test_mismatched_shapes_and_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Expected `probabilities` of shape \(10, 2\)"):
        classification_metrics(TRUTH, PROBS, ["cat", "dog"])
    with pytest.raises(ValueError, match="class indices between 0 and 2"):
        classification_metrics([0, 3], PROBS[:2], NAMES)
    with pytest.raises(DataError, match="no images to evaluate"):
        classification_metrics([], np.zeros((0, 3)), NAMES)


# --- a trained run --------------------------------------------------------------------------


def test_evaluate_run_matches_the_last_validation_epoch_and_writes_eval_json(
    learned_run: Path, evaluation: dict
) -> None:
    doc = json.loads((learned_run / "run.json").read_text())
    last = [
        json.loads(line)
        for line in (learned_run / "metrics.jsonl").read_text().splitlines()
        if '"batch"' not in line
    ][-1]

    assert evaluation["num_images"] == doc["num_val"] == 15
    assert evaluation["class_names"] == list(EASY_CLASSES)
    # Same split, same pipeline, same weights as the epoch's own validation.
    assert evaluation["accuracy"] == pytest.approx(last["val_accuracy"], abs=1e-6)
    assert evaluation["loss"] == pytest.approx(last["val_loss"], rel=1e-4)
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum(axis=1).tolist() == [
        evaluation["per_class"][n]["support"] for n in EASY_CLASSES
    ]
    assert evaluation["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert json.loads((learned_run / EVAL_FILE).read_text()) == evaluation


def test_misclassified_images_of_a_run_are_stored_images_worst_first(
    learned_run: Path, evaluation: dict
) -> None:
    rows = evaluation["misclassified"]
    wrong = int(np.sum(evaluation["confusion_matrix"]) - np.trace(evaluation["confusion_matrix"]))

    assert len(rows) == wrong > 0
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    dataset_root = learned_run.parents[1] / "datasets" / evaluation["dataset_id"]
    for row in rows:
        assert (dataset_root / row["path"]).is_file()
        assert row["true"] != row["predicted"]
        assert row["source"].startswith(row["true"] + "/")
        assert 0 < row["confidence"] <= 1


def test_an_up_to_date_eval_json_is_reused_and_a_newer_model_invalidates_it(
    run_dir: Path, evaluation: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_path = run_dir / EVAL_FILE
    marked = dict(evaluation, accuracy=-1.0)  # only a cached read can return this
    write_json_atomic(eval_path, marked)
    try:
        assert evaluate_run(run_dir)["accuracy"] == -1.0
        assert (
            evaluate_run(run_dir, max_misclassified=1)["misclassified"]
            == (evaluation["misclassified"][:1])
        )
        # A model saved after the evaluation (a resumed run) makes it stale: in a workspace
        # without the dataset, evaluating then has to reach for the images and fails.
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("run.json", EVAL_FILE, "model.keras"):
            shutil.copy2(run_dir / name, copy / name)
        monkeypatch.setenv("TL_HOME", str(tmp_path / "empty-home"))
        assert evaluate_run(copy)["accuracy"] == -1.0
        stamp = (copy / EVAL_FILE).stat().st_mtime_ns
        os.utime(copy / "model.keras", ns=(stamp + 10**9, stamp + 10**9))
        with pytest.raises(DataError, match="No stored dataset"):
            evaluate_run(copy)
    finally:
        write_json_atomic(eval_path, evaluation)


def test_a_run_without_a_model_cannot_be_evaluated(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="no trained model yet"):
        evaluate_run(tmp_path)
    with pytest.raises(JobError, match="no trained model yet"):
        embeddings(tmp_path)


@pytest.fixture(scope="module")
def embedded(learned_run: Path) -> dict:
    with tl_home_set(learned_run.parents[1]):
        return embeddings(learned_run, max_images=12)


def test_embeddings_give_one_point_per_image_before_and_after(embedded: dict) -> None:
    doc = embedded

    assert doc["num_images"] == 12
    assert len(doc["labels"]) == len(doc["paths"]) == 12
    assert set(doc["labels"]) == {0, 1, 2}  # spread over the class-grouped split
    for key in ("before", "after"):
        points = np.array(doc[key])
        assert points.shape == (12, 2)
        assert np.isfinite(points).all()
        ratios = doc["explained_variance"][key]
        assert len(ratios) == 2 and 0 <= ratios[1] <= ratios[0] <= 1
    assert doc["method"] == "pca"
    assert doc["before_source"] == "random initialisation (seed 0)"
    assert doc["before_note"] is None
    assert doc["class_names"] == list(EASY_CLASSES)
    assert not np.allclose(doc["before"], doc["after"])


def test_embeddings_are_deterministic(run_dir: Path, embedded: dict) -> None:
    # PCA (with scikit-learn's sign convention) and the seeded start give the same picture.
    assert embeddings(run_dir, max_images=12) == embedded


@pytest.mark.slow
def test_embeddings_fall_back_to_the_saved_start_weights(
    run_dir: Path, embedded: dict, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("tensorboard"))
    doc = json.loads((copy / "run.json").read_text())
    doc["config"]["weights"] = str(tmp_path / "gone.weights.h5")
    (copy / "run.json").write_text(json.dumps(doc))

    restored = embeddings(copy, max_images=12)

    assert restored["before_source"] == "checkpoints/initial.npz"
    # initial.npz holds the seeded start exactly, so the pictures agree.
    np.testing.assert_allclose(restored["before"], embedded["before"], atol=1e-6)

    (copy / "checkpoints" / "initial.npz").unlink()
    missing = embeddings(copy, max_images=12)
    assert missing["before"] is None and missing["before_source"] is None
    assert "gone.weights.h5" in missing["before_note"]
    assert missing["after"] == embedded["after"]


def test_drift_over_epochs_of_a_run_lists_every_block(learned_run: Path) -> None:
    table = drift_over_epochs(learned_run)
    blocks = [b["name"] for b in json.loads((learned_run / "run.json").read_text())["blocks"]]

    assert table["epochs"] == [1]
    assert table["phases"] == ["train"]
    assert table["blocks"] == blocks
    assert all(len(row) == 1 and row[0] > 0 for row in table["values"])  # all blocks trained


def test_drift_over_epochs_keeps_the_last_line_of_an_epoch_and_skips_broken_ones(
    tmp_path: Path,
) -> None:
    files = RunFiles(tmp_path)
    write_json_atomic(files.config, {"blocks": [{"name": "stem"}, {"name": "top"}]})
    append_jsonl(files.drift_history, {"epoch": 1, "phase": "head", "drift": {"top": 0.5}})
    append_jsonl(files.drift_history, {"epoch": 2, "phase": "fine-tune", "drift": {"top": 9.0}})
    append_jsonl(
        files.drift_history,
        {"epoch": 2, "phase": "fine-tune", "drift": {"stem": 0.1, "top": 0.7, "new": 1.0}},
    )
    with files.drift_history.open("a") as fh:
        fh.write('{"epoch": 3, "dri')

    assert drift_over_epochs(tmp_path) == {
        "epochs": [1, 2],
        "phases": ["head", "fine-tune"],
        "blocks": ["stem", "top", "new"],
        "values": [[None, 0.1], [0.5, 0.7], [None, 1.0]],
    }
    assert drift_over_epochs(tmp_path / "nothing") == {
        "epochs": [],
        "phases": [],
        "blocks": [],
        "values": [],
    }


def test_importing_evaluate_and_reading_drift_do_not_import_tensorflow(
    learned_run: Path,
) -> None:
    code = (
        "import sys; from tl_core.analysis.evaluate import drift_over_epochs; "
        f"drift_over_epochs({str(learned_run)!r}); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


# --- the command ----------------------------------------------------------------------------


def test_cli_evaluate_prints_the_evaluation_as_json(learned_run: Path, evaluation: dict) -> None:
    done = run_tl_core("evaluate", str(learned_run), "--json", home=learned_run.parents[1])

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == evaluation  # the cached eval.json


def test_cli_embeddings_prints_the_projection_as_json(
    learned_run: Path, embedded: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    with tl_home_set(learned_run.parents[1]):
        code = cli.main(["embeddings", str(learned_run), "--max-images", "12", "--json"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(embedded))


def test_cli_evaluate_of_a_folder_without_a_model_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["evaluate", str(tmp_path), "--json"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "no trained model yet" in captured.err
