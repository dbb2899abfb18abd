"""The classical baseline's registration (2D): a translation, then a multi-resolution B-spline, both
maximising Mattes mutual information (SimpleITK)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError


@dataclass(frozen=True)
class BSplineSettings:
    """Registration settings; the defaults were the best of a grid tried on held-out AANLIB CT-MRI
    pairs (docs/evaluation.md)."""

    mesh_size: int = 4  # B-spline control-point grid (cells per side)
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (4.0, 2.0, 1.0)  # pixels
    iterations: int = 50  # L-BFGS-B iterations per level
    coefficient_bound: float = 2.0  # pixels: each control point moves at most this far per axis
    histogram_bins: int = 16


def _image(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))


def _method(settings: BSplineSettings) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetInterpolator(sitk.sitkLinear)
    return method


def _translation(fixed: sitk.Image, moving: sitk.Image, settings: BSplineSettings) -> sitk.Transform:
    method = _method(settings)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 200)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(sitk.TranslationTransform(2), inPlace=True)
    return method.Execute(fixed, moving)


def register_bspline(
    fixed: np.ndarray, moving_gray: np.ndarray, settings: BSplineSettings | None = None
) -> sitk.Transform:
    """The transform mapping fixed pixels into the moving image (both (H, W) in [0, 1])."""
    settings = settings or BSplineSettings()
    if fixed.ndim != 2 or fixed.shape != moving_gray.shape:
        raise InputError(f"B-spline registration needs two 2D images of one shape, got {fixed.shape}, "
                         f"{moving_gray.shape}")
    if len(settings.shrink_factors) != len(settings.smoothing_sigmas):
        raise InputError("shrink_factors and smoothing_sigmas need one entry per level")
    fixed_image, moving_image = _image(fixed), _image(moving_gray)
    bspline = sitk.BSplineTransformInitializer(fixed_image, [settings.mesh_size] * 2, order=3)
    transform = sitk.CompositeTransform([_translation(fixed_image, moving_image, settings), bspline])
    method = _method(settings)
    method.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=settings.iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * settings.iterations,
        costFunctionConvergenceFactor=1e7,
        lowerBound=-settings.coefficient_bound,
        upperBound=settings.coefficient_bound,
    )
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    method.SetInitialTransform(transform, inPlace=True)  # optimises the B-spline, the last transform
    method.Execute(fixed_image, moving_image)
    return transform


def displacement_of(transform: sitk.Transform, shape: tuple[int, int]) -> np.ndarray:
    """The transform as an (H, W, 2) displacement in pixels (x along columns, y along rows)."""
    field = sitk.TransformToDisplacementField(
        transform, sitk.sitkVectorFloat64, [shape[1], shape[0]], [0.0, 0.0], [1.0, 1.0]
    )
    return sitk.GetArrayFromImage(field)


def warp_with(transform: sitk.Transform, moving: np.ndarray) -> np.ndarray:
    """``moving`` (H, W) or (H, W, 3) resampled onto the fixed grid (linear, zero outside)."""
    channels = [moving] if moving.ndim == 2 else [moving[..., c] for c in range(moving.shape[2])]
    warped = []
    for channel in channels:
        image = _image(channel)
        warped.append(sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0)))
    out = warped[0] if moving.ndim == 2 else np.stack(warped, axis=2)
    return np.clip(out, 0.0, 1.0)
