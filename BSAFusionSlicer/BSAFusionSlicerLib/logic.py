"""``process``: BSAFusion on two MRML volume nodes, results as nodes in the same scene (no Qt)."""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

import SimpleITK as sitk

from BSAFusionCore.errors import InputError
from BSAFusionCore.options import MODALITIES
from BSAFusionCore.progress import ProgressCallback, report

from .grid_transform import grid_transform_from_displacement
from .volume_nodes import (
    SCALAR_VOLUME,
    VECTOR_VOLUME,
    array_to_matrix,
    ijk_to_ras_of_image,
    image_data_from_image,
    image_from_volume_node,
)

logger = logging.getLogger(__name__)

PIPELINE_OPTIONS = (
    "prealign",
    "fuse_only",
    "refine",
    "axis",
    "ct_window",
    "color_fusion",
    "colormap",
    "percentiles",
    "batch_size",
    "cancel",
)
"""Options passed on to ``BSAFusionCore.volumes.fuse_volumes`` unchanged."""

RECORD_ATTRIBUTE = "BSAFusion.record"
"""Node attribute holding the JSON record of the run (model, options, versions, timings)."""


class OutputNodes(NamedTuple):
    """The nodes ``process`` filled: fused volume, warped moving volume, displacement transform."""

    fused: Any
    warped: Any
    transform: Any


def process(
    fixedVolumeNode,
    movingVolumeNode,
    modality: str = "CT",
    fusedVolumeNode=None,
    warpedVolumeNode=None,
    transformNode=None,
    progressCallback: ProgressCallback | None = None,
    **options,
) -> OutputNodes:
    """Register and fuse the moving (CT/PET/SPECT) volume onto the fixed (MRI) volume.

    Missing output nodes are created in the inputs' scene and all three are returned. ``options``:
    ``model`` (bundled name, our ``.safetensors``, an authors' ``.pkl`` or a loaded ``FusionModel``;
    default: the bundled model of ``modality``), ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``...)
    and the options of ``fuse_volumes``: ``prealign``, ``fuse_only``, ``axis``, ``ct_window``, ``color_fusion``,
    ``colormap``, ``percentiles``, ``batch_size``, ``cancel``. On error the scene is left as it was.
    """
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    model = options.pop("model", None) or modality
    device = options.pop("device", None)
    unknown = sorted(set(options) - set(PIPELINE_OPTIONS))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; known: model, device, {', '.join(PIPELINE_OPTIONS)}")
    scene = fixedVolumeNode.GetScene() if fixedVolumeNode is not None else None
    if scene is None or movingVolumeNode is None or movingVolumeNode.GetScene() is not scene:
        raise InputError("the fixed and moving volumes must both be nodes of the same scene")
    for output in (fusedVolumeNode, warpedVolumeNode, transformNode):
        if output is not None and output in (fixedVolumeNode, movingVolumeNode):
            raise InputError(f"output node '{output.GetName()}' is an input: inputs are never overwritten")
    check_output_node(fusedVolumeNode, fused_volume_class(movingVolumeNode, bool(options.get("color_fusion"))))
    check_output_node(warpedVolumeNode, warped_volume_class(movingVolumeNode))
    check_output_node(transformNode, "vtkMRMLTransformNode")
    fixed = image_from_volume_node(fixedVolumeNode)
    moving = image_from_volume_node(movingVolumeNode)

    report(progressCallback, 0.0, "loading model")
    from BSAFusionCore.model import load_model  # imports torch: only when work is asked for
    from BSAFusionCore.volumes import fuse_volumes

    if isinstance(model, str):
        model = load_model(model, device=device)  # cached per (file, device) by load_model

    result = fuse_volumes(fixed, moving, model, progress=progressCallback, **options)
    report(progressCallback, 1.0, "writing outputs")
    return fill_output_nodes(
        scene,
        OutputNodes(fusedVolumeNode, warpedVolumeNode, transformNode),
        result.fused,
        result.warped,
        result.displacement,
        name=movingVolumeNode.GetName(),
        record=result.record,
    )


def check_output_node(node, class_name: str) -> None:
    """Refuse an output node of the wrong kind before any work is done."""
    if node is not None and not node.IsA(class_name):
        raise InputError(f"output node '{node.GetName()}' is a {node.GetClassName()}, expected a {class_name}")


def fused_volume_class(moving, color_fusion: bool) -> str:
    """RGB (vector) with colour fusion or an RGB moving volume, scalar otherwise."""
    return VECTOR_VOLUME if color_fusion or moving.IsA(VECTOR_VOLUME) else SCALAR_VOLUME


def warped_volume_class(moving) -> str:
    """The warped volume is of the moving volume's kind (RGB stays RGB)."""
    return VECTOR_VOLUME if moving.IsA(VECTOR_VOLUME) else SCALAR_VOLUME


def volume_class(image: sitk.Image) -> str:
    """The MRML volume class that holds ``image``: vector for RGB, scalar otherwise."""
    return VECTOR_VOLUME if image.GetNumberOfComponentsPerPixel() > 1 else SCALAR_VOLUME


def fill_output_nodes(
    scene,
    nodes: OutputNodes,
    fused: sitk.Image,
    warped: sitk.Image,
    displacement: sitk.Image,
    *,
    name: str,
    record: dict,
) -> OutputNodes:
    """Fill (or create) the output nodes; everything is converted first so that a failure changes nothing."""
    fused_data, warped_data = image_data_from_image(fused), image_data_from_image(warped)
    fused_geometry, warped_geometry = ijk_to_ras_of_image(fused), ijk_to_ras_of_image(warped)
    grid = grid_transform_from_displacement(displacement)
    record_json = json.dumps(record, default=str)

    fused_node = nodes.fused or scene.AddNewNodeByClass(volume_class(fused), scene.GenerateUniqueName(f"{name} fused"))
    warped_node = nodes.warped or scene.AddNewNodeByClass(
        volume_class(warped), scene.GenerateUniqueName(f"{name} warped")
    )
    transform_node = nodes.transform or scene.AddNewNodeByClass(
        "vtkMRMLGridTransformNode", scene.GenerateUniqueName(f"{name} displacement")
    )
    for node, data, geometry in (
        (fused_node, fused_data, fused_geometry),
        (warped_node, warped_data, warped_geometry),
    ):
        node.SetAndObserveTransformNodeID(None)
        node.SetIJKToRASMatrix(array_to_matrix(geometry))
        node.SetAndObserveImageData(data)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
    transform_node.SetAndObserveTransformFromParent(grid)
    for node in (fused_node, warped_node, transform_node):
        node.SetAttribute(RECORD_ATTRIBUTE, record_json)
    logger.info("BSAFusion outputs: %s, %s, %s", fused_node.GetName(), warped_node.GetName(), transform_node.GetName())
    return OutputNodes(fused_node, warped_node, transform_node)
