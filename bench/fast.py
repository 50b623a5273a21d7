"""Instant re-runs: tl_core's default training paths vs plain Keras ``model.fit``, one run.

Every row compares with plain Keras measured in the same run: the same classifier
(`build_classifier` + `apply_freeze_plan` + `compile_classifier`) fitted with
``model.fit`` on the same batches, no callbacks. The data are generated here (camera-like
JPEGs, `bench.ingest.build_archive`), the "pretrained" weights are random weights whose
BatchNorm statistics were estimated on those images and saved to a file (no download), and
augmentation is off on both sides. Rows (``ratio`` = plain seconds / ours, above 1 is
faster):

- ``head_per_epoch``: feature extraction, one epoch (median after the first).
- ``head_run_cold``: ``python -m tl_core train`` with an empty cache vs a fresh Python
  process that fits plain Keras: both end to end (process start, TensorFlow import,
  data, extraction or forward passes, all epochs).
- ``head_rerun_cli``: the same command again (cache hit) vs the same plain process.
- ``head_rerun_warm``: the same run submitted to the queue whose runner keeps a warm
  worker ready (what the app's Start training does), submit to ``completed`` written.
- ``partial_per_epoch``: fine-tune of the top blocks, the bottom half (or more) frozen.
- ``sample_start``: the sample dataset, tiny setting: submit to the first epoch line on
  disk and to ``completed``, with a warm worker and with a cold one.
- ``parity``: validation accuracy of our head run vs plain Keras, and frozen blocks'
  drift (exactly 0.0 when their weights are unchanged).

Each row runs what tl_core does by default. Where a feature is not in this commit (the
run takes another path, or the config is refused), the row says ``"available": false``
and why, and has no figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOALS = {
    "head_per_epoch": 100.0,
    "head_run_cold": 5.0,
    "head_rerun_cli": 7.0,
    "head_rerun_warm": 15.0,
    "partial_per_epoch": 3.0,
}
#: The app's scheduler tick (ui/jobs.py): a queued run waits up to this long to start.
APP_TICK_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench fast``."""
    parser.add_argument("--images", type=int, default=400, help="images in the archive")
    parser.add_argument("--size", type=int, default=160, help="training input side")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--sample", default=str(ROOT / "assets" / "sample_shapes.zip"))
    parser.add_argument("--sample-size", type=int, default=64, help="input side on the sample")
    parser.add_argument("--json", action="store_true", help="(always JSON; for symmetry)")


# --- plain Keras -------------------------------------------------------------------------


def _plain_fit(config: Any) -> dict[str, Any]:
    """Fit the classifier of `config` with bare ``model.fit``; epoch ends and accuracy."""
    import keras

    from bench.plain import plain_fit
    from tl_core.data import load_dataset

    ends: list[float] = []
    mark = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.time()))
    history, blocks = plain_fit(config, load_dataset(config.dataset_id), [mark])
    return {
        "epoch_s": _median_interval(ends),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "blocks": blocks,
    }


def plain_child(spec_path: str) -> None:
    """Entry of the plain-Keras process: fit the config in `spec_path` (JSON) and exit."""
    _plain_fit(_config_from(json.loads(Path(spec_path).read_text())))


def _plain_process(config: Any, folder: Path) -> float:
    """Seconds a fresh Python process takes to import, load and fit `config` plainly."""
    spec = folder / "plain-spec.json"
    spec.write_text(json.dumps(dataclasses.asdict(config)))
    code = "import sys; from bench.fast import plain_child; plain_child(sys.argv[1])"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(spec)], check=True, cwd=ROOT, env=_env())
    return time.perf_counter() - start


# --- tl_core -----------------------------------------------------------------------------


def _cli_train(config: Any, archive: Path, out: Path) -> float:
    """Seconds ``python -m tl_core train`` takes for `config`, process start to exit."""
    argv = [sys.executable, "-m", "tl_core", "train", str(archive), "--backbone"]
    argv += [config.backbone, "--weights", config.weights, "--image-size", str(config.image_size)]
    argv += ["--preset", config.freeze, "--epochs", str(config.epochs), "--augment", "none"]
    argv += ["--batch-size", str(config.batch_size), "--seed", str(config.seed)]
    argv += ["--out", str(out), "--json", *_fast_flag()]
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _submitted(config: Any, *, warm: bool) -> dict[str, float]:
    """Submit `config` to a scheduler ticking like the app's; seconds to the first epoch
    line on disk and to ``completed`` in ``status.json``."""
    from tl_core.jobs import queue as jobs
    from tl_core.jobs.runs import read_metrics, read_status, run_path
    from tl_core.jobs.scheduler import LocalProcessRunner, Scheduler

    runner = LocalProcessRunner(warm=warm)
    scheduler = Scheduler(runner=runner, slots=1)
    scheduler.start_background(interval=APP_TICK_S)
    try:
        if warm:
            _wait(lambda: runner.warm_worker(0) is not None, 180)
        start = time.perf_counter()
        root = run_path(jobs.submit(config))
        _wait(lambda: read_metrics(root)[0] != [], 600)
        first = time.perf_counter() - start
        _wait(lambda: _state(read_status(root)) in {"completed", "failed", "stopped"}, 600)
        done = time.perf_counter() - start
        if _state(read_status(root)) != "completed":
            raise RuntimeError(f"bench run {root.name} ended {_state(read_status(root))}")
    finally:
        scheduler.stop()
    return {"first_epoch_s": round(first, 2), "completed_s": round(done, 2), "run": str(root)}


