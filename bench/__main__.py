"""``python -m bench class|fast|faults|ingest|runner|trainer|ui [options]``: run one bench.

It prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench import classroom, fast, faults, ingest, runner, trainer, ui

BENCHES = {
    "class": classroom,
    "fast": fast,
    "faults": faults,
    "ingest": ingest,
    "runner": runner,
    "trainer": trainer,
    "ui": ui,
}


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its JSON result on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    for name, module in BENCHES.items():
        module.add_arguments(sub.add_parser(name, help=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    result = BENCHES[args.name].run(args)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
