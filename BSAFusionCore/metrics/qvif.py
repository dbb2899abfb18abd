"""Q_VIF (VIFF), the visual-information-fidelity fusion metric of Han et al. (2013). Higher is better."""

from __future__ import annotations

import numpy as np

from .filters import filter_valid, gaussian_kernel_1d

_NOISE_VARIANCE = 0.005 * 255.0**2
_EPS = 1e-10
_C = 1e-7
_SCALE_WEIGHTS = np.array([1.0, 0.0, 0.15, 1.0]) / 2.15
_WINDOWS = (17, 9, 5, 3)
MIN_SIDE = 41
"""The smallest image side for which the fourth (coarsest) scale keeps a pixel."""


def _windows() -> list[np.ndarray]:
    return [gaussian_kernel_1d(size, size / 5.0) for size in _WINDOWS]


def _scale_terms(reference: np.ndarray, distorted: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-pixel (information kept, information available, gain) of one source at one scale."""
    mu1, mu2 = filter_valid(reference, window), filter_valid(distorted, window)
    var1 = np.maximum(filter_valid(reference * reference, window) - mu1 * mu1, 0.0)
    var2 = np.maximum(filter_valid(distorted * distorted, window) - mu2 * mu2, 0.0)
    cov = filter_valid(reference * distorted, window) - mu1 * mu2

    gain = cov / (var1 + _EPS)
    residual = var2 - gain * cov
    flat1 = var1 < _EPS
    gain[flat1] = 0.0
    residual[flat1] = var2[flat1]
    var1[flat1] = 0.0
    flat2 = var2 < _EPS
    gain[flat2] = 0.0
    residual[flat2] = 0.0
    negative = gain < 0
    residual[negative] = var2[negative]
    gain[negative] = 0.0
    residual = np.maximum(residual, _EPS)

    kept = np.log10(1.0 + gain**2 * var1 / (residual + _NOISE_VARIANCE))
    available = np.log10(1.0 + var1 / _NOISE_VARIANCE)
    return kept, available, gain


def qvif_255(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q_VIF of float64 images on the 0-255 scale."""
    per_scale = []
    for scale, window in enumerate(_windows()):
        if scale > 0:
            a, b, fused = (filter_valid(x, window)[::2, ::2] for x in (a, b, fused))
        kept_a, avail_a, gain_a = _scale_terms(a, fused, window)
        kept_b, avail_b, gain_b = _scale_terms(b, fused, window)
        use_a = gain_a < gain_b
        kept = np.where(use_a, kept_a, kept_b)
        available = np.where(use_a, avail_a, avail_b)
        per_scale.append((kept + _C).sum() / (available + _C).sum())
    return float(np.dot(_SCALE_WEIGHTS, per_scale))
