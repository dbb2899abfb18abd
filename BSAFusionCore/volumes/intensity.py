"""Intensity mapping of volumes to the model's [0, 1] range: percentiles, CT windows, colour maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

# (level, width) in HU; "full" uses the volume's own minimum and maximum.
CT_WINDOWS: dict[str, tuple[float, float] | None] = {
    "brain": (40.0, 80.0),
    "soft-tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "full": None,
}

COLORMAPS = ("hot", "jet")

_MAX_SAMPLES = 4_000_000


@dataclass(frozen=True)
class IntensityRange:
    """A linear map of ``[low, high]`` onto [0, 1], values outside clipped."""

    low: float
    high: float

    def normalise(self, values: np.ndarray) -> np.ndarray:
        scaled = (values.astype(np.float32) - np.float32(self.low)) / np.float32(self.high - self.low)
        return np.clip(scaled, 0.0, 1.0, out=scaled)


def _samples(image: sitk.Image) -> np.ndarray:
    """All voxel values of ``image``, or an evenly strided subset when there are many."""
    values = sitk.GetArrayViewFromImage(image).reshape(-1)
    step = max(1, values.size // _MAX_SAMPLES)
    return values[::step]


def percentile_range(image: sitk.Image, percentiles: tuple[float, float], name: str) -> IntensityRange:
    """The range between two percentiles of the voxel values (all components of an RGB volume)."""
    low_p, high_p = percentiles
    if not 0.0 <= low_p < high_p <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    samples = _samples(image)
    low, high = np.percentile(samples, [low_p, high_p])
    if not high > low:
        low, high = samples.min(), samples.max()
    if not high > low:
        raise InputError(f"{name} has a single intensity value ({low}); it has no contrast to fuse")
    return IntensityRange(float(low), float(high))


def ct_window_range(image: sitk.Image, window: str) -> IntensityRange:
    """The range of a named CT window preset (see :data:`CT_WINDOWS`)."""
    if window not in CT_WINDOWS:
        raise InputError(f"unknown CT window {window!r}; choose one of {', '.join(CT_WINDOWS)}")
    preset = CT_WINDOWS[window]
    if preset is None:
        samples = _samples(image)
        low, high = float(samples.min()), float(samples.max())
        if not high > low:
            raise InputError(f"the CT volume has a single intensity value ({low})")
        return IntensityRange(low, high)
    level, width = preset
    return IntensityRange(level - width / 2, level + width / 2)


def rgb_range(image: sitk.Image, percentiles: tuple[float, float], name: str) -> IntensityRange:
    """8-bit RGB maps 0..255 to [0, 1]; other RGB pixel types use the percentiles of all components."""
    if image.GetPixelID() == sitk.sitkVectorUInt8:
        return IntensityRange(0.0, 255.0)
    return percentile_range(image, percentiles, name)


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """Map (N, H, W) values in [0, 1] to (N, 3, H, W) RGB in [0, 1] with the colour map ``name``."""
    x = np.clip(values.astype(np.float32), 0.0, 1.0)
    if name == "hot":
        red = np.clip(x / 0.365, 0.0, 1.0)
        green = np.clip((x - 0.365) / (0.746 - 0.365), 0.0, 1.0)
        blue = np.clip((x - 0.746) / (1.0 - 0.746), 0.0, 1.0)
    elif name == "jet":
        red = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
        green = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
        blue = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    else:
        raise InputError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
    return np.stack([red, green, blue], axis=1)
