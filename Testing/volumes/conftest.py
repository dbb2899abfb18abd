"""Fixtures of the volume tests: a small random-weight model and phantom volume files."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from volume_phantoms import CT_CONTRAST, MRI_CONTRAST, fixed_grid, moving_grid, sample

from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.resources import WEIGHTS_DIR_VARIABLE
from BSAFusionCore.weights import save_weights

TEST_IMAGE_SIZE = 64  # the network's working resolution in these tests: small, so that they are fast


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with randomly initialised ``BSAFusion_CT.safetensors`` (and PET)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = BSAFusionNet()
    for modality in ("CT", "PET"):
        save_weights(folder / f"BSAFusion_{modality}.safetensors", net,
                     {"modality": modality, "image_size": TEST_IMAGE_SIZE, "note": "random weights, for tests"})
    return folder


@pytest.fixture
def bundled(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the random weights the bundled ones (``--modality CT`` finds them)."""
    monkeypatch.setenv(WEIGHTS_DIR_VARIABLE, str(weights_dir))
    return weights_dir


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fixed.nrrd (MRI-like, oblique, anisotropic) and moving.nrrd (CT-like int16 HU, another grid)."""
    folder = tmp_path_factory.mktemp("phantoms")
    files = {"fixed": folder / "fixed.nrrd", "moving": folder / "moving.nrrd"}
    sitk.WriteImage(sample(fixed_grid(), MRI_CONTRAST, pixel_type=sitk.sitkInt16), str(files["fixed"]))
    sitk.WriteImage(sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16), str(files["moving"]))
    return files
