"""Small random-weight models shared by the core tests."""

from __future__ import annotations

import pytest
import torch

from BSAFusionCore.model import FusionModel, model_from_network
from BSAFusionCore.network import BSAFusionNet


@pytest.fixture(scope="session")
def random_net() -> BSAFusionNet:
    torch.manual_seed(0)
    return BSAFusionNet().eval()


@pytest.fixture(scope="session")
def small_model(random_net: BSAFusionNet) -> FusionModel:
    """Random weights at a 64x64 working resolution: fast, same code paths as 256."""
    return model_from_network(random_net, "cpu", {"image_size": 64})
