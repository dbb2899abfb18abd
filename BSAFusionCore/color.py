"""RGB <-> YCbCr with the coefficients of the published pipeline (spec section 11), values in [0, 1].

(quirk) The published forward conversion weights G by 0.564 where BT.601 has 0.504, so the two
conversions are not exact inverses. Published results were made with these numbers; they stay.
"""

from __future__ import annotations

import torch
from torch import Tensor

_TO_YCBCR = torch.tensor([[0.257, 0.564, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]])
_TO_YCBCR_OFFSET = torch.tensor([0.0625, 0.5, 0.5])
_TO_RGB = torch.tensor([[1.164, 0.0, 1.596], [1.164, -0.392, -0.813], [1.164, 2.017, 0.0]])


def _apply(matrix: Tensor, image: Tensor) -> Tensor:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) image, got {tuple(image.shape)}")
    return torch.einsum("oc,nchw->nohw", matrix.to(image), image)


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB to (N, 3, H, W) Y, Cb, Cr."""
    return _apply(_TO_YCBCR, rgb) + _TO_YCBCR_OFFSET.to(rgb).view(1, 3, 1, 1)


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    """(N, 3, H, W) Y, Cb, Cr to RGB (not clipped)."""
    return _apply(_TO_RGB, ycbcr - _TO_YCBCR_OFFSET.to(ycbcr).view(1, 3, 1, 1))
