"""Random shapes: synthetic aligned pairs with unlimited anatomy and unrelated contrasts.

Our data hold about a dozen heads per modality, and registration trained on them alone learns those
heads (it moved the built-in phantom the wrong way). SynthMorph (Hoffmann et al., IEEE TMI 2022)
trains registration on random label maps whose labels get independent random intensities in the
two images: the only thing the pair shares is the geometry of the shapes, so the network has to
match shapes, not intensities or a particular anatomy. Ours: label maps from the argmax of smooth
random noise, inside a smooth random "head" outline on a dark background (as in every modality
here), each label a random intensity per image, then blur, a bias field and noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_LABELS, MAX_LABELS = 6, 16
NOISE_GRIDS = (6, 10, 16)  # random noise at this many points per side, up-sampled: the shapes' scale
OUTLINE_GRID = 4
BIAS_LOG_STD = 0.2
MAX_NOISE = 0.04
MAX_BLUR = 1.5  # pixels at 256 px, scaled with the size


def _smooth_noise(n: int, channels: int, grid: int, size: int, generator: torch.Generator) -> Tensor:
    coarse = torch.randn(n, channels, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def _label_maps(n: int, size: int, generator: torch.Generator) -> tuple[Tensor, int]:
    """(N,1,S,S) integer labels 1..K inside a random outline, 0 outside; and K."""
    labels = int(torch.randint(MIN_LABELS, MAX_LABELS + 1, (1,), generator=generator))
    grid = NOISE_GRIDS[int(torch.randint(len(NOISE_GRIDS), (1,), generator=generator))]
    maps = _smooth_noise(n, labels, grid, size, generator).argmax(dim=1, keepdim=True) + 1
    axis = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    radii = 0.55 + 0.3 * torch.rand(n, 2, 1, 1, generator=generator)
    ellipse = (x / radii[:, :1]) ** 2 + (y / radii[:, 1:]) ** 2  # (N,1,S,S)
    wobble = 0.25 * _smooth_noise(n, 1, OUTLINE_GRID, size, generator)
    inside = ellipse + wobble < 1.0
    return maps * inside, labels


def _render(maps: Tensor, labels: int, generator: torch.Generator) -> Tensor:
    """An image of the label maps: a random intensity per label (background 0), blur, bias, noise, [0, 1]."""
    n, _, size, _ = maps.shape
    values = torch.rand(n, labels + 1, generator=generator) * 0.9 + 0.1
    values[:, 0] = 0.0
    image = values.gather(1, maps.flatten(1)).view(n, 1, size, size)
    sigma = float(torch.rand(1, generator=generator)) * MAX_BLUR * size / 256 + 0.3
    radius = max(1, int(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    taps = taps / taps.sum()
    image = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    image = F.conv2d(F.pad(image, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
    image = image * torch.exp(BIAS_LOG_STD * _smooth_noise(n, 1, OUTLINE_GRID, size, generator))
    image = image + torch.rand(n, 1, 1, 1, generator=generator) * MAX_NOISE * torch.randn(
        image.shape, generator=generator) * (image > 0)
    low = image.flatten(1).amin(dim=1).view(n, 1, 1, 1)
    high = image.flatten(1).amax(dim=1).view(n, 1, 1, 1)
    return ((image - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)


def random_shape_pairs(n: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` aligned (fixed, moving) (N,1,S,S) pairs in [0, 1]: the same random shapes under two
    unrelated random contrasts. Drawn from ``generator`` on the CPU."""
    maps, labels = _label_maps(n, size, generator)
    return _render(maps, labels, generator), _render(maps, labels, generator)
