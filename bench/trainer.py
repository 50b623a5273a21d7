"""Training worker vs bare ``model.fit``: same model, same data, same process.

Ours: `tl_core.engine.train.train_run` on a prepared run folder: metrics stream, stop flag, drift,
checkpoints, TensorBoard and status updates all active. Plain Keras: the same classifier
(`build_classifier` + `apply_freeze_plan` + `compile_classifier`) fitted on the same
batches with ``validation_data`` and no callbacks. Both are timed from one epoch's end
to the next (training, validation and every callback); the first epoch (tracing) is
left out, and the first interval, which holds one-time work, is reported apart.
``ratio`` is our images/s over plain Keras's, so 1.0 means no overhead.

The default setting is the common transfer-learning case: a backbone with pretrained
weights (a weights file saved here, so no download) and the top blocks fine-tuned;
BatchNorm is then frozen. ``--weights none`` measures training from scratch, where the
worker also re-estimates BatchNorm statistics before each validation (work plain Keras
does not do).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench trainer``."""
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6, help="per round (>= 4)")
    parser.add_argument("--unfreeze-last", type=int, default=3)
    parser.add_argument(
        "--weights", choices=("file", "none"), default="file", help="pretrained-like or scratch"
    )
    parser.add_argument("--archive", default="assets/sample_shapes.zip")


class _EpochTimer:
    """Record when each epoch of a bare ``fit`` ends (validation included)."""

    def __init__(self) -> None:
        import keras

        ends = self.ends = []

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                ends.append(time.time())

        self.callback = Callback()


def _intervals(ends: list[float]) -> list[float]:
    """Epoch-end to epoch-end: everything an epoch costs, callbacks included."""
    return [b - a for a, b in itertools.pairwise(ends)]


def _config(args: argparse.Namespace, dataset_id: str, weights: str) -> Any:
    from tl_core.config import RunConfig

    return RunConfig(
        dataset_id=dataset_id,
        backbone=args.backbone,
        weights=weights,
        image_size=args.image_size,
        freeze="fine-tune",
        unfreeze_last=args.unfreeze_last,
        epochs=args.epochs,
        batch_size=args.batch_size,
        augmentation=("flip",),
    )


def _bare_fit(config: Any, report: Any) -> list[float]:
    from bench.plain import plain_fit

    timer = _EpochTimer()
    plain_fit(config, report, [timer.callback])
    return _intervals(timer.ends)


def _worker(config: Any, root: Path) -> list[float]:
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run, read_metrics

    files = prepare_run(root, config)
    status = train_run(files.root)
    if status.state != "completed":
        raise RuntimeError(f"bench run ended {status.state}: {status.error}")
    epochs, _ = read_metrics(files.root)
    return _intervals([float(e["time"]) for e in epochs])


def _weights_file(args: argparse.Namespace, folder: Path) -> str:
    """Save a backbone's (random) weights to a file, to stand in for pretrained ones."""
    from tl_core.models.backbones import build_backbone, get_backbone

    path = folder / f"{args.backbone}.weights.h5"
    build_backbone(get_backbone(args.backbone), args.image_size, None).save_weights(path)
    return str(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure both, alternating for `ROUNDS` rounds, and return the median ratio."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        root = Path(tmp)
        os.environ["TL_HOME"] = str(root / "home")
        from tl_core.data import ingest_archive

        report = ingest_archive(args.archive)
        weights = "none" if args.weights == "none" else _weights_file(args, root)
        config = _config(args, report.dataset_id, weights)
        ours: list[list[float]] = []
        bare: list[list[float]] = []
        for i in range(ROUNDS):
            bare.append(_bare_fit(config, report))
            ours.append(_worker(config, root / f"run{i}"))
    images = len(report.images) * (1 - config.val_fraction)
    # Interval 1 (first to second epoch end) carries one-time work: tracing the
    # validation step, and on our side compiling the drift graph and opening TensorBoard.
    ours_s = [statistics.median(r[1:]) for r in ours]
    bare_s = [statistics.median(r[1:]) for r in bare]
    ratios = [b / o for b, o in zip(bare_s, ours_s, strict=True)]
    overall = [sum(b) / sum(o) for b, o in zip(bare, ours, strict=True)]
    one_time = [
        o[0] - statistics.median(o[1:]) - (b[0] - statistics.median(b[1:]))
        for o, b in zip(ours, bare, strict=True)
    ]
    return {
        "bench": "trainer",
        "setup": {
            "backbone": args.backbone,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "epochs_per_round": args.epochs,
            "rounds": ROUNDS,
            "weights": args.weights,
            "unfreeze_last": args.unfreeze_last,
            "train_images": round(images),
            "cpus": os.cpu_count(),
        },
        "ours_epoch_seconds": ours,
        "keras_epoch_seconds": bare,
        "ours_images_per_s": round(images / statistics.median(ours_s), 2),
        "keras_images_per_s": round(images / statistics.median(bare_s), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "ratio_including_first_interval": round(statistics.median(overall), 3),
        "one_time_overhead_seconds": round(statistics.median(one_time), 2),
        "note": "ratio = worker throughput / bare model.fit throughput at steady state "
        "(median epoch-end-to-epoch-end interval after the first; validation and callbacks "
        "included); 1.0 means no overhead. The worker's one-time cost per phase (compiling "
        "the drift graph, opening TensorBoard) is reported separately.",
    }
