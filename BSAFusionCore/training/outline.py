"""Random changes of where the moving image's signal ends, the anatomy left where it is.

The AANLIB PET images show the brain only, inside the MRI's bright scalp, and a registration trained
on the two PET training heads learned where that edge sits relative to the MRI: on the built-in
phantom, whose PET edge lies elsewhere, it pulls the edge outwards (docs/training.md, sixteenth
session). Growing or shrinking the moving image's outline by a few pixels without moving anything
(the true displacement unchanged) takes that cue away, so that the registration has to match what
lies inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor

MAX_OUTLINE_CHANGE = 0.04
"""The largest change of the outline, as a share of the image side (5 px at 128)."""
_SUPPORT_LEVEL = 0.1  # share of an image's maximum above which a pixel shows signal
_FILL_SIGMA = 0.06  # blur (share of the side) that closes the support's inner holes (ventricles)


def support(images: Tensor) -> Tensor:
    """Where (N,1,H,W) images show signal, inner holes closed: 1 inside the outline, 0 outside."""
    level = _SUPPORT_LEVEL * images.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    mask = (images > level).to(images.dtype)
    sigma = _FILL_SIGMA * images.shape[-1]
    size = 2 * max(1, int(3 * sigma)) + 1
    return (gaussian_blur2d(mask, (size, size), (sigma, sigma), border_type="replicate") > 0.5).to(images.dtype)


def change_outline(images: Tensor, radius: Tensor) -> Tensor:
    """Each of (N,1,H,W) ``images`` with its outline moved outwards by ``radius`` px (negative: inwards; (N,) integers):
    inwards the signal within that distance of the outline is faded out; outwards the edge's values are
    carried on by a maximum filter. Pixels farther inside than ``|radius|`` stay as they are."""
    inside = support(images)
    out = images.clone()
    for index, r in enumerate(radius.tolist()):
        if r == 0:
            continue
        image, mask, k = images[index : index + 1], inside[index : index + 1], abs(int(r))
        if r < 0:  # erode the support, fade the ring out
            kept = 1 - F.max_pool2d(1 - mask, 2 * k + 1, stride=1, padding=k)
            out[index] = (image * F.avg_pool2d(kept, 3, stride=1, padding=1, count_include_pad=False))[0]
        else:  # carry the edge outwards
            grown = F.max_pool2d(image * mask, 2 * k + 1, stride=1, padding=k)
            out[index] = torch.where(mask > 0, image, torch.maximum(image, grown))[0]
    return out


def reshape_outlines(images: Tensor, fraction: float, generator: torch.Generator,
                     eligible: Tensor | None = None) -> Tensor:
    """``images`` with, for each with probability ``fraction`` (and ``eligible``, (N,) bool), the outline
    moved by a random whole number of pixels up to :data:`MAX_OUTLINE_CHANGE` of the side, in or out.
    The draws come from ``generator`` (CPU)."""
    n = images.shape[0]
    picked = torch.rand(n, generator=generator) < fraction
    largest = max(1, round(MAX_OUTLINE_CHANGE * images.shape[-1]))
    radius = torch.randint(1, largest + 1, (n,), generator=generator)
    radius = torch.where(torch.rand(n, generator=generator) < 0.5, -radius, radius)
    if eligible is not None:
        picked &= eligible.cpu()
    if not picked.any():
        return images
    return change_outline(images, torch.where(picked, radius, torch.zeros_like(radius)))
