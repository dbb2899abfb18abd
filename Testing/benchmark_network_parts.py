"""Milliseconds and GFLOP per 256x256 slice in each part of the inference engine (batch 1, CPU).

Usage: ``python Testing/benchmark_network_parts.py [--threads 2] [--repeats 5]``. Random weights and
images (the time does not depend on them); each part is timed by forward hooks, averaged over the
repeats after one warm-up run. The FLOPs (torch's FlopCounterMode: convolutions and matrix products,
a multiply-add counted as 2) are also given for the published form and the yardstick, whose ratio
to the engine's bounds the speed-up that equally efficient kernels can give.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from BSAFusionCore.model import model_from_network
from BSAFusionCore.network import BSAFusionNet

PARTS = ("encoder", "transfer.classifier", "transfer.transfer", "reg_net", "fusion_net")


def _gflop_by_module(run: Callable[[], object]) -> dict[str, float]:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        run()
    return {name: sum(counts.values()) / 1e9 for name, counts in counter.get_flop_counts().items()}


def _yardstick_gflop(net: BSAFusionNet, fixed: torch.Tensor, moving: torch.Tensor) -> float:
    spec = importlib.util.spec_from_file_location("yardstick", Path(__file__).with_name("yardstick.py"))
    yardstick = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(yardstick)
    weights = yardstick.state_of(net.reference_state_dict())
    return _gflop_by_module(lambda: yardstick.forward(fixed, moving, weights))["Global"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = BSAFusionNet()
    engine = model_from_network(net, "cpu").engine
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
    flops = _gflop_by_module(lambda: engine(fixed, moving, with_discriminator=False))
    totals.clear()
    with torch.inference_mode():
        for _ in range(args.repeats):
            start = time.perf_counter()
            engine(fixed, moving, with_discriminator=False)
            whole += time.perf_counter() - start
    published = _gflop_by_module(lambda: net.eval()(fixed, moving))["Global"]
    print(f"CPU, {torch.get_num_threads()} threads; {args.size}x{args.size}, batch 1; mean of {args.repeats}")
    for name in PARTS:
        print(f"{name:>19} {1000 * totals[name] / args.repeats:8.1f} ms {flops[f'BSAFusionNet.{name}']:7.2f} GFLOP")
    print(f"{'whole':>19} {1000 * whole / args.repeats:8.1f} ms {flops['Global']:7.2f} GFLOP")
    yardstick = _yardstick_gflop(net, fixed, moving)
    print(f"published form (every output) {published:.2f} GFLOP, yardstick {yardstick:.2f} GFLOP")


if __name__ == "__main__":
    main()
