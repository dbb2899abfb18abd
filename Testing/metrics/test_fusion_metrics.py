"""The five fusion metrics on cases whose values can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from BSAFusionCore.errors import InputError
from BSAFusionCore.metrics import fusion_metrics, qabf, qcv, qs, qssim, qvif
from BSAFusionCore.metrics.qvif import MIN_SIDE, qvif_255

METRICS = {"Qabf": qabf, "Qcv": qcv, "Qvif": qvif, "Qs": qs, "Qssim": qssim}


def _textured(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random image with edges in every direction, in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.5 + 0.25 * np.sin(2 * np.pi * (3 * x + rng.random())) * np.cos(2 * np.pi * (2 * y + rng.random()))
    image[size // 4 : size // 2, size // 3 : 2 * size // 3] += 0.2
    return np.clip(image + 0.05 * rng.random((size, size)), 0, 1)


@pytest.fixture(scope="module")
def sources() -> tuple[np.ndarray, np.ndarray]:
    return _textured(1), _textured(2)


def test_fusion_metrics_returns_the_five_metrics_in_order(sources):
    a, b = sources
    values = fusion_metrics(a, b, (a + b) / 2)
    assert list(values) == ["Qabf", "Qcv", "Qvif", "Qs", "Qssim"]
    for name, value in values.items():
        assert value == pytest.approx(METRICS[name](a, b, (a + b) / 2), rel=1e-12)


def test_identical_images_give_the_ideal_values(sources):
    a = sources[0]
    values = fusion_metrics(a, a, a)
    assert values["Qssim"] == pytest.approx(2.0, abs=1e-12)
    assert values["Qs"] == pytest.approx(1.0, abs=1e-12)
    assert values["Qcv"] == 0.0
    assert values["Qvif"] == pytest.approx(1.0, abs=1e-9)
    # Equal strength and orientation everywhere. The orientation sigmoid sits at its ideal argument 1;
    # VIFB's strength term takes g_F (>= 1 for 8-bit edges) as the ratio at ties, so Q_g lies between
    # its value at ratio 1 and T_g.
    orientation = 0.9879 / (1 + math.exp(-22 * 0.2))
    at_ratio_one = 0.9994 / (1 + math.exp(-15 * 0.5)) * orientation
    assert at_ratio_one <= values["Qabf"] <= 0.9994 * orientation


def test_the_metrics_are_symmetric_in_the_two_sources(sources):
    a, b = sources
    fused = np.maximum(a, b)
    forward, swapped = fusion_metrics(a, b, fused), fusion_metrics(b, a, fused)
    for name in forward:
        assert swapped[name] == pytest.approx(forward[name], rel=1e-12), name


def test_fused_equal_to_one_source(sources):
    a, b = sources
    with_a = fusion_metrics(a, b, a)
    # SSIM(A, A) = 1, so Qssim = 1 + SSIM(B, A), and Qs lies between SSIM(B, A) and 1.
    ssim_ba = qssim(b, b, a) / 2
    assert with_a["Qssim"] == pytest.approx(1.0 + ssim_ba, rel=1e-12)
    assert ssim_ba < with_a["Qs"] < 1.0
    assert with_a["Qcv"] > 0.0


def test_degrading_the_fused_image_is_penalised(sources):
    a, b = sources
    good = np.clip((a + b) / 2, 0, 1)
    noise = np.random.default_rng(3).normal(0, 0.1, a.shape)
    bad = np.clip(good + noise, 0, 1)
    before, after = fusion_metrics(a, b, good), fusion_metrics(a, b, bad)
    for name in ("Qabf", "Qvif", "Qs", "Qssim"):
        assert after[name] < before[name], name
    assert after["Qcv"] > before["Qcv"]


def test_constant_images():
    a, b, f = (np.full((48, 48), v) for v in (0.2, 0.6, 0.4))
    values = fusion_metrics(a, b, f)
    # Q_CV stretches each image to 0-255 first, so no source has an edge: undefined.
    assert math.isnan(values["Qcv"])
    # No variance: every VIFF scale is (sum of C) / (sum of C) = 1.
    assert values["Qvif"] == pytest.approx(1.0, abs=1e-12)
    # Zero variances: SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    c1 = (0.01 * 255) ** 2

    def luminance(x: float, y: float) -> float:
        x, y = 255 * x, 255 * y
        return (2 * x * y + c1) / (x * x + y * y + c1)

    assert values["Qssim"] == pytest.approx(luminance(0.2, 0.4) + luminance(0.6, 0.4), rel=1e-12)
    # Both variances zero everywhere: lambda = 0.5.
    assert values["Qs"] == pytest.approx((luminance(0.2, 0.4) + luminance(0.6, 0.4)) / 2, rel=1e-12)


def test_qabf_is_undefined_without_source_edges():
    # Black sources have no gradient, not even at the zero-padded frame.
    zeros = np.zeros((48, 48))
    assert math.isnan(qabf(zeros, zeros, np.full((48, 48), 0.5)))


def test_qvif_min_side_is_the_smallest_workable_size():
    rng = np.random.default_rng(0)
    ok = rng.random((MIN_SIDE, MIN_SIDE)) * 255
    assert math.isfinite(qvif_255(ok, ok[::-1], ok.T))
    small = ok[:-1, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        assert math.isnan(qvif_255(small, small[::-1], small.T))


@pytest.mark.parametrize(
    ("a", "b", "f", "message"),
    [
        (np.zeros((48, 48, 3)), np.zeros((48, 48)), np.zeros((48, 48)), "2D"),
        (np.zeros((48, 48)), np.zeros((48, 50)), np.zeros((48, 48)), "shape"),
        (np.zeros((40, 48)), np.zeros((40, 48)), np.zeros((40, 48)), ">= 41"),
        (np.full((48, 48), 1.5), np.zeros((48, 48)), np.zeros((48, 48)), r"\[0, 1\]"),
        (np.zeros((48, 48)), np.full((48, 48), np.nan), np.zeros((48, 48)), "NaN"),
    ],
)
def test_bad_input_is_refused(a, b, f, message):
    with pytest.raises(InputError, match=message):
        fusion_metrics(a, b, f)


def test_inputs_are_not_modified(sources):
    a, b = sources
    fused = (a + b) / 2
    copies = [x.copy() for x in (a, b, fused)]
    fusion_metrics(a, b, fused)
    for original, copy in zip((a, b, fused), copies, strict=True):
        np.testing.assert_array_equal(original, copy)
