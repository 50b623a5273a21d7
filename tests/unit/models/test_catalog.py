"""The block catalog (a CLI subprocess, cached on disk), image sizes and stored weights files.

`subprocess.run` is replaced by a fake here, so no test starts TensorFlow; the page test
``tests/app/test_layers_page.py`` lists blocks with the real CLI once.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import class_folders, png_bytes
from tl_core import DatasetReport, ingest_archive
from tl_core.errors import ConfigError, TLError
from tl_core.models import catalog
from tl_core.models.backbones import get_backbone
from tl_core.models.blocks import BlockInfo

ROWS = [
    {
        "name": "stem",
        "layers": ["Conv1", "bn_Conv1"],
        "params": 992,
        "output_shape": [None, 8, 8, 32],
    },
    {"name": "top", "layers": ["Conv_1"], "params": 4096, "output_shape": [None, 4, 4, 1280]},
]
HDF5 = b"\x89HDF\r\n\x1a\n"


class FakeCli:
    """Stands in for `subprocess.run`: records each command and answers like the CLI."""

    def __init__(self, stdout: str = json.dumps(ROWS), returncode: int = 0, stderr: str = ""):
        self.commands: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        self.envs.append(kwargs["env"])
        self.entered.set()
        self.release.wait(timeout=10)
        return subprocess.CompletedProcess(command, self.returncode, self.stdout, self.stderr)


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    fake = FakeCli()
    monkeypatch.setattr(catalog.subprocess, "run", fake)
    return fake


def test_the_first_call_runs_the_cli_and_the_second_reads_the_cache(fake_cli: FakeCli) -> None:
    first = catalog.backbone_blocks("mobilenet_v2", 64)
    second = catalog.backbone_blocks("mobilenet_v2", 64)

    assert len(fake_cli.commands) == 1
    assert (
        first
        == second
        == [
            BlockInfo("stem", ("Conv1", "bn_Conv1"), 992, (None, 8, 8, 32)),
            BlockInfo("top", ("Conv_1",), 4096, (None, 4, 4, 1280)),
        ]
    )


def test_the_cli_is_asked_for_random_weights_at_the_size_without_a_gpu(
    fake_cli: FakeCli,
) -> None:
    catalog.backbone_blocks("resnet50", 96)

    (command,) = fake_cli.commands
    assert command[:3] == [sys.executable, "-m", "tl_core"]
    assert command[3:] == [
        "blocks",
        "resnet50",
        "--weights",
        "none",
        "--image-size",
        "96",
        "--json",
    ]
    assert fake_cli.envs[0]["CUDA_VISIBLE_DEVICES"] == "-1"


def test_the_cache_key_holds_the_backbone_the_size_and_the_keras_version(
    fake_cli: FakeCli, tl_home: Path
) -> None:
    catalog.backbone_blocks("mobilenet_v2", 64)
    catalog.backbone_blocks("mobilenet_v2", 96)
    catalog.backbone_blocks("mobilenet_v2")

    assert len(fake_cli.commands) == 3
    folder = tl_home / "cache" / "blocks"
    keras = catalog._keras_version()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"mobilenet_v2-{size}-keras{keras}.json" for size in (64, 96, 224)
    )
    assert json.loads((folder / f"mobilenet_v2-64-keras{keras}.json").read_text()) == ROWS


def test_cached_blocks_never_run_the_cli(fake_cli: FakeCli) -> None:
    assert catalog.cached_backbone_blocks("vgg16", 64) is None

    catalog.backbone_blocks("vgg16", 64)

    assert catalog.cached_backbone_blocks("vgg16", 64) == catalog.backbone_blocks("vgg16", 64)
    assert len(fake_cli.commands) == 1


def test_a_cli_error_becomes_a_tlerror_with_its_error_line(fake_cli: FakeCli) -> None:
    fake_cli.returncode, fake_cli.stdout = 2, ""
    fake_cli.stderr = (
        "I0000 oneDNN custom operations are on.\n"
        "error: Expected `input_size` to be an integer of at least 71. Received: 8\n"
    )

    with pytest.raises(TLError) as raised:
        catalog.backbone_blocks("mobilenet_v2", 64)

    assert str(raised.value) == (
        "Cannot list the blocks of MobileNetV2 at 64 px: Expected `input_size` to be an "
        "integer of at least 71. Received: 8"
    )
    assert catalog.cached_backbone_blocks("mobilenet_v2", 64) is None


def test_a_crash_without_an_error_line_says_how_it_ended(fake_cli: FakeCli) -> None:
    fake_cli.returncode, fake_cli.stdout, fake_cli.stderr = -9, "", "Killed\n"

    with pytest.raises(TLError, match=r"exited with code -9 \(Killed\)"):
        catalog.backbone_blocks("mobilenet_v2", 64)


def test_a_cli_that_takes_too_long_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(command: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(catalog.subprocess, "run", slow)

    with pytest.raises(TLError, match="took more than 5 s and was stopped"):
        catalog.backbone_blocks("mobilenet_v2", 64, timeout=5)


def test_output_that_is_not_a_block_list_is_a_bug_not_a_user_error(fake_cli: FakeCli) -> None:
    fake_cli.stdout = "Downloading data from https://…\n[]"

    with pytest.raises(RuntimeError, match="printed no valid block list"):
        catalog.backbone_blocks("mobilenet_v2", 64)


@pytest.mark.parametrize(
    ("backbone", "size", "message"),
    [
        ("resnet9000", 64, "Expected `backbone` to be one of"),
        ("xception", 64, "Expected `image_size` to be an integer of at least 71"),
        ("vgg16", "64", "Received: image_size='64'"),
    ],
)
def test_bad_arguments_are_refused_without_running_the_cli(
    fake_cli: FakeCli, backbone: str, size: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        catalog.backbone_blocks(backbone, size)

    assert fake_cli.commands == []


def test_a_damaged_cache_file_is_computed_again(fake_cli: FakeCli) -> None:
    path = catalog.blocks_cache_path("mobilenet_v2", 64)
    path.parent.mkdir(parents=True)
    path.write_text('[{"name": "stem"')

    blocks = catalog.backbone_blocks("mobilenet_v2", 64)

    assert [b.name for b in blocks] == ["stem", "top"]
    assert len(fake_cli.commands) == 1
    assert json.loads(path.read_text()) == ROWS


def test_warm_cache_fills_the_cache_and_swallows_errors(
    fake_cli: FakeCli, caplog: pytest.LogCaptureFixture
) -> None:
    catalog.warm_cache("mobilenet_v2", 64)
    catalog.warm_cache("mobilenet_v2", 64)
    assert len(fake_cli.commands) == 1

    fake_cli.returncode, fake_cli.stderr = 2, "error: no\n"
    catalog.warm_cache("mobilenet_v2", 96)

    assert "Prefetching the blocks of mobilenet_v2 failed" in caplog.text
    assert catalog.warm_cache("not_a_backbone") is None


def test_a_page_waits_for_the_prefetch_of_the_same_list_instead_of_running_twice(
    fake_cli: FakeCli,
) -> None:
    fake_cli.release.clear()
    prefetch = threading.Thread(target=catalog.warm_cache, args=("mobilenet_v2", 64))
    prefetch.start()
    assert fake_cli.entered.wait(timeout=10)
    answers: list[list[BlockInfo]] = []
    page = threading.Thread(
        target=lambda: answers.append(catalog.backbone_blocks("mobilenet_v2", 64))
    )
    page.start()

    fake_cli.release.set()
    prefetch.join(timeout=10)
    page.join(timeout=10)

    assert len(fake_cli.commands) == 1
    assert [b.name for b in answers[0]] == ["stem", "top"]


def test_only_one_prefetch_runs_at_a_time(fake_cli: FakeCli) -> None:
    fake_cli.release.clear()
    first = threading.Thread(target=catalog.warm_cache, args=("mobilenet_v2", 64))
    first.start()
    assert fake_cli.entered.wait(timeout=10)

    catalog.warm_cache("resnet50", 64)
    fake_cli.release.set()
    first.join(timeout=10)

    assert [command[4] for command in fake_cli.commands] == ["mobilenet_v2"]


def test_the_typical_side_is_the_median_shorter_side(
    make_archive: Callable[..., Path],
) -> None:
    entries = class_folders({"cat": 6, "dog": 6}, size=(48, 40))
    entries["dog/wide.png"] = png_bytes((300, 200))
    report = ingest_archive(make_archive(entries))

    assert catalog.typical_image_side(report) == 40
    assert catalog.typical_image_side(DatasetReport(report.dataset_id, "x", {}, None)) is None


@pytest.mark.parametrize(
    ("backbone", "side", "expected"),
    [
        ("mobilenet_v2", 64, 64),
        ("mobilenet_v2", 20, 32),
        ("mobilenet_v2", 500, 224),
        ("inception_v3", 64, 75),
        ("efficientnet_b3", 256, 256),
        ("efficientnet_b3", None, 300),
    ],
)
def test_the_suggested_size_never_blows_small_images_up(
    backbone: str, side: int | None, expected: int
) -> None:
    assert catalog.suggest_image_size(get_backbone(backbone), side) == expected


def test_a_weights_file_is_stored_by_content_under_a_safe_name(tl_home: Path) -> None:
    content = HDF5 + b"\x00" * 3_000_000

    first = catalog.store_weights_file(io.BytesIO(content), "../../my weights (v2).weights.h5")
    again = catalog.store_weights_file(io.BytesIO(content), "../../my weights (v2).weights.h5")

    assert first == again
    assert first.parent == tl_home / "weights"
    assert first.name.endswith("-my_weights_v2_.weights.h5")
    assert len(first.name.split("-")[0]) == 12
    assert first.read_bytes() == content
    assert [p.name for p in first.parent.iterdir()] == [first.name]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.keras", HDF5, "ending in .h5 or .weights.h5"),
        ("weights.h5", b"PK\x03\x04 a zip", "is not an HDF5 file"),
    ],
)
def test_a_file_that_cannot_hold_weights_is_refused_and_not_kept(
    tl_home: Path, name: str, content: bytes, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        catalog.store_weights_file(io.BytesIO(content), name)

    assert list((tl_home / "weights").glob("*")) == []


def test_the_catalog_estimate_and_plots_do_not_import_tensorflow() -> None:
    code = (
        "import sys, tl_core.models.catalog, tl_core.models.estimate, tl_core.viz.plots; "
        "import tl_core.models.classifier; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"
