"""How much of the published synthetic deformation can be recovered at all from the images?

An oracle bound for the validation EPE of ``bsafusion train``: on the held-out cases at 256 px with
the validation's deformations, register the deformed moving image to its own aligned label (the
same modality: the easiest case for any registration) by optimising a smooth field (a 32 x 32
control grid, bicubic up-sampling, as smooth as the generator's sigma-16 field) for (1 - SSIM) + L1;
and the same for the MRI deformed by the same fields. Where an image is flat (background, the
uniform brain of a CT) its displacement cannot be seen, so even this oracle stays well above 0 px.

``--known-fraction Q`` adds a bound that no image-similarity optimiser gives: the true field is taken
as known exactly at the fraction Q of pixels where the aligned image has the most structure (smoothed
gradient magnitude), and filled in everywhere else with its posterior mean under the generator's own
prior (a Gaussian process: the uniform translation plus Gaussian-blurred noise). What a registration
that has learned the field's statistics could reach if it read the structured pixels perfectly.

    python Testing/registration_oracle.py --modality CT --cases 28 [--known-fraction 0.1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, spatial_gradient
from kornia.metrics import ssim

from BSAFusionCore.deformation import invert_displacement, random_deformation
from BSAFusionCore.network import warp_image
from BSAFusionCore.options import WORKING_SIZE
from BSAFusionCore.pairs import aanlib_files, load_file_pairs
from BSAFusionCore.training.losses import endpoint_errors
from BSAFusionCore.training.trainer import VALIDATION_SEED, TrainConfig
from BSAFusionCore.training.validation import make_validation_set

CONTROL_GRID = 32


def register(moving: torch.Tensor, label: torch.Tensor, iterations: int) -> torch.Tensor:
    """The smooth displacement (pixels) that best aligns ``moving`` to ``label`` (N,1,H,W)."""
    control = torch.zeros(moving.shape[0], 2, CONTROL_GRID, CONTROL_GRID, requires_grad=True)
    optimiser = torch.optim.Adam([control], lr=0.1)
    for _ in range(iterations):
        flow = F.interpolate(control, size=moving.shape[-2:], mode="bicubic", align_corners=True)
        warped = warp_image(moving, flow)
        loss = (1 - ssim(warped, label, 11, max_val=1.0).mean()) + (warped - label).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return F.interpolate(control.detach(), size=moving.shape[-2:], mode="bicubic", align_corners=True)


def prior_posterior_mean(truth: torch.Tensor, known: torch.Tensor, deformation: dict, stride: int = 4) -> torch.Tensor:
    """The posterior mean (2,H,W) of a generator field given its values ``truth`` (2,H,W) where ``known``
    (H,W) holds, observed on a ``stride`` grid (the field is far smoother than that)."""
    h, w = known.shape
    size = float(h)
    sigma = deformation["elastic_sigma"]
    elastic_var = deformation["elastic_magnitude"] ** 2 * size**2 / (3 * 4 * math.pi * sigma**2)
    translation_var = (deformation["max_translation"] * size) ** 2 / 3
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    points = torch.stack((cols.flatten(), rows.flatten()), 1)

    def covariance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return translation_var + elastic_var * torch.exp(-torch.cdist(a, b) ** 2 / (4 * sigma**2))

    observed = (known & (rows % stride == 0) & (cols % stride == 0)).flatten()
    if not observed.any():
        return torch.zeros_like(truth)
    seen = points[observed]
    gram = covariance(seen, seen) + 1e-3 * torch.eye(len(seen), dtype=torch.float64)
    weights = torch.linalg.solve(gram, truth.flatten(1)[:, observed].T.double())
    mean = torch.cat([covariance(points[i:i + 8192], seen) @ weights for i in range(0, len(points), 8192)])
    return mean.T.reshape(2, h, w).to(truth.dtype)


def known_field_bound(image: torch.Tensor, truth: torch.Tensor, deformation: dict, fraction: float) -> float:
    """Mean EPE of the posterior mean when the field is known at the ``fraction`` most structured pixels."""
    structure = spatial_gradient(gaussian_blur2d(image, 5, (1.0, 1.0))).norm(dim=2)[:, 0]
    errors = []
    for k in range(len(image)):
        threshold = torch.quantile(structure[k].flatten()[::7], 1 - fraction)
        mean = prior_posterior_mean(truth[k], structure[k] > threshold, deformation)
        errors.append(endpoint_errors(mean[None], truth[k:k + 1]).mean())
    return torch.stack(errors).mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aanlib", default="../shared/data/aanlib")
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--cases", default="28", help="held-out cases, comma-separated")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--known-fraction", type=float, default=0.0,
                        help="also the bound with the true field known at this fraction of the most structured pixels")
    args = parser.parse_args(argv)

    files = aanlib_files(args.aanlib, args.modality, set(args.cases.split(",")))
    samples = load_file_pairs(files, WORKING_SIZE)
    deformation = TrainConfig(run_dir="unused").deformation(WORKING_SIZE)
    data = make_validation_set(samples, deformation, VALIDATION_SEED)
    none = endpoint_errors(torch.zeros_like(data.true_flow), data.true_flow).mean().item()
    same_modality = endpoint_errors(register(data.moving, data.label, args.iterations), data.true_flow).mean().item()
    mri_moving, displacement = random_deformation(
        data.fixed, generator=torch.Generator().manual_seed(VALIDATION_SEED), **deformation)
    mri_truth = invert_displacement(displacement)
    mri_none = endpoint_errors(torch.zeros_like(mri_truth), mri_truth).mean().item()
    mri = endpoint_errors(register(mri_moving, data.fixed, args.iterations), mri_truth).mean().item()
    result = {
        "modality": args.modality, "cases": args.cases, "pairs": len(samples),
        "epe_none": round(none, 3), f"epe_oracle_{args.modality}_to_{args.modality}": round(same_modality, 3),
        "ratio": round(same_modality / none, 3),
        "epe_none_mri": round(mri_none, 3), "epe_oracle_mri_to_mri": round(mri, 3),
        "ratio_mri": round(mri / mri_none, 3),
    }
    if args.known_fraction > 0:
        known = known_field_bound(data.label, data.true_flow, deformation, args.known_fraction)
        result[f"epe_known_at_{args.modality}_structure"] = round(known, 3)
        result["ratio_known"] = round(known / none, 3)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
