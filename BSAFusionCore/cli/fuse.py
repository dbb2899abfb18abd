"""``bsafusion fuse``: register and fuse a pair of 2D images."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from ..files import atomic_output
from ..images import is_2d_image_file, read_image, write_image
from ..inference import fuse_images, load_model
from ..volumes.command import add_volume_arguments
from .common import add_model_arguments, run_record, write_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fuse", help="register and fuse an MRI and a CT/PET/SPECT image",
        description="Register the moving image to the fixed MRI and fuse them. 2D images (PNG, JPEG, TIFF, BMP) "
                    "give fused.png, warped.png and displacement.npy ((H, W, 2) float32 pixels: [..., 0] along "
                    "columns, [..., 1] along rows; warped[i, j] = moving(j + d0, i + d1)).",
    )
    parser.add_argument("--fixed", required=True, type=Path, help="the MRI")
    parser.add_argument("--moving", required=True, type=Path, help="the CT, PET or SPECT (grayscale or RGB)")
    parser.add_argument("--output-dir", required=True, type=Path)
    add_model_arguments(parser)
    add_volume_arguments(parser)
    parser.set_defaults(func=run_fuse)


def run_fuse(args: argparse.Namespace) -> int:
    if is_2d_image_file(args.fixed) and is_2d_image_file(args.moving):
        return fuse_2d(args)
    from ..volumes.command import run_volume_fuse

    return run_volume_fuse(args)


def fuse_2d(args: argparse.Namespace) -> int:
    fixed, moving = read_image(args.fixed), read_image(args.moving)
    if fixed.ndim == 3:
        fixed = fixed.mean(axis=2)  # an MRI saved as RGB
    model = load_model(args.weights or args.modality, device=args.device)
    start = time.perf_counter()
    result = fuse_images(fixed, moving, model)
    seconds = time.perf_counter() - start
    out = args.output_dir
    write_image(out / "fused.png", result.fused)
    write_image(out / "warped.png", result.warped)
    with atomic_output(out / "displacement.npy") as tmp, tmp.open("wb") as f:
        np.save(f, result.displacement.astype(np.float32))
    write_json(out / "fusion.json", run_record(
        fixed=str(args.fixed), moving=str(args.moving), weights=model.source, device=str(model.device),
        model=model.metadata, seconds=round(seconds, 4),
        displacement="pixels, [..., 0] along columns (x), [..., 1] along rows (y)",
    ))
    log.info("wrote fused.png, warped.png, displacement.npy and fusion.json to %s (%.2f s)", out, seconds)
    return 0
