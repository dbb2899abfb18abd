"""Which pairs a registration step trains on: mono-modal, random-contrast, random shapes or real
cross-modal.

Registration learned from real MRI + CT pairs alone did not beat no registration on held-out cases
within CPU budgets (docs/training.md); learned first on the MRI against itself, and on the MRI
against random contrasts of either image, it does. Random shapes (:mod:`.shapes`) add anatomy the
dozen training heads do not have. :class:`PairMix` says which share of a batch is which; the rest
are the real pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import InputError
from .contrast import random_contrast
from .shapes import random_shape_pairs


@dataclass(frozen=True)
class PairMix:
    """Shares of a batch: the MRI against itself (``mono``), against a random contrast of the MRI or
    of the moving image (``synthetic``), random shapes under two random contrasts (``shapes``); the
    remaining share are the real pairs."""

    mono: float = 0.0
    synthetic: float = 0.0
    shapes: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.mono, self.synthetic, self.shapes)
        if min(shares) < 0 or sum(shares) > 1 + 1e-9:
            raise InputError(
                f"the mono-modal, random-contrast and random-shape shares must be >= 0 and add up to at most 1, "
                f"got {self.mono:g}, {self.synthetic:g} and {self.shapes:g}"
            )

    @property
    def only_real(self) -> bool:
        return self.mono == 0 and self.synthetic == 0 and self.shapes == 0


class MixedBatch(NamedTuple):
    """A batch as the curriculum mixes it; ``real_moving`` / ``real_fixed`` (N,) bool mark the pairs
    whose moving image is the real other modality / whose fixed image is a real MRI."""

    fixed: Tensor
    label: Tensor
    real_moving: Tensor
    real_fixed: Tensor


def pair_mix(step: int, pretrain_steps: int, mono: float, synthetic: float, pretrain_synthetic: float = 0.5,
             shapes: float = 0.0) -> PairMix:
    """The mix at optimiser ``step`` (0-based): before ``pretrain_steps`` no real pairs (``pretrain_synthetic``
    random-contrast, the rest mono-modal), then the given shares."""
    if step < pretrain_steps:
        return PairMix(1 - pretrain_synthetic, pretrain_synthetic)
    return PairMix(mono, synthetic, shapes)


def mix_pairs(fixed: Tensor, label: Tensor, mix: PairMix, generator: torch.Generator) -> MixedBatch:
    """The batch under ``mix``: each pair independently keeps its real label, takes the MRI itself, a
    random contrast of the MRI or of its label (either with probability 1/2), or is replaced by a
    random-shapes pair. Everything is drawn from ``generator``."""
    n = fixed.shape[0]
    draw = torch.rand(n, generator=generator)
    use_mri_for_contrast = torch.rand(n, generator=generator) < 0.5
    real = draw >= mix.mono + mix.synthetic + mix.shapes
    shapes = (draw >= mix.mono + mix.synthetic) & ~real
    if mix.only_real:
        return MixedBatch(fixed, label, real.to(fixed.device), torch.ones_like(real).to(fixed.device))
    mono = draw < mix.mono
    source = torch.where(use_mri_for_contrast.view(n, 1, 1, 1).to(fixed.device), fixed, label)
    contrast = random_contrast(source, generator)
    as_column = lambda mask: mask.view(n, 1, 1, 1).to(fixed.device)  # noqa: E731
    mixed = torch.where(as_column(mono), fixed, torch.where(as_column(real), label, contrast))
    if shapes.any():
        shape_fixed, shape_label = random_shape_pairs(int(shapes.sum()), fixed.shape[-1], generator)
        index = shapes.nonzero().flatten().to(fixed.device)
        fixed, mixed = fixed.clone(), mixed.clone()
        fixed[index], mixed[index] = shape_fixed.to(fixed), shape_label.to(fixed)
    return MixedBatch(fixed, mixed, real.to(fixed.device), (~shapes).to(fixed.device))


def undeform_some(label: Tensor, moving: Tensor, displacement: Tensor, fraction: float,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(moving, displacement)`` with each pair, with probability ``fraction``, left undeformed: its
    moving image is the label itself and its displacement zero, so that aligned pairs learn to stay
    as they are (the draw comes from ``generator``, on the displacement's device)."""
    n = label.shape[0]
    keep = (torch.rand(n, generator=generator, device=displacement.device) < fraction).view(n, 1, 1, 1)
    return torch.where(keep, label, moving), torch.where(keep, torch.zeros_like(displacement), displacement)
