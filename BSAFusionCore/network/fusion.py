"""Multi-modal feature fusion, MMFF, and the reconstruction layer (spec section 10)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import conv1x1, resize, upsample2
from .restormer import RestormerBlock
from .warp import feature_warp


class _UpConv(nn.Sequential):
    """up2 (align_corners=False) -> conv1x1 -> ReLU; the conv is item ``1``."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         conv1x1(channels_in, channels_out), nn.ReLU())


class UpSample(nn.Module):
    """U(cin, cout): ``up1`` serves both token maps, ``up3`` the running feature."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.up1 = _UpConv(channels_in, channels_out)
        self.up3 = _UpConv(channels_out, channels_out)

    def forward(self, map_a: Tensor, map_b: Tensor, feature: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.up1(map_a), self.up1(map_b), self.up3(feature)


def scaled_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """The full-size flow resized to ``size`` and divided by the size ratio, as published."""
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    return resize(flow, size, align_corners=False) / (flow.shape[-2] / size[0])


def _align(x: Tensor, flow: Tensor) -> Tensor:
    return feature_warp(x, scaled_flow(flow, x.shape[-2:]))


class FusionNet(nn.Module):
    """The ``fusion_net_state_dict``."""

    def __init__(self) -> None:
        super().__init__()
        self.F1 = RestormerBlock(512, 64)
        self.up_sample1 = UpSample(256, 64)
        self.F2 = RestormerBlock(192, 32)
        self.up_sample2 = UpSample(64, 32)
        self.F3 = RestormerBlock(96, 16)
        self.up_sample3 = UpSample(32, 16)
        self.F4 = RestormerBlock(48, 12)
        self.outLayer = nn.Sequential(RestormerBlock(28, 12), RestormerBlock(12, 1), nn.Sigmoid())

    def forward(self, map_a: Tensor, map_b: Tensor, shallow_a: Tensor, shallow_b: Tensor,
                flow: Tensor) -> Tensor:
        """Fuse the pre-Transfer token maps UA, UB and the shallow features along ``flow``."""
        feature = self.F1(torch.cat((map_a, _align(map_b, flow)), dim=1))
        for up, block in ((self.up_sample1, self.F2), (self.up_sample2, self.F3),
                          (self.up_sample3, self.F4)):
            map_a, map_b, feature = up(map_a, map_b, feature)
            feature = block(torch.cat((map_a, _align(map_b, flow), feature), dim=1))
        feature = upsample2(feature, align_corners=False)
        return self.outLayer(torch.cat((feature, shallow_a, feature_warp(shallow_b, flow)), dim=1))
