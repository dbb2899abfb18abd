"""Training throughput (samples/s) per stage, size and precision, as ``bsafusion train`` runs them.

    python Testing/benchmark_training_speed.py --threads 2 --sizes 128 256 --batch-size 8 --steps 3

Times ``Trainer.train_step`` (deformation, forward, losses, backward, Adam) on generated pairs after
one warm-up step; prints a markdown table for docs/BENCHMARKS.md. On a CUDA machine pass
``--device cuda`` (fp16 is then measured too).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from BSAFusionCore.examples import head_phantom
from BSAFusionCore.options import TRAINING_STAGES
from BSAFusionCore.pairs import PairSample
from BSAFusionCore.training.data import make_batch
from BSAFusionCore.training.trainer import TrainConfig, Trainer, describe_hardware


def _samples(size: int, count: int) -> list[PairSample]:
    mri, ct = head_phantom(size, "MRI"), head_phantom(size, "CT")
    rng = np.random.default_rng(0)
    return [
        PairSample(torch.from_numpy(mri + 0.02 * rng.random(mri.shape, np.float32)).clamp(0, 1)[None],
                   torch.from_numpy(ct)[None], str(i), f"{i}.png")
        for i in range(count)
    ]


def samples_per_second(stage: str, size: int, amp: str, batch: int, steps: int, device: str) -> float:
    """Mean samples/s over ``steps`` optimiser steps after one warm-up step."""
    samples = _samples(size, batch)
    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(run_dir=run_dir, image_size=size, batch_size=batch, stage=stage, amp=amp,
                             flow_supervision=1.0)
        trainer = Trainer(config, samples, [], device=device)
        fixed, label = make_batch(samples, list(range(batch)), None)
        trainer.train_step(fixed, label, torch.Generator(device=trainer.device).manual_seed(0))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for step in range(steps):
            trainer.train_step(fixed, label, torch.Generator(device=trainer.device).manual_seed(step))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=list(TRAINING_STAGES), choices=TRAINING_STAGES)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    amps = ["none", "bf16"] + (["fp16"] if args.device.startswith("cuda") else [])
    print(f"{describe_hardware(torch.device(args.device), 1)}; batch {args.batch_size}, {args.steps} timed steps")
    print("| stage | size | " + " | ".join(f"{a if a != 'none' else 'fp32'} samples/s" for a in amps) + " |")
    print("|---|---|" + "---|" * len(amps))
    for stage in args.stages:
        for size in args.sizes:
            rates = [samples_per_second(stage, size, amp, args.batch_size, args.steps, args.device) for amp in amps]
            print(f"| {stage} | {size} | " + " | ".join(f"{r:.2f}" for r in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
