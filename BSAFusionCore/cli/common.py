"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import __version__
from ..files import atomic_output
from ..memory import DEFAULT_MAX_MEMORY_GB
from ..options import MODALITIES
from ..progress import ProgressCallback


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", "--model", dest="weights",
                        help="our .safetensors, an authors' .pkl, or CT/PET/SPECT for the bundled weights "
                             "(default: the bundled weights of --modality)")
    parser.add_argument("--modality", type=str.upper, choices=MODALITIES,
                        help="the moving image's modality (default: that of --weights, else CT)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1, mps")


def modality_of(args: argparse.Namespace) -> str:
    """The --modality given, else CT (the bundled default)."""
    return args.modality or "CT"


def add_memory_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-memory", type=float, default=DEFAULT_MAX_MEMORY_GB, metavar="GB",
        help=f"refuse, before any work, inputs whose estimated memory need exceeds this (default "
        f"{DEFAULT_MAX_MEMORY_GB:g} GB, safe on a 16 GB machine)",
    )


def write_json(path: Path, record: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def run_record(**fields: Any) -> dict[str, Any]:
    """What was run, with versions, for the JSON record beside outputs."""
    return {
        "bsafusion": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
    }


@contextmanager
def terminal_progress() -> Iterator[ProgressCallback]:
    """A tqdm bar on the terminal, driven by a progress callback."""
    with tqdm(total=100, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:

        def update(fraction: float, stage: str) -> None:
            bar.set_description_str(stage, refresh=False)
            bar.update(round(100 * fraction) - bar.n)

        yield update
