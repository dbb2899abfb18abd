"""Parameters of the ``BSAFusionCLI`` module (its XML names) for a background run from the panel."""

from __future__ import annotations

from typing import Any

from BSAFusionCore.options import slice_axis_choice

from .logic import OutputNodes
from .settings import PanelSettings

CLI_NAMES = {
    "model": "weights",
    "prealign": "prealign",
    "fuse_only": "fuseOnly",
    "refine": "refine",
    "axis": "axis",
    "ct_window": "ctWindow",
    "color_fusion": "colorFusion",
    "colormap": "colormap",
    "batch_size": "batchSize",
    "device": "device",
}
"""``process`` option -> parameter name in ``BSAFusionCLI.xml``."""



def cli_parameters(
    fixed, moving, outputs: OutputNodes, settings: PanelSettings, record_file: str | None = None
) -> dict[str, Any]:
    """The ``slicer.cli.run`` parameters for the same run ``process`` would do with ``settings``."""
    parameters: dict[str, Any] = {
        "fixedVolume": fixed,
        "movingVolume": moving,
        "modality": settings.modality,
        "fusedVolume": outputs.fused,
        "warpedVolume": outputs.warped,
        "displacementTransform": outputs.transform,
    }
    for option, value in settings.process_options().items():
        parameters[CLI_NAMES[option]] = slice_axis_choice(value) if option == "axis" else value
    if record_file:
        parameters["recordFile"] = record_file
    return parameters
