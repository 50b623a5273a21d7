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
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.engine_helpers import EASY_CLASSES, EPOCH_KEYS, easy_png, epoch_lines, tl_home_set
from tl_core import cli
from tl_core.config import RunConfig
from tl_core.errors import TLError
from tl_core.models.catalog import blocks_cache_path

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
    "best_epoch",
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


MOBILENET_V2_BLOCKS = ["stem", "expanded_conv", *(f"block_{i}" for i in range(1, 17)), "top"]
#: Runs the CLI in a fresh process where importing TensorFlow fails, so a refusal that
#: comes back with exit code 2 proves nothing needed it (nor started training).
_CLI_WITHOUT_TENSORFLOW = (
    "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
    "from tl_core import cli; raise SystemExit(cli.main(sys.argv[1:]))"
)


def _cache_mobilenet_v2_blocks(image_size: int = 32) -> None:
    """Write the block list where `tl_core.models.catalog` keeps it, as `blocks --json` would."""
    path = blocks_cache_path("mobilenet_v2", image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"name": name, "layers": [name], "params": 1, "output_shape": [None, 1, 1, 8]}
        for name in MOBILENET_V2_BLOCKS
    ]
    path.write_text(json.dumps(rows))


def test_an_out_of_range_unfreeze_last_is_refused_before_training_without_tensorflow(
    easy_archive: Path, tl_home: Path
) -> None:
    _cache_mobilenet_v2_blocks()
    run_dir = tl_home / "run"
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--image-size", "32"]
    args += ["--unfreeze-last", "999", "--out", str(run_dir)]

    done = subprocess.run(
        [sys.executable, "-c", _CLI_WITHOUT_TENSORFLOW, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: Expected `unfreeze_last` to be between 0 and 19 for mobilenet_v2 "
        "(its block count). Received: unfreeze_last=999\n"
    )
    assert done.stdout == ""
    assert not run_dir.exists()


def test_trainable_naming_an_unknown_block_is_refused_with_one_error_line(
    easy_archive: Path, tl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cache_mobilenet_v2_blocks()
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--image-size", "32"]

    code = cli.main([*args, "--trainable", "top,block_99", "--out", str(tl_home / "run")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: Expected `trainable_blocks` to name blocks of mobilenet_v2")
    assert "Received unknown blocks: ['block_99']" in err
    assert err.count("\n") == 1
    assert not (tl_home / "run").exists()


@pytest.fixture
def configs_instead_of_training(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The configs `train` would run; it stops with exit 2 where it would create the run."""
    seen: list[RunConfig] = []

    def refuse_to_prepare(root: Path, config: RunConfig, **_: Any) -> None:
        seen.append(config)
        raise TLError("stopped by the test before the run folder is made")

    monkeypatch.setattr("tl_core.jobs.runs.prepare_run", refuse_to_prepare)
    return seen


@pytest.mark.parametrize("augment", ["none", "", "None"])
def test_augment_none_means_no_augmentation(
    augment: str,
    easy_archive: Path,
    tl_home: Path,
    configs_instead_of_training: list[RunConfig],
) -> None:
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--augment", augment]

    cli.main([*args, "--out", str(tl_home / "run")])

    (config,) = configs_instead_of_training
    assert config.augmentation == ()


def test_augment_takes_comma_separated_names(
    easy_archive: Path, tl_home: Path, configs_instead_of_training: list[RunConfig]
) -> None:
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2"]

    cli.main([*args, "--augment", "flip, zoom", "--out", str(tl_home / "run")])

    (config,) = configs_instead_of_training
    assert config.augmentation == ("flip", "zoom")


def test_an_unknown_augmentation_is_refused_listing_the_valid_ones(
    easy_archive: Path, tl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(easy_archive), "--backbone", "mobilenet_v2", "--augment", "flip,blur"]

    code = cli.main([*args, "--out", str(tl_home / "run")])

    assert code == 2
    assert capsys.readouterr().err == (
        "error: Expected `--augment` to be 'none' or comma-separated names from "
        "['flip', 'rotation', 'zoom', 'contrast']. Received: --augment='flip,blur'\n"
    )


def test_fast_is_on_by_default_and_no_fast_switches_it_off() -> None:
    args = ["train", "data.zip", "--backbone", "mobilenet_v2", "--preset", "full", "--out", "r"]

    default = cli.build_parser().parse_args(args)
    off = cli.build_parser().parse_args([*args, "--no-fast"])

    assert (default.fast, off.fast) == (True, False)


def test_the_train_report_names_the_best_epoch_by_accuracy_then_lower_loss(
    tl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from tl_core.jobs.runs import RunFiles, append_jsonl, prepare_run

    files = prepare_run(tl_home / "run", RunConfig(dataset_id="0123456789ab"))
    for epoch, (accuracy, loss) in enumerate([(0.5, 0.9), (0.75, 0.6), (0.75, 0.4)], start=1):
        line = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}
        append_jsonl(RunFiles(files.root).metrics, line)
    status = SimpleNamespace(state="completed", epoch=3, error=None, error_kind=None)

    assert cli._report_run(files.root, status, as_json=True) == 0

    doc = json.loads(capsys.readouterr().out)
    assert (doc["best_val_accuracy"], doc["best_epoch"]) == (0.75, 3)
