"""Fixtures of the fault-injection suite: a workspace with the easy dataset, and tiny runs.

Every case starts real processes (``python -m tl_core worker|resume|scheduler``, background
analyses) with ``TL_FAULT_AT`` naming the point where the process kills itself with SIGKILL
(`tl_core.faults`), then checks what a user would find: no run lost, never two writers, and
a state the pages explain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.engine_helpers import tl_home_set, write_easy_archive
from tl_core.data import DatasetReport, ingest_archive


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every case of this folder ``faults`` (``make test-fast`` leaves them out)."""
    for item in items:
        if Path(item.path).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The easy dataset (3 classes × 16 images of 32 px) as a zip."""
    return write_easy_archive(tmp_path_factory.mktemp("fault-archive") / "easy.zip", per_class=16)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This case's own ``TL_HOME``."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("TL_HOME", str(root))
    return root


@pytest.fixture
def dataset(home: Path, fault_archive: Path) -> DatasetReport:
    """The easy dataset ingested into this case's workspace."""
    with tl_home_set(home):
        return ingest_archive(fault_archive)


@pytest.fixture(scope="session")
def backbone_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 backbone's weights (random, 32 px) as a file: a "pretrained" start
    that two-phase runs accept, made offline."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.weights.h5"
    keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    ).save_weights(path)
    return path
