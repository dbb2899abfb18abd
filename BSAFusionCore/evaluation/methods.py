"""The compared methods: each turns an :class:`EvalCase` into fused and warped images, a displacement
and the seconds it took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..color import rgb_to_ycbcr
from ..inference import BatchFusion, fuse_batch
from ..model import FusionModel
from .bspline import BSplineSettings, displacement_of, register_bspline, warp_with
from .testset import EvalCase, channels_first, channels_last


@dataclass(frozen=True)
class MethodOutput:
    """A method's results on one case, on the case's grid."""

    fused: np.ndarray  # like the moving image: (H, W) or (H, W, 3) RGB
    warped: np.ndarray  # the moving image after the method's registration
    displacement: np.ndarray  # (H, W, 2) pixels
    seconds: float


Method = Callable[[FusionModel, EvalCase], MethodOutput]


def luminance(image: np.ndarray) -> np.ndarray:
    """Grayscale as is; RGB as the Y channel of the published YCbCr conversion."""
    if image.ndim == 2:
        return image
    return channels_last(rgb_to_ycbcr(channels_first(image))[:, :1])


def _fuse(model: FusionModel, fixed: np.ndarray, moving: np.ndarray, zero_displacement: bool,
          refine: bool = False) -> BatchFusion:
    return fuse_batch(model, channels_first(fixed), channels_first(moving), zero_displacement=zero_displacement,
                      refine=refine)


def _output(out: BatchFusion, seconds: float) -> MethodOutput:
    displacement = out.displacement[0].permute(1, 2, 0).numpy().astype(np.float64)
    return MethodOutput(channels_last(out.fused), channels_last(out.warped), displacement, seconds)


def single_stage(model: FusionModel, case: EvalCase) -> MethodOutput:
    """The BSAFusion network registering and fusing in one pass."""
    start = time.perf_counter()
    out = _fuse(model, case.fixed, case.moving, zero_displacement=False)
    return _output(out, time.perf_counter() - start)


def single_stage_refined(model: FusionModel, case: EvalCase) -> MethodOutput:
    """The network's registration refined on the pair (``BSAFusionCore.refinement``), then the fusion."""
    start = time.perf_counter()
    out = _fuse(model, case.fixed, case.moving, zero_displacement=False, refine=True)
    return _output(out, time.perf_counter() - start)


def no_registration(model: FusionModel, case: EvalCase) -> MethodOutput:
    """The fusion branch on the unaligned images (zero displacement)."""
    start = time.perf_counter()
    out = _fuse(model, case.fixed, case.moving, zero_displacement=True)
    return _output(out, time.perf_counter() - start)


def bspline_then_fusion(settings: BSplineSettings | None = None) -> Method:
    """SimpleITK B-spline registration (Mattes MI) of the moving image, then the fusion branch on it."""

    def run(model: FusionModel, case: EvalCase) -> MethodOutput:
        start = time.perf_counter()
        transform = register_bspline(case.fixed, luminance(case.moving), settings)
        warped = warp_with(transform, case.moving)
        out = _fuse(model, case.fixed, warped, zero_displacement=True)
        seconds = time.perf_counter() - start
        return MethodOutput(channels_last(out.fused), warped, displacement_of(transform, case.fixed.shape), seconds)

    return run


SINGLE_STAGE = "BSAFusion (single stage)"
SINGLE_STAGE_REFINED = "BSAFusion + refinement"
NO_REGISTRATION = "no registration + fusion"
BSPLINE_FUSION = "B-spline (SimpleITK) + fusion"


def benchmark_methods(settings: BSplineSettings | None = None, refine: bool = False) -> dict[str, Method]:
    """The methods of ``bsafusion benchmark``, by display name (the refined network too with ``refine``)."""
    methods = {
        NO_REGISTRATION: no_registration,
        BSPLINE_FUSION: bspline_then_fusion(settings),
        SINGLE_STAGE: single_stage,
    }
    return methods | ({SINGLE_STAGE_REFINED: single_stage_refined} if refine else {})
