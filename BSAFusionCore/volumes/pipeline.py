"""Slice-wise BSAFusion of a fixed (MRI) and a moving (CT/PET/SPECT) volume on the fixed grid."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..geometry import (
    Slab,
    SliceAxes,
    compose_with_prealignment,
    inferior_superior_axis,
    overlap_fraction,
    pixels_to_lps_mm,
    slices_of,
    volume_order,
)
from ..inference import fuse_batch
from ..memory import DEFAULT_MAX_MEMORY_GB, check_volume_memory
from ..model import FusionModel, load_model
from ..options import (
    COLORMAPS,
    CT_WINDOW_AUTO,
    DEFAULT_BATCH_SIZE,
    DEFAULT_PERCENTILES,
    DEFAULT_PREALIGN,
    MIN_SIZE,
    RefineOptions,
    check_refine_request,
    refine_warning,
)
from ..prealign import check_prealign_mode, describe_transform
from ..prealign import prealign as run_prealignment
from ..progress import CancelFlag, ProgressCallback, check_cancel, report
from .intensity import IntensityRange, apply_colormap, check_ct_window, ct_range, percentile_range, rgb_range
from .io import check_volume

log = logging.getLogger(__name__)

EMPTY_LEVEL = 1e-3
"""A slice pair whose normalised values all stay below this is empty: not sent to the model."""

PREALIGN_SHARE = 0.2
"""Fraction of the progress bar given to the pre-alignment when there is one."""


@dataclass
class VolumeFusionResult:
    """Outputs on the fixed grid; ``displacement`` maps fixed points into the ORIGINAL moving volume."""

    fused: sitk.Image
    warped: sitk.Image
    displacement: sitk.Image
    prealignment: sitk.Transform | None
    record: dict[str, Any] = field(default_factory=dict)


def fuse_volumes(
    fixed: sitk.Image,
    moving: sitk.Image,
    model: FusionModel | str,
    *,
    prealign: str = DEFAULT_PREALIGN,
    fuse_only: bool = False,
    refine: bool | RefineOptions = False,
    axis: int | None = None,
    ct_window: str | None = CT_WINDOW_AUTO,
    color_fusion: bool = False,
    colormap: str = COLORMAPS[0],
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB,
) -> VolumeFusionResult:
    """Register and fuse ``moving`` onto ``fixed`` slice by slice (see ``docs/volumes.md``).

    ``fused`` is float32 in [0, 1] (8-bit RGB when the moving input is coloured), ``warped`` is the
    moving volume in its own units resampled through ``displacement`` (LPS mm, float64 vectors,
    pre-alignment included), and ``record`` says what was run. A rigid 3-D pre-alignment runs by
    default (``prealign="none"`` skips it); ``fuse_only=True`` skips the network's in-plane registration
    (for volumes aligned by then: the displacement is the pre-alignment's); ``refine`` refines the network's
    in-plane displacement of each slice (as in :func:`~BSAFusionCore.fuse_batch`). A CT moving volume (the
    model's modality, or any given ``ct_window``) is mapped by a Hounsfield window (``"auto"``: soft
    tissue), its padding as background. Volumes whose estimated memory need exceeds ``max_memory_gb``
    (None: no limit) are refused before any work.
    """
    started = time.perf_counter()
    refinement = check_refine_request(refine, fuse_only)
    ct_window = ct_window or CT_WINDOW_AUTO
    rgb_moving = _check_inputs(fixed, moving, prealign, ct_window, color_fusion, colormap, batch_size)
    stored = sum(image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
                 for image in (fixed, moving))
    check_volume_memory([fixed.GetSize(), moving.GetSize()], stored, batch_size, max_memory_gb)
    if isinstance(model, str):
        model = load_model(model)
    if warning := refine_warning(refinement, model.modality):
        log.warning(warning)
    moving_is_ct = not rgb_moving and (model.modality == "CT" or ct_window != CT_WINDOW_AUTO)
    if moving_is_ct and model.modality not in (None, "CT"):
        raise InputError(f"CT windows apply to a CT moving volume; these weights are for {model.modality} "
                         "(leave the CT window out)")
    report(progress, 0.0, "preparing")
    fixed_range = percentile_range(fixed, percentiles, "the fixed volume")
    moving_range, mapping = _moving_range(moving, rgb_moving, moving_is_ct, ct_window, percentiles)
    log.info("3-D pre-alignment: %s", prealign if prealign != "none" else "none (the volumes are taken as aligned)")
    axes = _slice_axes(fixed, axis)
    check_cancel(cancel)

    share = PREALIGN_SHARE if prealign != "none" else 0.0
    prepared = time.perf_counter()
    transform = run_prealignment(fixed, moving, prealign, _scaled(progress, 0.0, share), cancel)
    prealigned = time.perf_counter()
    overlap = overlap_fraction(fixed, moving, transform)
    if overlap == 0.0:
        hint = " after pre-alignment" if transform is not None else "; try a rigid pre-alignment"
        raise InputError(f"the fixed and moving volumes do not overlap in physical space{hint}")

    slicer = _SliceFuser(fixed, moving, model, axes, transform, fixed_range, moving_range, rgb_moving,
                         colormap if color_fusion else None, fuse_only, refinement, cancel)
    count = fixed.GetSize()[axes.axis]
    for start in range(0, count, batch_size):
        check_cancel(cancel)
        slicer.fuse(start, min(start + batch_size, count))
        report(progress, share + (1.0 - share) * min(start + batch_size, count) / count, "fusing slices")
    finished = time.perf_counter()

    record = {
        "model": {"source": getattr(model, "source", None), "modality": model.modality,
                  "image_size": model.image_size, "metadata": model.metadata},
        "options": {
            "prealign": prealign, "fuse_only": fuse_only, "refine": refinement is not None, "axis": axes.axis,
            "ct_window": ct_window,
            "color_fusion": color_fusion,
            "colormap": colormap, "percentiles": list(percentiles), "batch_size": batch_size,
        },
        "slices": {"total": count, "fused": slicer.fused_slices, "empty": count - slicer.fused_slices},
        "intensity_ranges": {"fixed": [fixed_range.low, fixed_range.high],
                             "moving": [moving_range.low, moving_range.high]},
        "moving_intensity_mapping": mapping,
        "warped_outside_value": slicer.outside_value,
        "overlap_fraction": overlap,
        "prealignment": describe_transform(transform),
        "versions": _versions(),
        "timings": {
            "preparation_s": round(prepared - started, 3),
            "prealign_s": round(prealigned - prepared, 3),
            "slices_s": round(finished - prealigned, 3),
            "total_s": round(finished - started, 3),
            "ms_per_slice": round(1000 * (finished - prealigned) / count, 2),
        },
    }
    log.info("fused %d of %d slices in %.1f s", slicer.fused_slices, count, finished - started)
    return VolumeFusionResult(slicer.fused, slicer.warped, slicer.displacement, transform, record)


def _check_inputs(
    fixed: sitk.Image, moving: sitk.Image, prealign: str, ct_window: str | None, color_fusion: bool,
    colormap: str, batch_size: int,
) -> bool:
    """Validate the inputs and options; True when the moving volume is RGB."""
    check_volume(fixed, "the fixed volume", allow_rgb=False)
    check_volume(moving, "the moving volume", allow_rgb=True)
    check_prealign_mode(prealign)
    if colormap not in COLORMAPS:
        raise InputError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
    rgb_moving = moving.GetNumberOfComponentsPerPixel() == 3
    check_ct_window(ct_window)
    if rgb_moving and (color_fusion or ct_window != CT_WINDOW_AUTO):
        raise InputError("the moving volume is RGB already: colour fusion and CT windows need a scalar one")
    return rgb_moving


def _slice_axes(fixed: sitk.Image, axis: int | None) -> SliceAxes:
    axes = SliceAxes.through(inferior_superior_axis(fixed) if axis is None else axis)
    size = fixed.GetSize()
    if min(size[axes.rows], size[axes.cols]) < MIN_SIZE:
        raise InputError(
            f"slices through index axis {axes.axis} of the fixed volume are {size[axes.rows]} x "
            f"{size[axes.cols]} voxels; the model needs at least {MIN_SIZE} x {MIN_SIZE} (choose another axis)"
        )
    return axes


def _moving_range(
    moving: sitk.Image, rgb: bool, ct: bool, ct_window: str, percentiles: tuple[float, float]
) -> tuple[IntensityRange, str]:
    """The moving volume's intensity range and how it was found."""
    if rgb:
        return rgb_range(moving, percentiles, "the moving volume"), "RGB"
    if ct:
        return ct_range(moving, ct_window, percentiles)
    return (percentile_range(moving, percentiles, "the moving volume"),
            f"mapped by the {percentiles[0]:g}-{percentiles[1]:g} percentiles")


class _SliceFuser:
    """Runs batches of slices through the model and fills the three output volumes."""

    def __init__(
        self, fixed: sitk.Image, moving: sitk.Image, model: FusionModel, axes: SliceAxes,
        transform: sitk.Transform | None, fixed_range: IntensityRange, moving_range: IntensityRange,
        rgb_moving: bool, colormap: str | None, fuse_only: bool = False, refine: RefineOptions | None = None,
        cancel: CancelFlag | None = None,
    ) -> None:
        self.fixed, self.moving, self.model, self.axes = fixed, moving, model, axes
        self.transform = transform or sitk.Transform(3, sitk.sitkIdentity)
        self.prealignment = transform
        self.fixed_range, self.moving_range = fixed_range, moving_range
        self.rgb_moving, self.colormap, self.fuse_only, self.refine = rgb_moving, colormap, fuse_only, refine
        self.cancel = cancel
        self.fixed_slices = slices_of(sitk.GetArrayViewFromImage(fixed), axes)
        self.outside_value = float(np.min(sitk.GetArrayViewFromImage(moving)))
        colour_out = rgb_moving or colormap is not None
        self.fused = _empty_like(fixed, sitk.sitkVectorUInt8 if colour_out else sitk.sitkFloat32)
        self.warped = _empty_like(fixed, sitk.sitkVectorFloat32 if rgb_moving else sitk.sitkFloat32)
        self.displacement = _empty_like(fixed, sitk.sitkVectorFloat64)
        self.fused_slices = 0

    def fuse(self, start: int, stop: int) -> None:
        slab = Slab.of(self.fixed, self.axes, start, stop)
        fixed_n = self.fixed_range.normalise(self.fixed_slices[start:stop])
        moving_n = self._moving_slices(slab)
        count = stop - start
        active = (fixed_n.reshape(count, -1).max(axis=1) > EMPTY_LEVEL) | (
            moving_n.reshape(count, -1).max(axis=1) > EMPTY_LEVEL
        )
        fused = np.zeros(moving_n.shape, dtype=np.float32)
        flow = np.zeros((count, 2, *fixed_n.shape[1:]), dtype=np.float32)
        if active.any():
            out = fuse_batch(self.model, torch.from_numpy(fixed_n[active][:, None]),
                             torch.from_numpy(moving_n[active]), zero_displacement=self.fuse_only,
                             with_warped=False, refine=self.refine or False, cancel=self.cancel)  # warped in 3-D
            fused[active] = out.fused.numpy()
            flow[active] = out.displacement.numpy()
            self.fused_slices += int(active.sum())

        inplane = volume_order(pixels_to_lps_mm(flow, self.fixed, self.axes), self.axes)
        if self.prealignment is None:
            total = inplane
        else:
            total = compose_with_prealignment(inplane, slab.physical_points(), self.prealignment)
        displacement = slab.image(total, is_vector=True)
        region = self._region(start, stop)
        self.displacement[region] = displacement
        self.fused[region] = self._fused_image(slab, fused)
        warped_type = sitk.sitkVectorFloat32 if self.rgb_moving else sitk.sitkFloat32
        field_transform = sitk.DisplacementFieldTransform(displacement)  # takes the image's buffer
        self.warped[region] = slab.resample(self.moving, field_transform, self.outside_value, warped_type)

    def _moving_slices(self, slab: Slab) -> np.ndarray:
        """The moving volume on the slab (pre-aligned), normalised, as (n, 1 or 3, rows, cols)."""
        pixel_type = sitk.sitkVectorFloat32 if self.rgb_moving else sitk.sitkFloat32
        resampled = slab.resample(self.moving, self.transform, self.moving_range.low, pixel_type)
        values = self.moving_range.normalise(slices_of(sitk.GetArrayViewFromImage(resampled), self.axes))
        if self.rgb_moving:
            return np.ascontiguousarray(np.moveaxis(values, -1, 1))
        if self.colormap is not None:
            return apply_colormap(values, self.colormap)
        return np.ascontiguousarray(values[:, None])

    def _fused_image(self, slab: Slab, fused: np.ndarray) -> sitk.Image:
        if fused.shape[1] == 1:
            return slab.image(volume_order(fused[:, 0], self.axes))
        rgb = np.round(np.clip(np.moveaxis(fused, 1, -1), 0.0, 1.0) * 255).astype(np.uint8)
        return slab.image(volume_order(rgb, self.axes), is_vector=True)

    def _region(self, start: int, stop: int) -> tuple[slice, ...]:
        region = [slice(None)] * 3
        region[self.axes.axis] = slice(start, stop)
        return tuple(region)


def _empty_like(grid: sitk.Image, pixel_type: int) -> sitk.Image:
    vector = pixel_type in (sitk.sitkVectorUInt8, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64)
    image = sitk.Image(grid.GetSize(), pixel_type, 3 if vector else 1)
    image.CopyInformation(grid)
    return image


def _scaled(progress: ProgressCallback | None, start: float, stop: float) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda fraction, stage: report(progress, start + (stop - start) * fraction, stage)


def _versions() -> dict[str, str]:
    try:
        ours = metadata.version("bsafusion")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {
        "bsafusion": ours,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "numpy": np.__version__,
    }
