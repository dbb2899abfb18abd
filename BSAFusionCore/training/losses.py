"""The losses of the BSAFusion paper (NETWORK_SPEC.md section 12)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient
from kornia.metrics import ssim
from torch import Tensor

MRI_LABEL = (0.0, 1.0)
OTHER_LABEL = (1.0, 0.0)
INTENSITY_WEIGHT = 0.5  # lambda of the intensity loss


def soft_cross_entropy(logits: Tensor, target: tuple[float, float], include: Tensor | None = None) -> Tensor:
    """Cross-entropy of (N,2) logits against one soft target for the whole batch.

    ``include`` (N,) bool limits the mean to those rows (zero when none is included).
    """
    target_t = torch.tensor(target, dtype=logits.dtype, device=logits.device)
    per_row = -(F.log_softmax(logits, dim=1) * target_t).sum(dim=1)
    if include is None:
        return per_row.mean()
    return (per_row * include).sum() / include.sum().clamp_min(1)


def ssim_loss(a: Tensor, b: Tensor) -> Tensor:
    """1 - SSIM (Gaussian window 11, sigma 1.5, data range 1), averaged."""
    return 1 - ssim(a, b, 11, max_val=1.0).mean()


def sobel(image: Tensor) -> Tensor:
    """|Gx| + |Gy| of the 3x3 Sobel kernels."""
    gradient = spatial_gradient(image, mode="sobel", normalized=False)
    return gradient.abs().sum(dim=2)


def roughness(flow: Tensor) -> Tensor:
    """r(phi) = (mean(dx^2) + mean(dy^2)) / 3 of forward differences."""
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return ((dx**2).mean() + (dy**2).mean()) / 3


def smoothness_loss(levels_fixed: list[Tensor], levels_moving: list[Tensor], flow: Tensor) -> Tensor:
    """Eq. 8: sum over levels i of 10^(i-5) (r(phiA_i) + r(phiB_i)), plus r(flow)."""
    total = roughness(flow)
    for i, (phi_a, phi_b) in enumerate(zip(levels_fixed, levels_moving, strict=True), start=1):
        total = total + 10.0 ** (i - 5) * (roughness(phi_a) + roughness(phi_b))
    return total


def endpoint_errors(flow: Tensor, true_flow: Tensor) -> Tensor:
    """Mean endpoint error in pixels per image of (N,2,H,W) flows."""
    return (flow - true_flow).norm(dim=1).flatten(1).mean(dim=1)


def flow_supervision_loss(flow: Tensor, true_flow: Tensor) -> Tensor:
    """Mean endpoint error (px) of the flow against the synthetic deformation's known inverse.

    Not a loss of the paper: an optional extra signal, since the generator knows the exact answer.
    """
    return endpoint_errors(flow, true_flow).mean()


def registration_loss(label: Tensor, warped: Tensor) -> Tensor:
    """Consistency of the warped moving image with its aligned label: SSIM loss + L1."""
    return ssim_loss(label, warped) + F.l1_loss(warped, label)


def teacher_loss(fused: Tensor, target: Tensor) -> Tensor:
    """L1 + (1 - SSIM) of the fused image against a teacher's fusion of the aligned pair.

    Not a loss of the paper: it lets a fusion net learn on new encoder features (a registration-trained
    encoder) what given weights fuse well, the aligned pair being what a perfect registration gives.
    """
    return F.l1_loss(fused, target) + ssim_loss(fused, target)


@dataclass
class LossTerms:
    """The loss of one batch, its terms, and the two SSIM losses that adapt mu."""

    total: Tensor
    ce_modality: Tensor
    ce_transfer: Tensor
    smooth: Tensor
    registration: Tensor
    fusion: Tensor
    flow_supervision: Tensor
    ssim_fused_warped: Tensor
    ssim_fused_fixed: Tensor
    teacher: Tensor = field(default_factory=lambda: torch.zeros(()))  # see teacher_loss; set by the trainer

    def as_floats(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in vars(self).items()}


def modality_losses(
    output, real_moving: Tensor | None = None, real_fixed: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """MDF-FR's two cross-entropies: the classifier tells the MRI from the other modality, and the
    transferred tokens make the frozen discriminator answer [0.5, 0.5] (modality-free features).

    ``real_moving`` / ``real_fixed`` (N,) bool mark the pairs whose moving image is the real other
    modality / whose fixed image is a real MRI; the other sides (MRI against itself, a random
    contrast, random shapes) have no modality label and are left out.
    """
    ce_modality = soft_cross_entropy(output.logits_fixed, MRI_LABEL, real_fixed) + soft_cross_entropy(
        output.logits_moving, OTHER_LABEL, real_moving
    )
    ce_transfer = soft_cross_entropy(output.transfer_logits_fixed, (0.5, 0.5)) + soft_cross_entropy(
        output.transfer_logits_moving, (0.5, 0.5)
    )
    return ce_modality, ce_transfer


def registration_stage_loss(
    output,
    label: Tensor,
    *,
    true_flow: Tensor | None = None,
    flow_supervision: float = 0.0,
    real_moving: Tensor | None = None,
    real_fixed: Tensor | None = None,
) -> LossTerms:
    """The registration losses of the paper without the fusion: modality cross-entropies, smoothness
    and consistency (SSIM + L1 of the warped moving image against its label), plus the optional flow
    supervision. The fusion terms of the result are zero."""
    ce_modality, ce_transfer = modality_losses(output, real_moving, real_fixed)
    smooth = smoothness_loss(output.flow_levels_fixed, output.flow_levels_moving, output.flow)
    registration = registration_loss(label, output.warped_moving)
    supervised = label.new_zeros(()) if true_flow is None else flow_supervision_loss(output.flow, true_flow)
    total = ce_modality + ce_transfer + smooth + registration + flow_supervision * supervised
    zero = label.new_zeros(())
    return LossTerms(total, ce_modality, ce_transfer, smooth, registration, zero, supervised, zero, zero)


def bsafusion_loss(
    output,
    fixed: Tensor,
    label: Tensor,
    mu: float,
    *,
    fusion_steers_registration: bool = True,
    true_flow: Tensor | None = None,
    flow_supervision: float = 0.0,
) -> LossTerms:
    """Every loss of the paper for a network output (``BSAFusionOutput``).

    ``fixed`` is the MRI, ``label`` the moving image before the synthetic deformation. With
    ``fusion_steers_registration=False`` the fusion loss sees the warped image detached from the
    flow (the trainer also detaches the flow the fusion branch receives). With
    ``flow_supervision`` > 0 and ``true_flow`` given (the inverse of the synthetic deformation), the
    endpoint error against it is added with that weight.
    """
    ce_modality, ce_transfer = modality_losses(output)
    smooth = smoothness_loss(output.flow_levels_fixed, output.flow_levels_moving, output.flow)
    warped, fused = output.warped_moving, output.fused
    registration = registration_loss(label, warped)
    if not fusion_steers_registration:
        warped = warped.detach()
    ssim_fixed = ssim_loss(fused, fixed)
    ssim_warped = ssim_loss(fused, warped)
    fusion = (
        ssim_fixed
        + mu * ssim_warped
        + INTENSITY_WEIGHT * F.l1_loss(fused, torch.maximum(fixed, warped))
        + F.l1_loss(sobel(fused), torch.maximum(sobel(fixed), sobel(warped)))
    )
    supervised = fused.new_zeros(()) if true_flow is None else flow_supervision_loss(output.flow, true_flow)
    total = ce_modality + ce_transfer + smooth + registration + fusion + flow_supervision * supervised
    return LossTerms(
        total, ce_modality, ce_transfer, smooth, registration, fusion, supervised,
        ssim_warped.detach(), ssim_fixed.detach(),
    )
