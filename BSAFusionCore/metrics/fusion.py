"""The five fusion metrics of the paper on 2D grayscale images in [0, 1] (computed on the 0-255 scale)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .qabf import qabf_255
from .qcv import qcv_255
from .qvif import MIN_SIDE, qvif_255
from .ssim import qs_255, qssim_255

FUSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "Qabf": qabf_255,
    "Qcv": qcv_255,
    "Qvif": qvif_255,
    "Qs": qs_255,
    "Qssim": qssim_255,
}
"""Name -> metric on float64 0-255 images, in the paper's order."""

HIGHER_IS_BETTER = {"Qabf": True, "Qcv": False, "Qvif": True, "Qs": True, "Qssim": True}


def to_255(image: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check a 2D image in [0, 1] and return it as float64 on the 0-255 scale."""
    array = np.asarray(image)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2D grayscale image, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise InputError(f"{name} has shape {array.shape}, expected {shape} like the first source")
    if min(array.shape) < MIN_SIDE:
        raise InputError(f"{name} is {array.shape}: the fusion metrics need both sides >= {MIN_SIDE}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    if array.min() < 0.0 or array.max() > 1.0:
        raise InputError(f"{name} must lie in [0, 1], got [{array.min():.4g}, {array.max():.4g}]")
    scaled = array * 255.0
    # 8-bit data divided by 255 comes back as k +- 1e-13: snap it to k, so that the rounding inside
    # Q_CV does not depend on that noise.
    levels = np.round(scaled)
    return np.where(np.abs(scaled - levels) < 1e-7, levels, scaled)


def _checked(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a255 = to_255(a, "source A")
    return a255, to_255(b, "source B", a255.shape), to_255(fused, "fused image", a255.shape)


def qabf(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q^AB/F (Xydeas & Petrovic 2000); higher is better; NaN when neither source has an edge."""
    return qabf_255(*_checked(a, b, fused))


def qcv(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q_CV (Chen & Varshney 2007); lower is better; NaN when neither source has an edge."""
    return qcv_255(*_checked(a, b, fused))


def qvif(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q_VIF / VIFF (Han et al. 2013); higher is better."""
    return qvif_255(*_checked(a, b, fused))


def qs(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q_S (Piella & Heijmans 2003); higher is better, at most 1."""
    return qs_255(*_checked(a, b, fused))


def qssim(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """SSIM(A, F) + SSIM(B, F); higher is better, at most 2."""
    return qssim_255(*_checked(a, b, fused))


def fusion_metrics(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All five metrics as ``{"Qabf", "Qcv", "Qvif", "Qs", "Qssim"}`` for 2D images in [0, 1]."""
    images = _checked(a, b, fused)
    return {name: metric(*images) for name, metric in FUSION_METRICS.items()}
