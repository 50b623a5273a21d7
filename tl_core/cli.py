"""Command-line interface: everything a page can do, scriptable.

Exit codes: 0 ok; 2 bad input (one line ``error: …`` on stderr saying what, why and
what to do); 1 internal failure. With ``--json`` the result is one JSON document on
stdout and nothing else is printed there.

Example:
    $ python -m tl_core inspect-data assets/sample_shapes.zip --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from tl_core.errors import TLError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

#: Commands that need TensorFlow; it is imported up front, with its start-up chatter
#: kept off stderr (`tl_core.engine.device.quiet_tensorflow`).
_TENSORFLOW_COMMANDS = frozenset(
    {"blocks", "resume", "worker", "predict", "evaluate", "embeddings", "export"}
    | {"report", "demo"}
)

log = logging.getLogger("tl_core.cli")


_N = TypeVar("_N", int, float)


class _UsageError(Exception):
    """An argparse complaint, turned into the ``error:`` contract."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage and exits itself; keep the one-line `error:` contract instead.
        raise _UsageError(f"{message} (run `{self.prog} --help`)")


def _emit(result: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    else:
        sys.stdout.write(human(result) + "\n")


def _cmd_inspect_data(args: argparse.Namespace) -> int:
    from tl_core.data import ingest_archive

    report = ingest_archive(args.archive)
    _emit(report.to_json(), args.json, _describe_report)
    return EXIT_OK


def _describe_report(doc: dict[str, Any]) -> str:
    lines = [f"{doc['source_name']}: {doc['num_images']} images in {len(doc['classes'])} classes"]
    lines += [f"  {name}: {count}" for name, count in doc["classes"].items()]
    if doc["split"]:
        lines.append("split: " + ", ".join(f"{k} {v}" for k, v in doc["split"].items()))
    lines += [f"warning: {w}" for w in doc["warnings"]]
    lines += [f"skipped {s['path']}: {s['reason']}" for s in doc["skipped"]]
    if doc["junk_ignored"]:
        lines.append(f"ignored {doc['junk_ignored']} hidden or OS metadata files")
    lines.append(f"dataset id: {doc['dataset_id']}")
    return "\n".join(lines)


def _cmd_backbones(args: argparse.Namespace) -> int:
    from tl_core.models.backbones import backbones_table

    table = backbones_table()
    _emit(
        table,
        args.json,
        lambda rows: "\n".join(
            f"{r['id']:<20} {r['input_size']:>4}px {r['params']:>12,} params  "
            f"preprocess={r['preprocess']:<6} weights {'cached' if r['weights_cached'] else '-'}"
            for r in rows
        ),
    )
    return EXIT_OK


def _cmd_blocks(args: argparse.Namespace) -> int:
    from tl_core.models.backbones import build_backbone, get_backbone
    from tl_core.models.blocks import blocks_json, group_blocks

    spec = get_backbone(args.backbone)
    weights = None if args.weights == "none" else args.weights
    backbone = build_backbone(spec, args.image_size, weights, download=False)
    rows = blocks_json(group_blocks(backbone, spec))
    _emit(
        rows,
        args.json,
        lambda rs: "\n".join(
            f"{i:>3} {r['name']:<24} {len(r['layers']):>4} layers {r['params']:>12,} params"
            for i, r in enumerate(rs)
        ),
    )
    return EXIT_OK


def _freeze_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.trainable:
        return {"freeze": "custom", "trainable_blocks": tuple(args.trainable.split(","))}
    if args.unfreeze_last is not None:
        if args.preset in ("feature-extraction", "full"):
            raise _UsageError(
                f"--unfreeze-last cannot be combined with --preset {args.preset}; "
                "use --preset fine-tune --unfreeze-last N"
            )
        return {"freeze": "fine-tune", "unfreeze_last": args.unfreeze_last}
    return {"freeze": args.preset or "feature-extraction"}


def _augmentations(text: str) -> tuple[str, ...]:
    """``--augment``: comma-separated names; ``none`` or nothing means no augmentation."""
    from tl_core.config import AUGMENTATIONS

    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    if names in ((), ("none",)):
        return ()
    if not set(names) <= set(AUGMENTATIONS):
        raise _UsageError(
            f"Expected `--augment` to be 'none' or comma-separated names from "
            f"{list(AUGMENTATIONS)}. Received: --augment={text!r}"
        )
    return names


def _block_names(config: Any) -> list[str] | None:
    """The backbone's blocks when the freeze plan names or counts them, else ``None``.

    Read from the block cache when it holds them (no TensorFlow needed, so a bad
    ``--unfreeze-last`` is refused at once); otherwise listed once and cached.
    """
    from tl_core.models.catalog import backbone_blocks, cached_backbone_blocks

    blocks = cached_backbone_blocks(config.backbone, config.image_size)
    if blocks is None:
        if not (config.two_phase or config.freeze in ("fine-tune", "custom")):
            return None
        blocks = backbone_blocks(config.backbone, config.image_size)
    return [block.name for block in blocks]


def _cmd_train(args: argparse.Namespace) -> int:
    from tl_core.config import RunConfig, check_runnable
    from tl_core.data import ingest_archive

    report = ingest_archive(args.archive)
    config = RunConfig(
        dataset_id=report.dataset_id,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        seed=args.seed,
        train_bn=args.train_bn,
        two_phase=args.two_phase,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_blocks=args.fine_tune_blocks,
        early_stopping=args.patience is not None,
        patience=args.patience or 3,
        augmentation=_augmentations(args.augment),
        label_smoothing=args.label_smoothing,
        val_fraction=args.val_fraction,
        mixed_precision=args.mixed_precision,
        fast=args.fast,
        **_freeze_options(args),
    )
    # Refused here, before the run folder exists and before TensorFlow is imported.
    check_runnable(config, blocks=_block_names(config))
    from tl_core.engine.device import quiet_tensorflow
    from tl_core.engine.train import train_run
    from tl_core.jobs.runs import prepare_run

    quiet_tensorflow()
    files = prepare_run(Path(args.out), config)
    status = train_run(files.root)
    return _report_run(files.root, status, args.json)


def _cmd_resume(args: argparse.Namespace) -> int:
    from tl_core.engine.train import train_run

    status = train_run(Path(args.run_dir), resume=True)
    return _report_run(Path(args.run_dir), status, args.json)


def _report_run(run_dir: Path, status: Any, as_json: bool) -> int:
    from tl_core.jobs.runs import RunFiles, best_epoch, read_json, read_metrics

    epochs, _ = read_metrics(run_dir)
    doc = read_json(RunFiles(run_dir).config, {})
    best = best_epoch(epochs)
    result = {
        "run_dir": str(Path(run_dir).resolve()),
        "state": status.state,
        "epochs": status.epoch,
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "best_epoch": best.get("epoch") if best else None,
        "last": epochs[-1] if epochs else None,
        "trainable_params": doc.get("trainable_params"),
        "non_trainable_params": doc.get("non_trainable_params"),
        "error": status.error,
    }
    _emit(
        result,
        as_json,
        lambda r: (
            f"{r['state']} after {r['epochs']} epochs; best epoch (highest validation "
            f"accuracy): {r['best_epoch']}, {r['best_val_accuracy']}; files in {r['run_dir']}"
            + (f"\nerror: {r['error']}" if r["error"] else "")
        ),
    )
    if status.state == "failed":
        if status.error_kind == "input":
            raise TLError(status.error)
        return EXIT_INTERNAL
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from tl_core.engine.train import main_worker
    from tl_core.jobs.runs import run_path

    return main_worker(run_path(args.run_id), resume=args.resume, batch_size=args.batch_size)


def _cmd_warm_worker(args: argparse.Namespace) -> int:
    from tl_core.engine.warm import serve_one_job

    return serve_one_job(Path(args.ready) if args.ready else None, sys.stdin)


def _cmd_scheduler(args: argparse.Namespace) -> int:
    import time

    from tl_core.jobs.runners import scheduler_from_env

    if args.interval <= 0:
        raise _UsageError(f"--interval must be a positive number of seconds, got {args.interval}")
    scheduler = scheduler_from_env()
    active: bool | None = None
    try:
        while True:
            events = scheduler.tick()
            if scheduler.active != active:
                active = scheduler.active
                sys.stdout.write(
                    f"scheduler active in {scheduler.home} with {scheduler.slots} slot(s)\n"
                    if active
                    else f"scheduler passive: another process holds {scheduler.lock_path}; "
                    "reporting changes until it ends\n"
                )
            for event in events:
                sys.stdout.write(f"{event}\n")
            sys.stdout.flush()
            if args.once:
                return EXIT_OK
            time.sleep(args.interval)
    except KeyboardInterrupt:  # Ctrl-C ends the scheduler, not its workers
        return EXIT_OK
    finally:
        scheduler.stop()


def _cmd_predict(args: argparse.Namespace) -> int:
    from tl_core.analysis.predict import predict_images

    if args.top < 1:
        raise _UsageError(f"--top must be 1 or more, got {args.top}")
    results = predict_images(
        Path(args.run_dir),
        [Path(p) for p in args.images],
        top_k=args.top,
        gradcam_dir=Path(args.gradcam) if args.gradcam else None,
    )
    _emit(
        results,
        args.json,
        lambda rows: "\n".join(f"{r['image']}: {r['label']} ({r['confidence']:.1%})" for r in rows),
    )
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from tl_core.analysis.evaluate import evaluate_run

    if args.max_misclassified < 0:
        raise _UsageError(f"--max-misclassified must be 0 or more, got {args.max_misclassified}")
    result = evaluate_run(
        Path(args.run_dir), max_misclassified=args.max_misclassified, refresh=args.refresh
    )
    _emit(result, args.json, _describe_evaluation)
    return EXIT_OK


def _describe_evaluation(doc: dict[str, Any]) -> str:
    lines = [f"accuracy {doc['accuracy']:.4f} on {doc['num_images']} validation images"]
    lines += [
        f"  {name:<20} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
        f"f1 {row['f1']:.3f}  support {row['support']}"
        for name, row in doc["per_class"].items()
    ]
    lines += [
        f"confused: {pair['true']} -> {pair['predicted']} ({pair['count']})"
        for pair in doc["most_confused"][:5]
    ]
    lines += [
        f"misclassified: {row['path']} ({row['true']} taken for {row['predicted']}, "
        f"loss {row['loss']:.3f})"
        for row in doc["misclassified"][:5]
    ]
    return "\n".join(lines)


def _cmd_embeddings(args: argparse.Namespace) -> int:
    from tl_core.analysis.evaluate import embeddings

    result = embeddings(Path(args.run_dir), max_images=args.max_images, tsne=args.tsne)
    _emit(
        result,
        args.json,
        lambda r: (
            f"{r['num_images']} validation images projected with {r['method']}; before: "
            f"{r['before_source'] or r['before_note']}"
        ),
    )
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from tl_core.analysis.compare import config_diff, load_compared_runs

    if len(args.run_ids) < 2:
        raise _UsageError("compare needs at least two run ids")
    runs = load_compared_runs(args.run_ids)
    diff = config_diff({run.run_id: run.config for run in runs})
    result = {
        "runs": [{"run_id": run.run_id, "label": run.label} for run in runs],
        "config_diff": {
            field: {run.run_id: diff.loc[field, run.run_id] for run in runs} for field in diff.index
        },
        "metrics": {run.run_id: _run_results(run) for run in runs},
    }
    _emit(result, args.json, _describe_comparison)
    return EXIT_OK


def _run_results(run: Any) -> dict[str, Any]:
    from tl_core.analysis.compare import median_epoch_seconds

    last = run.epochs[-1] if run.epochs else {}
    return {
        "state": run.summary.state,
        "best_val_accuracy": run.summary.best_val_accuracy,
        "best_epoch": run.summary.best_epoch,
        "final_val_accuracy": last.get("val_accuracy"),
        "final_val_loss": last.get("val_loss"),
        "epochs": run.summary.epochs_done,
        "seconds_per_epoch": median_epoch_seconds(run.epochs),
        "trainable_params": run.trainable_params,
        "eval_accuracy": run.eval_accuracy,
    }


def _describe_comparison(doc: dict[str, Any]) -> str:
    ids = [run["run_id"] for run in doc["runs"]]
    lines = [f"{run['run_id']}  {run['label']}" for run in doc["runs"]]
    lines.append("differing settings:" if doc["config_diff"] else "no differing settings")
    lines += [
        f"  {field}: " + " | ".join(str(values[run_id]) for run_id in ids)
        for field, values in doc["config_diff"].items()
    ]
    metric_names = list(doc["metrics"][ids[0]])
    lines += [
        f"{name}: " + " | ".join(str(doc["metrics"][run_id][name]) for run_id in ids)
        for name in metric_names
    ]
    return "\n".join(lines)


def _number_list(
    option: str, text: str | None, parse: Callable[[str], _N], *, example: str = "0,1,2"
) -> list[_N] | None:
    """The distinct numbers of a comma-separated option, sorted; ``None`` when not given."""
    if not text:
        return None
    try:
        return sorted({parse(part) for part in text.split(",")})
    except ValueError:
        raise _UsageError(
            f"{option} must be comma-separated numbers, e.g. {example}; got {text!r}"
        ) from None


def _cmd_ladder(args: argparse.Namespace) -> int:
    from tl_core.analysis.ladder import ladder_base, ladder_caveat, submit_ladder, suggest_depths

    base = ladder_base(args.run_id)
    depths = _number_list("--depths", args.depths, int)
    if depths is None:
        depths = suggest_depths(base.num_blocks)
    ladder = submit_ladder(base.config, depths, base_run_id=base.run_id, num_blocks=base.num_blocks)
    result = ladder.to_json() | {"caveat": ladder_caveat(base.config)}
    _emit(
        result,
        args.json,
        lambda r: "\n".join(
            [f"ladder {r['ladder_id']}: queued {len(r['run_ids'])} runs"]
            + [f"  top {d} blocks: {run}" for d, run in zip(r["depths"], r["run_ids"], strict=True)]
            + ([f"note: {r['caveat']}"] if r["caveat"] else [])
            + ["they train when a scheduler runs (the app's, or `python -m tl_core scheduler`)"]
        ),
    )
    return EXIT_OK


def _cmd_datasize(args: argparse.Namespace) -> int:
    from tl_core.analysis.datasize import DEFAULT_FRACTIONS, submit_datasize
    from tl_core.analysis.ladder import ladder_base

    base = ladder_base(args.run_id)
    fractions = _number_list("--fractions", args.fractions, float, example="0.1,0.25,0.5,1")
    if fractions is None:
        fractions = list(DEFAULT_FRACTIONS)
    curve = submit_datasize(
        base.config, fractions, compare_scratch=not args.no_scratch, base_run_id=base.run_id
    )
    _emit(
        curve.to_json(),
        args.json,
        lambda r: "\n".join(
            [f"data-size curve {r['datasize_id']}: queued {len(r['runs'])} runs"]
            + [f"  {run['fraction']:.0%} {run['weights']}: {run['run_id']}" for run in r["runs"]]
            + ["they train when a scheduler runs (the app's, or `python -m tl_core scheduler`)"]
        ),
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from tl_core.analysis.export import export_model

    if args.int8 and args.format != "tflite":
        raise _UsageError("--int8 applies to --format tflite only")
    result = export_model(Path(args.run_dir), fmt=args.format, out=Path(args.out), int8=args.int8)
    _emit(
        result,
        args.json,
        lambda r: f"wrote {r['path']} ({r['bytes']:,} bytes) and {r['labels']}",
    )
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from tl_core.analysis.report import write_report

    path = write_report(args.run_ids, Path(args.out), question=args.question)
    result = {"run_ids": args.run_ids, "report": str(path.resolve()), "bytes": path.stat().st_size}
    _emit(result, args.json, lambda r: f"wrote {r['report']} ({r['bytes']:,} bytes)")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from tl_core.analysis.demo import prepare_demo

    # Steps go to stderr, so that stdout keeps the one JSON document.
    demo = prepare_demo(refresh=args.refresh, progress=lambda line: print(line, file=sys.stderr))
    _emit(
        demo.to_json(),
        args.json,
        lambda r: f"runs {', '.join(r['run_ids'])}; report {r['report']}",
    )
    return EXIT_OK


def _add_show_commands(sub: Any) -> None:
    """``report`` and ``demo``: the evidence of a comparison in one file, for people not
    at the app."""
    report = sub.add_parser(
        "report", help="write one self-contained HTML file comparing runs (opens offline)"
    )
    report.add_argument("run_ids", nargs="+", help="run ids, the baseline first")
    report.add_argument("--out", required=True, help="the .html file to write")
    report.add_argument("--question", default=None, help="the question the report answers")
    report.add_argument("--json", action="store_true", help="print one JSON document")
    report.set_defaults(handler=_cmd_report)

    demo = sub.add_parser(
        "demo",
        help="train feature extraction against fine-tuning on the sample data and write "
        "their report, ready before a demo",
    )
    demo.add_argument("--refresh", action="store_true", help="train again even when prepared")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_class_hash_password(args: argparse.Namespace) -> int:
    from tl_core.classroom.identity import hash_password

    password = _read_password()
    digest = hash_password(password)
    _emit({"teacher_password_hash": digest}, args.json, lambda doc: doc["teacher_password_hash"])
    return EXIT_OK


def _read_password() -> str:
    """The new teacher password: typed twice without echo at a terminal, else the first
    line of stdin (``echo "$PASSWORD" | python -m tl_core class hash-password``)."""
    import getpass

    from tl_core.errors import ConfigError

    if sys.stdin.isatty():
        password = getpass.getpass("Teacher password: ")
        if password and getpass.getpass("Type it again: ") != password:
            raise ConfigError("The two passwords differ. Run the command again and retype it.")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError(
            "Expected a teacher password. Received an empty one. Type it at the "
            'prompt, or pipe it in: echo "$PASSWORD" | python -m tl_core class hash-password'
        )
    return password


def _cmd_class_students(args: argparse.Namespace) -> int:
    from tl_core.classroom.roster import list_students

    students = [{"name": s.name, "joined_at": s.joined_at} for s in list_students()]
    _emit(students, args.json, _describe_students)
    return EXIT_OK


def _describe_students(rows: list[dict[str, Any]]) -> str:
    import time

    if not rows:
        return "No student has joined the class yet."
    joined = [time.strftime("%Y-%m-%d %H:%M", time.localtime(r["joined_at"])) for r in rows]
    return "\n".join(f"{r['name']} (joined {when})" for r, when in zip(rows, joined, strict=True))


def _add_class_commands(sub: Any) -> None:
    """``class hash-password`` and ``class students``: setting up and following a class."""
    group = sub.add_parser("class", help="class mode: the teacher password's hash, the roster")
    commands = group.add_subparsers(
        dest="class_command", metavar="command", required=True, parser_class=_Parser
    )

    hashing = commands.add_parser(
        "hash-password",
        help="read a teacher password (no echo at a terminal, else one line of stdin) and "
        "print its scrypt hash, for teacher_password_hash in the [class] section of "
        ".streamlit/secrets.toml or TL_TEACHER_PASSWORD_HASH",
    )
    hashing.add_argument("--json", action="store_true", help="print one JSON document")
    hashing.set_defaults(handler=_cmd_class_hash_password)

    students = commands.add_parser("students", help="list the students who joined the class")
    students.add_argument("--json", action="store_true", help="print one JSON document")
    students.set_defaults(handler=_cmd_class_students)


def _lesson_doc(lesson: Any) -> dict[str, Any]:
    return {
        "lesson_id": lesson.lesson_id,
        "title": lesson.title,
        "is_open": lesson.is_open,
        "builtin": lesson.builtin,
        "dataset_id": lesson.settings.get("dataset_id"),
        "arms": [variant.name for variant in lesson.variants],
        "question": lesson.question,
    }


def _describe_lesson(doc: dict[str, Any]) -> str:
    state = "open" if doc["is_open"] else "closed"
    arms = f", {len(doc['arms'])} arms" if doc["arms"] else ""
    return f"{doc['lesson_id']:<24} {state:<6} {doc['title']} (dataset {doc['dataset_id']}{arms})"


def _cmd_lesson_list(args: argparse.Namespace) -> int:
    from tl_core.classroom.lessons import list_lessons

    rows = [_lesson_doc(lesson) for lesson in list_lessons()]
    _emit(
        rows,
        args.json,
        lambda rs: (
            "\n".join(map(_describe_lesson, rs))
            or "No lessons yet: create one from a "
            "built-in with `python -m tl_core lesson create fe-vs-ft --dataset ID`."
        ),
    )
    return EXIT_OK


def _cmd_lesson_create(args: argparse.Namespace) -> int:
    from tl_core.classroom.lessons import lesson_from_builtin

    lesson = lesson_from_builtin(
        None, args.builtin, dataset_id=args.dataset, backbone=args.backbone, weights=args.weights
    )
    _emit(_lesson_doc(lesson), args.json, lambda doc: f"created {_describe_lesson(doc)}")
    return EXIT_OK


def _cmd_lesson_export(args: argparse.Namespace) -> int:
    from tl_core.classroom.lessons import export_lesson
    from tl_core.fsutil import write_text_atomic

    text = export_lesson(args.lesson_id)
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        write_text_atomic(Path(args.out), text + "\n")
    return EXIT_OK


def _cmd_lesson_import(args: argparse.Namespace) -> int:
    from tl_core.classroom.lessons import import_lesson
    from tl_core.errors import ConfigError

    try:
        text = Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the lesson file {args.file!r} ({exc.strerror}). Check the path."
        ) from exc
    lesson = import_lesson(None, text, dataset_id=args.dataset)
    _emit(_lesson_doc(lesson), args.json, lambda doc: f"imported {_describe_lesson(doc)}")
    return EXIT_OK


def _cmd_lesson_open(args: argparse.Namespace) -> int:
    from tl_core.classroom.lessons import open_lesson

    lesson = open_lesson(None, args.lesson_id, not args.close)
    _emit(_lesson_doc(lesson), args.json, _describe_lesson)
    return EXIT_OK


def _add_lesson_commands(sub: Any) -> None:
    """``lesson list|create|export|import|open``: lessons for a class or a self-learner."""
    from tl_core.classroom.lessons import BUILTIN_IDS

    group = sub.add_parser(
        "lesson", help="lessons: list, create from a built-in, export, import, open or close"
    )
    commands = group.add_subparsers(
        dest="lesson_command", metavar="command", required=True, parser_class=_Parser
    )

    listing = commands.add_parser("list", help="every lesson: id, open or closed, title")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=_cmd_lesson_list)

    create = commands.add_parser("create", help="a closed lesson from a built-in one")
    create.add_argument("builtin", choices=BUILTIN_IDS, help="the built-in lesson")
    create.add_argument("--dataset", required=True, help="the dataset id the lesson trains on")
    create.add_argument("--backbone", default="mobilenet_v2", help="backbone id")
    create.add_argument(
        "--weights", default="imagenet", choices=("imagenet", "none"), help="starting weights"
    )
    create.add_argument("--json", action="store_true", help="print one JSON document")
    create.set_defaults(handler=_cmd_lesson_create)

    export = commands.add_parser("export", help="a lesson as JSON, to import elsewhere")
    export.add_argument("lesson_id", help="the lesson's id (see `lesson list`)")
    export.add_argument("--out", help="file to write (default: stdout)")
    export.set_defaults(handler=_cmd_lesson_export)

    load = commands.add_parser("import", help="add an exported lesson (closed)")
    load.add_argument("file", help="the JSON file `lesson export` wrote")
    load.add_argument("--dataset", help="bind it to this dataset id (default: the file's)")
    load.add_argument("--json", action="store_true", help="print one JSON document")
    load.set_defaults(handler=_cmd_lesson_import)

    opening = commands.add_parser("open", help="open a lesson to the class (or --close it)")
    opening.add_argument("lesson_id", help="the lesson's id (see `lesson list`)")
    opening.add_argument("--close", action="store_true", help="close it instead")
    opening.add_argument("--json", action="store_true", help="print one JSON document")
    opening.set_defaults(handler=_cmd_lesson_open)


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from tl_core.errors import WeightsUnavailable
    from tl_core.models.weights import fetch_weights

    if bool(args.ids) == args.all:
        raise _UsageError("name the backbones to fetch (e.g. mobilenet_v2 resnet50) or --all")
    from tl_core.engine.device import quiet_tensorflow

    # Downloads go through Keras: its start-up chatter stays off stderr.
    quiet_tensorflow()
    rows = fetch_weights(None if args.all else args.ids)
    _emit(
        rows,
        args.json,
        lambda rs: "\n".join(
            f"{r['id']:<20} {r['status']}" + (f": {r['reason']}" if r["reason"] else "") for r in rs
        ),
    )
    failed = [row["id"] for row in rows if row["status"] == "failed"]
    if failed:
        raise WeightsUnavailable(
            f"Could not fetch the ImageNet weights of {', '.join(failed)}: {_first_reason(rows)}"
        )
    return EXIT_OK


