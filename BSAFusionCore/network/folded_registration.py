"""BSFA rearranged for inference: the same function as :class:`BidirectionalAlignment`, fewer passes.

- The two sides' 1x1 convolutions of the pair map read the same input: one stacked convolution.
- Each side's cross-attention needs conv1 and conv2 of both its state and the pair map: one
  convolution with the two kernels stacked, over the state and the map as one batch.
- A 1x1 convolution commutes with bilinear upsampling (its weights sum to one), so the 1x1
  projections after each 2x upsampling run before it, on a quarter of the pixels.
- Both sides share the decoder: one pass over the two warped feature maps as one batch.

The arithmetic is the same up to float32 rounding (the engine's bound is checked in
``Testing/core/test_equivalence.py``). The registration path dominates the engine's FLOPs at
256 px (7.3 of 15.2 GFLOP per pair), so it pays to run it with as few passes as possible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registration import LEVELS, BidirectionalAlignment, RegistrationLayer
from .warp import feature_warp


def _stacked(convs: list[nn.Conv2d]) -> tuple[Tensor, Tensor]:
    weight = torch.cat([conv.weight.detach() for conv in convs]).contiguous()
    return weight, torch.cat([conv.bias.detach() for conv in convs])


def _upsample2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _attend(a1: Tensor, b2: Tensor, residual: Tensor) -> Tensor:
    """The cross-attention's tail: a1 * softmax_hw(a1 * b2) + residual."""
    return a1 * torch.softmax((a1 * b2).flatten(2), dim=2).view_as(a1) + residual


class _FoldedSide(nn.Module):
    """One side's registration layer FR_i with its cross-attention kernels stacked."""

    def __init__(self, layer: RegistrationLayer) -> None:
        super().__init__()
        weight, bias = _stacked([layer.crossAtt1.conv1[0], layer.crossAtt1.conv2[0]])
        self.register_buffer("attention_weight", weight)
        self.register_buffer("attention_bias", bias)
        self.refine = layer.feature_output[0].feature_output[0]
        self.flow_head = layer.flow_output[0]
        self.project = layer.up1[1]

    def forward(self, state: Tensor, pair: Tensor, *, last: bool) -> tuple[Tensor | None, Tensor]:
        n, c = state.shape[:2]
        y = F.relu(F.conv2d(torch.cat((state, pair)), self.attention_weight, self.attention_bias, padding=1))
        s = _attend(y[:n, :c], y[n:, c:], state) + _attend(y[n:, :c], y[:n, c:], pair)
        s = s + F.relu(self.refine(s))
        flow = torch.tanh(self.flow_head(s))
        if last:
            return None, flow
        return F.leaky_relu(_upsample2(self.project(s))), flow


class FoldedAlignment(nn.Module):
    """Inference form of the BSFA net (see the module docstring); eval only, no gradients."""

    def __init__(self, reg_net: BidirectionalAlignment) -> None:
        super().__init__()
        self.forward_side = nn.ModuleList(_FoldedSide(getattr(reg_net, f"f1_FR{i}")) for i in range(1, LEVELS + 1))
        self.reverse_side = nn.ModuleList(_FoldedSide(getattr(reg_net, f"f2_FR{i}")) for i in range(1, LEVELS + 1))
        for i in range(1, LEVELS + 1):
            weight, bias = _stacked([getattr(reg_net, f"{side}_FR{i}").conv1x1[0] for side in ("f1", "f2")])
            self.register_buffer(f"pair_weight{i}", weight)
            self.register_buffer(f"pair_bias{i}", bias)
        self.decoder = nn.ModuleList(getattr(reg_net.D, f"up{i}") for i in range(1, LEVELS))

    def _decode(self, level: int, x: Tensor) -> Tensor:
        block = self.decoder[level - 1]
        x = _upsample2(block.up_sample[1](x))
        return F.leaky_relu(F.instance_norm(block.conv1(x), eps=1e-5))

    def forward(self, map_a: Tensor, map_b: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per-level flows (fixed side, moving side) for token maps TA, TB."""
        n = map_a.shape[0]
        feat_a, feat_b, state_a, state_b = map_a, map_b, map_a, map_b
        flows_a: list[Tensor] = []
        flows_b: list[Tensor] = []
        for i in range(1, LEVELS + 1):
            last = i == LEVELS
            weight, bias = getattr(self, f"pair_weight{i}"), getattr(self, f"pair_bias{i}")
            pair_a, pair_b = F.leaky_relu(F.conv2d(torch.cat((feat_a, feat_b), dim=1), weight, bias)).chunk(2, dim=1)
            state_a, flow_a = self.forward_side[i - 1](state_a, pair_a, last=last)
            state_b, flow_b = self.reverse_side[i - 1](state_b, pair_b, last=last)
            flows_a.append(flow_a)
            flows_b.append(flow_b)
            if not last:
                warped = torch.cat((feature_warp(feat_a, flow_a), feature_warp(feat_b, flow_b)))
                feat_a, feat_b = self._decode(i, warped).split(n)
        return flows_a, flows_b
