"""The speed yardstick (a plain reading of the spec) computes the published network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from yardstick import forward, state_of


def test_yardstick_reproduces_the_fixture(reference_fixture: Path) -> None:
    expected = np.load(reference_fixture / "expected.npz")
    checkpoint = torch.load(reference_fixture / "reference_checkpoint.pkl", map_location="cpu", weights_only=True)
    fused, warped, flow = forward(torch.from_numpy(expected["fixed"]), torch.from_numpy(expected["moving"]),
                                  state_of(checkpoint))
    assert np.abs(fused.numpy() - expected["fused"]).max() < 1e-3
    assert np.abs(flow.numpy() - expected["flow"]).max() < 1e-2
    assert np.abs(warped.numpy() - expected["warped_moving"]).max() < 1e-3
