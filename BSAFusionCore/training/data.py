"""Training batches: augmentation (random flips and 90-degree rotations, identical for both images)
drawn from a generator the caller seeds, so the data order and augmentation of any epoch can be
reproduced exactly. The pairs themselves come from :mod:`BSAFusionCore.pairs`."""

from __future__ import annotations

import torch
from torch import Tensor

from ..pairs import PairSample


def augment(fixed: Tensor, moving: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same random flips and 90-degree rotation for both (C,H,W) images."""
    flip_h, flip_v, quarter_turns = torch.randint(0, 4, (3,), generator=generator).tolist()
    dims = [d for d, flip in ((-1, flip_h % 2), (-2, flip_v % 2)) if flip]
    images = []
    for image in (fixed, moving):
        if dims:
            image = image.flip(dims)
        images.append(torch.rot90(image, quarter_turns, dims=(-2, -1)))
    return images[0], images[1]


def make_batch(
    samples: list[PairSample], indices: list[int], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Stack ``samples[indices]`` into (B,1,S,S) fixed and moving, augmented when a generator is given."""
    fixed, moving = [], []
    for index in indices:
        pair = (samples[index].fixed, samples[index].moving)
        if generator is not None:
            pair = augment(*pair, generator)
        fixed.append(pair[0])
        moving.append(pair[1])
    return torch.stack(fixed), torch.stack(moving)
