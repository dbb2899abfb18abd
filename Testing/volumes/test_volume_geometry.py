"""The geometry conventions: slicing, pixel -> LPS mm, composition with the pre-alignment."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from volume_phantoms import FIXED_DIRECTION, fixed_grid, moving_grid, points_of

from BSAFusionCore.errors import InputError
from BSAFusionCore.geometry import (
    Slab,
    SliceAxes,
    compose_with_prealignment,
    inferior_superior_axis,
    overlap_fraction,
    pixels_to_lps_mm,
    slices_of,
    volume_order,
)


def test_slice_axes_keep_the_lower_axis_along_columns() -> None:
    assert SliceAxes.through(2) == SliceAxes(axis=2, rows=1, cols=0)
    assert SliceAxes.through(1) == SliceAxes(axis=1, rows=2, cols=0)
    assert SliceAxes.through(0) == SliceAxes(axis=0, rows=2, cols=1)
    with pytest.raises(InputError, match="slice axis"):
        SliceAxes.through(3)


def test_default_axis_is_the_one_closest_to_inferior_superior() -> None:
    assert inferior_superior_axis(fixed_grid()) == 1
    assert inferior_superior_axis(moving_grid()) == 2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_are_rows_by_cols_and_round_trip(axis: int) -> None:
    array = np.arange(4 * 5 * 6).reshape(4, 5, 6)  # (k, j, i)
    axes = SliceAxes.through(axis)
    slices = slices_of(array, axes)
    shape_kji = {0: 6, 1: 5, 2: 4}
    assert slices.shape == (shape_kji[axis], shape_kji[axes.rows], shape_kji[axes.cols])
    image = sitk.GetImageFromArray(array)
    # slice 1, row 2, column 3 is the voxel with index[axis]=1, index[rows]=2, index[cols]=3
    index = [0, 0, 0]
    index[axis], index[axes.rows], index[axes.cols] = 1, 2, 3
    assert slices[1, 2, 3] == image[index]
    np.testing.assert_array_equal(volume_order(slices, axes), array)


def test_one_pixel_along_columns_and_rows_in_millimetres() -> None:
    image = fixed_grid()  # slices through index axis 1: columns along i, rows along k
    axes = SliceAxes.through(1)
    flow = np.zeros((1, 2, 3, 3), dtype=np.float32)
    flow[0, 0, 1, 1] = 1.0
    flow[0, 1, 2, 2] = 2.0
    mm = pixels_to_lps_mm(flow, image, axes)
    spacing = image.GetSpacing()
    np.testing.assert_allclose(mm[0, 1, 1], FIXED_DIRECTION[:, 0] * spacing[0])
    np.testing.assert_allclose(mm[0, 2, 2], FIXED_DIRECTION[:, 2] * spacing[2] * 2.0)
    np.testing.assert_allclose(mm[0, 0, 0], 0.0)


def test_slab_points_match_simpleitk() -> None:
    image = fixed_grid()
    slab = Slab.of(image, SliceAxes.through(1), 3, 5)
    points = slab.physical_points()
    assert points.shape == (40, 2, 48, 3)
    np.testing.assert_allclose(points[7, 1, 11], image.TransformIndexToPhysicalPoint((11, 4, 7)), atol=1e-9)
    np.testing.assert_allclose(points_of(image)[:, 3:5], points, atol=1e-9)


def test_composition_with_an_affine_prealignment() -> None:
    transform = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, -5.0, 6.0))
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 3)) * 20
    inplane = rng.normal(size=(5, 3))
    total = compose_with_prealignment(inplane, points, transform)
    for p, d, t in zip(points, inplane, total, strict=True):
        np.testing.assert_allclose(p + t, transform.TransformPoint(tuple(p + d)), atol=1e-9)
    np.testing.assert_allclose(compose_with_prealignment(inplane, points, None), inplane)


def test_overlap_fraction() -> None:
    assert overlap_fraction(fixed_grid(), moving_grid(), None) > 0.5
    far = sitk.TranslationTransform(3, (500.0, 0.0, 0.0))
    assert overlap_fraction(fixed_grid(), moving_grid(), far) == 0.0
