"""The one writer of volume results: each kind of output written by one function, whether into an
output folder (``fuse``, ``batch``) or to the paths Slicer gives its CLI module."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from .io import write_image, write_text, write_transform
from .pipeline import VolumeFusionResult
from .preview import preview_image

FUSED, WARPED, DISPLACEMENT = "fused.nrrd", "warped.nrrd", "displacement.nrrd"
PREALIGNMENT, RECORD, PREVIEW = "prealignment.tfm", "record.json", "preview.png"
TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")
"""A displacement written to a file with one of these suffixes is a displacement-field transform
(Slicer loads it as a grid transform); any other suffix gets the vector image."""


def write_displacement(result: VolumeFusionResult, path: str | os.PathLike[str]) -> None:
    """The displacement (LPS mm on the fixed grid, pre-alignment included) as a transform or an image."""
    if Path(path).suffix.lower() in TRANSFORM_SUFFIXES:
        write_transform(sitk.DisplacementFieldTransform(sitk.Image(result.displacement)), path)
    else:
        write_image(result.displacement, path)


def run_record(result: VolumeFusionResult, inputs: dict[str, str], files: list[str] | None = None) -> dict[str, Any]:
    """What was run and what came out: ``inputs``, the pipeline's record and (a folder) the files."""
    return {"inputs": inputs, **result.record, **({"outputs": files} if files is not None else {})}


def write_record(record: dict[str, Any], path: str | os.PathLike[str]) -> None:
    write_text(json.dumps(record, indent=2, default=str) + "\n", path)


def write_outputs(
    result: VolumeFusionResult, fixed: sitk.Image, folder: Path, inputs: dict[str, str]
) -> dict[str, Any]:
    """Write every output file into ``folder``; ``record.json`` (written last) marks the case as complete."""
    folder = Path(folder)
    write_image(result.fused, folder / FUSED)
    write_image(result.warped, folder / WARPED)
    write_displacement(result, folder / DISPLACEMENT)
    files = [FUSED, WARPED, DISPLACEMENT]
    if result.prealignment is not None:
        write_transform(result.prealignment, folder / PREALIGNMENT)
        files.append(PREALIGNMENT)
    write_image(preview_image(fixed, result.warped, result.fused, result.record), folder / PREVIEW)
    files.append(PREVIEW)
    record = run_record(result, inputs, files)
    write_record(record, folder / RECORD)
    return record


def is_complete(folder: Path) -> bool:
    """True when a previous run finished writing this folder."""
    return (Path(folder) / RECORD).is_file()
