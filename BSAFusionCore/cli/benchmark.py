"""``bsafusion benchmark``: no registration, B-spline + fusion and the single-stage model on the same cases."""

from __future__ import annotations

import argparse

from ..evaluation import BSplineSettings, benchmark_methods
from .evaluate import add_testset_arguments, run_and_write


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="compare the model with no registration and with SimpleITK B-spline + fusion",
        description="Run three methods on the same cases: the fusion branch on the unaligned images, SimpleITK "
                    "multi-resolution B-spline registration (Mattes mutual information) followed by the fusion "
                    "branch, and the single-stage model (with --refine also the model with its registration "
                    "refined on each pair). Writes the files of `bsafusion evaluate`.",
    )
    add_testset_arguments(parser)
    defaults = BSplineSettings()
    parser.add_argument("--bspline-mesh", type=int, default=defaults.mesh_size,
                        help=f"B-spline control grid at the coarsest level (default {defaults.mesh_size})")
    parser.add_argument("--bspline-iterations", type=int, default=defaults.iterations,
                        help=f"optimiser iterations per level (default {defaults.iterations})")
    parser.set_defaults(func=run_benchmark)


def run_benchmark(args: argparse.Namespace) -> int:
    settings = BSplineSettings(mesh_size=args.bspline_mesh, iterations=args.bspline_iterations)
    return run_and_write(args, benchmark_methods(settings, refine=args.refine), "BSAFusion benchmark")
