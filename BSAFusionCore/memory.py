"""The memory a run will need, estimated before any work, and the limit it must stay under.

The figures are measured (docs/BENCHMARKS.md, "Memory"): the network works on one batch at its
working resolution whatever the input size, so what grows with the input is the images at input
size (inputs, outputs and their temporaries).
"""

from __future__ import annotations

import os
from math import prod
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError

GIB = 1024**3
DEFAULT_MAX_MEMORY_GB = 8.0  # leaves room for the system and other programs on a 16 GB machine
RUNTIME_BYTES = int(1.0 * GIB)  # torch, the model and one working batch at 256 x 256 (measured ~1.0 GiB peak)
BYTES_PER_PIXEL_2D = 40  # per input pixel and channel: inputs, outputs and temporaries at input size
BYTES_PER_VOXEL_OUTPUTS = 32  # fused float32 + warped float32 + float64 3-vector displacement
BATCH_BYTES_PER_SLICE = 80 * 1024**2  # working memory per slice of a batch (measured, 256 x 256 working size)


def image_2d_bytes(height: int, width: int, channels: int = 1) -> int:
    """Estimated peak of fusing one 2D pair of this size (``channels`` of the moving image)."""
    return RUNTIME_BYTES + height * width * BYTES_PER_PIXEL_2D * (1 + channels)


def volume_bytes(fixed_voxels: int, input_bytes: int, batch_size: int) -> int:
    """Estimated peak of fusing volumes: the inputs as stored, the outputs on the fixed grid, one batch."""
    return RUNTIME_BYTES + input_bytes + fixed_voxels * BYTES_PER_VOXEL_OUTPUTS + batch_size * BATCH_BYTES_PER_SLICE


def check_2d_memory(height: int, width: int, channels: int, max_memory_gb: float | None) -> None:
    """:func:`check_memory` for a 2D pair of this size (``channels`` of the moving image)."""
    check_memory(image_2d_bytes(height, width, channels), max_memory_gb, f"fusing a {width} x {height} pair")


def check_volume_memory(
    sizes: list[tuple[int, ...]], stored_bytes: int, batch_size: int, max_memory_gb: float | None
) -> None:
    """:func:`check_memory` for a (fixed, moving) volume pair of these sizes, ``stored_bytes`` in all."""
    described = " and ".join(" x ".join(map(str, size)) for size in sizes)
    check_memory(volume_bytes(prod(sizes[0]), stored_bytes, batch_size), max_memory_gb,
                 f"fusing volumes of {described} voxels")


def check_memory(estimate: int, max_memory_gb: float | None, what: str) -> None:
    """Refuse a run whose estimate exceeds ``max_memory_gb`` (None: no limit), naming both and the remedy."""
    if max_memory_gb is None:
        return
    if max_memory_gb <= 0:
        raise InputError(f"the memory limit must be positive, got {max_memory_gb:g} GB")
    if estimate > max_memory_gb * GIB:
        raise InputError(
            f"{what} would need about {estimate / GIB:.1f} GB of memory, more than the limit of {max_memory_gb:g} GB; "
            "if this machine has that much free memory, raise the limit (--max-memory GB, or max_memory_gb=...), "
            "otherwise downsample or crop the images first"
        )


def file_image_info(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], int, int] | None:
    """(size, components per pixel, bytes per component) from a file's header without reading its
    pixels; None when the header cannot be read this way (a DICOM folder, an unusual file)."""
    path = Path(path)
    if not path.is_file():
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    component = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
    return tuple(reader.GetSize()), reader.GetNumberOfComponents(), component.GetSizeOfPixelComponent()


def check_volume_files_memory(
    fixed: str | os.PathLike[str], moving: str | os.PathLike[str], batch_size: int, max_memory_gb: float | None
) -> None:
    """:func:`check_volume_memory` from the files' headers, before reading their voxels (a DICOM
    folder cannot be told this way: it is checked once read, by ``fuse_volumes``)."""
    info = file_image_info(fixed), file_image_info(moving)
    if None in info:
        return
    stored = sum(prod(size) * components * component_bytes for size, components, component_bytes in info)
    check_volume_memory([size for size, _, _ in info], stored, batch_size, max_memory_gb)
