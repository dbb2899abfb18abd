"""Which pairs a registration step trains on: mono-modal, random-contrast or real cross-modal.

Registration learned from real MRI + CT pairs alone did not beat no registration on held-out cases
within CPU budgets (docs/training.md); learned first on the MRI against itself, and on the MRI
against random contrasts of either image, it does. :class:`PairMix` says which share of a batch is
which; the rest are the real pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError
from .contrast import random_contrast


@dataclass(frozen=True)
class PairMix:
    """Shares of a batch: the MRI against itself (``mono``), against a random contrast of the MRI or
    of the moving image (``synthetic``); the remaining share are the real pairs."""

    mono: float = 0.0
    synthetic: float = 0.0

    def __post_init__(self) -> None:
        if self.mono < 0 or self.synthetic < 0 or self.mono + self.synthetic > 1 + 1e-9:
            raise InputError(
                f"the mono-modal and random-contrast shares must be >= 0 and add up to at most 1, "
                f"got {self.mono:g} and {self.synthetic:g}"
            )

    @property
    def only_real(self) -> bool:
        return self.mono == 0 and self.synthetic == 0


def pair_mix(step: int, pretrain_steps: int, mono: float, synthetic: float, pretrain_synthetic: float = 0.5) -> PairMix:
    """The mix at optimiser ``step`` (0-based): before ``pretrain_steps`` no real pairs (``pretrain_synthetic``
    random-contrast, the rest mono-modal), then the given shares."""
    if step < pretrain_steps:
        return PairMix(1 - pretrain_synthetic, pretrain_synthetic)
    return PairMix(mono, synthetic)


def mix_pairs(fixed: Tensor, label: Tensor, mix: PairMix, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The labels (aligned moving images) of a batch under ``mix``, and which pairs are real (N,) bool.

    Each pair independently keeps its real label, takes the MRI itself, or a random contrast of the
    MRI or of its label (either with probability 1/2). Everything is drawn from ``generator``.
    """
    n = fixed.shape[0]
    draw = torch.rand(n, generator=generator)
    use_mri_for_contrast = torch.rand(n, generator=generator) < 0.5
    real = draw >= mix.mono + mix.synthetic
    if mix.only_real:
        return label, real
    mono = draw < mix.mono
    source = torch.where(use_mri_for_contrast.view(n, 1, 1, 1).to(fixed.device), fixed, label)
    contrast = random_contrast(source, generator)
    as_column = lambda mask: mask.view(n, 1, 1, 1).to(fixed.device)  # noqa: E731
    mixed = torch.where(as_column(mono), fixed, torch.where(as_column(real), label, contrast))
    return mixed, real.to(fixed.device)
