"""Intensity mapping of volumes to the model's [0, 1] range: percentiles, CT windows, colour maps."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..options import (
    COLORMAPS,
    CT_PADDING_BELOW_HU,
    CT_WINDOW_AUTO,
    CT_WINDOW_CHOICES,
    CT_WINDOW_PERCENTILES,
    CT_WINDOWS,
    DEFAULT_CT_WINDOW,
)

log = logging.getLogger(__name__)

_MAX_SAMPLES = 4_000_000
_AIR_HU = -500.0  # a CT in Hounsfield units has air (about -1000) or padding below this


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
    return _percentiles_of(_samples(image), percentiles, name)


def _percentiles_of(samples: np.ndarray, percentiles: tuple[float, float], name: str) -> IntensityRange:
    low_p, high_p = percentiles
    if not 0.0 <= low_p < high_p <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    low, high = np.percentile(samples, [low_p, high_p])
    if not high > low:
        low, high = samples.min(), samples.max()
    if not high > low:
        raise InputError(f"{name} has a single intensity value ({low}); it has no contrast to fuse")
    return IntensityRange(float(low), float(high))


def check_ct_window(window: str) -> None:
    if window not in CT_WINDOW_CHOICES:
        raise InputError(f"unknown CT window {window!r}; choose one of {', '.join(CT_WINDOW_CHOICES)}")


def ct_range(
    image: sitk.Image, window: str = CT_WINDOW_AUTO, percentiles: tuple[float, float] = (0.5, 99.5)
) -> tuple[IntensityRange, str]:
    """The range of a CT volume under ``window`` (see :data:`~BSAFusionCore.options.CT_WINDOW_CHOICES`)
    and a sentence saying what was done. In Hounsfield units, values below
    :data:`~BSAFusionCore.options.CT_PADDING_BELOW_HU` (scanner padding, outside the reconstruction
    circle) are background: they map to 0 and take no part in percentiles or ``full``."""
    check_ct_window(window)
    samples = _samples(image)
    hounsfield = bool(samples.min() <= _AIR_HU)
    if window == CT_WINDOW_AUTO:
        window = DEFAULT_CT_WINDOW if hounsfield else CT_WINDOW_PERCENTILES
        if not hounsfield:
            log.warning("the CT volume has no value below %g: it does not look like Hounsfield units, so it "
                        "is mapped by percentiles (choose a CT window to override)", _AIR_HU)
    elif not hounsfield and window in CT_WINDOWS:
        log.warning("the CT volume has no value below %g: it may not be in Hounsfield units, which the "
                    "window %r assumes", _AIR_HU, window)
    padding = samples < CT_PADDING_BELOW_HU if hounsfield else np.zeros(samples.shape, dtype=bool)
    content = samples[~padding]
    if content.size == 0:
        raise InputError(f"every voxel of the CT volume is below {CT_PADDING_BELOW_HU:g} HU (padding): no image")
    if window == CT_WINDOW_PERCENTILES:
        found = _percentiles_of(content, percentiles, "the CT volume")
        described = f"CT mapped by the {percentiles[0]:g}-{percentiles[1]:g} percentiles"
    elif CT_WINDOWS[window] is None:
        found = _percentiles_of(content, (0.0, 100.0), "the CT volume")
        described = "CT mapped by its full range"
    else:
        level, width = CT_WINDOWS[window]
        found = IntensityRange(level - width / 2, level + width / 2)
        described = f"CT window {window} (level {level:g}, width {width:g} HU)"
    if padding.any():
        described += (f"; {padding.mean():.1%} of the voxels below {CT_PADDING_BELOW_HU:g} HU (padding, "
                      "outside the field of view) are background")
    log.info("%s", described)
    return found, described


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
