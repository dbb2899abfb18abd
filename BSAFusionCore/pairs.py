"""Aligned pairs (MRI = fixed, CT/PET/SPECT = moving) for training and evaluation alike.

Sources: aanlib-style folders ``<root>/<X>-MRI/{MRI,<X>}/NAME.png``, a CSV of 2D file pairs, and
pairs of aligned 3D volumes sliced along an axis. Loaded into memory at a working size, each image
min-max normalised to [0, 1]; an RGB moving image becomes the Y channel of
:func:`BSAFusionCore.color.rgb_to_ycbcr`.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import Tensor

from .color import rgb_to_ycbcr
from .errors import InputError
from .geometry import SliceAxes, slices_of
from .images import read_image

log = logging.getLogger(__name__)

PAIR_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nrrd", ".nii", ".nii.gz", ".mha")
"""Files an aanlib-style folder may hold (2D images, or single slices stored as volumes)."""
_CASE_NAME = re.compile(r"^(\d+)\d{3}$")  # aanlib names: the case number, then a 3-digit slice


class PairFiles(NamedTuple):
    """The files of one aligned pair and its case (slices of one case share it)."""

    fixed: Path
    moving: Path
    case: str


@dataclass(frozen=True)
class PairSample:
    """One aligned training pair at the training size, values in [0, 1]."""

    fixed: Tensor  # (1,S,S) MRI
    moving: Tensor  # (1,S,S) CT, or Y of PET/SPECT
    case: str
    name: str


def min_max(array: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant image becomes zeros."""
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def _to_channels_first(array: np.ndarray) -> Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)


def prepare_pair(fixed: np.ndarray, moving: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """Resize to ``size`` x ``size``, min-max normalise and reduce an RGB moving image to Y."""
    if fixed.ndim != 2:
        raise InputError(f"the fixed (MRI) image must be grayscale, got shape {fixed.shape}")
    if fixed.shape != moving.shape[:2]:
        raise InputError(f"the images of a pair differ in size: {fixed.shape} vs {moving.shape[:2]}")
    images = []
    for array in (fixed, moving):
        tensor = _to_channels_first(array.astype(np.float32)).unsqueeze(0)
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
        images.append(torch.from_numpy(min_max(tensor.numpy())))
    fixed_t, moving_t = images
    if moving_t.shape[1] == 3:
        moving_t = rgb_to_ycbcr(moving_t)[:, :1]
    return fixed_t[0], moving_t[0]


def _case_of(name: str) -> str:
    match = _CASE_NAME.match(name)
    return match.group(1) if match else name


def _image_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.name.lower().endswith(PAIR_FILE_SUFFIXES)}


def aanlib_files(root: str | Path, modality: str, cases: set[str] | None = None) -> list[PairFiles]:
    """The pairs of ``root/<X>-MRI/{MRI,<X>}`` (or of ``root`` = that folder); with ``cases``, only
    those cases (the number before a name's 3-digit slice number, e.g. ``28`` for ``28010.png``)."""
    root = Path(root)
    folder = root if (root / "MRI").is_dir() else root / f"{modality}-MRI"
    mri_dir, other_dir = folder / "MRI", folder / modality
    if not mri_dir.is_dir() or not other_dir.is_dir():
        raise InputError(f"expected folders {mri_dir} and {other_dir}")
    mri, other = _image_files(mri_dir), _image_files(other_dir)
    unmatched = sorted(set(mri) ^ set(other))
    if unmatched:
        log.warning("%d images without a partner are skipped, e.g. %s", len(unmatched), unmatched[0])
    names = sorted(set(mri) & set(other))
    if not names:
        raise InputError(f"no image pairs with the same name in {mri_dir} and {other_dir}")
    pairs = [PairFiles(mri[n], other[n], _case_of(Path(n).stem)) for n in names]
    if cases is not None:
        unknown = sorted(cases - {pair.case for pair in pairs})
        if unknown:
            raise InputError(f"{root} has no {modality}-MRI case {', '.join(unknown)}")
        pairs = [pair for pair in pairs if pair.case in cases]
    return pairs


