"""Writing a volume fusion's files into an output folder, each atomically, the record last."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from .io import write_image, write_text, write_transform
from .pipeline import VolumeFusionResult
from .preview import preview_image

FUSED, WARPED, DISPLACEMENT = "fused.nrrd", "warped.nrrd", "displacement.nrrd"
PREALIGNMENT, RECORD, PREVIEW = "prealignment.tfm", "record.json", "preview.png"


def write_outputs(
    result: VolumeFusionResult, fixed: sitk.Image, folder: Path, extra_record: dict[str, Any]
) -> dict[str, Any]:
    """Write every output file; ``record.json`` (written last) marks the case as complete."""
    folder = Path(folder)
    write_image(result.fused, folder / FUSED)
    write_image(result.warped, folder / WARPED)
    write_image(result.displacement, folder / DISPLACEMENT)
    files = [FUSED, WARPED, DISPLACEMENT]
    if result.prealignment is not None:
        write_transform(result.prealignment, folder / PREALIGNMENT)
        files.append(PREALIGNMENT)
    write_image(preview_image(fixed, result.warped, result.fused, result.record), folder / PREVIEW)
    files.append(PREVIEW)
    record = {**extra_record, **result.record, "outputs": files}
    write_text(json.dumps(record, indent=2, default=str) + "\n", folder / RECORD)
    return record


def is_complete(folder: Path) -> bool:
    """True when a previous run finished writing this folder."""
    return (Path(folder) / RECORD).is_file()
