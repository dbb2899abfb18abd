"""Q_CV, the human-perception-based fusion metric of Chen & Varshney (2007). Lower is better."""

from __future__ import annotations

import numpy as np

from .filters import block_reduce, sobel

_BLOCK = 16
_ALPHA = 5.0


def _rescale_255(image: np.ndarray) -> np.ndarray:
    """Stretch to 0-255 and round, as the reference does; a constant image becomes zeros."""
    low, high = image.min(), image.max()
    if high == low:
        return np.zeros_like(image)
    return np.round((image - low) / (high - low) * 255.0)


def mannos_sakrison_csf(rows: int, cols: int) -> np.ndarray:
    """The Mannos-Sakrison contrast sensitivity on MATLAB's centred ``freqspace`` grid."""

    def freqspace(n: int) -> np.ndarray:
        return (np.arange(n) - n // 2) * (2.0 / n)

    u = freqspace(cols)[None, :] * (cols / 8.0)
    v = freqspace(rows)[:, None] * (rows / 8.0)
    r = np.sqrt(u**2 + v**2)
    return 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))


def _saliency(image: np.ndarray) -> np.ndarray:
    sx, sy = sobel(image)
    return block_reduce(np.hypot(sx, sy) ** _ALPHA, _BLOCK, "sum")


def _filtered_distortion(difference: np.ndarray, csf_uncentred: np.ndarray) -> np.ndarray:
    filtered = np.fft.ifft2(np.fft.fft2(difference) * csf_uncentred)
    return block_reduce(np.real(filtered) ** 2, _BLOCK, "mean")


def qcv_255(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q_CV of float64 images on the 0-255 scale; NaN when neither source has any edge."""
    a, b, fused = _rescale_255(a), _rescale_255(b), _rescale_255(fused)
    saliency_a, saliency_b = _saliency(a), _saliency(b)
    total = float((saliency_a + saliency_b).sum())
    if total == 0.0:
        return float("nan")
    csf = np.fft.ifftshift(mannos_sakrison_csf(*fused.shape))
    distortion_a = _filtered_distortion(a - fused, csf)
    distortion_b = _filtered_distortion(b - fused, csf)
    return float((saliency_a * distortion_a + saliency_b * distortion_b).sum() / total)
