"""The displacement as a grid transform node reproduces SimpleITK's warp, also after saving it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import resample_through_transform, warp_with_sitk

slicer = pytest.importorskip("slicer")

from BSAFusionSlicerLib.grid_transform import grid_transform_from_displacement  # noqa: E402
from BSAFusionSlicerLib.volume_nodes import image_from_volume_node, update_volume_node_from_image  # noqa: E402


def build_scene(fixed: sitk.Image, moving: sitk.Image, displacement: sitk.Image):
    scene = slicer.vtkMRMLScene()
    fixed_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRI")
    moving_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    update_volume_node_from_image(fixed_node, fixed)
    update_volume_node_from_image(moving_node, moving)
    transform_node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "displacement")
    transform_node.SetAndObserveTransformFromParent(grid_transform_from_displacement(displacement))
    return scene, fixed_node, moving_node, transform_node


def assert_reproduces_sitk(moving_node, fixed_node, transform_node, expected: np.ndarray) -> None:
    resampled = resample_through_transform(moving_node, fixed_node, transform_node)
    both_inside = (expected != 0) & (resampled != 0)
    assert both_inside.mean() > 0.4
    np.testing.assert_allclose(resampled[both_inside], expected[both_inside], atol=1e-3)


def test_transform_node_resamples_like_sitk(fixed_image, moving_image, displacement) -> None:
    _scene, fixed_node, moving_node, transform_node = build_scene(fixed_image, moving_image, displacement)
    expected = sitk.GetArrayFromImage(warp_with_sitk(moving_image, fixed_image, displacement))
    assert_reproduces_sitk(moving_node, fixed_node, transform_node, expected)


def test_transform_is_not_a_no_op(fixed_image, moving_image, displacement) -> None:
    """The field moves voxels by millimetres: ignoring it or flipping its sign gives other values."""
    flipped = sitk.GetImageFromArray(-sitk.GetArrayFromImage(displacement), isVector=True)
    flipped.CopyInformation(displacement)
    _scene, fixed_node, moving_node, transform_node = build_scene(fixed_image, moving_image, flipped)
    expected = sitk.GetArrayFromImage(warp_with_sitk(moving_image, fixed_image, displacement))
    resampled = resample_through_transform(moving_node, fixed_node, transform_node)
    both_inside = (expected != 0) & (resampled != 0)
    assert np.abs(resampled - expected)[both_inside].max() > 5.0


def test_hardening_the_transform_on_the_moving_volume_reproduces_the_warp(
    fixed_image, moving_image, displacement
) -> None:
    _scene, _, moving_node, transform_node = build_scene(fixed_image, moving_image, displacement)
    moving_node.SetAndObserveTransformNodeID(transform_node.GetID())
    assert slicer.vtkSlicerTransformLogic.hardenTransform(moving_node)
    hardened = image_from_volume_node(moving_node)
    on_fixed = sitk.GetArrayFromImage(sitk.Resample(hardened, fixed_image, sitk.Transform(), sitk.sitkLinear))
    expected = sitk.GetArrayFromImage(warp_with_sitk(moving_image, fixed_image, displacement))
    inside = sitk.BinaryErode(sitk.GetImageFromArray(((on_fixed != 0) & (expected != 0)).astype(np.uint8)), [2, 2, 1])
    inside = sitk.GetArrayFromImage(inside) > 0
    assert inside.mean() > 0.3
    # hardening resamples twice (onto the moving grid, then here onto the fixed grid): 1 % of the range
    np.testing.assert_allclose(on_fixed[inside], expected[inside], atol=0.01 * np.ptp(expected))


@pytest.mark.parametrize("extension", [".h5", ".nrrd"])
def test_saved_transform_reads_back_and_still_reproduces_the_warp(
    tmp_path: Path, extension: str, fixed_image, moving_image, displacement
) -> None:
    scene, fixed_node, moving_node, transform_node = build_scene(fixed_image, moving_image, displacement)
    path = tmp_path / f"displacement{extension}"
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(transform_node)
    transform_node.SetAndObserveStorageNodeID(storage.GetID())

    loaded = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "loaded")
    reader = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    reader.SetFileName(str(path))
    assert reader.ReadData(loaded)
    assert loaded.GetTransformFromParent().GetClassName() == "vtkOrientedGridTransform"
    np.testing.assert_allclose(
        slicer.util.arrayFromGridTransform(loaded), slicer.util.arrayFromGridTransform(transform_node)
    )
    expected = sitk.GetArrayFromImage(warp_with_sitk(moving_image, fixed_image, displacement))
    assert_reproduces_sitk(moving_node, fixed_node, loaded, expected)
    if extension == ".nrrd":  # what Slicer writes is the ITK (LPS) displacement field SimpleITK reads
        field = sitk.ReadImage(str(path))
        np.testing.assert_allclose(sitk.GetArrayFromImage(field), sitk.GetArrayFromImage(displacement))
        np.testing.assert_allclose(field.GetOrigin(), displacement.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(field.GetDirection(), displacement.GetDirection(), atol=1e-9)
