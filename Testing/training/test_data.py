"""Training data: the three sources, normalisation, colour, splits and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from training_phantoms import phantom_pair, write_aanlib, write_png

from BSAFusionCore.color import rgb_to_ycbcr
from BSAFusionCore.errors import InputError
from BSAFusionCore.pairs import (
    PairSample,
    aanlib_files,
    csv_files,
    load_file_pairs,
    load_volume_pair,
    prepare_pair,
    split_by_case,
)
from BSAFusionCore.training.data import augment, make_batch


def test_aanlib_folders_grayscale(tmp_path: Path) -> None:
    write_aanlib(tmp_path, "CT", cases=2, slices=3, size=48)
    pairs = aanlib_files(tmp_path, "CT")
    assert len(pairs) == 6 and {case for _, _, case in pairs} == {"7", "14"}
    samples = load_file_pairs(pairs, 32)
    assert samples[0].fixed.shape == (1, 32, 32) and samples[0].moving.shape == (1, 32, 32)
    for s in samples:
        assert s.fixed.min() == 0 and s.fixed.max() == 1
    # The <X>-MRI folder itself works too.
    assert len(aanlib_files(tmp_path / "CT-MRI", "CT")) == 6


def test_rgb_moving_images_become_y(tmp_path: Path) -> None:
    write_aanlib(tmp_path, "PET", cases=1, slices=1, size=32, rgb=True)
    (fixed_path, moving_path, _), = aanlib_files(tmp_path, "PET")
    sample, = load_file_pairs([(fixed_path, moving_path, "x")], 32)
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(moving_path))).astype(np.float32)
    rgb = torch.from_numpy((rgb - rgb.min()) / (rgb.max() - rgb.min())).permute(2, 0, 1)[None]
    torch.testing.assert_close(sample.moving, rgb_to_ycbcr(rgb)[0, :1])


def test_missing_partner_and_empty_folders(tmp_path: Path) -> None:
    write_aanlib(tmp_path, "CT", cases=1, slices=2, size=32)
    (tmp_path / "CT-MRI" / "CT" / "7010.png").unlink()
    assert len(aanlib_files(tmp_path, "CT")) == 1
    with pytest.raises(InputError, match="expected folders"):
        aanlib_files(tmp_path, "SPECT")


def test_csv_files(tmp_path: Path) -> None:
    mri, ct = phantom_pair(32, 0)
    write_png(mri, tmp_path / "a" / "mri.png")
    write_png(ct, tmp_path / "b" / "ct.png")
    (tmp_path / "pairs.csv").write_text("fixed,moving,case\na/mri.png,b/ct.png,p1\n")
    pairs = csv_files(tmp_path / "pairs.csv")
    assert pairs == [(tmp_path / "a" / "mri.png", tmp_path / "b" / "ct.png", "p1")]
    (tmp_path / "bad.csv").write_text("mri,ct\na/mri.png,b/ct.png\n")
    with pytest.raises(InputError, match="'fixed' and 'moving'"):
        csv_files(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("fixed,moving\na/mri.png,b/nothing.png\n")
    with pytest.raises(InputError, match="does not exist"):
        csv_files(tmp_path / "missing.csv")


def test_volume_pair_slices(tmp_path: Path) -> None:
    slices = [phantom_pair(32, s) for s in range(4)]
    mri = np.stack([np.zeros((32, 32), np.uint8)] + [m for m, _ in slices])  # first slice empty
    ct = np.stack([np.zeros((32, 32), np.uint8)] + [c for _, c in slices]).astype(np.int16) * 10 - 1000
    for name, array in (("mri.nrrd", mri), ("ct.nrrd", ct)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name))
    samples = load_volume_pair(tmp_path / "mri.nrrd", tmp_path / "ct.nrrd", 32, axis=2)
    assert len(samples) == 4 and samples[0].name.endswith(":1")
    assert float(samples[0].moving.min()) == 0 and float(samples[0].moving.max()) == 1
    assert len(load_volume_pair(tmp_path / "mri.nrrd", tmp_path / "ct.nrrd", 32, axis=0, min_foreground=0)) == 32
    sitk.WriteImage(sitk.GetImageFromArray(ct[:, :16]), str(tmp_path / "small.nrrd"))
    with pytest.raises(InputError, match="same grid"):
        load_volume_pair(tmp_path / "mri.nrrd", tmp_path / "small.nrrd", 32)


def test_prepare_pair_checks_and_does_not_modify() -> None:
    mri, ct = (a.astype(np.float32) for a in phantom_pair(32, 1))
    copy = ct.copy()
    prepare_pair(mri, ct, 32)
    assert np.array_equal(ct, copy)
    with pytest.raises(InputError, match="differ in size"):
        prepare_pair(mri, ct[:16], 32)


def test_split_holds_out_whole_cases() -> None:

    image = torch.zeros(1, 32, 32)
    samples = [PairSample(image, image, f"{c}", f"{c}-{s}") for c in range(10) for s in range(3)]
    train, val = split_by_case(samples, 0.2, seed=0)
    assert len(val) == 6 and len(train) == 24
    assert not {s.case for s in train} & {s.case for s in val}
    assert split_by_case(samples, 0.2, seed=0) == (train, val)
    assert split_by_case(samples, 0.0, seed=0) == (samples, [])


def test_augmentation_is_identical_for_both_images() -> None:
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = set()
    generator = torch.Generator().manual_seed(1)
    for _ in range(40):
        a, b = augment(image, image.clone(), generator)
        assert torch.equal(a, b)
        seen.add(a.numpy().tobytes())
    assert len(seen) == 8  # the 8 flips/rotations of a square
    batch = make_batch([_sample(image)] * 2, [0, 1], torch.Generator().manual_seed(2))
    assert batch[0].shape == (2, 1, 16, 16)


def _sample(image: torch.Tensor):

    return PairSample(image, image, "c", "n")
