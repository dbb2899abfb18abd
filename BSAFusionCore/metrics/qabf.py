"""Q^AB/F, the gradient-based fusion quality of Xydeas & Petrovic (2000). Higher is better."""

from __future__ import annotations

import numpy as np

from .filters import sobel

_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8


def _strength_and_angle(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx, sy = sobel(image)
    strength = np.hypot(sx, sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
    return strength, angle


def _edge_preservation(
    g_src: np.ndarray, a_src: np.ndarray, g_fused: np.ndarray, a_fused: np.ndarray
) -> np.ndarray:
    """Per-pixel Q^XF: how much of the source's edge strength and orientation the fused image keeps."""
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(g_src > g_fused, g_fused / g_src, g_src / g_fused)
    # As in the reference implementation: where the strengths are equal the ratio is replaced by g_F.
    relative = np.where(g_src == g_fused, 1.0, relative)
    orientation = 1.0 - np.abs(a_src - a_fused) / (np.pi / 2)
    q_strength = _TG / (1.0 + np.exp(_KG * (relative - _DG)))
    q_orientation = _TA / (1.0 + np.exp(_KA * (orientation - _DA)))
    return q_strength * q_orientation


def qabf_255(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """Q^AB/F of float64 images on the 0-255 scale; NaN when neither source has any edge."""
    g_a, a_a = _strength_and_angle(a)
    g_b, a_b = _strength_and_angle(b)
    g_f, a_f = _strength_and_angle(fused)
    weight = float((g_a + g_b).sum())
    if weight == 0.0:
        return float("nan")
    q_af = _edge_preservation(g_a, a_a, g_f, a_f)
    q_bf = _edge_preservation(g_b, a_b, g_f, a_f)
    return float((q_af * g_a + q_bf * g_b).sum() / weight)
