"""A finished comparison on the sample data, ready before a demo starts.

`prepare_demo` ingests the bundled sample (``assets/sample_shapes.zip``), trains two
small runs in this process, feature extraction against fine-tuning the top blocks, and
writes their report (`tl_core.analysis.report`), so that a presenter never waits for
training. Both runs start from a pretrained backbone: ImageNet's where its weights are
already on this machine, otherwise a backbone first trained from scratch on the sample
itself and exported (`tl_core.analysis.export.export_backbone`), the studio's offline
way to a pretrained start ("weights from a run" on the Backbone page).

Everything takes the fastest path: a small image size, few epochs, cached activations
below the frozen blocks (``fast``), no augmentation. The result is recorded in
``TL_HOME/demo.json``; a second call returns it at once while its runs and report are
still there.

Example:
    >>> demo = prepare_demo()  # doctest: +SKIP
    >>> demo.run_ids, demo.report  # doctest: +SKIP
    (['20261207-090000-aaaaaa', '20261207-090130-bbbbbb'], PosixPath('.../demo/report.html'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.errors import JobError
from tl_core.jobs.runs import (
    RunFiles,
    new_run_id,
    prepare_run,
    read_json,
    read_status,
    run_path,
    write_json_atomic,
)
from tl_core.workspace import tl_home

__all__ = ["DEMO_BACKBONE", "SAMPLE_ARCHIVE", "Demo", "demo_configs", "prepare_demo"]

#: The sample dataset bundled with the studio.
SAMPLE_ARCHIVE = Path(__file__).resolve().parents[2] / "assets" / "sample_shapes.zip"
#: The demo's backbone: small, fast on a CPU, with per-size ImageNet weights.
DEMO_BACKBONE = "mobilenet_v2"
#: Image sides: ImageNet's smallest MobileNetV2 weights; for the scratch start, small but
#: large enough that the shapes survive MobileNetV2's downsampling (32 px learns much less).
IMAGENET_SIZE = 96
SCRATCH_SIZE = 48
#: Top blocks the fine-tuned run trains.
FINE_TUNE_BLOCKS = 4
#: Epochs of each compared run, and of the scratch backbone's training.
EPOCHS = 5
SCRATCH_EPOCHS = 12
#: Where the demo's report is written, under ``TL_HOME``.
DEMO_FOLDER = "demo"


@dataclass(frozen=True)
class Demo:
    """A prepared demo.

    Attributes:
        run_ids: the compared runs: feature extraction, then fine-tuning the top blocks.
        report: the report's file.
        start: where the runs' weights came from: ``"imagenet"``, or the id of the run
            trained from scratch whose backbone they start from.
        dataset_id: the sample's dataset id.
    """

    run_ids: list[str]
    report: Path
    start: str
    dataset_id: str

    def to_json(self) -> dict[str, Any]:
        """The demo as ``python -m tl_core demo --json`` prints it."""
        return {
            "run_ids": list(self.run_ids),
            "report": str(self.report),
            "start": self.start,
            "dataset_id": self.dataset_id,
        }


def demo_configs(dataset_id: str, weights: str, image_size: int) -> list[Any]:
    """The two compared runs' settings: feature extraction, then fine-tune the top blocks.

    Args:
        dataset_id: the sample's dataset id.
        weights: ``"imagenet"`` or a backbone weights file.
        image_size: the input side in pixels.

    Example:
        >>> [c.freeze for c in demo_configs("0123456789ab", "imagenet", 96)]
        ['feature-extraction', 'fine-tune']
    """
    from tl_core.config import RunConfig

    common = {
        "dataset_id": dataset_id,
        "backbone": DEMO_BACKBONE,
        "weights": weights,
        "image_size": image_size,
        "epochs": EPOCHS,
        "augmentation": (),
        "fast": True,
    }
    return [
        RunConfig(**common, freeze="feature-extraction"),
        RunConfig(
            **common,
            freeze="fine-tune",
            unfreeze_last=FINE_TUNE_BLOCKS,
            # Lower than the head's default: the pretrained blocks should move, not forget.
            learning_rate=3e-4,
        ),
    ]


def prepare_demo(*, refresh: bool = False, progress: Callable[[str], None] | None = None) -> Demo:
    """Ingest the sample, train the two compared runs and write their report.

    Runs in the foreground of this process (it loads TensorFlow) in ``TL_HOME``; the runs
    appear in the runs list like any other.

    Args:
        refresh: train again even when a finished demo is recorded (default False).
        progress: called with a line before each step (default ``None``: silent).

    Returns:
        The `Demo`.

    Raises:
        JobError: a demo run failed (its error says why).

    Example:
        >>> prepare_demo(progress=print).report.name  # doctest: +SKIP
        'report.html'
    """
    say = progress or (lambda _line: None)
    recorded = None if refresh else _recorded_demo()
    if recorded is not None:
        say("a finished demo is already prepared")
        return recorded
    from tl_core.analysis.report import write_report
    from tl_core.data import ingest_archive
    from tl_core.engine.device import quiet_tensorflow
    from tl_core.models.backbones import get_backbone, weights_cached

    quiet_tensorflow()
    say(f"ingesting the sample {SAMPLE_ARCHIVE.name}")
    dataset_id = ingest_archive(SAMPLE_ARCHIVE).dataset_id
    if weights_cached(get_backbone(DEMO_BACKBONE), IMAGENET_SIZE):
        start, weights, size = "imagenet", "imagenet", IMAGENET_SIZE
    else:
        say("no ImageNet weights here: training a backbone from scratch on the sample first")
        start, weights = _scratch_backbone(dataset_id)
        size = SCRATCH_SIZE
    run_ids = []
    for config in demo_configs(dataset_id, weights, size):
        say(f"training {config.freeze} ({config.epochs} epochs)")
        run_ids.append(_train(config))
    say("writing the report")
    report = write_report(run_ids, tl_home() / DEMO_FOLDER / "report.html")
    demo = Demo(run_ids, report.resolve(), start, dataset_id)
    write_json_atomic(tl_home() / DEMO_FOLDER / "demo.json", demo.to_json())
    return demo


def _scratch_backbone(dataset_id: str) -> tuple[str, str]:
    """Train the demo's backbone from scratch on the sample; return (run id, weights file)."""
    from tl_core.analysis.export import export_backbone
    from tl_core.config import RunConfig

    config = RunConfig(
        dataset_id=dataset_id,
        backbone=DEMO_BACKBONE,
        weights="none",
        image_size=SCRATCH_SIZE,
        freeze="full",
        epochs=SCRATCH_EPOCHS,
        learning_rate=2e-3,
        augmentation=(),
    )
    run_id = _train(config)
    root = run_path(run_id)
    weights = export_backbone(root, root / "export" / f"{run_id}-backbone.weights.h5")
    return run_id, str(weights.resolve())


