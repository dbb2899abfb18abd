"""2D image files: reading to float [0, 1], writing atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .files import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_2d_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def to_unit_range(array: np.ndarray, name: str = "image") -> np.ndarray:
    """8/16-bit integers scaled by their type's maximum; other types min-max normalised."""
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    if array.dtype in (np.uint8, np.uint16):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def read_image(path: str | Path) -> np.ndarray:
    """A 2D grayscale (H, W) or RGB (H, W, 3) image as float32 in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"image file {path} is empty (0 bytes)")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        if "Unknown PixelType" not in str(error):
            raise InputError(f"cannot read {path} as an image: {error}") from error
        return to_unit_range(_read_with_alpha(path), str(path))
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]  # a 2D image stored as a single-slice volume
    if image.GetDimension() != 2:
        raise InputError(f"{path} is {image.GetDimension()}D; a 2D image is needed here")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[2] == 4:  # RGBA: drop alpha
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] != 3:
        raise InputError(f"{path} has {array.shape[2]} channels; 1 (grayscale) or 3 (RGB) are supported")
    if array.ndim == 3 and np.ptp(array.astype(np.float32), axis=2).max() == 0:
        array = array[..., 0]  # grey stored as RGB
    return to_unit_range(array, str(path))


def _read_with_alpha(path: Path) -> np.ndarray:
    """Grey + alpha images (which SimpleITK cannot read) through Pillow, without the alpha channel."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            f"{path} is a grey + alpha image, which SimpleITK cannot read; save it as plain grayscale or RGB, "
            "or install Pillow (pip install pillow) to read it"
        ) from None
    with Image.open(path) as picture:
        mode = "L" if picture.mode in ("LA", "La", "L") else "RGB"
        return np.asarray(picture.convert(mode))


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write a float [0, 1] (H, W) or (H, W, 3) image as 8-bit (PNG, ...)."""
    data = np.clip(np.round(np.asarray(array, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    with atomic_output(path) as tmp:
        sitk.WriteImage(sitk.GetImageFromArray(data, isVector=data.ndim == 3), str(tmp))
