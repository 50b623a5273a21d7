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
from typing import Any, NoReturn

from tl_core.errors import TLError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

log = logging.getLogger("tl_core.cli")


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 internal failure, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
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
