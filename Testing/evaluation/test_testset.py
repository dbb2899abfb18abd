"""Loading test-set folders and generating deformed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from BSAFusionCore.errors import InputError
from BSAFusionCore.evaluation import generated_cases, load_folder_cases
from BSAFusionCore.images import write_image
from BSAFusionCore.metrics import similarity_metrics
from BSAFusionCore.network.warp import warp_image
from BSAFusionCore.pairs import aanlib_files

SIZE = 64  # the conftest's images


def test_folder_cases_are_matched_by_name(testset_dir):
    cases = load_folder_cases(testset_dir)
    assert [c.name for c in cases] == ["case0", "case1"]
    assert cases[0].fixed.shape == (SIZE, SIZE)
    assert cases[0].truth is None
    np.testing.assert_allclose(np.roll(cases[0].label, 2, axis=1), cases[0].moving, atol=1 / 255)


def test_folder_without_label_is_refused(tmp_path):
    write_image(tmp_path / "fixed" / "a.png", np.zeros((SIZE, SIZE)))
    write_image(tmp_path / "moving" / "a.png", np.zeros((SIZE, SIZE)))
    with pytest.raises(InputError, match="label"):
        load_folder_cases(tmp_path)


def test_cases_of_different_sizes_are_refused(tmp_path):
    for part, size in (("fixed", SIZE), ("moving", SIZE), ("label", SIZE + 2)):
        write_image(tmp_path / part / "a.png", np.zeros((size, size)))
    with pytest.raises(InputError, match="label"):
        load_folder_cases(tmp_path)


def test_generated_cases_are_reproducible_and_seeded(aligned_dir):
    pairs = aanlib_files(aligned_dir, "CT")
    first = generated_cases(pairs, seed=3, count=2)
    again = generated_cases(pairs, seed=3, count=2)
    other = generated_cases(pairs, seed=4, count=2)
    assert len(first) == 2
    for a, b in zip(first, again, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.moving, b.moving)
        np.testing.assert_array_equal(a.truth, b.truth)
    assert not all(np.array_equal(a.truth, b.truth) for a, b in zip(first, other, strict=True))


def test_generated_truth_aligns_the_moving_image(aligned_dir):
    case = generated_cases(aanlib_files(aligned_dir, "CT"), seed=0, elastic_magnitude=2.0)[0]
    assert case.truth.shape == (SIZE, SIZE, 2)
    assert np.abs(case.truth).mean() > 1.0  # a real deformation (about 8 px at this magnitude)
    moving = torch.from_numpy(case.moving.astype(np.float32))[None, None]
    truth = torch.from_numpy(np.moveaxis(case.truth, 2, 0).astype(np.float32))[None]
    realigned = warp_image(moving, truth)[0, 0].numpy()
    before = similarity_metrics(case.moving, case.label)["MAE"]
    after = similarity_metrics(realigned, case.label)["MAE"]
    assert after < 0.3 * before


def test_bad_count_is_refused(aligned_dir):
    with pytest.raises(InputError, match="count"):
        generated_cases(aanlib_files(aligned_dir, "CT"), seed=0, count=0)
