"""``bsafusion import-reference``: convert an authors' checkpoint to our weights format."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ..modality_guess import guess_modality
from ..options import MODALITIES
from ..weights import import_reference

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-reference", help="convert an authors' BSAFusion_*.pkl to .safetensors",
        description="Read an authors' checkpoint without executing code (weights_only) and write our format.",
    )
    parser.add_argument("source", type=Path, help="e.g. BSAFusion_CT.pkl")
    parser.add_argument("destination", type=Path, help="e.g. BSAFusion_CT.safetensors")
    parser.add_argument("--modality", type=str.upper, choices=MODALITIES,
                        help="recorded in the metadata (default: guessed from the file name)")
    parser.add_argument("--fp16", action="store_true", help="store half precision (half the size)")
    parser.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    modality = args.modality or guess_modality(Path(args.source).stem)
    meta = import_reference(args.source, args.destination, modality=modality,
                            dtype=torch.float16 if args.fp16 else torch.float32)
    log.info("wrote %s (modality %s, sha256 %s)", args.destination, modality, meta["sha256"][:12])
    return 0
