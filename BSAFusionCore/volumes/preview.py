"""A PNG-ready preview: a few slices of the fixed, warped and fused volumes side by side."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..geometry import SliceAxes, direction_matrix, slices_of
from .intensity import IntensityRange

PREVIEW_FRACTIONS = (0.3, 0.5, 0.7)


def preview_image(
    fixed: sitk.Image, warped: sitk.Image, fused: sitk.Image, record: dict, fractions=PREVIEW_FRACTIONS
) -> sitk.Image:
    """2-D RGB uint8 image: one row per slice (fixed | warped | fused), superior side up."""
    axes = SliceAxes.through(record["options"]["axis"])
    fixed_range = IntensityRange(*record["intensity_ranges"]["fixed"])
    moving_range = IntensityRange(*record["intensity_ranges"]["moving"])
    count = fixed.GetSize()[axes.axis]
    rows = []
    for fraction in fractions:
        index = min(count - 1, round(fraction * (count - 1)))
        tiles = [
            _rgb(fixed_range.normalise(_slice(fixed, axes, index))),
            _rgb(moving_range.normalise(_slice(warped, axes, index))),
            _rgb(_slice(fused, axes, index).astype(np.float32) / _full_scale(fused)),
        ]
        rows.append(np.concatenate(tiles, axis=1))
    picture = np.concatenate(rows, axis=0)
    if direction_matrix(fixed)[2, axes.rows] > 0:  # rows run towards superior: flip to show it on top
        picture = picture[::-1]
    return sitk.GetImageFromArray(np.ascontiguousarray(picture), isVector=True)


def _slice(image: sitk.Image, axes: SliceAxes, index: int) -> np.ndarray:
    return np.array(slices_of(sitk.GetArrayViewFromImage(image), axes)[index])


def _full_scale(image: sitk.Image) -> float:
    return 255.0 if image.GetPixelID() == sitk.sitkVectorUInt8 else 1.0


def _rgb(values: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) values in [0, 1] to (H, W, 3) uint8."""
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=-1)
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