def csv_files(csv_path: Path) -> list[PairFiles]:
    """Pairs listed in a CSV with columns ``fixed``, ``moving`` and optionally ``case``.

    Relative paths are relative to the CSV's folder.
    """
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(f"cannot read {csv_path}: {error}") from error
    if not rows or not {"fixed", "moving"} <= set(rows[0]):
        raise InputError(f"{csv_path} needs a header with the columns 'fixed' and 'moving' and one row or more")
    pairs = []
    for row in rows:
        fixed, moving = (csv_path.parent / row[key].strip() for key in ("fixed", "moving"))
        for path in (fixed, moving):
            if not path.is_file():
                raise InputError(f"{csv_path}: file {path} does not exist")
        pairs.append(PairFiles(fixed, moving, (row.get("case") or "").strip() or _case_of(fixed.stem)))
    return pairs


def load_file_pairs(pairs: list[PairFiles], size: int) -> list[PairSample]:
    """Read and prepare 2D file pairs."""
    samples = []
    for fixed, moving, case in pairs:
        fixed_t, moving_t = prepare_pair(read_image(fixed), read_image(moving), size)
        samples.append(PairSample(fixed_t, moving_t, case, fixed.name))
    return samples


def load_volume_pair(
    fixed_path: Path, moving_path: Path, size: int, *, axis: int = 2, min_foreground: float = 0.05
) -> list[PairSample]:
    """Slices of two aligned 3D volumes along ``axis`` (0, 1, 2 = i, j, k), as pairs.

    Slices where either image has less than ``min_foreground`` of its pixels above 10% of its
    range are skipped. The volumes must share their voxel grid.
    """
    try:
        fixed, moving = sitk.ReadImage(str(fixed_path)), sitk.ReadImage(str(moving_path))
    except RuntimeError as error:
        raise InputError(f"cannot read the volume pair {fixed_path}, {moving_path}: {error}") from error
    if fixed.GetDimension() != 3 or fixed.GetSize() != moving.GetSize():
        raise InputError(
            f"{fixed_path} and {moving_path} must be 3D volumes on the same grid, "
            f"got sizes {fixed.GetSize()} and {moving.GetSize()}"
        )
    arrays = [sitk.GetArrayFromImage(v).astype(np.float32) for v in (fixed, moving)]  # (k, j, i)
    stacks = [slices_of(a, SliceAxes.through(axis)) for a in arrays]
    samples = []
    for index in range(stacks[0].shape[0]):
        slices = [min_max(stack[index]) for stack in stacks]
        if min(float((s > 0.1).mean()) for s in slices) < min_foreground:
            continue
        fixed_t, moving_t = prepare_pair(slices[0], slices[1], size)
        samples.append(PairSample(fixed_t, moving_t, Path(fixed_path).name, f"{Path(fixed_path).name}:{index}"))
    if not samples:
        raise InputError(f"no slice of {fixed_path} along axis {axis} has enough foreground")
    return samples


def split_by_case(
    samples: list[PairSample], val_fraction: float, seed: int
) -> tuple[list[PairSample], list[PairSample]]:
    """Hold out whole cases (at least one when ``val_fraction`` > 0) for validation.

    With a single case, single samples are held out instead.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cases = sorted({s.case for s in samples})
    key = (lambda s: s.case) if len(cases) > 1 else (lambda s: s.name)
    groups = sorted({key(s) for s in samples})
    if val_fraction == 0 or len(groups) < 2:
        return list(samples), []
    count = min(max(1, round(val_fraction * len(groups))), len(groups) - 1)
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = {groups[i] for i in order[:count]}
    return [s for s in samples if key(s) not in held_out], [s for s in samples if key(s) in held_out]
