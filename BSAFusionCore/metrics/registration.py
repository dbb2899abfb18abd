"""Registration accuracy: similarity of the warped image to the aligned label, displacement errors, folding.

Displacements are ``(H, W, 2)`` arrays in pixels, channel 0 along columns (x) and channel 1 along rows
(y); the mapping they describe is ``x -> x + d(x)`` (the warped image at ``x`` samples the moving
image at ``x + d(x)``).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .ssim import ssim_map

_SSIM_MIN_SIDE = 11


def _image_pair(warped: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    warped, label = np.asarray(warped, dtype=np.float64), np.asarray(label, dtype=np.float64)
    if warped.ndim != 2 or warped.shape != label.shape:
        raise InputError(f"warped {warped.shape} and label {label.shape} must be 2D images of one shape")
    if min(warped.shape) < _SSIM_MIN_SIDE:
        raise InputError(f"images of shape {warped.shape} are too small: SSIM needs sides >= 11")
    if not (np.isfinite(warped).all() and np.isfinite(label).all()):
        raise InputError("warped or label image contains NaN or infinite values")
    return warped, label


def _displacement(field: np.ndarray, name: str) -> np.ndarray:
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 3 or field.shape[2] != 2:
        raise InputError(f"{name} must be an (H, W, 2) displacement, got shape {field.shape}")
    if not np.isfinite(field).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return field


def ncc(warped: np.ndarray, label: np.ndarray) -> float:
    """Global normalised cross-correlation (Pearson) of two images; NaN when one is constant."""
    x, y = _image_pair(warped, label)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def similarity_metrics(warped: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """NCC, SSIM (mean map, 0-255 scale) and MAE (on [0, 1]) of the warped image against the label."""
    x, y = _image_pair(warped, label)
    return {
        "NCC": ncc(x, y),
        "SSIM": float(ssim_map(x * 255.0, y * 255.0).ssim.mean()),
        "MAE": float(np.abs(x - y).mean()),
    }


def endpoint_error(displacement: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean and 95th percentile of the per-pixel endpoint error ``|d - d_true|`` in pixels."""
    d, t = _displacement(displacement, "displacement"), _displacement(truth, "ground-truth displacement")
    if d.shape != t.shape:
        raise InputError(f"displacement {d.shape} and ground truth {t.shape} differ in shape")
    error = np.linalg.norm(d - t, axis=2)
    return {"EPE": float(error.mean()), "EPE95": float(np.percentile(error, 95))}


def jacobian_determinant(displacement: np.ndarray) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + d(x)`` per pixel (central differences)."""
    d = _displacement(displacement, "displacement")
    if min(d.shape[:2]) < 2:
        raise InputError(f"displacement {d.shape} needs at least 2 pixels along each axis")
    dx_drow, dx_dcol = np.gradient(d[..., 0])
    dy_drow, dy_dcol = np.gradient(d[..., 1])
    return (1.0 + dx_dcol) * (1.0 + dy_drow) - dx_drow * dy_dcol


def folding_fraction(displacement: np.ndarray) -> float:
    """Fraction of pixels where the mapping folds (Jacobian determinant <= 0)."""
    return float((jacobian_determinant(displacement) <= 0).mean())


def registration_metrics(
    warped: np.ndarray,
    label: np.ndarray,
    displacement: np.ndarray,
    truth: np.ndarray | None = None,
) -> dict[str, float]:
    """Similarity to the label, folding, and (given a ground truth) endpoint errors, in one dict."""
    result = similarity_metrics(warped, label)
    if truth is not None:
        result.update(endpoint_error(displacement, truth))
    result["Folding"] = folding_fraction(displacement)
    return result
