"""A faster, numerically equivalent form of the network for inference.

Every ``conv3x3(conv1x1(y))`` pair of a Restormer block is folded into one 3x3 convolution
(weights multiplied out in float64); q and k, which are read together, are stacked into one. The
1x1 bias is zero-padded in the original, so the folded bias is smaller on the 1-pixel border: a
correction computed once per image size and added there in place. This cuts the GDFN cost about 4x.

The folded convolutions read channels-last inputs: oneDNN's kernels for these few-channel,
full-resolution convolutions are several times faster in that layout, and every wide result is
consumed in it (the channel attention reads q, k and v pixel-major; the two GDFN branches are two
convolutions, so that ``gelu(a) * b`` runs on dense tensors). The residual stream stays NCHW, where
the per-plane layer norm is fastest. The results stay within the engine's bound of the published
form (see :func:`fold_for_inference`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bsafusion import BSAFusionNet
from .folded_registration import FoldedAlignment
from .layers import plane_layer_norm
from .restormer import RestormerBlock


class FoldedConv(nn.Module):
    """Stacked ``conv3x3(conv1x1(x))`` branches as one 3x3 convolution.

    The interior bias goes into the convolution; on the 1-pixel border, where the original's
    zero padding drops some of the 1x1 bias, a correction is added in place.
    """

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        weights, biases, missing = [], [], []
        for point, spatial in branches:
            w1 = point.weight.detach().double()[:, :, 0, 0]  # (M, Cin)
            w2 = spatial.weight.detach().double()  # (Cout, M, 3, 3)
            b1 = point.bias.detach().double()
            weights.append(torch.einsum("omyx,mi->oiyx", w2, w1))
            biases.append(spatial.bias.detach().double() + torch.einsum("omyx,m->o", w2, b1))
            # the bias the zero padding brought in, on a 3x3 image: its corners, edges and centre
            # are those of every image (the 1-pixel border is all that a 3x3 kernel sees of the padding)
            outside = F.pad(b1.new_zeros(1, b1.numel(), 3, 3), (1, 1, 1, 1), value=1.0)
            missing.append(F.conv2d(outside * b1.view(1, -1, 1, 1), w2)[0])
        self.register_buffer("weight", torch.cat(weights).float().contiguous())
        self.register_buffer("bias", torch.cat(biases).float())
        self._pattern = -torch.cat(missing)  # (C, 3, 3), float64
        self._borders: dict[tuple, tuple[Tensor, Tensor]] = {}

    def border_correction(self, height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(rows, columns): what to add on the top/bottom rows (C, 2, W) and left/right columns (C, H, 2)."""
        key = (height, width, like.device, like.dtype)
        if key not in self._borders:
            p = self._pattern

            def stretch(first: Tensor, middle: Tensor, last: Tensor, size: int) -> Tensor:
                return torch.cat((first, middle.expand(*middle.shape[:-1], size - 2), last), dim=-1)

            rows = stretch(p[:, [0, 2], :1], p[:, [0, 2], 1:2], p[:, [0, 2], 2:], width)
            columns = stretch(p[:, :1, [0, 2]].mT, p[:, 1:2, [0, 2]].mT, p[:, 2:, [0, 2]].mT, height).mT
            self._borders[key] = (rows.to(like), columns.to(like))
        return self._borders[key]

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight, self.bias, padding=1)
        rows, columns = self.border_correction(*x.shape[-2:], like=out)
        out[:, :, 0, :] += rows[:, 0]
        out[:, :, -1, :] += rows[:, 1]
        out[:, :, 1:-1, 0] += columns[:, 1:-1, 0]
        out[:, :, 1:-1, -1] += columns[:, 1:-1, 1]
        return out


class FoldedRestormerBlock(nn.Module):
    """The same function as a :class:`RestormerBlock`, with folded convolutions (layouts: see the
    module docstring)."""

    def __init__(self, block: RestormerBlock) -> None:
        super().__init__()
        self.mlp = block.mlp
        mdta, gdfn = block.mdta, block.gdfn
        self.query_key = FoldedConv([mdta.conv1, mdta.conv2])
        self.value = FoldedConv([mdta.conv3])
        self.attention_out = mdta.conv4
        self.gate = FoldedConv([gdfn.Dconv1])
        self.gated = FoldedConv([gdfn.Dconv2])
        self.feed_out = gdfn.conv

    def forward(self, x: Tensor) -> Tensor:
        x = self.mlp(x)
        y = plane_layer_norm(x).contiguous(memory_format=torch.channels_last)
        x = x + self._attention(self.query_key(y), self.value(y)).contiguous()
        y = plane_layer_norm(x).contiguous(memory_format=torch.channels_last)
        return x + self.feed_out(F.gelu(self.gate(y)) * self.gated(y)).contiguous()

    def _attention(self, query_key: Tensor, value: Tensor) -> Tensor:
        """conv4(V @ S) of MDTA, with S = softmax of K @ Q over all C*C entries (as
        :func:`~.restormer.channel_attention`, in float32), from channels-last [q, k] and v.
        K @ Q is a block of the Gram matrix of [q, k] over the pixels; conv4 after V @ S is one
        C x C matrix per image, applied to v."""
        n, c, h, w = value.shape
        with torch.autocast(value.device.type, enabled=False):  # sums over all pixels: not in 16 bits
            rows = query_key.float().permute(0, 2, 3, 1).reshape(n, h * w, 2 * c)
            gram = torch.bmm(rows.transpose(1, 2), rows)
            weights = torch.softmax(gram[:, c:, :c].flatten(1), dim=1).view(n, c, c)  # softmax(K @ Q)
            mixing = torch.matmul(self.attention_out.weight[:, :, 0, 0], weights.transpose(1, 2))
            values = value.float().permute(0, 2, 3, 1).reshape(n, h * w, c)
            out = torch.baddbmm(self.attention_out.bias.view(1, 1, c), values, mixing.transpose(1, 2))
        return out.view(n, h, w, c).permute(0, 3, 1, 2)


def fold_for_inference(net: BSAFusionNet) -> BSAFusionNet:
    """A copy of ``net`` in eval mode with every Restormer block folded and the BSFA net in its
    inference form (:class:`FoldedAlignment`; no gradients).

    Folding changes the arithmetic of the encoder's convolutions at the last bits, which the channel
    attention over all pixels amplifies: on the reference fixture the engine's flow differs from the
    published form's by ~1e-4 px and its fused image by up to ~1.5e-4, inside the engine's bound
    (1e-2 px, 1e-3; ``Testing/core/test_equivalence.py``).
    """
    folded = copy.deepcopy(net).eval().requires_grad_(False)
    with torch.no_grad():
        for parent in list(folded.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, RestormerBlock):
                    setattr(parent, name, FoldedRestormerBlock(child))
        folded.reg_net = FoldedAlignment(folded.reg_net)
    return folded
