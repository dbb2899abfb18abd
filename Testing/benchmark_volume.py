"""Time and peak memory of the volume pipeline on a generated pair of any size.

    python Testing/benchmark_volume.py --shape 512 512 300 [--weights FILE] [--batch-size 8]

Without ``--weights`` a randomly initialised network is used: the speed does not depend on the
weights. Prints one JSON line: wall and CPU ms per slice (all slices, empty ones included),
pipeline seconds and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time

import numpy as np
import SimpleITK as sitk
import torch

from BSAFusionCore.model import load_model, model_from_network
from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.options import PREALIGN_MODES
from BSAFusionCore.volumes import fuse_volumes


def generated_volume(shape: tuple[int, int, int], spacing: tuple[float, float, float], ct: bool) -> sitk.Image:
    """An int16 ellipsoid 'head' with a brighter core, built slice by slice to keep memory low."""
    nx, ny, nz = shape
    volume = np.empty((nz, ny, nx), dtype=np.int16)
    y, x = np.ogrid[-1.0 : 1.0 : ny * 1j, -1.0 : 1.0 : nx * 1j]
    background, outer, inner = (-1000, 1000, 40) if ct else (0, 300, 800)
    for k, z in enumerate(np.linspace(-1.0, 1.0, nz)):
        r2 = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.9) ** 2
        volume[k] = np.where(r2 < 0.6, inner, np.where(r2 < 0.75, outer, background))
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(-0.5 * n * s for n, s in zip(shape, spacing, strict=True)))
    return image


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 200), metavar=("X", "Y", "Z"))
    parser.add_argument("--weights", default=None, help="a weights file (default: a random network)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prealign", default="none", choices=PREALIGN_MODES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    shape = tuple(args.shape)
    fixed = generated_volume(shape, (200.0 / shape[0], 200.0 / shape[1], 150.0 / shape[2]), ct=False)
    moving = generated_volume(shape, (190.0 / shape[0], 205.0 / shape[1], 160.0 / shape[2]), ct=True)
    if args.weights:
        model = load_model(args.weights, device=args.device)
    else:
        torch.manual_seed(0)
        model = model_from_network(BSAFusionNet(), device=args.device)
    before = peak_rss_mib()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    result = fuse_volumes(fixed, moving, model, prealign=args.prealign, batch_size=args.batch_size)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    summary = {
        "shape": list(shape),
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "working_size": model.image_size,
        "slices": result.record["slices"],
        "seconds": round(seconds, 1),
        "ms_per_slice": round(1000 * seconds / shape[2], 1),
        "cpu_ms_per_slice": round(1000 * cpu / shape[2], 1),
        "peak_rss_mib_before_pipeline": round(before),
        "peak_rss_mib": round(peak_rss_mib()),
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
