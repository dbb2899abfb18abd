"""``process`` output nodes: created on the fixed geometry, reused when given, errors change nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import (
    make_volume,
    node_state,
    resample_through_transform,
    rotation,
    scene_state,
    warp_with_sitk,
)

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from BSAFusionSlicerLib.logic import RECORD_ATTRIBUTE, OutputNodes, fill_output_nodes, process  # noqa: E402
from BSAFusionSlicerLib.volume_nodes import image_from_volume_node  # noqa: E402

from BSAFusionCore.errors import InputError  # noqa: E402

RECORD = {"model": "CT", "prealign": "none"}



def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_created_outputs_lie_on_the_fixed_geometry(scene_with_inputs, fixed_image, moving_image, displacement) -> None:
    scene, fixed_node, moving_node = scene_with_inputs
    before = node_state(fixed_node), node_state(moving_node)
    warped = warp_with_sitk(moving_image, fixed_image, displacement)
    fused = sitk.RescaleIntensity(fixed_image, 0.0, 1.0)
    nodes = fill_output_nodes(
        scene, OutputNodes(None, None, None), fused, warped, displacement, name="CT", record=RECORD
    )

    assert nodes.fused.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert nodes.transform.GetClassName() == "vtkMRMLGridTransformNode"
    assert [n.GetName() for n in nodes] == ["CT fused", "CT warped", "CT displacement"]
    for node in (nodes.fused, nodes.warped):
        assert node.GetScene() is scene
        assert node.GetImageData().GetDimensions() == fixed_node.GetImageData().GetDimensions()
        np.testing.assert_allclose(ijk_to_ras(node), ijk_to_ras(fixed_node), atol=1e-9)
        assert json.loads(node.GetAttribute(RECORD_ATTRIBUTE)) == RECORD
    np.testing.assert_allclose(slicer.util.arrayFromVolume(nodes.fused), sitk.GetArrayFromImage(fused))
    expected = sitk.GetArrayFromImage(warped)
    resampled = resample_through_transform(moving_node, fixed_node, nodes.transform)
    inside = (expected != 0) & (resampled != 0)
    np.testing.assert_allclose(resampled[inside], expected[inside], atol=1e-3)
    assert (node_state(fixed_node), node_state(moving_node)) == before


def test_given_output_nodes_are_filled_not_duplicated(scene_with_inputs, fixed_image, moving_image, displacement):
    scene, _, _ = scene_with_inputs
    given = OutputNodes(
        scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my fused"),
        scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped"),
        scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "my transform"),
    )
    given.warped.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    count = scene.GetNumberOfNodes()
    warped = warp_with_sitk(moving_image, fixed_image, displacement)
    nodes = fill_output_nodes(scene, given, fixed_image, warped, displacement, name="CT", record=RECORD)
    assert tuple(nodes) == tuple(given)
    assert scene.GetNumberOfNodes() - count <= 2  # at most the display nodes of the two volumes
    assert nodes.warped.GetTransformNodeID() is None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes.warped), sitk.GetArrayFromImage(warped))


def test_rgb_fusion_becomes_a_vector_volume(scene_with_inputs, fixed_image, moving_image, displacement):
    scene, fixed_node, _ = scene_with_inputs
    rgb = make_volume(
        fixed_image.GetSize(), fixed_image.GetSpacing(), fixed_image.GetOrigin(), rotation(0.1, 0.05, 0.3), 3
    )
    warped = warp_with_sitk(moving_image, fixed_image, displacement)
    nodes = fill_output_nodes(scene, OutputNodes(None, None, None), rgb, warped, displacement, name="PET", record={})
    assert nodes.fused.GetClassName() == "vtkMRMLVectorVolumeNode"
    back = image_from_volume_node(nodes.fused)
    assert back.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(rgb))
    np.testing.assert_allclose(ijk_to_ras(nodes.fused), ijk_to_ras(fixed_node), atol=1e-9)


def bad_calls(scene, fixed_node, moving_node):
    """Calls that must fail before anything is changed, with a fragment of the expected message."""
    other = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLScalarVolumeNode", "elsewhere")
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "manual warp")
    warped_moving = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT under warp")
    warped_moving.Copy(moving_node)
    warped_moving.SetAndObserveImageData(moving_node.GetImageData())
    warped_moving.SetAndObserveTransformNodeID(warp.GetID())
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "scalar out")
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "a model")
    return [
        (lambda: process(fixed_node, moving_node, modality="MR"), "unknown modality 'MR'"),
        (lambda: process(fixed_node, moving_node, window="brain"), "unknown option"),
        (lambda: process(fixed_node, other), "same scene"),
        (lambda: process(fixed_node, None), "same scene"),
        (
            lambda: process(fixed_node, moving_node, "PET", fusedVolumeNode=scalar, color_fusion=True),
            "scalar out",
        ),
        (lambda: process(fixed_node, moving_node, transformNode=model), "'a model' is a vtkMRMLModelNode"),
        (lambda: process(fixed_node, warped_moving), "non-linear transform 'manual warp'"),
        (lambda: process(fixed_node, moving_node, warpedVolumeNode=moving_node), "'CT' is an input"),
    ]


def test_bad_calls_raise_a_clear_error_and_leave_the_scene_as_it_was(scene_with_inputs) -> None:
    scene, fixed_node, moving_node = scene_with_inputs
    calls = bad_calls(scene, fixed_node, moving_node)
    nodes_before = scene_state(scene)
    inputs_before = node_state(fixed_node), node_state(moving_node)
    for call, message in calls:
        with pytest.raises(InputError, match=message):
            call()
        assert scene_state(scene) == nodes_before
        assert (node_state(fixed_node), node_state(moving_node)) == inputs_before
