"""A faster, numerically equivalent form of the network for inference.

Every ``conv3x3(conv1x1(y))`` pair of a Restormer block is folded into one 3x3 convolution
(weights multiplied out in float64), and the branches that read the same input (q, k, v of
MDTA; the two GDFN branches) are stacked into one convolution. The 1x1 bias is zero-padded
in the original, so the folded bias depends on the position near the border: it is computed
once per image size and cached. This cuts the GDFN cost about 4x and leaves every output the
same to float32 rounding.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bsafusion import BSAFusionNet
from .layers import plane_layer_norm
from .restormer import ChannelAttention, RestormerBlock


class FoldedConv(nn.Module):
    """Stacked ``conv3x3(conv1x1(x))`` branches as one 3x3 convolution plus a bias map."""

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        weights, inner_biases, outer = [], [], []
        for point, spatial in branches:
            w1 = point.weight.detach().double()[:, :, 0, 0]  # (M, Cin)
            w2 = spatial.weight.detach().double()  # (Cout, M, 3, 3)
            weights.append(torch.einsum("omyx,mi->oiyx", w2, w1))
            inner_biases.append(point.bias.detach().double())
            outer.append(spatial)
        self.register_buffer("weight", torch.cat(weights).float().contiguous())
        self._outer_weights = [s.weight.detach().double() for s in outer]
        self._outer_biases = [s.bias.detach().double() for s in outer]
        self._inner_biases = inner_biases
        self._bias_maps: dict[tuple, Tensor] = {}

    def bias_map(self, height: int, width: int, like: Tensor) -> Tensor:
        """Exact bias of the folded conv at each pixel: the 1x1 bias only inside the image."""
        key = (height, width, like.device, like.dtype)
        if key not in self._bias_maps:
            maps = []
            for w2, b2, b1 in zip(self._outer_weights, self._outer_biases, self._inner_biases, strict=True):
                inner = b1.view(1, -1, 1, 1).expand(1, -1, height, width)
                maps.append(F.conv2d(inner, w2, b2, padding=1))
            self._bias_maps[key] = torch.cat(maps, dim=1).to(like.device, like.dtype)
        return self._bias_maps[key]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, padding=1) + self.bias_map(*x.shape[-2:], like=x)


class FoldedRestormerBlock(nn.Module):
    """The same function as a :class:`RestormerBlock`, with folded convolutions."""

    def __init__(self, block: RestormerBlock) -> None:
        super().__init__()
        self.mlp = block.mlp
        self.attention: ChannelAttention = block.mdta
        mdta, gdfn = block.mdta, block.gdfn
        self.qkv = FoldedConv([mdta.conv1, mdta.conv2, mdta.conv3])
        self.attention_out = mdta.conv4
        self.gates = FoldedConv([gdfn.Dconv1, gdfn.Dconv2])
        self.feed_out = gdfn.conv

    def forward(self, x: Tensor) -> Tensor:
        x = self.mlp(x)
        q, k, v = self.qkv(plane_layer_norm(x)).chunk(3, dim=1)
        x = self.attention_out(self.attention.attend(q, k, v)) + x
        a, b = self.gates(plane_layer_norm(x)).chunk(2, dim=1)
        return x + self.feed_out(F.gelu(a) * b)


def fold_for_inference(net: BSAFusionNet) -> BSAFusionNet:
    """A copy of ``net`` in eval mode with every Restormer block folded (no gradients)."""
    folded = copy.deepcopy(net).eval().requires_grad_(False)
    with torch.no_grad():
        for parent in list(folded.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, RestormerBlock):
                    setattr(parent, name, FoldedRestormerBlock(child))
    return folded
