"""``bsafusion benchmark-speed``: milliseconds per slice, published-form network vs our engine."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import torch

from ..inference import fuse_batch
from ..model import model_from_network, resolve_device
from ..network import BSAFusionNet

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark-speed", help="time inference per slice",
        description="Times, on random weights and images: the network as published (every output, discriminator "
                    "included) on the whole batch; our inference engine on the whole batch; and fuse_batch, the "
                    "API (which runs the engine slice by slice on the CPU, where that is fastest); and fuse_batch "
                    "without registration (the path of weights that do not register). Also prints how far the "
                    "engine's fused image is from the published one.",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.set_defaults(func=run_benchmark)


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernel selection, bias maps
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def run_benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = model_from_network(BSAFusionNet(), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; image {args.size}x{args.size}; median of {args.repeats}")
    print(f"{'batch':>5} {'published ms/slice':>19} {'engine ms/slice':>16} {'fuse_batch ms/slice':>20} "
          f"{'speed-up':>9} {'fusion only ms/slice':>21} {'max |diff| fused':>17}")
    with torch.inference_mode():
        for batch in args.batch_sizes:
            fixed = torch.rand(batch, 1, args.size, args.size, device=device)
            moving = torch.rand(batch, 1, args.size, args.size, device=device)
            reference = _median_ms(lambda f=fixed, m=moving: model.net(f, m), args.repeats, device) / batch
            engine = _median_ms(lambda f=fixed, m=moving: model.engine(f, m, with_discriminator=False),
                                args.repeats, device) / batch
            api = _median_ms(lambda f=fixed, m=moving: fuse_batch(model, f, m), args.repeats, device) / batch
            fusion_only = _median_ms(lambda f=fixed, m=moving: fuse_batch(model, f, m, zero_displacement=True),
                                     args.repeats, device) / batch
            diff = (model.net(fixed, moving).fused - model.engine(fixed, moving, with_discriminator=False).fused)
            print(f"{batch:>5} {reference:>19.1f} {engine:>16.1f} {api:>20.1f} {reference / api:>8.2f}x "
                  f"{fusion_only:>21.1f} {diff.abs().max().item():>17.2e}")
    return 0
