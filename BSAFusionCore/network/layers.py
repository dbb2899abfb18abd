"""Small functional pieces shared by the BSAFusion blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def plane_layer_norm(x: Tensor) -> Tensor:
    """Normalise each (n, c) plane over its own H x W pixels, no affine (the spec's "LN")."""
    return F.layer_norm(x, x.shape[-2:])


def upsample2(x: Tensor, *, align_corners: bool) -> Tensor:
    """Bilinear 2x upsampling."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)


def resize(x: Tensor, size: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Bilinear resize to ``size`` (a no-op when the size already matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def tokens_to_map(tokens: Tensor, height: int, width: int) -> Tensor:
    """(N, P, C) tokens, row-major, to an (N, C, height, width) map."""
    n, p, c = tokens.shape
    if p != height * width:
        raise ValueError(f"{p} tokens do not fill a {height}x{width} map")
    return tokens.transpose(1, 2).reshape(n, c, height, width)


def conv1x1(cin: int, cout: int) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(cin, cout, kernel_size=1)


def conv3x3(cin: int, cout: int) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(cin, cout, kernel_size=3, padding=1)
