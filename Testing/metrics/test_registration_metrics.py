"""Registration accuracy metrics on fields and images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from BSAFusionCore.errors import InputError
from BSAFusionCore.metrics import (
    endpoint_error,
    folding_fraction,
    jacobian_determinant,
    registration_metrics,
    similarity_metrics,
)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((32, 40))


def test_similarity_of_an_image_with_itself(image):
    assert similarity_metrics(image, image) == pytest.approx({"NCC": 1.0, "SSIM": 1.0, "MAE": 0.0})


def test_ncc_ignores_gain_and_offset_but_not_sign(image):
    assert similarity_metrics(0.5 * image + 0.2, image)["NCC"] == pytest.approx(1.0)
    assert similarity_metrics(1.0 - image, image)["NCC"] == pytest.approx(-1.0)


def test_mae_is_the_mean_absolute_difference(image):
    assert similarity_metrics(np.clip(image + 0.1, 0, 2), image)["MAE"] == pytest.approx(0.1)


def test_endpoint_error_mean_and_95th_percentile():
    truth = np.zeros((10, 10, 2))
    estimate = np.zeros((10, 10, 2))
    estimate[..., 0] = 3.0
    estimate[..., 1] = 4.0  # |(3, 4)| = 5 everywhere ...
    estimate[0, :5] = 0.0  # ... except 5 of 100 pixels, which are exact
    errors = endpoint_error(estimate, truth)
    assert errors["EPE"] == pytest.approx(5.0 * 95 / 100)
    assert errors["EPE95"] == pytest.approx(5.0)


def test_jacobian_of_an_affine_displacement():
    rows, cols = np.mgrid[0:16, 0:20].astype(float)
    field = np.stack([0.2 * cols + 0.1 * rows, -0.3 * rows + 0.05 * cols], axis=2)
    # x -> x + d(x) has the Jacobian [[1.2, 0.1], [0.05, 0.7]] (d/dx, d/dy of each component).
    expected = 1.2 * 0.7 - 0.1 * 0.05
    np.testing.assert_allclose(jacobian_determinant(field), expected, rtol=1e-12)
    assert folding_fraction(field) == 0.0


def test_folding_counts_pixels_where_the_mapping_reverses():
    cols = np.mgrid[0:8, 0:10][1].astype(float)
    field = np.zeros((8, 10, 2))
    field[..., 0] = -2.0 * cols  # x -> -x: the determinant is -1 everywhere
    assert folding_fraction(field) == 1.0
    assert folding_fraction(np.zeros((8, 10, 2))) == 0.0


def test_registration_metrics_combines_everything(image):
    zero = np.zeros((*image.shape, 2))
    with_truth = registration_metrics(image, image, zero, zero + 1.0)
    assert set(with_truth) == {"NCC", "SSIM", "MAE", "EPE", "EPE95", "Folding"}
    assert with_truth["EPE"] == pytest.approx(np.sqrt(2))
    assert "EPE" not in registration_metrics(image, image, zero)


@pytest.mark.parametrize(
    "call",
    [
        lambda: similarity_metrics(np.zeros((20, 20)), np.zeros((20, 21))),
        lambda: similarity_metrics(np.zeros((8, 8)), np.zeros((8, 8))),
        lambda: endpoint_error(np.zeros((4, 4, 2)), np.zeros((4, 5, 2))),
        lambda: endpoint_error(np.zeros((4, 4, 3)), np.zeros((4, 4, 3))),
        lambda: folding_fraction(np.full((4, 4, 2), np.nan)),
    ],
)
def test_bad_input_is_refused(call):
    with pytest.raises(InputError):
        call()
