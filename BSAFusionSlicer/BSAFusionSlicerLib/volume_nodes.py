"""MRML volume nodes <-> SimpleITK images (Slicer works in RAS, ITK in LPS)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from BSAFusionCore.errors import InputError

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
"""Flips x and y; its own inverse, so it also maps RAS to LPS."""

SCALAR_VOLUME = "vtkMRMLScalarVolumeNode"
VECTOR_VOLUME = "vtkMRMLVectorVolumeNode"


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A 4x4 numpy copy of a VTK matrix."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A VTK matrix from a 4x4 array."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def world_ijk_to_ras(node) -> np.ndarray:
    """The node's IJK-to-RAS matrix in world coordinates (its linear parent transforms included)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = matrix_to_array(matrix)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(
                f"volume '{node.GetName()}' is under the non-linear transform '{parent.GetName()}': harden it first"
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = matrix_to_array(to_world) @ ijk_to_ras
    return ijk_to_ras


def image_from_volume_node(node) -> sitk.Image:
    """A SimpleITK copy of a scalar or vector volume node, in LPS physical space."""
    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"expected a volume node, got {node!r}")
    image_data = node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{node.GetName()}' has no voxels")
    scalars = image_data.GetPointData().GetScalars()
    components = scalars.GetNumberOfComponents()
    shape = tuple(reversed(image_data.GetDimensions()))
    voxels = numpy_support.vtk_to_numpy(scalars).reshape(shape + ((components,) if components > 1 else ()))
    image = sitk.GetImageFromArray(voxels, isVector=components > 1)  # copies the voxels
    ijk_to_ras = world_ijk_to_ras(node)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"volume '{node.GetName()}' has a zero voxel spacing")
    image.SetSpacing(spacing.tolist())
    image.SetDirection((RAS_FROM_LPS @ (ijk_to_ras[:3, :3] / spacing)).ravel().tolist())
    image.SetOrigin((RAS_FROM_LPS @ ijk_to_ras[:3, 3]).tolist())
    return image


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a SimpleITK image's grid."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = RAS_FROM_LPS @ direction * np.array(image.GetSpacing())
    ijk_to_ras[:3, 3] = RAS_FROM_LPS @ np.array(image.GetOrigin())
    return ijk_to_ras


def image_data_from_image(image: sitk.Image) -> vtk.vtkImageData:
    """The voxels of a 3D SimpleITK image as vtkImageData (origin 0, spacing 1, as MRML expects)."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, got {image.GetDimension()}D")
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(image.GetSize())
    voxels = sitk.GetArrayViewFromImage(image)
    scalars, target = new_vtk_array(voxels.dtype, image.GetNumberOfComponentsPerPixel(), voxels.size)
    target[...] = voxels.reshape(target.shape)
    image_data.GetPointData().SetScalars(scalars)
    return image_data


def new_vtk_array(dtype: np.dtype, components: int, values: int) -> tuple[vtk.vtkDataArray, np.ndarray]:
    """A VTK array for ``values`` numbers and a numpy view of its memory to fill (no extra copy)."""
    array = vtk.vtkDataArray.CreateDataArray(numpy_support.get_vtk_array_type(dtype))
    array.SetNumberOfComponents(components)
    array.SetNumberOfTuples(values // components)
    return array, numpy_support.vtk_to_numpy(array)


def update_volume_node_from_image(node, image: sitk.Image) -> None:
    """Put a SimpleITK image's voxels and geometry into a volume node (world = RAS, no parent)."""
    image_data = image_data_from_image(image)
    node.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras_of_image(image)))
    node.SetAndObserveImageData(image_data)
