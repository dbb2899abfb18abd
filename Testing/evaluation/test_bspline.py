"""The classical baseline's registration on a shifted phantom."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from BSAFusionCore.errors import InputError
from BSAFusionCore.evaluation.bspline import BSplineSettings, displacement_of, register_bspline, warp_with
from BSAFusionCore.metrics import similarity_metrics
from BSAFusionCore.network.warp import warp_image


@pytest.fixture(scope="module")
def registered(make_phantom):
    label = make_phantom(5)
    moving = np.roll(label, (1, 3), axis=(0, 1))  # moving(i, j) = label(i - 1, j - 3)
    transform = register_bspline(label, moving)
    return label, moving, transform


def test_registration_undoes_a_shift(registered):
    label, moving, transform = registered
    warped = warp_with(transform, moving)
    assert similarity_metrics(warped, label)["MAE"] < 0.5 * similarity_metrics(moving, label)["MAE"]
    displacement = displacement_of(transform, label.shape)
    inside = label > 0.1
    # warped(i, j) = moving(i + d1, j + d0) = label(i + d1 - 1, j + d0 - 3): d is about (3, 1).
    assert np.median(displacement[inside, 0]) == pytest.approx(3.0, abs=0.5)
    assert np.median(displacement[inside, 1]) == pytest.approx(1.0, abs=0.5)


def test_displacement_follows_the_warp_convention(registered):
    _label, moving, transform = registered
    displacement = displacement_of(transform, moving.shape)
    ours = warp_image(
        torch.from_numpy(moving.astype(np.float32))[None, None],
        torch.from_numpy(np.moveaxis(displacement, 2, 0).astype(np.float32))[None],
    )[0, 0].numpy()
    interior = (slice(4, -4), slice(4, -4))  # border handling differs (zero vs border value)
    np.testing.assert_allclose(ours[interior], warp_with(transform, moving)[interior], atol=1e-4)


def test_colour_images_are_warped_per_channel(registered):
    _label, moving, transform = registered
    rgb = np.stack([moving, moving * 0.5, 1.0 - moving], axis=2)
    warped = warp_with(transform, rgb)
    assert warped.shape == rgb.shape
    np.testing.assert_allclose(warped[..., 1], warp_with(transform, moving * 0.5), atol=1e-6)


def test_mismatched_images_are_refused():
    with pytest.raises(InputError):
        register_bspline(np.zeros((32, 32)), np.zeros((32, 30)))
    with pytest.raises(InputError, match="per level"):
        register_bspline(np.zeros((32, 32)), np.zeros((32, 32)), BSplineSettings(shrink_factors=(2, 1)))
