"""``bsafusion batch MANIFEST.csv --output-dir OUT``: fuse many volume pairs, one folder per case."""

from __future__ import annotations

import argparse

from ..volumes.batch import run_batch
from ..volumes.command import add_volume_arguments
from .common import add_memory_argument, add_model_arguments


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
    parser.set_defaults(func=run_batch)
