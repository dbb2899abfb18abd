"""Warping with a displacement field.

Displacements are in pixels, channel 0 along columns (x) and channel 1 along rows (y): output
pixel (i, j) samples the input at (x = j + d0, y = i + d1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _pixel_grid(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Absolute sample coordinates (x, y) in pixels for a (N, 2, H, W) displacement."""
    _, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    return xs + flow[:, 0], ys + flow[:, 1]


def feature_warp(x: Tensor, flow: Tensor) -> Tensor:
    """The network-internal warp Wf of the published code (spec section 7).

    (quirk) Coordinates are normalised the align_corners=True way but sampled with
    align_corners=False, which stretches by w/(w-1) and shifts by half a pixel. Published
    checkpoints were trained with it, so it stays.
    """
    _, _, h, w = x.shape
    gx, gy = _pixel_grid(flow)
    grid = torch.stack((2 * gx / (w - 1) - 1, 2 * gy / (h - 1) - 1), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_image(image: Tensor, flow: Tensor) -> Tensor:
    """Pixel-exact bilinear backward warp with border values outside (spec section 9)."""
    _, _, h, w = image.shape
    gx, gy = _pixel_grid(flow.to(image.dtype))
    grid = torch.stack((2 * gx / max(w - 1, 1) - 1, 2 * gy / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a displacement to another grid of the same field of view, rescaling its pixels.

    Uses the pixel-centre (align_corners=False) correspondence, so a constant shift of
    t input pixels becomes t * new/old output pixels along each axis.
    """
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device)
    return out * scale.view(1, 2, 1, 1)


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample (N, C, H, W) images to ``size`` over the same field of view (bilinear, pixel centres;
    antialiased when shrinking): how images go to and from the network's working resolution."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinks = image.shape[-2] > size[0] or image.shape[-1] > size[1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrinks)
