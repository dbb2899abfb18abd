"""Validation on held-out pairs with fixed synthetic deformations.

Registration: endpoint error of the predicted flow against the ground truth, SSIM and NCC of the
warped moving image against its aligned label, each next to the same figure without registration,
and the fraction of pixels where the mapping folds. The pairs may be larger than the network's
working size: the network then runs as inference does (images resized to it, the displacement
resized back). Fusion: the paper's five metrics of the fused image against the MRI and the aligned label, next to
those of the plain average of the two (``<metric>_average``). The built-in phantom's known
deformations (:func:`make_phantom_set`) show how far the registration carries beyond the training heads.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from kornia.metrics import ssim
from torch import Tensor, nn

from ..deformation import invert_displacement, random_deformation
from ..examples import example_pair, head_phantom
from ..metrics import fusion_metrics
from ..metrics.fusion import MIN_SIDE
from ..metrics.registration import folding_fraction
from ..network import resize_flow, resize_image, warp_image
from ..pairs import PairSample
from .data import make_batch
from .losses import endpoint_errors


@dataclass
class ValidationSet:
    """Held-out pairs: MRI, aligned label, deformed moving image and the flow that undoes it."""

    fixed: Tensor  # (V,1,S,S)
    label: Tensor  # (V,1,S,S)
    moving: Tensor  # (V,1,S,S)
    true_flow: Tensor  # (V,2,S,S), pixels, inference convention
    groups: list[str] = field(default_factory=list)  # per pair, e.g. its modality ("" = none)


REGISTRATION_FIGURES = ("epe", "ssim", "ncc", "epe_unregistered", "ssim_unregistered", "ncc_unregistered", "folding",
                        "aligned_motion")
"""``aligned_motion``: the mean displacement (px) predicted on the same pairs left as they are (aligned),
where the right answer is none."""


def group_of(sample: PairSample) -> str:
    """The modality of a pair from a run on several (its case is ``"CT:28"``), else ``""``."""
    return sample.case.split(":", 1)[0] if ":" in sample.case else ""


def make_validation_set(samples: list[PairSample], deformation: dict, seed: int) -> ValidationSet:
    """Deform each held-out moving image once, reproducibly (same ``seed`` = same set)."""
    fixed, label = make_batch(samples, list(range(len(samples))), None)
    moving, displacement = random_deformation(
        label, generator=torch.Generator().manual_seed(seed), **deformation
    )
    return ValidationSet(fixed, label, moving, invert_displacement(displacement), [group_of(s) for s in samples])


PHANTOM_SEEDS = (0, 1, 2)
"""The phantom's deformations, as ``Testing/registration_phantom.py`` and the test of the shipped weights."""
PHANTOM_FIGURES = ("epe", "epe_unregistered", "ncc", "ncc_unregistered", "aligned_motion")


def make_phantom_set(modalities: list[str], size: int, seeds: tuple[int, ...] = PHANTOM_SEEDS) -> ValidationSet:
    """The built-in head phantom (MRI against each modality's contrast) under its known deformations
    (:func:`~BSAFusionCore.examples.example_pair` of each seed): anatomy no training run has seen."""
    fixed, label, moving, displacement, groups = [], [], [], [], []
    for modality in modalities:
        for seed in seeds:
            mri, deformed, field_ = example_pair(size, seed, modality)
            fixed.append(mri)
            label.append(head_phantom(size, modality))
            moving.append(deformed)
            displacement.append(field_.transpose(2, 0, 1))
            groups.append(modality)

    def images(arrays: list) -> Tensor:
        return torch.from_numpy(np.stack(arrays)[:, None]).float()

    flow = invert_displacement(torch.from_numpy(np.stack(displacement)).float())
    return ValidationSet(images(fixed), images(label), images(moving), flow, groups)


def phantom_figures(net: nn.Module, data: ValidationSet, device: torch.device, batch_size: int,
                    autocast: contextlib.AbstractContextManager | None = None, *,
                    working_size: int | None = None) -> dict[str, float]:
    """``phantom_<figure>`` for :data:`PHANTOM_FIGURES` on a :func:`make_phantom_set`, with several
    modalities also ``<modality>/phantom_<figure>``."""
    figures = validate(net, data, device, batch_size, autocast, working_size=working_size, with_fusion=False)
    return {key.replace(name, f"phantom_{name}"): value for key, value in figures.items()
            for name in PHANTOM_FIGURES if key == name or key.endswith(f"/{name}")}


