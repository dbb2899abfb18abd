"""The inference engine's rearranged pieces compute what the published ones do (no fixture needed)."""

from __future__ import annotations

import pytest
import torch

from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.network.folded import FoldedConv, FoldedRestormerBlock, fold_for_inference
from BSAFusionCore.network.restormer import RestormerBlock


def _block(channels_in: int, channels_out: int) -> RestormerBlock:
    """A block with non-zero biases everywhere (the border correction depends on them)."""
    torch.manual_seed(channels_in + channels_out)
    block = RestormerBlock(channels_in, channels_out).eval()
    with torch.no_grad():
        for conv in block.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.bias.normal_(0.0, 0.5)
    return block


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (3, 5)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_folded_convolution_matches_its_branches_on_every_border(size, layout) -> None:
    block = _block(12, 12)
    branches = [block.gdfn.Dconv1, block.gdfn.Dconv2]
    x = torch.randn(2, 12, *size).contiguous(memory_format=layout)
    with torch.no_grad():
        want = torch.cat([branch(x) for branch in branches], dim=1)
        got = FoldedConv(branches)(x)
    assert torch.allclose(got, want, atol=2e-5, rtol=0), float((got - want).abs().max())


@pytest.mark.parametrize(("channels_in", "channels_out", "batch"), [(1, 8, 2), (28, 12, 1), (8, 3, 3)])
def test_folded_restormer_block_matches_the_published_block(channels_in, channels_out, batch) -> None:
    block = _block(channels_in, channels_out)
    x = torch.rand(batch, channels_in, 32, 32)
    with torch.no_grad():
        want, got = block(x), FoldedRestormerBlock(block)(x)
    assert got.shape == want.shape
    assert got.is_contiguous()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())


def test_engine_stays_within_its_bound_on_random_weights() -> None:
    torch.manual_seed(0)
    net = BSAFusionNet().eval()
    engine = fold_for_inference(net)
    fixed, moving = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        want = net(fixed, moving, with_discriminator=False)
        got = engine(fixed, moving, with_discriminator=False)
    assert float((got.fused - want.fused).abs().max()) <= 1e-3
    assert float((got.flow - want.flow).abs().max()) <= 1e-2
