"""Helpers for the Backbone and Layers page tests: a stored sample, a seeded block cache.

Plain functions, so both test modules use them without sharing fixtures.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tl_core import DatasetReport, ingest_archive, load_dataset, tl_home
from tl_core.models.catalog import blocks_cache_path
from ui import datasets

#: MobileNetV2's blocks at 64 px as ``python -m tl_core blocks`` lists them (layer names
#: shortened to three per block): the real names, parameters and output shapes.
_MOBILENET_V2_PARAMS = (
    992, 992, 5568, 9456, 10640, 15680, 15680, 21952, 55936, 55936,
    55936, 68352, 120768, 120768, 157888, 324160, 324160, 478400, 414720,
)  # fmt: skip
_MOBILENET_V2_SHAPES = (
    (32, 32, 32), (32, 32, 16), (16, 16, 24), (16, 16, 24), (8, 8, 32), (8, 8, 32),
    (8, 8, 32), (4, 4, 64), (4, 4, 64), (4, 4, 64), (4, 4, 64), (4, 4, 96), (4, 4, 96),
    (4, 4, 96), (2, 2, 160), (2, 2, 160), (2, 2, 160), (2, 2, 320), (2, 2, 1280),
)  # fmt: skip
MOBILENET_V2_NAMES = ("stem", "expanded_conv", *(f"block_{i}" for i in range(1, 17)), "top")
MOBILENET_V2_ROWS: list[dict[str, Any]] = [
    {
        "name": name,
        "layers": [f"{name}_{kind}" for kind in ("conv", "BN", "relu")],
        "params": params,
        "output_shape": [None, *shape],
    }
    for name, params, shape in zip(
        MOBILENET_V2_NAMES, _MOBILENET_V2_PARAMS, _MOBILENET_V2_SHAPES, strict=True
    )
]


def plain(markdown: str) -> str:
    """Undo the Markdown escaping the pages apply to names and messages."""
    return markdown.replace("\\", "")


def seed_blocks(
    backbone_id: str = "mobilenet_v2",
    image_size: int = 64,
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a block list into this test's ``TL_HOME`` cache, as `backbone_blocks` would."""
    path = blocks_cache_path(backbone_id, image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(MOBILENET_V2_ROWS if rows is None else rows))
    return path


@functools.cache
def _sample_template() -> tuple[Path, str]:
    """A workspace holding the ingested sample, made once per test process, and its id."""
    home = Path(tempfile.mkdtemp(prefix="tl-sample-home-"))
    return home, ingest_archive(datasets.SAMPLE_ARCHIVE, home=home).dataset_id


def store_sample() -> DatasetReport:
    """Copy the ingested sample into this test's ``TL_HOME`` (faster than ingesting it)."""
    template, dataset_id = _sample_template()
    target = tl_home() / "datasets" / dataset_id
    shutil.copytree(template / "datasets" / dataset_id, target)
    return load_dataset(dataset_id)


def offline_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Set up a Backbone or Layers page test; return the (empty) Keras home it uses.

    Keras's cache is an empty folder: no ImageNet weights, whatever this machine holds.
    (After `AppTest.switch_page` Streamlit's legacy ``pages/`` mode runs the page file
    alone; `ui.shell.ensure_app` in every page routes it back through ``app.py``.)
    """
    keras_home = tmp_path / "keras_home"
    (keras_home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    return keras_home


def open_page(app: AppTest, script: str, dataset: DatasetReport | None) -> AppTest:
    """Open the page `script` (``"pages/layers.py"``) with `dataset` in the URL, and run it.

    Needs `offline_app`.
    """
    if dataset is not None:
        app.query_params["dataset"] = dataset.dataset_id
    app.switch_page(script)
    return app.run()


def assert_no_exception(app: AppTest) -> None:
    """Fail with the messages of any exception the page showed."""
    assert not app.exception, [e.value for e in app.exception]


#: How long a test waits for a background ingest (a process start and a small zip).
INGEST_TIMEOUT_S = 60.0


def pending_ingest(app: AppTest) -> Any:
    """The ingest ticket the session waits for (`datasets.PENDING_INGEST`), if any."""
    if datasets.PENDING_INGEST not in app.session_state:
        return None
    return app.session_state[datasets.PENDING_INGEST]


def settle_ingest(app: AppTest) -> AppTest:
    """Run the app until the ingest it waits for has ended, as its polling fragment would."""
    deadline = time.monotonic() + INGEST_TIMEOUT_S
    while pending_ingest(app) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"the ingest did not end within {INGEST_TIMEOUT_S} s")
        time.sleep(0.05)
        app.run()
    return app
