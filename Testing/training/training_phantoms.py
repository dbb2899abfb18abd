"""Tiny synthetic MRI / CT-like pairs for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def phantom_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An aligned (MRI-like, CT-like) pair of 8-bit images: a head with a skull ring and blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    cx, cy = rng.uniform(-0.05, 0.05, 2)
    r = np.hypot((x - cx) / rng.uniform(0.33, 0.4), (y - cy) / rng.uniform(0.38, 0.45))
    brain, skull = r < 0.85, (r >= 0.85) & (r < 1.0)
    mri = 0.5 * brain + 0.15 * skull
    ct = 0.2 * brain + 1.0 * skull
    for _ in range(3):
        bx, by, br = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.04, 0.1)
        blob = np.hypot(x - bx, y - by) < br
        mri = np.where(blob, rng.uniform(0.7, 1.0), mri)
        ct = np.where(blob, rng.uniform(0.3, 0.5), ct)
    mri = mri + 0.05 * np.sin(25 * x) * brain  # soft-tissue texture the CT lacks
    to_u8 = lambda a: np.clip(a / a.max() * 255, 0, 255).astype(np.uint8)  # noqa: E731
    return to_u8(mri), to_u8(ct)


def write_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=array.ndim == 3), str(path))


def write_aanlib(root: Path, modality: str, cases: int, slices: int, size: int, rgb: bool = False) -> Path:
    """``root/<X>-MRI/{MRI,<X>}/NAME.png`` like the aanlib folders: NAME is the case number, then a
    3-digit slice number (cases 7, 14, 21, ...: one and two digits, as in the real folders)."""
    for case in range(cases):
        for s in range(slices):
            mri, other = phantom_pair(size, seed=100 * case + s)
            if rgb:
                other = np.stack([other, (other * 0.5).astype(np.uint8), 255 - other], axis=-1)
            name = f"{7 * (case + 1)}{s + 10:03d}.png"
            write_png(mri, root / f"{modality}-MRI" / "MRI" / name)
            write_png(other, root / f"{modality}-MRI" / modality / name)
    return root
