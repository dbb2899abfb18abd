"""Evaluation cases: a fixed MRI, an unaligned moving image, and that image aligned (the label).

Two sources: a folder with ``fixed/``, ``moving/`` and ``label/`` sub-folders holding images of the
same names, or aligned pairs deformed by the synthetic generator with a seed (which also gives the
ground-truth displacement).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..deformation import invert_displacement, random_deformation
from ..errors import InputError
from ..images import IMAGE_SUFFIXES, read_image
from ..pairs import PairFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalCase:
    """One test case; images in [0, 1] on one grid."""

    name: str
    fixed: np.ndarray  # (H, W) MRI
    moving: np.ndarray  # (H, W) or (H, W, 3) RGB, not aligned with ``fixed``
    label: np.ndarray  # ``moving``'s modality aligned with ``fixed``, same shape as ``moving``
    truth: np.ndarray | None = None  # (H, W, 2) pixels: the displacement that aligns ``moving``


def _grayscale(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 3:
        raise InputError(f"{path} is RGB; the fixed MRI must be grayscale")
    return image


def _check_case(case: EvalCase) -> EvalCase:
    grid = case.fixed.shape
    for name, image in (("moving", case.moving), ("label", case.label)):
        if image.shape[:2] != grid:
            raise InputError(f"case {case.name}: {name} is {image.shape[:2]}, fixed is {grid}")
    if case.moving.shape != case.label.shape:
        raise InputError(f"case {case.name}: moving {case.moving.shape} and label {case.label.shape} differ")
    return case


def _image_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder_cases(root: str | Path) -> list[EvalCase]:
    """Cases from ``root/fixed``, ``root/moving`` and ``root/label`` (files matched by name)."""
    root = Path(root)
    folders = {part: root / part for part in ("fixed", "moving", "label")}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        raise InputError(f"test-set folder {root} lacks {', '.join(missing)}")
    names = [set(_image_names(f)) for f in folders.values()]
    common = sorted(set.intersection(*names))
    if not common:
        raise InputError(f"no image name is present in all of fixed/, moving/ and label/ under {root}")
    skipped = set.union(*names) - set(common)
    if skipped:
        log.warning("%d images without partners in all three folders are skipped", len(skipped))
    return [
        _check_case(
            EvalCase(
                name=Path(name).stem,
                fixed=_grayscale(read_image(folders["fixed"] / name), folders["fixed"] / name),
                moving=read_image(folders["moving"] / name),
                label=read_image(folders["label"] / name),
            )
        )
        for name in common
    ]


def channels_first(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) numpy to a (1, C, H, W) float32 tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    return tensor.permute(2, 0, 1)[None] if tensor.ndim == 3 else tensor[None, None]


def channels_last(tensor: torch.Tensor) -> np.ndarray:
    """The first image of an (N, C, H, W) tensor as (H, W) or (H, W, C) numpy."""
    array = tensor[0].numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def deformed_case(
    name: str,
    fixed: np.ndarray,
    aligned: np.ndarray,
    generator: torch.Generator,
    *,
    max_translation: float = 0.01,
    elastic_magnitude: float = 1.0,
) -> EvalCase:
    """A case from an aligned pair: ``aligned`` deformed at random becomes the moving image."""
    deformed, displacement = random_deformation(
        channels_first(aligned),
        generator=generator,
        max_translation=max_translation,
        elastic_magnitude=elastic_magnitude,
    )
    truth = invert_displacement(displacement)[0].permute(1, 2, 0).numpy()
    moving = np.clip(channels_last(deformed), 0.0, 1.0)
    return _check_case(EvalCase(name, fixed, moving, aligned, truth.astype(np.float64)))


def generated_cases(
    pairs: list[PairFiles],
    *,
    seed: int,
    count: int | None = None,
    max_translation: float = 0.01,
    elastic_magnitude: float = 1.0,
) -> list[EvalCase]:
    """Cases from aligned ``(fixed, moving)`` files; ``count`` of them drawn with ``seed``, then deformed.

    The same arguments always give the same cases.
    """
    if not pairs:
        raise InputError("no aligned pairs to build a test set from")
    generator = torch.Generator().manual_seed(seed)
    if count is not None:
        if count < 1:
            raise InputError(f"count must be at least 1, got {count}")
        order = torch.randperm(len(pairs), generator=generator)[:count].sort().values.tolist()
        pairs = [pairs[i] for i in order]
    cases = []
    for fixed_path, moving_path, _case in pairs:
        fixed = _grayscale(read_image(fixed_path), fixed_path)
        cases.append(
            deformed_case(
                Path(moving_path).stem,
                fixed,
                read_image(moving_path),
                generator,
                max_translation=max_translation,
                elastic_magnitude=elastic_magnitude,
            )
        )
    return cases