def registers_the_phantom(figures: dict[str, float]) -> bool:
    """Whether :func:`phantom_figures` are better than no registration in endpoint error and NCC, for every
    modality (the bar of the test for shipped weights that register)."""
    prefixes = {key[: -len("phantom_epe")] for key in figures if key.endswith("phantom_epe")}
    return all(figures[f"{p}phantom_epe"] < figures[f"{p}phantom_epe_unregistered"]
               and figures[f"{p}phantom_ncc"] > figures[f"{p}phantom_ncc_unregistered"] for p in prefixes)


def ncc_per_image(a: Tensor, b: Tensor) -> Tensor:
    """Global normalised cross-correlation per image of (N,1,H,W) batches."""
    a = a.flatten(1) - a.flatten(1).mean(dim=1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM (window 11, sigma 1.5, data range 1) per image."""
    return ssim(a, b, 11, max_val=1.0).flatten(1).mean(dim=1)


@torch.no_grad()
def validate(
    net: nn.Module,
    data: ValidationSet,
    device: torch.device,
    batch_size: int,
    autocast: contextlib.AbstractContextManager | None = None,
    *,
    working_size: int | None = None,
    with_fusion: bool = True,
) -> dict[str, float]:
    """Registration and (``with_fusion``) fusion figures of ``net`` on ``data``, the network run at
    ``working_size`` (default: the data's size); means over the pairs, NaNs skipped. With several
    groups (modalities), the registration figures also per group, as ``"<group>/<figure>"``."""
    by_group = len(set(data.groups)) > 1
    was_training = net.training
    net.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        for start in range(0, data.fixed.shape[0], batch_size):
            part = slice(start, start + batch_size)
            fixed, moving = data.fixed[part].to(device), data.moving[part].to(device)
            label, true_flow = data.label[part].to(device), data.true_flow[part].to(device)
            shape = tuple(fixed.shape[-2:])
            size = (working_size, working_size) if working_size else shape
            fixed_in = resize_image(fixed, size)
            with autocast or contextlib.nullcontext():
                out = net(fixed_in, resize_image(moving, size), with_discriminator=False, with_fusion=with_fusion)
                still = net(fixed_in, resize_image(label, size), with_discriminator=False, with_fusion=False)
            flow = resize_flow(out.flow.float(), shape)
            still_flow = resize_flow(still.flow.float(), shape)
            warped = warp_image(moving, flow)
            figures = {
                "epe": endpoint_errors(flow, true_flow),
                "ssim": ssim_per_image(warped, label),
                "ncc": ncc_per_image(warped, label),
                "epe_unregistered": endpoint_errors(torch.zeros_like(true_flow), true_flow),
                "ssim_unregistered": ssim_per_image(moving, label),
                "ncc_unregistered": ncc_per_image(moving, label),
                "aligned_motion": endpoint_errors(still_flow, torch.zeros_like(still_flow)),
            }
            rows = torch.stack(list(figures.values()), dim=1).tolist()
            flows = flow.permute(0, 2, 3, 1).cpu().numpy()
            fused = resize_image(out.fused.float(), shape).clamp(0, 1).cpu().numpy() if with_fusion else None
            for index, row in enumerate(rows):
                values = dict(zip(figures, row, strict=True))
                values["folding"] = folding_fraction(flows[index])
                if by_group:
                    group = data.groups[start + index]
                    values.update({f"{group}/{name}": values[name] for name in REGISTRATION_FIGURES})
                a, b = data.fixed[start + index, 0].numpy(), data.label[start + index, 0].numpy()
                if fused is not None and min(a.shape) >= MIN_SIDE:  # the metrics' windows need that much image
                    values.update(fusion_metrics(a, b, fused[index, 0]))
                    values.update({f"{k}_average": v for k, v in fusion_metrics(a, b, (a + b) / 2).items()})
                for name, value in values.items():
                    if not math.isnan(value):
                        sums[name] = sums.get(name, 0.0) + value
                        counts[name] = counts.get(name, 0) + 1
    finally:
        net.train(was_training)
    return {name: total / counts[name] for name, total in sums.items()}
