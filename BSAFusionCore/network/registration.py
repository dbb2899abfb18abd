"""Bidirectional stepwise feature alignment, BSFA (spec section 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import conv1x1, conv3x3, resize
from .warp import feature_warp

CHANNELS = (256, 64, 32, 16, 8, 1)
LEVELS = 5


class _ConvAct(nn.Sequential):
    """conv then activation; the conv is item ``0`` as in the published modules."""

    def __init__(self, conv: nn.Conv2d, activation: nn.Module) -> None:
        super().__init__(conv, activation)


class CrossAttention(nn.Module):
    """CA(a, b) = a' * softmax_hw(a' * b') + a with a' = relu(conv1(a)), b' = relu(conv2(b))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _ConvAct(conv3x3(channels, channels), nn.ReLU())
        self.conv2 = _ConvAct(conv3x3(channels, channels), nn.ReLU())

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        a1 = self.conv1(a)
        weights = torch.softmax((a1 * self.conv2(b)).flatten(2), dim=2).view_as(a1)
        return a1 * weights + a


class _Refine(nn.Module):
    """s + relu(conv3x3(s)); nested as ``feature_output.0.feature_output.0`` in checkpoints."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.feature_output = _ConvAct(conv3x3(channels, channels), nn.ReLU())

    def forward(self, s: Tensor) -> Tensor:
        return s + self.feature_output(s)


class RegistrationLayer(nn.Module):
    """FR(c_in -> c_out): one side's state and the pair map give a flow and the next state."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv1x1 = _ConvAct(conv1x1(2 * channels_in, channels_in), nn.LeakyReLU())
        self.crossAtt1 = CrossAttention(channels_in)
        self.feature_output = nn.Sequential(_Refine(channels_in))
        self.flow_output = _ConvAct(conv3x3(channels_in, 2), nn.Tanh())
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                 conv1x1(channels_in, channels_out), nn.LeakyReLU())

    def forward(self, state: Tensor, pair: Tensor, *, last: bool = False) -> tuple[Tensor | None, Tensor]:
        g = self.conv1x1(pair)
        s = self.feature_output(self.crossAtt1(state, g) + self.crossAtt1(g, state))
        flow = self.flow_output(s)
        return (None if last else self.up1(s)), flow


class DecoderBlock(nn.Module):
    """D_k: up2 -> conv1x1 -> conv3x3 -> InstanceNorm -> LeakyReLU."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.up_sample = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                       conv1x1(channels_in, channels_out))
        self.conv1 = conv3x3(channels_out, channels_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(F.instance_norm(self.conv1(self.up_sample(x)), eps=1e-5))


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for k in range(1, LEVELS):
            self.add_module(f"up{k}", DecoderBlock(CHANNELS[k - 1], CHANNELS[k]))


def compose_flows(level_flows: list[Tensor], size: tuple[int, int]) -> Tensor:
    """Path-independent composition (Eq. 7): sum_i 2^(5-i) * resize(phi_i to full size)."""
    terms = [resize(flow, size, align_corners=True) * float(2 ** (LEVELS - i))
             for i, flow in enumerate(level_flows, start=1)]
    return torch.stack(terms).sum(dim=0)


class BidirectionalAlignment(nn.Module):
    """The ``reg_net_state_dict``: five forward (f1) and reverse (f2) layers and the decoder D."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(1, LEVELS + 1):
            self.add_module(f"f1_FR{i}", RegistrationLayer(CHANNELS[i - 1], CHANNELS[i]))
        for i in range(1, LEVELS + 1):
            self.add_module(f"f2_FR{i}", RegistrationLayer(CHANNELS[i - 1], CHANNELS[i]))
        self.D = _Decoder()

    def flow_heads(self) -> list[tuple[int, nn.Conv2d]]:
        """(level, last convolution) of every flow head, both sides, levels 1..5 (training sets their
        initialisation and learning rates)."""
        return [
            (level, getattr(self, f"{side}_FR{level}").flow_output[0])
            for side in ("f1", "f2")
            for level in range(1, LEVELS + 1)
        ]

    def forward(self, map_a: Tensor, map_b: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per-level flows (fixed side, moving side) for token maps TA, TB."""
        feat_a, feat_b, state_a, state_b = map_a, map_b, map_a, map_b
        flows_a: list[Tensor] = []
        flows_b: list[Tensor] = []
        for i in range(1, LEVELS + 1):
            last = i == LEVELS
            pair = torch.cat((feat_a, feat_b), dim=1)
            state_a, flow_a = getattr(self, f"f1_FR{i}")(state_a, pair, last=last)
            state_b, flow_b = getattr(self, f"f2_FR{i}")(state_b, pair, last=last)
            flows_a.append(flow_a)
            flows_b.append(flow_b)
            if not last:
                decoder = getattr(self.D, f"up{i}")
                feat_a = decoder(feature_warp(feat_a, flow_a))
                feat_b = decoder(feature_warp(feat_b, flow_b))
        return flows_a, flows_b
