"""CLI train/predict in this process: the JSON contract, and a scratch run that learns.

`scratch_run` trains MobileNetV2 from random weights on the easy classes through
``python -m tl_core train`` (called as `cli.main`, which is what the module runs).
The settings were chosen on this machine: SGD at 0.02 learns these classes within six
epochs for every seed tried (best validation accuracy 0.8–1.0 over seeds 0–4), where
Adam at 1e-3 was slower to trace and to learn.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests.unit.engine_helpers import EASY_CLASSES, EPOCH_KEYS, easy_png, epoch_lines, tl_home_set
from tl_core import cli

SCRATCH_ARGS = [
    "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32",
    "--preset", "full", "--optimizer", "sgd", "--lr", "0.02", "--epochs", "6",
    "--batch-size", "16", "--augment", "", "--seed", "0",
]  # fmt: skip

RESULT_KEYS = {
    "run_dir",
    "state",
    "epochs",
    "best_val_accuracy",
    "last",
    "trainable_params",
    "non_trainable_params",
    "error",
}


@pytest.fixture(scope="module")
def scratch_run(
    easy_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict, Path]:
    """``(exit code, --json document, run folder)`` of one scratch training run."""
    home = tmp_path_factory.mktemp("cli_home")
    run_dir = home / "scratch"
    args = ["train", str(easy_archive), *SCRATCH_ARGS, "--out", str(run_dir), "--json"]
    stdout = io.StringIO()
    with tl_home_set(home), contextlib.redirect_stdout(stdout):
        code = cli.main(args)
    return code, json.loads(stdout.getvalue()), run_dir


@pytest.mark.slow
def test_train_json_reports_the_finished_run(scratch_run: tuple[int, dict, Path]) -> None:
    code, doc, run_dir = scratch_run

    assert code == 0
    assert set(doc) == RESULT_KEYS
    assert (doc["state"], doc["epochs"], doc["error"]) == ("completed", 6, None)
    assert doc["run_dir"] == str(run_dir.resolve())
    assert doc["last"] == epoch_lines(run_dir)[-1]
    assert set(doc["last"]) >= EPOCH_KEYS
    assert doc["best_val_accuracy"] == max(line["val_accuracy"] for line in epoch_lines(run_dir))
    run = json.loads((run_dir / "run.json").read_text())
    assert (doc["trainable_params"], doc["non_trainable_params"]) == (
        run["trainable_params"],
        run["non_trainable_params"],
    )
    assert all(block["trainable"] for block in run["blocks"])  # preset full
    assert run["bn_trainable"] is True  # scratch: BatchNorm learns its statistics


@pytest.mark.slow
def test_a_scratch_run_on_easy_classes_learns_well_above_chance(
    scratch_run: tuple[int, dict, Path],
) -> None:
    _, doc, run_dir = scratch_run
    accuracies = [line["val_accuracy"] for line in epoch_lines(run_dir)]

    assert doc["best_val_accuracy"] > 0.6, accuracies  # chance is 1/3
    assert epoch_lines(run_dir)[-1]["loss"] < epoch_lines(run_dir)[0]["loss"]


@pytest.mark.slow
def test_predict_json_gives_the_top_label_and_probabilities_summing_to_one(
    scratch_run: tuple[int, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, run_dir = scratch_run
    pictures = [str(easy_png(label, tmp_path / f"{label}.png")) for label in EASY_CLASSES]

    code = cli.main(["predict", str(run_dir), *pictures, "--json", "--top", "3"])

    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["image"] for row in rows] == pictures
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == row["top"][0]["label"]
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        probabilities = [t["probability"] for t in row["top"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_train_refuses_an_invalid_setting_with_one_keras_style_error_line(
    easy_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--epochs", "0"]

    code = cli.main([*args, "--out", str(tmp_path / "run"), "--json"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == (
        "error: Expected `epochs` to be an integer between 1 and 1000. Received: epochs=0\n"
    )
    assert not (tmp_path / "run").exists()


def test_unfreeze_last_cannot_be_combined_with_another_preset(
    easy_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--preset", "full"]

    code = cli.main([*args, "--unfreeze-last", "2", "--out", str(tmp_path / "run")])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: --unfreeze-last cannot be combined")


def test_predict_refuses_a_file_that_is_no_image(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")

    code = cli.main(["predict", str(trained_run), str(notes), "--json"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "cannot be classified" in captured.err
