"""The ``bsafusion`` command: one sub-command per module listed in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import BSAFusionError

# Each module defines ``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMANDS = [
    "fuse",
    "import_reference",
    "demo",
    "benchmark_speed",
    "train",
    "batch",
    "evaluate",
    "benchmark",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bsafusion",
        description="BSAFusion: registration and fusion of unaligned MRI + CT/PET/SPECT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BSAFusionError as error:
        logging.getLogger("bsafusion").error("%s", error)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("bsafusion").error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
