"""The Restormer block R(cin, cout) of the encoder and the fusion net (spec section 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import conv1x1, conv3x3, plane_layer_norm


def _point_then_3x3(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(conv1x1(channels_in, channels_out), conv3x3(channels_out, channels_out))


def channel_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax over all C*C entries of K @ Q (quirk: jointly, unscaled), then V @ S.

    The scores are sums over every pixel, so float32 rounding of the inputs' last bits
    moves the softmax visibly; computing this step in float64 (float32 on MPS, which has
    no float64) keeps results stable across thread counts and devices, and out of autocast.
    """
    n, c, h, w = q.shape
    dtype = torch.float32 if q.device.type == "mps" else torch.float64
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        scores = torch.bmm(k.flatten(2), q.flatten(2).transpose(1, 2))  # (N, C, C) = K @ Q
        weights = torch.softmax(scores.flatten(1), dim=1).view(n, c, c)
        out = torch.bmm(v.flatten(2).transpose(1, 2), weights)  # (N, HW, C) = V @ S
    return out.transpose(1, 2).reshape(n, c, h, w).float()


class ChannelAttention(nn.Module):
    """MDTA: attention between channels, each channel a vector of all pixels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _point_then_3x3(channels, channels)  # query
        self.conv2 = _point_then_3x3(channels, channels)  # key
        self.conv3 = _point_then_3x3(channels, channels)  # value
        self.conv4 = conv1x1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        y = plane_layer_norm(x)
        return self.conv4(channel_attention(self.conv1(y), self.conv2(y), self.conv3(y))) + x


class GatedFeedForward(nn.Module):
    """GDFN: gelu(a) * b with a, b two 1x1-then-3x3 branches of 4x width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.Dconv1 = _point_then_3x3(channels, 4 * channels)
        self.Dconv2 = _point_then_3x3(channels, 4 * channels)
        self.conv = conv1x1(4 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        y = plane_layer_norm(x)
        return x + self.conv(F.gelu(self.Dconv1(y)) * self.Dconv2(y))


class RestormerBlock(nn.Module):
    """R(cin, cout): a 1x1 projection, then MDTA and GDFN, each with its residual."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.mlp = conv1x1(channels_in, channels_out)
        self.mdta = ChannelAttention(channels_out)
        self.gdfn = GatedFeedForward(channels_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.gdfn(self.mdta(self.mlp(x)))


class Encoder(nn.Module):
    """Shared encoder: shallow (8 channels) and deep (3 channels) features (spec section 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.rb1 = RestormerBlock(1, 8)
        self.rb2 = RestormerBlock(8, 3)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        shallow = self.rb1(image)
        return shallow, self.rb2(shallow)
