"""Random contrast: the same anatomy under a random intensity mapping.

Registration that has only seen MRI against MRI matches intensities, which fails across
modalities. Showing it pairs whose moving image is the fixed anatomy under a random, possibly
non-monotonic lookup curve, a random gamma and a smooth bias field teaches it to match structure
instead (the idea of SynthMorph, Hoffmann et al., IEEE TMI 2022; ours works on the real images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_KNOTS, MAX_KNOTS = 3, 8
GAMMA_LOG_STD = 0.3
BIAS_LOG_STD = 0.3
BIAS_GRID = 4


def random_contrast(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random intensity mapping of each (N,1,H,W) image in [0, 1]; the result is in [0, 1].

    Per image: a piecewise-linear lookup curve through 3-8 evenly spaced knots with uniform random
    values, a gamma of exp(N(0, 0.3)), a multiplicative bias field exp(N(0, 0.3)) on a 4x4 grid
    interpolated bicubically, then min-max normalisation. Drawn from ``generator`` on the CPU.
    """
    n, _, h, w = images.shape
    device = images.device
    knots = torch.randint(MIN_KNOTS, MAX_KNOTS + 1, (n,), generator=generator)
    values = torch.rand(n, MAX_KNOTS, generator=generator)
    gamma = torch.exp(torch.randn(n, generator=generator) * GAMMA_LOG_STD)
    bias = torch.randn(n, 1, BIAS_GRID, BIAS_GRID, generator=generator) * BIAS_LOG_STD
    segments = (knots - 1).to(device, images.dtype).view(n, 1, 1, 1)
    position = images.clamp(0, 1) * segments
    low = torch.minimum(position.floor(), segments - 1)
    fraction = position - low
    table = values.to(device, images.dtype)
    index = low.long().flatten(1)
    left = table.gather(1, index).view_as(images)
    right = table.gather(1, index + 1).view_as(images)
    mapped = (left + (right - left) * fraction).clamp_min(0) ** gamma.to(device, images.dtype).view(n, 1, 1, 1)
    field = F.interpolate(bias.to(device, images.dtype), size=(h, w), mode="bicubic", align_corners=True)
    mapped = mapped * field.exp()
    low_value = mapped.flatten(1).amin(dim=1).view(n, 1, 1, 1)
    high_value = mapped.flatten(1).amax(dim=1).view(n, 1, 1, 1)
    return (mapped - low_value) / (high_value - low_value).clamp_min(1e-6)
