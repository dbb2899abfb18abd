"""Helpers for the Slicer-logic tests: generated volumes with awkward geometry, MRML resampling."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A rotation matrix from angles (radians) about x, y and z."""
    return np.array(sitk.Euler3DTransform((0, 0, 0), ax, ay, az).GetMatrix()).reshape(3, 3)


def physical_points(image: sitk.Image) -> np.ndarray:
    """LPS coordinates of every voxel, shaped like ``GetArrayFromImage`` (z, y, x, 3)."""
    size = image.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(s) for s in reversed(size)], indexing="ij"), -1)[..., ::-1]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T


def smooth_pattern(points: np.ndarray) -> np.ndarray:
    """A smooth head-sized intensity pattern in physical space."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    blob = np.exp(-((x - 3) ** 2 / 400 + (y + 2) ** 2 / 200 + (z - 1) ** 2 / 300))
    return (100 * blob + 50 * np.sin(x / 7) * np.cos(y / 9)).astype(np.float32)


def make_volume(size, spacing, origin, direction: np.ndarray, components: int = 1) -> sitk.Image:
    """A float32 volume (or RGB-like vector volume) sampling ``smooth_pattern`` on the given grid."""
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    grid.SetDirection(direction.ravel().tolist())
    values = smooth_pattern(physical_points(grid))
    if components > 1:
        values = np.stack([values * (c + 1) for c in range(components)], -1)
    image = sitk.GetImageFromArray(values, isVector=components > 1)
    image.CopyInformation(grid)
    return image


def warp_with_sitk(moving: sitk.Image, fixed: sitk.Image, displacement: sitk.Image) -> sitk.Image:
    """What the volume pipeline promises: the moving volume resampled on the fixed grid through the field."""
    transform = sitk.DisplacementFieldTransform(sitk.Image(displacement))
    return sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0)


def resample_through_transform(moving_node, reference_node, transform_node) -> np.ndarray:
    """Moving node resampled on the reference node's grid through the MRML transform (vtkImageReslice)."""
    import vtk
    from vtk.util import numpy_support

    reference_to_ras, ras_to_moving = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(reference_to_ras)
    moving_node.GetRASToIJKMatrix(ras_to_moving)
    chain = vtk.vtkGeneralTransform()
    chain.PostMultiply()
    chain.Concatenate(reference_to_ras)
    chain.Concatenate(transform_node.GetTransformFromParent())
    chain.Concatenate(ras_to_moving)
    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(moving_node.GetImageData())
    reslice.SetResliceTransform(chain)
    reslice.SetInterpolationModeToLinear()
    reslice.SetOutputScalarType(vtk.VTK_FLOAT)  # not the input's type: integer voxels would be rounded
    reslice.SetOutputOrigin(0, 0, 0)
    reslice.SetOutputSpacing(1, 1, 1)
    dims = reference_node.GetImageData().GetDimensions()
    reslice.SetOutputExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reslice.Update()
    return numpy_support.vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars()).reshape(dims[::-1])


def node_state(node) -> tuple:
    """Everything about a volume node a run must not change: voxels, geometry, parent transform."""
    import vtk
    from vtk.util import numpy_support

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    voxels = numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).copy()
    geometry = tuple(matrix.GetElement(r, c) for r in range(4) for c in range(4))
    return voxels.tobytes(), geometry, node.GetTransformNodeID(), node.GetName()


def scene_state(scene) -> list[tuple[str, str]]:
    """The (ID, name) of every node in the scene."""
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetName()) for i in range(scene.GetNumberOfNodes())]
