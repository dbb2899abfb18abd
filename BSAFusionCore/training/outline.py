"""Random changes of where the moving image's signal ends, the anatomy left where it is.

The AANLIB PET images show the brain only, inside the MRI's bright scalp, and a registration trained
on the two PET training heads learned where that edge sits relative to the MRI: on the built-in
phantom, whose PET ends farther inside the head, it pulls the edge outwards (docs/training.md,
sixteenth session). Shrinking the moving image's outline by a few pixels without moving anything (the
true displacement unchanged) shows it such images, so that where the signal ends is no cue to stretch
them and what lies inside has to be matched. (Growing the outline was tried and left out: a maximum
filter draws a bright band no scan shows.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor

MAX_OUTLINE_CHANGE = 0.04
"""The largest shrinking of the outline, as a share of the image side (5 px at 128)."""
_SUPPORT_LEVEL = 0.1  # share of an image's maximum above which a pixel shows signal
_FILL_SIGMA = 0.06  # blur (share of the side) that closes the support's inner holes (ventricles)


def support(images: Tensor) -> Tensor:
    """Where (N,1,H,W) images show signal, inner holes closed: 1 inside the outline, 0 outside."""
    level = _SUPPORT_LEVEL * images.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    mask = (images > level).to(images.dtype)
    sigma = _FILL_SIGMA * images.shape[-1]
    size = 2 * max(1, int(3 * sigma)) + 1
    return (gaussian_blur2d(mask, (size, size), (sigma, sigma), border_type="replicate") > 0.5).to(images.dtype)


def shrink_outline(images: Tensor, radius: Tensor) -> Tensor:
    """Each of (N,1,H,W) ``images`` with its outline moved inwards by ``radius`` px ((N,) integers, 0 = as it
    is): the signal within that distance of the outline fades out; pixels farther inside stay as they are."""
    inside = support(images)
    out = images.clone()
    for index, r in enumerate(radius.tolist()):
        if r > 0:
            mask = inside[index : index + 1]
            kept = 1 - F.max_pool2d(1 - mask, 2 * r + 1, stride=1, padding=r)  # the support eroded by r
            smooth = F.avg_pool2d(kept, 3, stride=1, padding=1, count_include_pad=False)
            out[index] = images[index] * smooth[0]
    return out


def reshape_outlines(images: Tensor, fraction: float, generator: torch.Generator,
                     eligible: Tensor | None = None) -> Tensor:
    """``images`` with, for each with probability ``fraction`` (and ``eligible``, (N,) bool), the outline
    moved inwards by a random whole number of pixels up to :data:`MAX_OUTLINE_CHANGE` of the side. The
    draws come from ``generator`` (CPU)."""
    n = images.shape[0]
    picked = torch.rand(n, generator=generator) < fraction
    largest = max(1, round(MAX_OUTLINE_CHANGE * images.shape[-1]))
    radius = torch.randint(1, largest + 1, (n,), generator=generator)
    if eligible is not None:
        picked &= eligible.cpu()
    if not picked.any():
        return images
    return shrink_outline(images, torch.where(picked, radius, torch.zeros_like(radius)))
