"""The paper's losses on inputs with known values."""

from __future__ import annotations

import math

import torch

from BSAFusionCore.training.losses import (
    flow_supervision_loss,
    registration_loss,
    roughness,
    smoothness_loss,
    sobel,
    soft_cross_entropy,
    ssim_loss,
)


def test_soft_cross_entropy() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # Row 0: -log(1/2); row 1: -log(1/4) against target [0, 1].
    expected = (math.log(2) + math.log(4)) / 2
    assert math.isclose(float(soft_cross_entropy(logits, (0.0, 1.0))), expected, rel_tol=1e-6)
    assert math.isclose(float(soft_cross_entropy(torch.zeros(3, 2), (0.5, 0.5))), math.log(2), rel_tol=1e-6)


def test_ssim_loss_and_registration_loss() -> None:
    image = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(ssim_loss(image, image)) < 1e-5
    assert float(registration_loss(image, image)) < 1e-5
    assert float(ssim_loss(image, 1 - image)) > 1.0


def test_roughness_of_a_ramp() -> None:
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    flow = torch.stack((2 * x, 0 * y)).unsqueeze(0)  # dx = 2 on channel 0 only
    # mean(dx^2) over both channels = (4 + 0) / 2, mean(dy^2) = 0; divided by 3.
    assert math.isclose(float(roughness(flow)), 2 / 3, rel_tol=1e-6)
    assert float(roughness(torch.ones(1, 2, 8, 8) * 5)) == 0


def test_smoothness_weights_levels_by_powers_of_ten() -> None:
    _, x = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    rough = torch.stack((x, x)).unsqueeze(0)  # r = 1/3
    flat = torch.zeros(1, 2, 4, 4)
    levels = [flat] * 5
    only_level_2 = [flat, rough, flat, flat, flat]
    value = smoothness_loss(only_level_2, levels, flat)
    assert math.isclose(float(value), 1e-3 / 3, rel_tol=1e-5)
    assert math.isclose(float(smoothness_loss(levels, levels, rough)), 1 / 3, rel_tol=1e-6)


def test_sobel_is_sum_of_absolute_gradients() -> None:
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    image = (3 * x - 2 * y).view(1, 1, 8, 8)
    # Sobel of a ramp: 8 * slope along each axis, inside the image.
    inner = sobel(image)[..., 1:-1, 1:-1]
    torch.testing.assert_close(inner, torch.full_like(inner, 8 * 3 + 8 * 2))


def test_flow_supervision_is_the_mean_endpoint_error() -> None:
    true_flow = torch.zeros(2, 2, 4, 4)
    flow = torch.zeros(2, 2, 4, 4)
    flow[:, 0] = 3.0
    flow[:, 1] = 4.0  # every pixel 5 px off
    assert math.isclose(float(flow_supervision_loss(flow, true_flow)), 5.0, rel_tol=1e-6)
    assert float(flow_supervision_loss(true_flow, true_flow)) == 0
