"""Filters the fusion metrics share, with MATLAB's semantics (``fspecial``, ``filter2``, ``conv2``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The 3x3 Sobel responses along columns (x) and rows (y), as correlation kernels.
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.copy()


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """The 1D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` (normalised to sum 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-(x**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def filter_valid(image: np.ndarray, kernel_1d: np.ndarray) -> np.ndarray:
    """``filter2(outer(k, k), image, 'valid')`` for a symmetric separable kernel, on the last two axes."""
    half = (kernel_1d.size - 1) // 2
    out = ndimage.correlate1d(image, kernel_1d, axis=-2, mode="constant")
    out = ndimage.correlate1d(out, kernel_1d, axis=-1, mode="constant")
    rows, cols = out.shape[-2:]
    return out[..., half : rows - half, half : cols - half]


def sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses ``(sx, sy)`` with zero padding (``filter2(..., 'same')``)."""
    sx = ndimage.correlate(image, SOBEL_X, mode="constant")
    sy = ndimage.correlate(image, SOBEL_Y, mode="constant")
    return sx, sy


def block_reduce(values: np.ndarray, block: int, reduce: str) -> np.ndarray:
    """MATLAB ``blkproc`` over ``block`` x ``block`` tiles (zero-padded at the far edges): sum or mean."""
    rows, cols = values.shape
    pad_rows, pad_cols = -rows % block, -cols % block
    padded = np.pad(values, ((0, pad_rows), (0, pad_cols)))
    tiles = padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block)
    total = tiles.sum(axis=(1, 3))
    return total if reduce == "sum" else total / (block * block)
