"""CLI `datasize`: the data-size curve, queued from a run, scriptable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.run_support import fabricate_run
from tl_core import cli
from tl_core.analysis.datasize import load_datasize
from tl_core.config import RunConfig
from tl_core.jobs.queue import list_jobs
from tl_core.jobs.runs import RunFiles, read_json, run_path

BASE_RUN = "20261123-100000-aaaaaa"


@pytest.fixture(autouse=True)
def tl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TL_HOME", str(home))
    return home


def _queued_configs() -> list[RunConfig]:
    return [
        RunConfig.from_json(read_json(RunFiles(run_path(job.run_id)).config)["config"])
        for job in list_jobs()
    ]


def test_datasize_queues_pretrained_and_scratch_runs_and_prints_the_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fabricate_run(BASE_RUN, state="completed", config={"weights": "imagenet"})

    code = cli.main(["datasize", BASE_RUN, "--fractions", "0.5,0.1,1", "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    doc = json.loads(out)
    assert doc["base_run_id"] == BASE_RUN
    assert doc["fractions"] == [0.1, 0.5, 1.0]
    assert [(run["fraction"], run["weights"]) for run in doc["runs"]] == [
        (0.1, "pretrained"),
        (0.1, "scratch"),
        (0.5, "pretrained"),
        (0.5, "scratch"),
        (1.0, "pretrained"),
        (1.0, "scratch"),
    ]
    assert load_datasize(doc["datasize_id"]).run_ids == tuple(job.run_id for job in list_jobs())


def test_datasize_defaults_to_four_fractions_and_no_scratch_leaves_scratch_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fabricate_run(BASE_RUN, state="completed", config={"weights": "imagenet"})

    assert cli.main(["datasize", BASE_RUN, "--no-scratch"]) == cli.EXIT_OK

    out = capsys.readouterr().out
    assert out.startswith("data-size curve ")
    assert "queued 4 runs" in out
    assert [c.train_fraction for c in _queued_configs()] == [0.1, 0.25, 0.5, 1.0]
    assert {c.weights for c in _queued_configs()} == {"imagenet"}


@pytest.mark.parametrize(
    ("fractions", "message"),
    [("0.5,half", "--fractions must be comma-separated numbers"), ("0,1", "greater than 0")],
)
def test_datasize_with_bad_fractions_exits_2_and_queues_nothing(
    fractions: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fabricate_run(BASE_RUN, state="completed")

    assert cli.main(["datasize", BASE_RUN, "--fractions", fractions]) == cli.EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert list_jobs() == []


def test_datasize_of_an_unknown_run_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["datasize", BASE_RUN, "--json"]) == cli.EXIT_BAD_INPUT

    assert f"There is no run {BASE_RUN}" in capsys.readouterr().err
