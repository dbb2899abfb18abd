"""ms per 256 x 256 slice of ``fuse_batch`` with shipped weights, batch 1: as shipped, with the whole network at
``image_size`` (``registration_size`` overridden; not for weights with a fusion network of their own), and fuse only;
interleaved runs, medians.

    python Testing/benchmark_shipped_speed.py --weights CT --threads 2 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import BSAFusionCore as bf
from BSAFusionCore.examples import example_pair
from BSAFusionCore.inference import fuse_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="CT", help="bundled name or weights path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = bf.load_model(args.weights, device="cpu", precision="fp32")
    mri, ct, _ = example_pair(256)
    fixed, moving = torch.from_numpy(mri)[None, None], torch.from_numpy(ct)[None, None]
    calls = {
        f"as shipped (registration {model.registration_size}, fusion {model.image_size})":
            lambda: fuse_batch(model, fixed, moving),
        "fuse only (zero_displacement)": lambda: fuse_batch(model, fixed, moving, zero_displacement=True),
    }
    if model.fusion_net is None:  # weights with a fusion network of their own have no one network to run whole
        whole = bf.model_from_network(model.net, "cpu", {**model.metadata, "registration_size": model.image_size},
                                      precision="fp32")
        calls[f"whole network at {model.image_size}"] = lambda: fuse_batch(whole, fixed, moving)
    for call in calls.values():  # warm-up: first-call allocations and border corrections
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} ms, min {min(values):.1f} ms")


if __name__ == "__main__":
    main()
