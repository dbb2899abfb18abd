"""The GPU checks of docs/BENCHMARKS.md in one call (a lent GPU is there for minutes at a time).

    OUT=/tmp/out python Testing/gpu/speed_check.py [--device cuda] [--size 256] [--slices 200]

Writes ``$OUT/speed_check.json`` (and prints it): the device's name; the published form and the
inference engine on the reference fixture against its expected outputs (the engine's bound: 1e-3
on images, 1e-2 px on the displacement); the bf16 and fp16 autocast probes on the example pair; ms
per slice at batch 1, 16 and 64 for the published form and the engine in fp32, bf16 and fp16; a
generated X x Y x slices volume pair end to end (wall time, model time, peak memory). Tested on the
CPU with ``--device cpu --size 64 --slices 8 --batches 1 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # Testing/, for benchmark_volume

from benchmark_volume import generated_volume  # noqa: E402

from BSAFusionCore.examples import example_pair  # noqa: E402
from BSAFusionCore.model import PRECISIONS, autocast_for, model_from_network, resolve_device  # noqa: E402
from BSAFusionCore.network import BSAFusionNet  # noqa: E402
from BSAFusionCore.network.folded import fold_for_inference  # noqa: E402
from BSAFusionCore.volumes import fuse_volumes  # noqa: E402
from BSAFusionCore.weights import load_network  # noqa: E402

FIXTURE = HERE.parents[2] / "shared" / "reference" / "fixture"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        fn()
        synchronise(device)
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def fixture_check(device: torch.device) -> dict:
    """Max deviations of the published form and the engine from the fixture's expected outputs."""
    if not FIXTURE.is_dir():
        return {"skipped": f"{FIXTURE} is absent"}
    expected = np.load(FIXTURE / "expected.npz")
    net = load_network(FIXTURE / "reference_checkpoint.pkl").net
    net = net.to(device).eval()
    fixed, moving = (torch.from_numpy(expected[k]).to(device) for k in ("fixed", "moving"))
    flow = expected["flow"]
    _, _, h, w = flow.shape
    i, j = np.mgrid[0:h, 0:w]
    inside = ((j + flow[:, 0] >= 0) & (j + flow[:, 0] <= w - 1) & (i + flow[:, 1] >= 0) & (i + flow[:, 1] <= h - 1))
    result = {}
    for name, model in (("published", net), ("engine", fold_for_inference(net))):
        with torch.inference_mode():
            out = model(fixed, moving, with_discriminator=False)
        result[name] = {
            "fused": float(np.abs(out.fused.cpu().numpy() - expected["fused"]).max()),
            "warped_inside": float(
                np.abs(out.warped_moving.cpu().numpy() - expected["warped_moving"])[:, 0][inside].max()),
            "flow_px": float(np.abs(out.flow.cpu().numpy() - flow).max()),
        }
    return result


def precision_probes(model) -> dict:
    """99th percentiles of |mixed - fp32| on the example pair, fused and displacement (px)."""
    mri, ct, _ = example_pair(model.image_size)
    fixed = torch.from_numpy(mri)[None, None].to(model.device)
    moving = torch.from_numpy(ct)[None, None].to(model.device)
    probes = {}
    with torch.inference_mode():
        exact = model.engine(fixed, moving, with_discriminator=False)
        for precision in ("bf16", "fp16"):
            try:
                with autocast_for(model.device, precision):
                    mixed = model.engine(fixed, moving, with_discriminator=False)
            except RuntimeError as error:  # a precision the device does not run
                probes[precision] = {"error": str(error).splitlines()[0]}
                continue
            probes[precision] = {
                "fused_p99": torch.quantile((exact.fused - mixed.fused.float()).abs().flatten(), 0.99).item(),
                "flow_px_p99": torch.quantile((exact.flow - mixed.flow.float()).abs().flatten(), 0.99).item(),
            }
    return probes


def speeds(model, size: int, batches: list[int], repeats: int) -> list[dict]:
    device = model.device
    rows = []
    for batch in batches:
        fixed = torch.rand(batch, 1, size, size, device=device)
        moving = torch.rand(batch, 1, size, size, device=device)
        row = {"batch": batch}
        published = lambda f=fixed, m=moving: model.net(f, m)  # noqa: E731
        engine = lambda f=fixed, m=moving: model.engine(f, m, with_discriminator=False)  # noqa: E731
        with torch.inference_mode():
            row["published_ms_per_slice"] = median_ms(published, device, repeats) / batch
            for precision in PRECISIONS:
                with autocast_for(device, precision):
                    try:
                        row[f"engine_{precision}_ms_per_slice"] = median_ms(engine, device, repeats) / batch
                    except RuntimeError as error:
                        row[f"engine_{precision}_ms_per_slice"] = f"error: {str(error).splitlines()[0]}"
        rows.append(row)
    return rows


def volume_run(model, size: int, slices: int) -> dict:
    shape = (size, size, slices)
    fixed = generated_volume(shape, (200.0 / size, 200.0 / size, 150.0 / slices), ct=False)
    moving = generated_volume(shape, (190.0 / size, 205.0 / size, 160.0 / slices), ct=True)
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    start = time.perf_counter()
    result = fuse_volumes(fixed, moving, model, prealign="none", batch_size=64 if model.device.type == "cuda" else 8)
    seconds = time.perf_counter() - start
    figures = {"shape": list(shape), "seconds": round(seconds, 2), "slices": result.record["slices"],
               "slice_loop_seconds": result.record["timings"]["slices_s"],
               "ms_per_slice": round(1000 * seconds / slices, 1)}
    if model.device.type == "cuda":
        figures["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(model.device) / 2**20)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    out = Path(os.environ.get("OUT", "."))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = model_from_network(BSAFusionNet(), device, {"image_size": args.size}, precision="fp32")
    report = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {torch.get_num_threads()} threads"),
        "torch": torch.__version__,
        "fixture": fixture_check(device),
        "precision_probes": precision_probes(model),
        "speed": speeds(model, args.size, args.batches, args.repeats),
        "volume": volume_run(model, args.size, args.slices),
    }
    text = json.dumps(report, indent=2)
    (out / "speed_check.json").write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
