"""Random-shape pairs: the same geometry under two unrelated contrasts."""

from __future__ import annotations

import torch

from BSAFusionCore.training.shapes import random_shape_pairs


def _gradient(image: torch.Tensor) -> torch.Tensor:
    return (image.diff(dim=-1)[..., :-1, :].abs() + image.diff(dim=-2)[..., :, :-1].abs()).flatten(1)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_pairs_share_their_shapes_not_their_intensities() -> None:
    fixed, moving = random_shape_pairs(6, 64, torch.Generator().manual_seed(0))
    assert fixed.shape == moving.shape == (6, 1, 64, 64)
    assert float(fixed.min()) >= 0 and float(fixed.max()) <= 1 and float(moving.max()) <= 1
    edges_f, edges_m = _gradient(fixed), _gradient(moving)
    same = [_correlation(edges_f[i], edges_m[i]) for i in range(6)]
    other = [_correlation(edges_f[i], edges_m[(i + 1) % 6]) for i in range(6)]
    assert min(same) > max(other) + 0.1  # the edges of a pair are where its shapes meet
    inside = (fixed > 0.15) & (moving > 0.15)
    intensity = [abs(_correlation(fixed[i][inside[i]], moving[i][inside[i]])) for i in range(6)]
    assert sum(intensity) / 6 < 0.5  # the labels' intensities are drawn independently


def test_the_same_generator_state_gives_the_same_pairs() -> None:
    first = random_shape_pairs(2, 48, torch.Generator().manual_seed(5))
    again = random_shape_pairs(2, 48, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
