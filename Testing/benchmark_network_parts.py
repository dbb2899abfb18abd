"""Milliseconds per 256x256 slice spent in each part of the inference engine (batch 1, CPU).

Usage: ``python Testing/benchmark_network_parts.py [--threads 2] [--repeats 5]``. Random weights and
images (the time does not depend on them); each part is timed by forward hooks, averaged over the
repeats after one warm-up run.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from BSAFusionCore.model import model_from_network
from BSAFusionCore.network import BSAFusionNet

PARTS = ("encoder", "transfer.classifier", "transfer.transfer", "reg_net", "fusion_net")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = model_from_network(BSAFusionNet(), "cpu").engine
    totals: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    for name in PARTS:
        module = engine.get_submodule(name)
        module.register_forward_pre_hook(lambda _m, _i, n=name: started.__setitem__(n, time.perf_counter()))
        module.register_forward_hook(
            lambda _m, _i, _o, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - started[n])
        )
    fixed, moving = torch.rand(1, 1, args.size, args.size), torch.rand(1, 1, args.size, args.size)
    whole = 0.0
    with torch.inference_mode():
        engine(fixed, moving, with_discriminator=False)  # warm-up
        totals.clear()
        for _ in range(args.repeats):
            start = time.perf_counter()
            engine(fixed, moving, with_discriminator=False)
            whole += time.perf_counter() - start
    print(f"CPU, {torch.get_num_threads()} threads; {args.size}x{args.size}, batch 1; mean of {args.repeats}")
    for name in PARTS:
        print(f"{name:>19} {1000 * totals[name] / args.repeats:8.1f} ms")
    print(f"{'whole':>19} {1000 * whole / args.repeats:8.1f} ms")


if __name__ == "__main__":
    main()
