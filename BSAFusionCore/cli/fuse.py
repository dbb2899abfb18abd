"""``bsafusion fuse``: register and fuse a pair of 2D images."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import check_output_folder, staged_folder
from ..images import is_2d_image_file, read_image, write_image
from ..inference import fuse_images
from ..memory import check_2d_memory, file_image_info
from ..model import check_model_modality, load_model, resolve_device
from ..options import DEFAULT_PREALIGN_2D
from ..prealign import describe_transform
from .common import (
    add_memory_argument,
    add_model_arguments,
    modality_of,
    run_record,
    terminal_progress,
    write_json,
)
from .volume_options import ALSO_FOR_2D, add_volume_arguments, given_as_flags, volume_options

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fuse", help="register and fuse an MRI and a CT/PET/SPECT image",
        description="Register the moving image to the fixed MRI and fuse them. 2D images (PNG, JPEG, TIFF, BMP) "
                    "give fused.png, warped.png and displacement.npy ((H, W, 2) float32 pixels: [..., 0] along "
                    "columns, [..., 1] along rows; warped[i, j] = moving(j + d0, i + d1); --prealign included).",
    )
    parser.add_argument("--fixed", required=True, type=Path, help="the MRI")
    parser.add_argument("--moving", required=True, type=Path, help="the CT, PET or SPECT (grayscale or RGB)")
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="written complete or not at all; it must be new or empty unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the whole content of an existing --output-dir (no earlier file stays)")
    add_memory_argument(parser)
    add_model_arguments(parser)
    add_volume_arguments(parser)
    parser.set_defaults(func=run_fuse)


def run_fuse(args: argparse.Namespace) -> int:
    if is_2d_image_file(args.fixed) and is_2d_image_file(args.moving):
        return fuse_2d(args)
    from ..volumes.run import fuse_volume_files

    with terminal_progress() as progress:
        fuse_volume_files(
            args.fixed, args.moving, args.output_dir, modality=args.modality, weights=args.weights,
            options=volume_options(args), device=args.device, overwrite=args.overwrite,
            max_memory_gb=args.max_memory, progress=progress,
        )
    return 0


def fuse_2d(args: argparse.Namespace) -> int:
    volume_only = given_as_flags(volume_options(args), leave_out=ALSO_FOR_2D)
    if volume_only:
        raise InputError(f"{' '.join(volume_only)}: volume options, which do not apply to 2D images (leave them out)")
    check_output_folder(args.output_dir, args.overwrite)
    resolve_device(args.device)
    info = file_image_info(args.fixed), file_image_info(args.moving)
    if None not in info:  # from the headers, before reading the pixels
        (size, _, _), (_, channels, _) = info
        check_2d_memory(size[1], size[0], 3 if channels >= 3 else 1, args.max_memory)
    fixed, moving = read_image(args.fixed), read_image(args.moving)
    if fixed.ndim == 3:
        fixed = fixed.mean(axis=2)  # an MRI saved as RGB
    model = load_model(args.weights or modality_of(args), device=args.device)
    check_model_modality(model, args.modality)
    with staged_folder(args.output_dir, args.overwrite) as out:
        seconds = _fuse_into(out, fixed, moving, model, args)
    log.info("wrote fused.png, warped.png, displacement.npy and fusion.json to %s (%.2f s)", args.output_dir, seconds)
    return 0


def _fuse_into(out: Path, fixed: np.ndarray, moving: np.ndarray, model, args: argparse.Namespace) -> float:
    start = time.perf_counter()
    result = fuse_images(fixed, moving, model, prealign=args.prealign or DEFAULT_PREALIGN_2D,
                         max_memory_gb=args.max_memory, zero_displacement=args.fuse_only, refine=args.refine)
    seconds = time.perf_counter() - start
    write_image(out / "fused.png", result.fused)
    write_image(out / "warped.png", result.warped)
    np.save(out / "displacement.npy", result.displacement.astype(np.float32))
    write_json(out / "fusion.json", run_record(
        fixed=str(args.fixed), moving=str(args.moving), weights=model.source, device=str(model.device),
        model=model.metadata, seconds=round(seconds, 4), fuse_only=args.fuse_only, refine=args.refine,
        prealignment=describe_transform(result.prealignment),
        displacement="pixels, [..., 0] along columns (x), [..., 1] along rows (y); the pre-alignment included",
    ))
    return seconds
