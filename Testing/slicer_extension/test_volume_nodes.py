"""MRML volume nodes <-> SimpleITK images with non-identity IJK-to-RAS (RAS <-> LPS flip)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import make_volume, rotation

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from BSAFusionSlicerLib.volume_nodes import (  # noqa: E402
    image_from_volume_node,
    update_volume_node_from_image,
)

from BSAFusionCore.errors import InputError  # noqa: E402

VOXELS = [(0, 0, 0), (5, 7, 3), (39, 35, 11), (12, 30, 8)]


def ras_of_voxel(node, ijk) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint((*ijk, 1.0))[:3])


def lps_to_ras(point) -> np.ndarray:
    return np.array(point) * [-1.0, -1.0, 1.0]


def test_image_to_node_puts_every_voxel_at_its_physical_point(fixed_image: sitk.Image) -> None:
    node = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    update_volume_node_from_image(node, fixed_image)
    voxels = slicer.util.arrayFromVolume(node)
    for ijk in VOXELS:
        np.testing.assert_allclose(
            ras_of_voxel(node, ijk), lps_to_ras(fixed_image.TransformIndexToPhysicalPoint(ijk)), atol=1e-9
        )
        assert voxels[ijk[::-1]] == fixed_image[ijk]


def test_node_built_by_slicer_api_converts_to_the_same_physical_points() -> None:
    node = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    voxels = np.arange(12 * 36 * 40, dtype=np.int16).reshape(12, 36, 40)
    slicer.util.updateVolumeFromArray(node, voxels)
    node.SetOrigin(10.0, -4.0, 7.5)
    node.SetSpacing(0.8, 1.25, 3.0)
    directions = rotation(0.3, -0.2, 0.7)
    node.SetIJKToRASDirections(*directions.T.ravel())
    image = image_from_volume_node(node)
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), voxels)
    for ijk in VOXELS:
        np.testing.assert_allclose(
            lps_to_ras(image.TransformIndexToPhysicalPoint(ijk)), ras_of_voxel(node, ijk), atol=1e-9
        )


def test_vector_volume_round_trip(fixed_image: sitk.Image) -> None:
    rgb = make_volume((20, 18, 6), (1.0, 1.5, 2.0), (5.0, -3.0, 1.0), rotation(0.2, 0.0, -0.4), components=3)
    node = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLVectorVolumeNode")
    update_volume_node_from_image(node, rgb)
    back = image_from_volume_node(node)
    assert back.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(rgb))
    np.testing.assert_allclose(back.GetDirection(), rgb.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), rgb.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetSpacing(), rgb.GetSpacing(), atol=1e-12)


def test_linear_parent_transform_is_part_of_the_geometry(fixed_image: sitk.Image) -> None:
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    update_volume_node_from_image(node, fixed_image)
    parent = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 12.0)
    shift.SetElement(2, 3, -5.0)
    parent.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(parent.GetID())
    image = image_from_volume_node(node)
    expected = lps_to_ras(fixed_image.GetOrigin()) + np.array([12.0, 0.0, -5.0])
    np.testing.assert_allclose(lps_to_ras(image.GetOrigin()), expected, atol=1e-9)


def test_non_linear_parent_transform_is_refused(fixed_image: sitk.Image) -> None:
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRI")
    update_volume_node_from_image(node, fixed_image)
    node.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp").GetID())
    with pytest.raises(InputError, match="non-linear transform 'warp'"):
        image_from_volume_node(node)


def test_volume_without_voxels_is_refused() -> None:
    node = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="'empty' has no voxels"):
        image_from_volume_node(node)