def _train(config: Any) -> str:
    """Train one run in this process; return its id. Raises `JobError` when it fails."""
    from tl_core.engine.train import train_run

    run_id = new_run_id()
    files = prepare_run(run_path(run_id), config, run_id=run_id)
    status = train_run(files.root)
    if status.state != "completed":
        raise JobError(
            f"The demo run {run_id} ended {status.state}: {status.error or 'no error given'}. "
            "See its log on the Runs page, then run `python -m tl_core demo --refresh`."
        )
    return run_id


def _recorded_demo() -> Demo | None:
    """The demo recorded in ``demo.json``, while its runs are finished and its report there."""
    doc = read_json(tl_home() / DEMO_FOLDER / "demo.json")
    if not isinstance(doc, dict):
        return None
    try:
        run_ids = [str(run_id) for run_id in doc["run_ids"]]
        roots = [run_path(run_id) for run_id in run_ids]
        report = Path(doc["report"])
        demo = Demo(run_ids, report, str(doc["start"]), str(doc["dataset_id"]))
    except (KeyError, TypeError, JobError):
        return None
    finished = all(
        (status := read_status(root)) is not None and status.state == "completed" for root in roots
    )
    if not (finished and report.is_file() and all(RunFiles(r).model.is_file() for r in roots)):
        return None
    return demo
