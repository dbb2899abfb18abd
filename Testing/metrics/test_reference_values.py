"""Our fusion metrics against the values of an independent implementation (../shared/reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BSAFusionCore.metrics import fusion_metrics
from BSAFusionCore.metrics.ssim import ssim_map

REL = 1e-4


def _gray_uint8(path: Path) -> np.ndarray:
    """The PNG as 8-bit grayscale; RGB with ITU-R 601 luma in integer arithmetic, as the reference did."""
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int64)
    if pixels.ndim == 3:
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        pixels = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return pixels.astype(np.float64)


def _fused(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The reference's fused images, rounded to 8 bits: "mean", "max" or "weighted_<w>A"."""
    if kind == "mean":
        fused = (a + b) / 2
    elif kind == "max":
        fused = np.maximum(a, b)
    elif kind.startswith("weighted_") and kind.endswith("A"):
        weight = float(kind.removeprefix("weighted_").removesuffix("A"))
        fused = weight * a + round(1 - weight, 6) * b  # 0.3, not 1 - 0.7 = 0.30000000000000004
    else:
        raise ValueError(f"unknown fused image {kind!r}")
    return np.round(fused)


def _entries(shared_dir: Path) -> list[dict]:
    path = shared_dir / "reference" / "fusion_metric_values.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())


def _triple(shared_dir: Path, entry: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = shared_dir / "data"
    a, b = _gray_uint8(data / entry["a"]), _gray_uint8(data / entry["b"])
    return a / 255.0, b / 255.0, _fused(a, b, entry["fused"]) / 255.0


def _flat_weights(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lambda of Q_S where both local variances vanish, as the reference's arithmetic gives it, and where.

    Its local variance of a flat region is exactly 0 only when the region is black; elsewhere it is
    rounding noise (about -7e-12 at 255). So lambda is 0.5 between two black regions, 0 where only
    A is black, 1 where only B is, and undefined (NaN) where neither is.
    """
    map_a, map_b = ssim_map(a * 255, fused * 255), ssim_map(b * 255, fused * 255)
    flat = (map_a.var_x + map_b.var_x) == 0
    window = np.full((11, 11), 1.0)
    black_a = ndimage.correlate(a, window, mode="constant")[5:-5, 5:-5] == 0
    black_b = ndimage.correlate(b, window, mode="constant")[5:-5, 5:-5] == 0
    weights = np.select([black_a & black_b, black_a, black_b], [0.5, 0.0, 1.0], default=np.nan)
    return weights, flat


def _qs_with_flat_weights(a: np.ndarray, b: np.ndarray, fused: np.ndarray, weights: np.ndarray,
                          flat: np.ndarray) -> float:
    map_a, map_b = ssim_map(a * 255, fused * 255), ssim_map(b * 255, fused * 255)
    with np.errstate(invalid="ignore"):
        weight = np.where(flat, weights, map_a.var_x / (map_a.var_x + map_b.var_x))
    return float(np.mean(weight * map_a.ssim + (1 - weight) * map_b.ssim))


def test_fusion_metrics_match_the_reference(shared_dir):
    entries = _entries(shared_dir)
    assert len(entries) >= 12
    for entry in entries:
        a, b, fused = _triple(shared_dir, entry)
        ours = fusion_metrics(a, b, fused)
        label = f"{entry['a']} {entry['fused']}"
        for name in ("Qcv", "Qvif", "Qssim"):
            assert ours[name] == pytest.approx(entry[name], rel=REL), f"{name} {label}"
        assert ours["Qabf"] == pytest.approx(entry["Qabf"], rel=REL), f"Qabf {label}"
        weights, flat = _flat_weights(a, b, fused)
        assert not np.isnan(weights[flat]).any(), f"{label}: flat regions where neither source is black"
        if (weights[flat] == 0.5).all():
            # Our Q_S follows the definition (lambda = 0.5 wherever both variances are 0) ...
            assert ours["Qs"] == pytest.approx(entry["Qs"], rel=REL), f"Qs {label}"
        else:
            # ... which the reference reproduces only between black regions (PET: A black, B flat 255).
            assert _qs_with_flat_weights(a, b, fused, weights, flat) == pytest.approx(entry["Qs"], rel=REL)
            assert ours["Qs"] == pytest.approx(entry["Qs"], rel=3e-3), f"Qs {label}"
