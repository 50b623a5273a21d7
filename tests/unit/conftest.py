"""Fixtures of the engine tests: the easy synthetic dataset and one trained run to inspect.

Builders and constants live in `tests.unit.engine_helpers`. Training costs seconds, so
`trained_run` is made once per session and only read by the tests that use it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.engine_helpers import tiny_config, tl_home_set, write_easy_archive
from tl_core.data import DatasetReport, ingest_archive


@pytest.fixture(scope="session")
def easy_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The easy dataset as a zip: 3 classes × 24 images of 32 px."""
    return write_easy_archive(tmp_path_factory.mktemp("archives") / "easy.zip")


@pytest.fixture
def easy_dataset(easy_archive: Path, tl_home: Path) -> DatasetReport:
    """The easy dataset ingested into this test's ``TL_HOME``."""
    return ingest_archive(easy_archive)


@pytest.fixture(scope="session")
def trained_run(easy_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-phase run: 1 epoch head only, then 1 epoch with the top 2 blocks.

    From scratch at 32 px with flips; read-only for the tests that use it.
    """
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run

    home = tmp_path_factory.mktemp("trained_home")
    with tl_home_set(home):
        report = ingest_archive(easy_archive)
        config = tiny_config(
            report.dataset_id,
            two_phase=True,
            epochs=1,
            fine_tune_epochs=1,
            fine_tune_blocks=2,
            augmentation=("flip",),
        )
        files = prepare_run(home / "runs" / "two-phase", config)
        status = train_run(files.root)
    assert status.state == "completed", status.error
    return files.root
