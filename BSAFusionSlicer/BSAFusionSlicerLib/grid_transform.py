"""A displacement field (SimpleITK, LPS mm) as a Slicer grid transform (RAS mm, resampling direction)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from BSAFusionCore.errors import InputError

from .volume_nodes import RAS_FROM_LPS, array_to_matrix, new_vtk_array


def grid_transform_from_displacement(displacement: sitk.Image) -> slicer.vtkOrientedGridTransform:
    """A ``vtkOrientedGridTransform`` on the field's grid mapping fixed RAS points to moving RAS points.

    ``displacement`` is a 3-component vector image in LPS millimetres, as
    ``sitk.DisplacementFieldTransform`` uses it: a fixed point ``x`` maps to ``x + d(x)``.
    """
    if displacement.GetDimension() != 3 or displacement.GetNumberOfComponentsPerPixel() != 3:
        raise InputError("the displacement must be a 3D image with 3 components per voxel")
    lps = sitk.GetArrayViewFromImage(displacement)
    vectors, ras = new_vtk_array(np.dtype(np.float64), 3, lps.size)
    np.multiply(lps.reshape(-1, 3), np.diag(RAS_FROM_LPS), out=ras)  # LPS -> RAS: x and y change sign
    grid = vtk.vtkImageData()
    grid.SetDimensions(displacement.GetSize())
    grid.SetSpacing(displacement.GetSpacing())
    grid.SetOrigin((RAS_FROM_LPS @ np.array(displacement.GetOrigin())).tolist())
    grid.GetPointData().SetScalars(vectors)
    direction = np.eye(4)
    direction[:3, :3] = RAS_FROM_LPS @ np.array(displacement.GetDirection()).reshape(3, 3)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(array_to_matrix(direction))
    transform.SetInterpolationModeToLinear()
    return transform
