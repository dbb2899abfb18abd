"""``bsafusion batch MANIFEST.csv --output-dir OUT``: fuse many volume pairs, one folder per case."""

from __future__ import annotations

import argparse
import re

from ..errors import InputError
from .common import add_memory_argument, add_model_arguments, terminal_progress
from .volume_options import add_volume_arguments, volume_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="fuse the volume pairs of a CSV manifest",
        description="Fuse every case of MANIFEST.csv (columns case, fixed, moving and optionally "
        "modality, weights, prealign, ct_window; paths relative to the manifest) into "
        "OUTPUT_DIR/CASE/. Finished cases are skipped; a failed case is reported and the rest go on. "
        "--weights/--modality apply to rows without their own.",
    )
    parser.add_argument("manifest", help="CSV manifest")
    parser.add_argument("--output-dir", required=True, help="one sub-folder per case is written here")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo the cases that are already done (each case folder is replaced whole)")
    add_model_arguments(parser)
    parser.add_argument("--shard", default="1/1", metavar="I/N",
                        help="process only shard I of N (rows I, I+N, ...), for N parallel workers")
    add_volume_arguments(parser)
    add_memory_argument(parser)
    parser.set_defaults(func=run)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) to ``(I, N)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard must be I/N with 1 <= I <= N, got {text!r}")
    return int(match[1]), int(match[2])


def run(args: argparse.Namespace) -> int:
    """0 when every case of the shard succeeded or was done before, 1 when any failed."""
    from ..volumes.batch import BatchRun, read_manifest, run_batch

    batch = BatchRun(
        modality=args.modality, weights=args.weights, options=volume_options(args), device=args.device,
        shard=parse_shard(args.shard), overwrite=args.overwrite, max_memory_gb=args.max_memory,
    )
    with terminal_progress() as progress:
        status = run_batch(read_manifest(args.manifest), args.output_dir, batch, progress)
    return 1 if status["failed"] else 0
