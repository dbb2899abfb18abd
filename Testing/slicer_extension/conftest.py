"""Fixtures for the Qt-free Slicer logic tests; puts BSAFusionSlicer/ on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import make_volume, physical_points, rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "BSAFusionSlicer"))

from BSAFusionSlicerLib.volume_nodes import update_volume_node_from_image


@pytest.fixture()
def fixed_image() -> sitk.Image:
    return make_volume((40, 36, 12), (1.2, 1.1, 2.5), (-22.0, -18.0, -14.0), rotation(0.1, 0.05, 0.3))


@pytest.fixture()
def moving_image() -> sitk.Image:
    return make_volume((44, 40, 14), (1.0, 1.3, 2.0), (-20.0, -25.0, -12.0), rotation(-0.05, 0.1, -0.2))


@pytest.fixture()
def displacement(fixed_image: sitk.Image) -> sitk.Image:
    """A smooth LPS displacement field (mm) on the fixed grid, non-zero in all three components."""
    p = physical_points(fixed_image)
    vectors = np.stack([3 * np.sin(p[..., 1] / 10), 2 * np.cos(p[..., 0] / 12), 0.5 * np.sin(p[..., 2] / 6)], -1)
    field = sitk.GetImageFromArray(vectors.astype(np.float64), isVector=True)
    field.CopyInformation(fixed_image)
    return field


@pytest.fixture()
def scene_with_inputs(fixed_image, moving_image):
    scene = slicer.vtkMRMLScene()
    fixed_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRI")
    moving_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    update_volume_node_from_image(fixed_node, fixed_image)
    update_volume_node_from_image(moving_node, moving_image)
    return scene, fixed_node, moving_node
