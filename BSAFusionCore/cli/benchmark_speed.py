"""``bsafusion benchmark-speed``: milliseconds per slice of the yardstick, the published form and
our inference engine (fp32, and bf16 where the device runs it), and the engine's deviation."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from ..inference import fuse_batch
from ..model import autocast_for, cpu_supports_bf16, model_from_network, resolve_device
from ..network import BSAFusionNet

log = logging.getLogger(__name__)

YARDSTICK = Path(__file__).resolve().parents[2] / "Testing" / "yardstick.py"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark-speed", help="time inference per slice",
        description="Times, on random weights and images, ms per slice of: the yardstick (a plain reading of "
                    "NETWORK_SPEC.md, Testing/yardstick.py, when the source tree is there); the network as "
                    "published (every output, discriminator included); our inference engine in fp32 and, where "
                    "the device runs it natively, bf16; fuse_batch, the API. Also the engine's largest deviation "
                    "from the published form (fused image, displacement in px).",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.set_defaults(func=run_benchmark)


def _interleaved_ms(
    cases: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds of each case per repeat, the cases run in turn within each repeat, so that the
    slow drift of a shared machine touches them alike (one untimed warm-up run each first)."""
    for fn in cases.values():
        fn()  # warm-up: allocations, kernel selection, bias maps
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _yardstick() -> ModuleType | None:
    """``Testing/yardstick.py`` of the source tree, if this package runs from one."""
    if not YARDSTICK.is_file():
        return None
    spec = importlib.util.spec_from_file_location("bsafusion_yardstick", YARDSTICK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _under_bf16(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    def run() -> object:
        with autocast_for(device, "bf16"):
            return fn()

    return run


def _bf16_runs(device: torch.device) -> bool:
    return cpu_supports_bf16() if device.type == "cpu" else device.type == "cuda"


def run_benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = model_from_network(BSAFusionNet(), device, {"image_size": args.size}, precision="fp32")
    yardstick = _yardstick()
    weights = None
    if yardstick is not None:
        weights = {k: v.to(device) for k, v in yardstick.state_of(model.net.reference_state_dict()).items()}
    bf16 = _bf16_runs(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; image {args.size}x{args.size}; ms per slice, median of {args.repeats} interleaved runs"
          + ("" if yardstick else "; yardstick: n/a (Testing/yardstick.py is not beside the package)"))
    print(f"{'batch':>5} {'yardstick':>10} {'published':>10} {'engine fp32':>12} {'engine bf16':>12} "
          f"{'fuse_batch':>11} {'engine vs yardstick':>20} {'max |d fused|':>14} {'max |d flow| px':>16}")
    with torch.inference_mode():
        for batch in args.batch_sizes:
            fixed = torch.rand(batch, 1, args.size, args.size, device=device)
            moving = torch.rand(batch, 1, args.size, args.size, device=device)
            engine = lambda f=fixed, m=moving: model.engine(f, m, with_discriminator=False)  # noqa: E731
            cases: dict[str, Callable[[], object]] = {
                "published": lambda f=fixed, m=moving: model.net(f, m),
                "engine": engine,
                "api": lambda f=fixed, m=moving: fuse_batch(model, f, m),
            }
            if weights is not None:
                cases["yardstick"] = lambda f=fixed, m=moving: yardstick.forward(f, m, weights)
            if bf16:
                cases["bf16"] = _under_bf16(engine, device)
            times = _interleaved_ms(cases, args.repeats, device)
            per_slice = {key: _median(values) / batch for key, values in times.items()}
            ratios = [y / e for y, e in zip(times.get("yardstick", []), times["engine"], strict=False)]
            published, ours = model.net(fixed, moving), engine()
            fused_deviation = (published.fused - ours.fused).abs().max().item()
            flow_deviation = (published.flow - ours.flow).abs().max().item()
            cell = {key: f"{value:.1f}" for key, value in per_slice.items()}
            ratio = f"{_median(ratios):.2f}x" if ratios else "n/a"  # the median of the per-repeat ratios
            print(f"{batch:>5} {cell.get('yardstick', 'n/a'):>10} {cell['published']:>10} {cell['engine']:>12} "
                  f"{cell.get('bf16', 'n/a'):>12} {cell['api']:>11} {ratio:>20} {fused_deviation:>14.2e} "
                  f"{flow_deviation:>16.2e}")
    return 0
