"""``process`` end to end on generated volumes with a small random-weight network (64 px working size)."""

from __future__ import annotations

import itertools
import json
import threading

import numpy as np
import pytest
from mrml_helpers import make_volume, node_state, resample_through_transform, rotation, scene_state

slicer = pytest.importorskip("slicer")
torch = pytest.importorskip("torch")

from BSAFusionSlicerLib.logic import RECORD_ATTRIBUTE, process  # noqa: E402
from BSAFusionSlicerLib.volume_nodes import update_volume_node_from_image  # noqa: E402

from BSAFusionCore.errors import Cancelled, InputError, WeightsError  # noqa: E402
from BSAFusionCore.model import model_from_network  # noqa: E402
from BSAFusionCore.network import BSAFusionNet  # noqa: E402


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return model_from_network(BSAFusionNet(), "cpu", {"image_size": 64, "modality": "CT"})



def warped_and_resampled(nodes, fixed_node, moving_node):
    """The warped volume, the moving volume resampled through the transform node, and where both are defined."""
    warped = slicer.util.arrayFromVolume(nodes.warped)
    resampled = resample_through_transform(moving_node, fixed_node, nodes.transform)
    outside = float(np.min(slicer.util.arrayFromVolume(moving_node)))
    return warped, resampled, (warped != outside) & (resampled != 0)


def test_process_fills_outputs_whose_transform_reproduces_the_warped_volume(scene_with_inputs, small_model):
    _scene, fixed_node, moving_node = scene_with_inputs
    before = node_state(fixed_node), node_state(moving_node)
    stages: list[tuple[float, str]] = []
    nodes = process(
        fixed_node,
        moving_node,
        "CT",
        progressCallback=lambda f, s: stages.append((f, s)),
        model=small_model,
        batch_size=4,
    )

    assert (node_state(fixed_node), node_state(moving_node)) == before
    assert stages[0] == (0.0, "loading model") and stages[-1] == (1.0, "writing outputs")
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(stages))
    fused = slicer.util.arrayFromVolume(nodes.fused)
    assert fused.shape == slicer.util.arrayFromVolume(fixed_node).shape
    assert fused.min() >= 0.0 and fused.max() <= 1.0 and fused.std() > 0.01
    assert "timings" in nodes.fused.GetAttribute(RECORD_ATTRIBUTE)

    warped, resampled, inside = warped_and_resampled(nodes, fixed_node, moving_node)
    assert inside.sum() > 1000  # random weights move a lot out of view; enough voxels remain to compare
    np.testing.assert_allclose(resampled[inside], warped[inside], atol=1e-3)


def test_rigid_prealignment_is_part_of_the_transform(scene_with_inputs, fixed_image, small_model):
    scene, fixed_node, _ = scene_with_inputs
    shifted = make_volume((44, 40, 14), (1.0, 1.3, 2.0), (-14.0, -25.0, -12.0), rotation(-0.05, 0.1, -0.2))
    moving_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "shifted CT")
    update_volume_node_from_image(moving_node, shifted)
    nodes = process(fixed_node, moving_node, "CT", model=small_model, prealign="rigid", batch_size=8)
    assert json.loads(nodes.transform.GetAttribute(RECORD_ATTRIBUTE))["prealignment"]["type"]
    warped, resampled, inside = warped_and_resampled(nodes, fixed_node, moving_node)
    assert inside.sum() > 1000  # random weights move a lot out of view; enough voxels remain to compare
    np.testing.assert_allclose(resampled[inside], warped[inside], atol=1e-3)


def test_colour_fusion_of_pet_gives_an_rgb_vector_volume(scene_with_inputs, small_model):
    _scene, fixed_node, moving_node = scene_with_inputs
    nodes = process(fixed_node, moving_node, "PET", model=small_model, color_fusion=True, batch_size=8)
    assert nodes.fused.GetClassName() == "vtkMRMLVectorVolumeNode"
    assert slicer.util.arrayFromVolume(nodes.fused).shape[-1] == 3


def test_failures_inside_the_pipeline_leave_the_scene_as_it_was(scene_with_inputs, small_model, tmp_path):
    scene, fixed_node, moving_node = scene_with_inputs
    nodes_before = scene_state(scene)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        process(fixed_node, moving_node, "CT", model=small_model, cancel=cancel)
    with pytest.raises(WeightsError, match="does not exist"):
        process(fixed_node, moving_node, "CT", model=str(tmp_path / "missing.safetensors"))
    with pytest.raises(InputError, match="CT window"):
        process(fixed_node, moving_node, "CT", model=small_model, ct_window="lung")
    assert scene_state(scene) == nodes_before


@pytest.mark.slow
def test_real_ct_mri_pair_with_rigid_prealignment(shared_dir, small_model):
    """Scanner geometry and int16 HU from ../shared/data/volumes: the transform reproduces warped."""
    import SimpleITK as sitk

    folder = shared_dir / "data" / "volumes"
    scene = slicer.vtkMRMLScene()
    fixed_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")
    moving_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    update_volume_node_from_image(fixed_node, sitk.ReadImage(str(folder / "mridir_t2_1.5x1.5x2.5.nrrd")))
    update_volume_node_from_image(moving_node, sitk.ReadImage(str(folder / "mridir_ct_1.5x1.5x2.5.nrrd")))
    nodes = process(fixed_node, moving_node, "CT", model=small_model, prealign="rigid", batch_size=16)
    warped, resampled, inside = warped_and_resampled(nodes, fixed_node, moving_node)
    assert inside.mean() > 0.1
    np.testing.assert_allclose(resampled[inside], warped[inside], atol=0.05)  # HU
