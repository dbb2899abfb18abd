"""Generated head-like phantom volumes with MRI-like and CT-like contrasts, on arbitrary grids."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

# Head of radii (x, y, z) mm around the LPS origin: skull shell, brain, two ventricles.
HEAD_RADII = np.array([20.0, 23.0, 14.0])
EDGE_MM = 1.5  # width of the smooth edges, so that linear interpolation is accurate

MRI_CONTRAST = {"background": 0.0, "skull": 80.0, "brain": 600.0, "ventricle": 150.0}
CT_CONTRAST = {"background": -1000.0, "skull": 1200.0, "brain": 35.0, "ventricle": 5.0}


def _inside(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Smooth indicator (0..1) of an ellipsoid."""
    r = np.linalg.norm((points - centre) / radii, axis=-1)
    return 1.0 / (1.0 + np.exp((r - 1.0) * radii.min() / EDGE_MM))


def head(points: np.ndarray, contrast: dict[str, float]) -> np.ndarray:
    """Phantom intensities at LPS points (..., 3)."""
    head_mask = _inside(points, np.zeros(3), HEAD_RADII)
    brain = _inside(points, np.zeros(3), HEAD_RADII - 3.0)
    ventricles = _inside(points, np.array([-5.0, 2.0, 1.0]), np.array([3.0, 7.0, 4.0])) + _inside(
        points, np.array([6.0, 3.0, 0.0]), np.array([3.0, 6.0, 4.0])
    )
    value = contrast["background"] + head_mask * (contrast["skull"] - contrast["background"])
    value = value + brain * (contrast["brain"] - contrast["skull"])
    return value + np.minimum(ventricles, 1.0) * brain * (contrast["ventricle"] - contrast["brain"])


def grid(size: tuple[int, int, int], spacing: tuple[float, float, float], direction: np.ndarray,
         centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> sitk.Image:
    """An empty float32 image of this geometry whose centre voxel lies at ``centre`` (LPS mm)."""
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(tuple(direction.reshape(-1)))
    half = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    image.SetOrigin(tuple(np.asarray(centre) - half))
    return image


def points_of(image: sitk.Image) -> np.ndarray:
    """LPS voxel centres of ``image``, (k, j, i, 3)."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1) * np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return ijk @ direction.T + np.asarray(image.GetOrigin())


def sample(image: sitk.Image, contrast: dict[str, float], shift_mm: np.ndarray | None = None,
           pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """The phantom on ``image``'s grid, moved by ``shift_mm`` (value at p is head(p - shift))."""
    points = points_of(image)
    if shift_mm is not None:
        points = points - shift_mm
    out = sitk.GetImageFromArray(head(points, contrast).astype(np.float32))
    out.CopyInformation(image)
    return sitk.Cast(out, pixel_type)


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


# Index axis j runs inferior-superior, k anterior-posterior, turned 10 degrees about z.
FIXED_DIRECTION = rotation_z(10.0) @ np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def fixed_grid() -> sitk.Image:
    """Oblique, permuted, anisotropic: 48 x 12 x 40 voxels, slices along index axis 1."""
    return grid((48, 12, 40), (1.0, 2.5, 1.2), FIXED_DIRECTION)


def moving_grid() -> sitk.Image:
    """Axis-aligned, a different size, spacing and centre."""
    return grid((44, 46, 18), (1.2, 1.15, 2.0), np.eye(3), centre=(1.0, -2.0, 0.5))
