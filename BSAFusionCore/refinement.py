"""Instance refinement: a smooth correction of a predicted displacement, fitted to one pair's edges.

The network predicts a displacement from what it learned; this step then fits a correction to the pair
at hand, as classical registration does, starting from the network's answer. The correction is
Gaussian-smoothed noise on a coarse control grid (sigma :attr:`RefineOptions.smoothness` of the side: the
scale of the deformations the network was trained on), fitted with Adam to maximise the normalised
gradient fields similarity (NGF, Haber and Modersitzki 2006: edges aligned whatever their contrast) of
the fixed image and the warped moving one, under a Gaussian prior on the noise that keeps it small where
the images have no edges. Each slice of a batch is fitted on its own (the loss is a sum over slices and
Adam works element-wise), so batching changes the speed, not the result.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor

from .network import warp_image
from .options import RefineOptions
from .progress import CancelFlag, check_cancel

log = logging.getLogger(__name__)

EDGE_BLUR_SIGMA = 1.0
"""Pixels of Gaussian blur before the image gradients of the similarity (tames pixel noise)."""


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (N, C, H, W) truncated at 3 sigma, edges replicated."""
    size = 2 * max(1, math.ceil(3 * sigma)) + 1
    return gaussian_blur2d(image, (size, size), (sigma, sigma), border_type="replicate")


def _gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences along columns and rows (zero on the border)."""
    gx = F.pad((image[..., :, 2:] - image[..., :, :-2]) / 2, (1, 1, 0, 0))
    gy = F.pad((image[..., 2:, :] - image[..., :-2, :]) / 2, (0, 0, 1, 1))
    return gx, gy


def _unit_gradients(image: Tensor, edge_noise: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients divided by their regularised length (``edge_noise`` (N,): below it, a gradient is noise)."""
    gx, gy = _gradients(image)
    length = torch.sqrt(gx**2 + gy**2 + (edge_noise**2).view(-1, 1, 1, 1))
    return gx / length, gy / length


def ngf_distance(fixed: tuple[Tensor, Tensor], moving: Tensor, edge_noise: Tensor) -> Tensor:
    """Per slice: 1 - the mean squared cosine between the fixed image's unit gradients (from
    :func:`_unit_gradients`) and the moving image's. Lowest when the edges line up, whatever their contrast;
    a pixel without an edge in either image adds 1."""
    mx, my = _unit_gradients(moving, edge_noise)
    return 1 - ((fixed[0] * mx + fixed[1] * my) ** 2).mean(dim=(1, 2, 3))


def refine_displacement(fixed: Tensor, moving: Tensor, displacement: Tensor,
                        options: RefineOptions | None = None, cancel: CancelFlag | None = None) -> Tensor:
    """The displacement (N, 2, H, W, pixels) refined for the pair ``fixed`` (N, 1, H, W) and ``moving``
    (N, 1, H, W; the luminance of a colour image), both in [0, 1] on one grid. Inputs are not modified."""
    options = options or RefineOptions()
    if fixed.shape[1] != 1 or moving.shape[1] != 1:
        raise ValueError(f"refinement takes one-channel images, got {tuple(fixed.shape)} and {tuple(moving.shape)}")
    n, _, height, width = fixed.shape
    with torch.inference_mode(False), torch.enable_grad():
        # blurred once before warping: the correction is smooth, so blur-then-warp ~ warp-then-blur
        fixed = gaussian_blur(fixed.detach().float(), EDGE_BLUR_SIGMA)
        moving = gaussian_blur(moving.detach().float(), EDGE_BLUR_SIGMA)
        start = displacement.detach().float().clone()
        gx, gy = _gradients(fixed)
        edge_noise = options.edge_noise * torch.cat((gx.abs(), gy.abs()), 1).mean(dim=(1, 2, 3))
        fixed_edges = _unit_gradients(fixed, edge_noise)
        spacing = options.grid_spacing
        grid = (max(2, math.ceil(height / spacing)), max(2, math.ceil(width / spacing)))
        sigma = options.smoothness * (height + width) / 2 / spacing  # in control points
        scale = 2 * math.sqrt(math.pi) * sigma  # unit control noise -> about 1 px of displacement
        noise = torch.zeros(n, 2, *grid, device=fixed.device, requires_grad=True)
        optimiser = torch.optim.Adam([noise], lr=options.step / scale)

        def field() -> Tensor:
            smooth = gaussian_blur(noise, sigma) * scale
            return start + F.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=False)

        for iteration in range(options.iterations):
            if iteration % 20 == 0:
                check_cancel(cancel)
            distance = ngf_distance(fixed_edges, warp_image(moving, field()), edge_noise)
            prior = options.prior_weight * (noise**2).sum(dim=(1, 2, 3)) / (2 * height * width)
            optimiser.zero_grad(set_to_none=True)
            (distance + prior).sum().backward()
            optimiser.step()
        with torch.no_grad():
            refined = field()
    log.debug("refined %d slices: mean correction %.3f px", n, float((refined - start).norm(dim=1).mean()))
    return refined.to(displacement.dtype)
