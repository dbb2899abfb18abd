"""Every geometry convention of the volume pipeline, in one place.

Conventions:
- SimpleITK images are in the ITK/LPS world: ``x = origin + D @ (spacing * ijk)`` with ``D`` the
  direction matrix (its column ``k`` is the LPS direction of index axis ``k``).
- ``sitk.GetArrayFromImage`` gives arrays ordered (k, j, i): numpy axis ``2 - a`` is ITK axis ``a``.
- A slice perpendicular to ITK axis ``a`` is a 2-D array (rows, cols) whose columns run along the
  lower remaining ITK axis and rows along the higher one (axial: rows j, cols i).
- The 2-D model's displacement is in pixels of that slice: channel 0 along columns, channel 1
  along rows. Volume displacements are LPS millimetres, the ITK resampling convention: the
  moving point sampled for fixed point ``x`` is ``x + d(x)``.
- A 2-D image pair (no volume geometry) is in pixel coordinates: ``pixel_image`` makes the physical
  point of pixel (row, col) the point (x, y) = (col, row), so that a pre-alignment transform and the
  2-D model's displacement share one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError


@dataclass(frozen=True)
class SliceAxes:
    """The ITK index axes of a slicing: ``axis`` is sliced through, ``rows``/``cols`` span a slice."""

    axis: int
    rows: int
    cols: int

    @classmethod
    def through(cls, axis: int) -> SliceAxes:
        if axis not in (0, 1, 2):
            raise InputError(f"slice axis must be 0, 1 or 2 (ITK index order i, j, k), got {axis}")
        cols, rows = (a for a in (0, 1, 2) if a != axis)
        return cls(axis=axis, rows=rows, cols=cols)

    @property
    def numpy_axis(self) -> int:
        """The axis of ``sitk.GetArrayFromImage`` arrays that ``axis`` is."""
        return 2 - self.axis


def direction_matrix(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def inferior_superior_axis(image: sitk.Image) -> int:
    """The ITK index axis whose direction is closest to the patient's inferior-superior (LPS z) axis."""
    return int(np.argmax(np.abs(direction_matrix(image)[2])))


def slices_of(array: np.ndarray, axes: SliceAxes) -> np.ndarray:
    """View a (k, j, i[, c]) volume array as (slice, rows, cols[, c])."""
    return np.moveaxis(array, axes.numpy_axis, 0)


def volume_order(slices: np.ndarray, axes: SliceAxes) -> np.ndarray:
    """Inverse of :func:`slices_of`: (slice, rows, cols[, c]) back to (k, j, i[, c])."""
    return np.moveaxis(slices, 0, axes.numpy_axis)


@dataclass(frozen=True)
class Slab:
    """Consecutive slices ``start:stop`` of a grid along ``axes.axis``, as a grid of its own."""

    size: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, grid: sitk.Image, axes: SliceAxes, start: int, stop: int) -> Slab:
        size = list(grid.GetSize())
        size[axes.axis] = stop - start
        index = [0, 0, 0]
        index[axes.axis] = start
        return cls(
            size=(size[0], size[1], size[2]),
            origin=grid.TransformIndexToPhysicalPoint(index),
            spacing=grid.GetSpacing(),
            direction=grid.GetDirection(),
        )

    def image(self, array: np.ndarray, is_vector: bool = False) -> sitk.Image:
        """An image on this slab's grid from a (k, j, i[, c]) array."""
        image = sitk.GetImageFromArray(array, isVector=is_vector)
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def resample(
        self, image: sitk.Image, transform: sitk.Transform, default: float, pixel_type: int
    ) -> sitk.Image:
        """``image`` sampled (linear) on this slab at ``transform(x)`` for each voxel centre ``x``."""
        return sitk.Resample(
            image, self.size, transform, sitk.sitkLinear, self.origin, self.spacing, self.direction,
            default, pixel_type,
        )

    def physical_points(self) -> np.ndarray:
        """LPS coordinates of the voxel centres, (k, j, i, 3) float64."""
        k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in self.size[::-1]), indexing="ij")
        ijk = np.stack([i, j, k], axis=-1) * np.asarray(self.spacing)
        return ijk @ np.asarray(self.direction).reshape(3, 3).T + np.asarray(self.origin)


def pixel_image(array: np.ndarray) -> sitk.Image:
    """A 2-D image, (H, W) or RGB (H, W, 3), as a SimpleITK image whose physical points are pixel
    coordinates: x along columns, y along rows (origin 0, spacing 1)."""
    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32), isVector=array.ndim == 3)


def pixel_points(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float64 pixel coordinates (x, y) = (col, row), the frame of :func:`pixel_image`."""
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return np.stack((cols, rows), axis=-1)


def affine_parts(transform: sitk.Transform | None, dimension: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``transform(p) = A @ p + b``; the transform must be affine (rigid/affine/identity)."""
    if transform is None:
        return np.eye(dimension), np.zeros(dimension)
    dimension = transform.GetDimension()
    b = np.asarray(transform.TransformPoint((0.0,) * dimension))
    a = np.stack([np.asarray(transform.TransformPoint(tuple(e))) - b for e in np.eye(dimension)], axis=1)
    return a, b


def pixels_to_lps_mm(flow: np.ndarray, grid: sitk.Image, axes: SliceAxes) -> np.ndarray:
    """In-plane displacements (slice, 2, rows, cols) in slice pixels to (slice, rows, cols, 3) LPS mm."""
    spacing = np.asarray(grid.GetSpacing())
    direction = direction_matrix(grid)
    col_mm = direction[:, axes.cols] * spacing[axes.cols]
    row_mm = direction[:, axes.rows] * spacing[axes.rows]
    flow = flow.astype(np.float64, copy=False)
    return flow[:, 0, ..., None] * col_mm + flow[:, 1, ..., None] * row_mm


def compose_with_prealignment(
    inplane_mm: np.ndarray, points: np.ndarray, prealignment: sitk.Transform | None
) -> np.ndarray:
    """Total displacement ``T(x + d(x)) - x`` for an affine pre-alignment ``T`` (fixed -> moving points);
    ``points`` and ``inplane_mm`` (..., D) in the transform's physical units, D = 2 or 3."""
    a, b = affine_parts(prealignment, points.shape[-1])
    moved = points + inplane_mm
    return moved @ a.T + b - points


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None) -> float:
    """Fraction of the fixed grid (every 4th voxel) whose mapped point lies inside the moving image (2-D or 3-D)."""
    inside = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    inside.SetOrigin(moving.GetOrigin())
    inside.SetSpacing(moving.GetSpacing())
    inside.SetDirection(moving.GetDirection())
    step = 4
    coarse_size = [max(1, -(-n // step)) for n in fixed.GetSize()]
    coarse_spacing = [s * step for s in fixed.GetSpacing()]
    identity = sitk.Transform(fixed.GetDimension(), sitk.sitkIdentity)
    on_fixed = sitk.Resample(
        inside, coarse_size, transform or identity, sitk.sitkNearestNeighbor,
        fixed.GetOrigin(), coarse_spacing, fixed.GetDirection(), 0, sitk.sitkUInt8,
    )
    return float(sitk.GetArrayViewFromImage(on_fixed).mean())
