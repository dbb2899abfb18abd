"""Local SSIM maps and the two SSIM-based fusion metrics, Q_S (Piella & Heijmans) and Q_SSIM."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .filters import filter_valid, gaussian_kernel_1d

_WINDOW = gaussian_kernel_1d(11, 1.5)
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


class SSIMMap(NamedTuple):
    """The SSIM map of (x, y) on the valid region, with the local variances of x and y."""

    ssim: np.ndarray
    var_x: np.ndarray
    var_y: np.ndarray


def ssim_map(x: np.ndarray, y: np.ndarray) -> SSIMMap:
    """Wang et al.'s SSIM with an 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), L = 255."""
    mu_x, mu_y = filter_valid(x, _WINDOW), filter_valid(y, _WINDOW)
    var_x = filter_valid(x * x, _WINDOW) - mu_x * mu_x
    var_y = filter_valid(y * y, _WINDOW) - mu_y * mu_y
    cov = filter_valid(x * y, _WINDOW) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    )
    return SSIMMap(ssim, var_x, var_y)


def qs_255(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Piella's Q_S: SSIM(A, F) and SSIM(B, F) weighted per pixel by the sources' local variances."""
    map_a, map_b = ssim_map(a, fused), ssim_map(b, fused)
    total = map_a.var_x + map_b.var_x
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(total == 0, 0.5, map_a.var_x / total)
    return float(np.mean(weight * map_a.ssim + (1.0 - weight) * map_b.ssim))


def qssim_255(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """SSIM(A, F) + SSIM(B, F), each the mean of the SSIM map (so at most 2)."""
    return float(np.mean(ssim_map(a, fused).ssim) + np.mean(ssim_map(b, fused).ssim))