def _first_reason(rows: list[dict[str, Any]]) -> str:
    """The first failure's reason, which says what to do (the others are alike)."""
    return next(row["reason"] for row in rows if row["status"] == "failed")


def _cmd_weights_import(args: argparse.Namespace) -> int:
    from tl_core.models.weights import import_weights

    result = import_weights(Path(args.file))
    _emit(
        result,
        args.json,
        lambda r: (
            f"imported {r['file']} for {r['id']} ({r['bytes']:,} bytes, "
            + ("hash checked" if r["hash_ok"] else "Keras publishes no hash for it")
            + (", replacing the file that was there)" if r["replaced"] else ")")
        ),
    )
    return EXIT_OK


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from tl_core.models.weights import weights_status

    rows = weights_status()
    _emit(rows, args.json, _describe_weights)
    return EXIT_OK


def _describe_weights(rows: list[dict[str, Any]]) -> str:
    health = {True: "hash ok", False: "WRONG HASH", None: "no published hash"}
    return "\n".join(
        f"{r['id']:<20} {r['input_size']:>4}px {r['file']:<72} "
        + (f"{r['bytes']:>12,} bytes  {health[r['hash_ok']]}" if r["present"] else "missing")
        for r in rows
    )


def _add_weights_commands(sub: Any) -> None:
    """``weights fetch|import|list``: ImageNet weights for a machine that will be offline."""
    group = sub.add_parser(
        "weights", help="ImageNet weights in the Keras cache: fetch, import a copy, list"
    )
    commands = group.add_subparsers(
        dest="weights_command", metavar="command", required=True, parser_class=_Parser
    )

    fetch = commands.add_parser(
        "fetch", help="download the ImageNet weights of backbones (while online), hash-checked"
    )
    fetch.add_argument("ids", nargs="*", help="backbone ids, e.g. mobilenet_v2 resnet50")
    fetch.add_argument("--all", action="store_true", help="every registered backbone")
    fetch.add_argument("--json", action="store_true", help="print one JSON document")
    fetch.set_defaults(handler=_cmd_weights_fetch)

    add = commands.add_parser(
        "import", help="add a copied weights file to the Keras cache after checking its hash"
    )
    add.add_argument("file", help="the file, under the name Keras publishes it with")
    add.add_argument("--json", action="store_true", help="print one JSON document")
    add.set_defaults(handler=_cmd_weights_import)

    listing = commands.add_parser(
        "list", help="every backbone's weights file: present, size, hash ok"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=_cmd_weights_list)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m tl_core``."""
    parser = _Parser(prog="python -m tl_core", description="Transfer-learning studio core.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = sub.add_parser(
        "inspect-data", help="validate a labeled image zip and store a normalised copy"
    )
    inspect.add_argument("archive", help="zip with a folder per class (optionally train/, val/)")
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    inspect.set_defaults(handler=_cmd_inspect_data)

    backbones = sub.add_parser("backbones", help="list the registered backbones")
    backbones.add_argument("--json", action="store_true", help="print one JSON document")
    backbones.set_defaults(handler=_cmd_backbones)

    blocks = sub.add_parser("blocks", help="list a backbone's blocks, input side first")
    blocks.add_argument("backbone", help="backbone id, e.g. mobilenet_v2")
    blocks.add_argument("--weights", default="none", help="none (default), imagenet or a path")
    blocks.add_argument("--image-size", type=int, default=None, help="input side in pixels")
    blocks.add_argument("--json", action="store_true", help="print one JSON document")
    blocks.set_defaults(handler=_cmd_blocks)

    train = sub.add_parser("train", help="train a classifier in the foreground")
    train.add_argument("archive", help="the labeled image zip")
    train.add_argument("--backbone", required=True, help="backbone id, e.g. mobilenet_v2")
    train.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a path")
    train.add_argument("--image-size", type=int, default=None, help="input side in pixels")
    freeze = train.add_mutually_exclusive_group()
    freeze.add_argument("--trainable", help="comma-separated block names that train")
    train.add_argument(
        "--preset", choices=("feature-extraction", "fine-tune", "full"), help="freeze preset"
    )
    freeze.add_argument("--unfreeze-last", type=int, help="train the top N blocks (0: none)")
    train.add_argument("--train-bn", action="store_true", help="let BatchNorm train (pitfall)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--schedule", choices=("constant", "cosine", "plateau"), default="constant")
    train.add_argument("--two-phase", action="store_true", help="head first, then fine-tune")
    train.add_argument("--fine-tune-epochs", type=int, default=5)
    train.add_argument("--fine-tune-blocks", type=int, default=2)
    train.add_argument("--patience", type=int, default=None, help="early stopping patience")
    train.add_argument(
        "--augment",
        default="flip",
        help="comma-separated: flip,rotation,zoom,contrast; none for no augmentation",
    )
    train.add_argument("--label-smoothing", type=float, default=0.0)
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--mixed-precision", action="store_true", help="float16 on a GPU")
    train.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train from activations cached at the frozen boundary where the bottom "
        "blocks are frozen (default on; --no-fast trains on images throughout)",
    )
    train.add_argument("--out", required=True, help="run folder to create")
    train.add_argument("--json", action="store_true", help="print one JSON document")
    train.set_defaults(handler=_cmd_train)

    resume = sub.add_parser("resume", help="continue a stopped or killed run")
    resume.add_argument("run_dir", help="the run folder")
    resume.add_argument("--json", action="store_true", help="print one JSON document")
    resume.set_defaults(handler=_cmd_resume)

    worker = sub.add_parser("worker", help="(internal) train a queued run in this process")
    worker.add_argument("run_id")
    worker.add_argument("--resume", action="store_true")
    worker.add_argument(
        "--batch-size", type=int, default=None, help="override the config's batch size"
    )
    worker.set_defaults(handler=_cmd_worker)

    warm = sub.add_parser(
        "warm-worker",
        help="(internal) import TensorFlow, then train the run named by one line on stdin",
    )
    warm.add_argument("--ready", default=None, help="file to create once the imports are done")
    warm.set_defaults(handler=_cmd_warm_worker)

    scheduler = sub.add_parser("scheduler", help="start queued training jobs (foreground)")
    scheduler.add_argument("--once", action="store_true", help="one pass over the queue, then exit")
    scheduler.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    scheduler.set_defaults(handler=_cmd_scheduler)

    predict = sub.add_parser("predict", help="classify images with a trained run")
    predict.add_argument("run_dir", help="the run folder (holds model.keras)")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top", type=int, default=3, help="probabilities to list per image")
    predict.add_argument(
        "--gradcam", metavar="DIR", help="also write each image's Grad-CAM overlay (PNG) here"
    )
    predict.add_argument("--json", action="store_true", help="print one JSON document")
    predict.set_defaults(handler=_cmd_predict)

    evaluate = sub.add_parser("evaluate", help="metrics of a trained run on its validation split")
    evaluate.add_argument("run_dir", help="the run folder (holds model.keras)")
    evaluate.add_argument(
        "--max-misclassified", type=int, default=50, help="misclassified images to list"
    )
    evaluate.add_argument("--refresh", action="store_true", help="ignore a cached eval.json")
    evaluate.add_argument("--json", action="store_true", help="print one JSON document")
    evaluate.set_defaults(handler=_cmd_evaluate)

    embed = sub.add_parser(
        "embeddings", help="validation images in 2-D, before and after training (PCA)"
    )
    embed.add_argument("run_dir", help="the run folder (holds model.keras)")
    embed.add_argument("--max-images", type=int, default=300, help="images to project")
    embed.add_argument("--tsne", action="store_true", help="t-SNE instead of PCA (slower)")
    embed.add_argument("--json", action="store_true", help="print one JSON document")
    embed.set_defaults(handler=_cmd_embeddings)

    compare = sub.add_parser("compare", help="settings that differ and results, side by side")
    compare.add_argument("run_ids", nargs="+", help="two or more run ids")
    compare.add_argument("--json", action="store_true", help="print one JSON document")
    compare.set_defaults(handler=_cmd_compare)

    ladder = sub.add_parser(
        "ladder", help="queue runs that differ only in how many top blocks train"
    )
    ladder.add_argument("run_id", help="the run whose settings every rung copies")
    ladder.add_argument(
        "--depths", help="comma-separated top-block counts, e.g. 0,1,2,4 (default: suggested)"
    )
    ladder.add_argument("--json", action="store_true", help="print one JSON document")
    ladder.set_defaults(handler=_cmd_ladder)

    datasize = sub.add_parser(
        "datasize",
        help="queue runs on 10/25/50/100 %% of the training images, pretrained and from scratch",
    )
    datasize.add_argument("run_id", help="the run whose settings every run copies")
    datasize.add_argument(
        "--fractions", help="comma-separated shares of the training images (default 0.1,0.25,0.5,1)"
    )
    datasize.add_argument(
        "--no-scratch", action="store_true", help="queue the pretrained runs only"
    )
    datasize.add_argument("--json", action="store_true", help="print one JSON document")
    datasize.set_defaults(handler=_cmd_datasize)

    export = sub.add_parser(
        "export", help="export a trained model (.keras, .tflite, or its backbone's weights)"
    )
    export.add_argument("run_dir", help="the run folder (holds model.keras)")
    export.add_argument(
        "--format",
        required=True,
        choices=("keras", "tflite", "backbone"),
        help="keras or tflite: the classifier; backbone: its trained backbone as a "
        ".weights.h5 file, to start other runs from (--weights PATH)",
    )
    export.add_argument("--out", required=True, help="file to write; labels.json goes next to it")
    export.add_argument("--int8", action="store_true", help="int8-quantize the TFLite model")
    export.add_argument("--json", action="store_true", help="print one JSON document")
    export.set_defaults(handler=_cmd_export)

    _add_show_commands(sub)
    _add_class_commands(sub)
    _add_lesson_commands(sub)
    _add_weights_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 internal failure, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command in _TENSORFLOW_COMMANDS:
            from tl_core.engine.device import quiet_tensorflow

            quiet_tensorflow()
        return args.handler(args)
    except _UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except TLError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted by the user.\n")
        return EXIT_INTERNAL
    except Exception as exc:
        log.debug("internal failure", exc_info=True)
        sys.stderr.write(
            f"error: internal failure ({type(exc).__name__}: {exc}). This is a bug in "
            "tl_core, not in your input; set TL_DEBUG=1 to see the traceback and report it.\n"
        )
        if _debug():
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL


def _debug() -> bool:
    import os

    return os.environ.get("TL_DEBUG", "") not in ("", "0")
