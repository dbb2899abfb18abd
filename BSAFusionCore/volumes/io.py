"""Reading volumes (NRRD, NIfTI, MHA/MHD, DICOM series) and writing outputs atomically."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..files import atomic_output

log = logging.getLogger(__name__)

def read_volume(path: str | os.PathLike[str], role: str = "volume") -> sitk.Image:
    """Read a 3-D volume file, or the largest DICOM series in a folder; ``role`` names it in errors."""
    path = Path(path)
    if path.is_dir():
        image = _read_dicom_series(path, role)
    elif path.is_file():
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise InputError(f"{role} {path}: SimpleITK cannot read it ({_first_line(error)})") from None
    else:
        raise InputError(f"{role} {path} does not exist")
    check_volume(image, f"{role} {path}", allow_rgb=True)
    return image


def _read_dicom_series(folder: Path, role: str) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{role} {folder}: the folder holds no DICOM series")
    files = max(
        (sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series), key=len
    )
    if len(series) > 1:
        log.warning("%s has %d DICOM series; reading the largest (%d files)", folder, len(series), len(files))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{role} {folder}: cannot read the DICOM series ({_first_line(error)})") from None


def check_volume(image: sitk.Image, name: str, allow_rgb: bool) -> None:
    """Raise :class:`InputError` unless ``image`` is a finite 3-D scalar (or RGB when allowed) volume."""
    if image.GetDimension() != 3:
        raise InputError(f"{name} is {image.GetDimension()}-D; a 3-D volume is needed")
    if min(image.GetSize()) < 2:
        raise InputError(f"{name} has size {image.GetSize()}; a 3-D volume needs 2 or more voxels per axis")
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1 and not (allow_rgb and components == 3):
        kind = "scalar or RGB" if allow_rgb else "scalar"
        raise InputError(f"{name} has {components} components per voxel; a {kind} volume is needed")
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise InputError(f"{name} contains NaN or infinite voxels")


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` (same folder and suffix), then rename the result onto ``path``."""
    with atomic_output(path) as temp:
        write(str(temp))


def write_image(image: sitk.Image, path: str | os.PathLike[str]) -> None:
    """Write ``image`` (compressed) so that ``path`` appears only once complete."""
    _write_atomically(Path(path), lambda temp: sitk.WriteImage(image, temp, useCompression=True))


def write_transform(transform: sitk.Transform, path: str | os.PathLike[str]) -> None:
    _write_atomically(Path(path), lambda temp: sitk.WriteTransform(transform, temp))


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    _write_atomically(Path(path), lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder if needed and check that it can be written."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"output folder {path} cannot be created ({error.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise InputError(f"output folder {path} cannot be written ({error.strerror})") from None
    return path
