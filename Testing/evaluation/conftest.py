"""Tiny generated data and a randomly initialised network saved at a 64x64 working size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from BSAFusionCore.images import write_image

SIZE = 64


def phantom(seed: int, size: int = SIZE) -> np.ndarray:
    """A head-like grayscale image in [0, 1]: an ellipse with a brighter rim and random blobs."""
    rng = np.random.default_rng(seed)
    rows, cols = (np.mgrid[0:size, 0:size] - size / 2) / (size / 2)
    radius = np.sqrt((rows / 0.8) ** 2 + (cols / 0.65) ** 2)
    image = np.where(radius < 1.0, 0.35, 0.0) + np.where((radius > 0.85) & (radius < 1.0), 0.5, 0.0)
    for _ in range(4):
        r0, c0 = rng.uniform(-0.4, 0.4, 2)
        image += 0.3 * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / 0.02)
    return np.clip(image, 0.0, 1.0)


@pytest.fixture(scope="session")
def make_phantom():
    """:func:`phantom`, for tests."""
    return phantom


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from BSAFusionCore.network import BSAFusionNet
    from BSAFusionCore.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random64.safetensors"
    save_weights(path, BSAFusionNet(), {"modality": "CT", "image_size": SIZE, "trained": False})
    return path


@pytest.fixture(scope="session")
def aligned_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An aanlib-style folder CT-MRI/{MRI,CT} with three aligned 64x64 pairs."""
    root = tmp_path_factory.mktemp("aligned")
    for index in range(3):
        mri = phantom(index)
        write_image(root / "CT-MRI" / "MRI" / f"{index:06d}.png", mri)
        write_image(root / "CT-MRI" / "CT" / f"{index:06d}.png", np.clip(1.0 - mri, 0, 1) * (mri > 0))
    return root


@pytest.fixture(scope="session")
def testset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fixed/, moving/ and label/ with two cases; the moving images are shifted by 2 pixels."""
    root = tmp_path_factory.mktemp("testset")
    for index in range(2):
        label = phantom(10 + index)
        write_image(root / "fixed" / f"case{index}.png", phantom(20 + index))
        write_image(root / "label" / f"case{index}.png", label)
        write_image(root / "moving" / f"case{index}.png", np.roll(label, 2, axis=1))
    return root