def _in_process(config: Any, root: Path) -> Path:
    """Train `config` in this process (no import cost: per-epoch rows only)."""
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run

    files = prepare_run(root, config)
    status = train_run(files.root)
    if status.state != "completed":
        raise RuntimeError(f"bench run ended {status.state}: {status.error}")
    return files.root


# --- rows --------------------------------------------------------------------------------


def _row(name: str, plain_s: float, ours_s: float, **extra: Any) -> dict[str, Any]:
    ratio = plain_s / ours_s if ours_s > 0 else math.inf
    row = {"row": name, "available": True, "plain_s": round(plain_s, 3)}
    row |= {"ours_s": round(ours_s, 3), "ratio": round(ratio, 1)}
    if name in GOALS:
        row |= {"goal": GOALS[name], "meets_goal": ratio >= GOALS[name]}
    return row | extra


def _unavailable(name: str, reason: str) -> dict[str, Any]:
    return {"row": name, "available": False, "reason": reason}


def _paths_taken(root: Path) -> list[str]:
    """The training paths run.json records (``head-features``, ``boundary:<block>``,
    ``plain``); an older run.json without them gives what its phases say."""
    doc = json.loads((root / "run.json").read_text())
    found = [str(v["path"]) for v in _dicts(doc) if {"path", "storage"} <= v.keys()]
    if found:
        return found
    return [_phase_path(phase) for phase in doc.get("phases", [])]


def _phase_path(phase: dict[str, Any]) -> str:
    if not phase.get("cached"):
        return "plain"
    boundary = phase.get("boundary")
    return f"boundary:{boundary}" if boundary not in (None, "pooled") else "head-features"


