"""Moving outlines without moving anatomy (``training.outline``)."""

from __future__ import annotations

import pytest
import torch

from BSAFusionCore.errors import InputError
from BSAFusionCore.examples import head_phantom
from BSAFusionCore.training.outline import MAX_OUTLINE_CHANGE, reshape_outlines, shrink_outline, support
from BSAFusionCore.training.trainer import TrainConfig


def _pet(size: int = 64) -> torch.Tensor:
    return torch.from_numpy(head_phantom(size, "PET"))[None, None]


def test_the_support_closes_inner_holes() -> None:
    image = _pet()
    inside = support(image)
    assert inside[0, 0, 32, 32] == 1 and inside[0, 0, 0, 0] == 0
    rows, columns = (torch.arange(64) - 32).abs().view(-1, 1), (torch.arange(64) - 32).abs().view(1, -1)
    ventricles = (image[0, 0] < 0.1 * image.max()) & rows.lt(4) & columns.lt(12)
    assert ventricles.sum() >= 8 and inside[0, 0][ventricles].all()  # dark, but inside


def test_outlines_shrink_and_the_middle_stays() -> None:
    image = _pet().repeat(3, 1, 1, 1)
    changed = shrink_outline(image, torch.tensor([0, 2, 5]))
    assert torch.equal(changed[0], image[0])
    area = [(c > 0.1 * image.max()).sum().item() for c in changed]
    assert area[2] < area[1] < area[0]
    deep = support(image[:1]).bool()[0, 0]
    for _ in range(6):  # 6 px inside the outline
        deep = torch.nn.functional.max_pool2d((~deep).float()[None, None], 3, 1, 1)[0, 0] == 0
    for index in (1, 2):
        assert torch.equal(changed[index, 0][deep], image[index, 0][deep])
    assert (changed <= image).all()  # nothing added


def test_reshape_outlines_draws_from_its_generator_and_only_where_eligible() -> None:
    images = _pet().repeat(8, 1, 1, 1)
    first = reshape_outlines(images, 1.0, torch.Generator().manual_seed(3))
    again = reshape_outlines(images, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert all(not torch.equal(first[i], images[i]) for i in range(8))  # every one changed, by 1 px or more
    lost = (images > 0.1).flatten(1).sum(1) - (first > 0.1).flatten(1).sum(1)
    assert (lost > 0).all() and lost.max() < 4 * MAX_OUTLINE_CHANGE * 64 * 64  # at most a ring of that width
    eligible = torch.tensor([True, False] * 4)
    some = reshape_outlines(images, 1.0, torch.Generator().manual_seed(3), eligible=eligible)
    assert all(torch.equal(some[i], images[i]) for i in range(1, 8, 2))
    assert torch.equal(reshape_outlines(images, 0.0, torch.Generator().manual_seed(3)), images)


def test_outline_changes_are_for_the_registration_stage() -> None:
    assert TrainConfig(run_dir="r", stage="registration", outline_fraction=0.3).outline_fraction == 0.3
    with pytest.raises(InputError, match="registration stage only"):
        TrainConfig(run_dir="r", stage="fusion", outline_fraction=0.3)
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        TrainConfig(run_dir="r", stage="registration", outline_fraction=1.5)


def test_the_trainer_changes_the_outlines_of_real_moving_images_only(tmp_path) -> None:
    from test_trainer import _config, _samples

    from BSAFusionCore.training.trainer import Trainer

    samples = _samples(4)
    plain = Trainer(_config(tmp_path / "plain", stage="registration"), samples, [])
    changed = Trainer(_config(tmp_path / "changed", stage="registration", outline_fraction=1.0,
                              mono_fraction=0.5), samples, [])
    batch, reference = changed._batch([0, 1, 2, 3], torch.Generator().manual_seed(1)), plain._batch(
        [0, 1, 2, 3], torch.Generator().manual_seed(1))
    assert torch.equal(batch.fixed, reference.fixed)
    real = batch.real_moving
    assert real.any() and (~real).any()  # this seed draws both kinds
    for index in range(4):  # MRI-MRI pairs keep their MRI; real pairs have their outline moved
        if real[index]:
            assert not torch.equal(batch.label[index], reference.label[index])  # the real label, changed
        else:
            assert torch.equal(batch.label[index], batch.fixed[index])
    assert changed.train_step(batch.fixed, batch.label, torch.Generator().manual_seed(2), batch.real_moving,
                              batch.real_fixed)["total"] > 0