def _dicts(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        return [doc, *itertools.chain.from_iterable(_dicts(v) for v in doc.values())]
    if isinstance(doc, list):
        return list(itertools.chain.from_iterable(_dicts(v) for v in doc))
    return []


def _cached(root: Path) -> bool:
    return any(p != "plain" for p in _paths_taken(root))


def _frozen_drift(root: Path) -> dict[str, Any]:
    """Largest drift of the frozen blocks (0.0: bit-identical) and how many were listed."""
    doc = json.loads((root / "run.json").read_text())
    frozen = {b["name"] for b in _dicts(doc) if b.get("trainable") is False and "layers" in b}
    drift = json.loads((root / "drift.json").read_text())
    listed = [float(v) for k, v in drift.items() if k in frozen]
    return {
        "frozen_blocks": len(frozen),
        "frozen_blocks_in_drift": len(listed),
        "frozen_drift_max": max(listed, default=0.0),
        "frozen_identical": all(v == 0.0 for v in listed),
    }


def _val_accuracy(root: Path) -> float:
    from tl_core.jobs.runs import read_metrics

    return float(read_metrics(root)[0][-1]["val_accuracy"])


def _partial_row(config: Any, blocks: int, folder: Path) -> dict[str, Any]:
    frozen = math.ceil(blocks / 2)
    partial = dataclasses.replace(config, freeze="fine-tune", unfreeze_last=blocks - frozen)
    from tl_core.errors import TLError

    try:
        root = _in_process(partial, folder / "partial")
    except (TLError, RuntimeError) as exc:  # a refused config is this commit's answer, not a crash
        return _unavailable("partial_per_epoch", f"{type(exc).__name__}: {exc}")
    if not _cached(root):
        return _unavailable(
            "partial_per_epoch",
            f"this commit trains a partial fine-tune on images (paths: {_paths_taken(root)})",
        )
    plain = _plain_fit(partial)
    return _row(
        "partial_per_epoch",
        plain["epoch_s"],
        _ours_epoch_s(root),
        bottom_frozen=frozen,
        blocks=blocks,
        paths=_paths_taken(root),
        **_frozen_drift(root),
    )


def _sample_rows(args: argparse.Namespace, weights: str) -> dict[str, Any]:
    from tl_core.config import RunConfig
    from tl_core.data import ingest_archive

    report = ingest_archive(Path(args.sample))
    tiny = RunConfig(
        dataset_id=report.dataset_id,
        backbone=args.backbone,
        weights=weights,
        image_size=args.sample_size,
        epochs=3,
        batch_size=args.batch_size,
        augmentation=(),
        **_fast_field(),
    )
    _in_process(tiny, Path(os.environ["TL_HOME"]) / "sample-prime")  # both rows re-run
    warm = _submitted(tiny, warm=True)
    cold = _submitted(tiny, warm=False)
    return {
        "row": "sample_start",
        "available": True,
        "setting": f"{args.sample}, {args.backbone} @{args.sample_size}, 3 epochs, "
        f"{len(report.images)} images",
        "warm": warm,
        "cold": cold,
        "goal_first_epoch_warm_s": 2.0,
        "meets_goal": warm["first_epoch_s"] <= 2.0,
    }


# --- helpers -----------------------------------------------------------------------------


def _fast_default() -> bool:
    from tl_core.config import RunConfig

    field = RunConfig.__dataclass_fields__.get("fast")
    return bool(field is not None and field.default)


def _fast_field() -> dict[str, bool]:
    """``{"fast": True}`` while caching is opt-in in this commit, else nothing (default)."""
    from tl_core.config import RunConfig

    on = "fast" in RunConfig.__dataclass_fields__ and not _fast_default()
    return {"fast": True} if on else {}


def _fast_flag() -> list[str]:
    return ["--fast"] if _fast_field() else []


def _config_from(doc: dict[str, Any]) -> Any:
    from tl_core.config import RunConfig

    return RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


def _median_interval(ends: list[float]) -> float:
    """Median epoch-end-to-epoch-end seconds after the first (tracing) interval."""
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    return statistics.median(gaps[1:] or gaps)


def _ours_epoch_s(root: Path) -> float:
    from tl_core.jobs.runs import read_metrics

    return _median_interval([float(e["time"]) for e in read_metrics(root)[0]])


def _state(status: Any) -> str | None:
    return status.state if status is not None else None


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("bench: timed out waiting for a run")
        time.sleep(0.02)


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _calibrated_weights(args: argparse.Namespace, folder: Path, report: Any) -> str:
    """Random backbone weights with BatchNorm statistics estimated on the images, saved:
    a frozen backbone then passes signal through (with the initial statistics a frozen
    MobileNetV2 outputs ~1e-12) and parity compares something."""
    import numpy as np

    from tl_core.data.dataset import make_batches
    from tl_core.models.backbones import build_backbone, get_backbone

    backbone = build_backbone(get_backbone(args.backbone), args.size, None)
    batches = make_batches(
        report,
        report.images[:128],
        class_names=sorted({r.label for r in report.images}),
        image_size=args.size,
        batch_size=32,
    )
    for _ in range(3):
        for images, _labels in batches:
            backbone(np.asarray(images) / 127.5 - 1.0, training=True)
    path = folder / f"{args.backbone}.weights.h5"
    backbone.save_weights(path)
    return str(path)


def _device() -> str:
    from tl_core.jobs.devices import probe_devices

    return probe_devices().describe()


# --- the bench ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every row against plain Keras in this run; return the table."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as tmp:
        folder = Path(tmp)
        os.environ["TL_HOME"] = str(folder / "home")
        return _measure(args, folder)


def _measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from bench.ingest import build_archive
    from tl_core.config import RunConfig
    from tl_core.data import ingest_archive

    archive = folder / "photos.zip"
    build_archive(archive, args.images, args.size + 32)
    report = ingest_archive(archive)
    weights = _calibrated_weights(args, folder, report)
    head = RunConfig(
        dataset_id=report.dataset_id,
        backbone=args.backbone,
        weights=weights,
        image_size=args.size,
        freeze="feature-extraction",
        epochs=args.epochs,
        batch_size=args.batch_size,
        augmentation=(),
        **_fast_field(),
    )
    plain = _plain_fit(head)
    plain_process_s = _plain_process(head, folder)
    shutil.rmtree(Path(os.environ["TL_HOME"]) / "cache", ignore_errors=True)
    cold_s = _cli_train(head, archive, folder / "cold")
    hit_s = _cli_train(head, archive, folder / "hit")
    warm = _submitted(head, warm=True)
    hit_root = folder / "hit"
    rows = [
        _row("head_per_epoch", plain["epoch_s"], _ours_epoch_s(folder / "cold")),
        _row("head_run_cold", plain_process_s, cold_s, paths=_paths_taken(folder / "cold")),
        _row("head_rerun_cli", plain_process_s, hit_s, paths=_paths_taken(hit_root)),
        _row(
            "head_rerun_warm",
            plain_process_s,
            warm["completed_s"],
            first_epoch_s=warm["first_epoch_s"],
            tick_s=APP_TICK_S,
        ),
        _partial_row(head, plain["blocks"], folder),
        _sample_rows(args, weights),
        {
            "row": "parity",
            "available": True,
            "val_accuracy_plain": round(plain["val_accuracy"], 4),
            "val_accuracy_ours": round(_val_accuracy(hit_root), 4),
            "within_0_02": abs(plain["val_accuracy"] - _val_accuracy(hit_root)) <= 0.02,
            **_frozen_drift(hit_root),
        },
    ]
    return {
        "bench": "fast",
        "device": _device(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "setup": {
            "backbone": args.backbone,
            "image_size": args.size,
            "images": args.images,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "augmentation": "none",
            "caching_on_by_default": _fast_default(),
        },
        "rows": rows,
        "note": "ratio = plain Keras seconds / ours (above 1 = faster); plain_s of the end "
        "to end rows is a fresh Python process that imports TensorFlow and fits plainly.",
    }
