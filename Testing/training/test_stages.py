"""Training stages, the registration curriculum, bf16 on the CPU and the time limit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from test_trainer import _config, _eval_loss, _evaluated, _samples

from BSAFusionCore.deformation import invert_displacement, random_deformation
from BSAFusionCore.errors import InputError
from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.training.contrast import random_contrast
from BSAFusionCore.training.curriculum import PairMix, mix_pairs, pair_mix, undeform_some
from BSAFusionCore.training.data import make_batch
from BSAFusionCore.training.losses import registration_stage_loss, teacher_loss
from BSAFusionCore.training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    LOG_CSV,
    TrainConfig,
    Trainer,
    checkpoint_weights,
    load_checkpoint,
)
from BSAFusionCore.training.validation import registers_the_phantom
from BSAFusionCore.weights import save_weights


def _registration_loss(trainer: Trainer, fixed: torch.Tensor, label: torch.Tensor) -> float:
    moving, d = random_deformation(label, generator=torch.Generator().manual_seed(9), **trainer.config.deformation())
    trainer.net.eval()
    with torch.no_grad():
        out = trainer.net(fixed, moving, with_fusion=False)
        loss = registration_stage_loss(out, label, true_flow=invert_displacement(d), flow_supervision=1.0).total
    trainer.net.train()
    return float(loss)


def test_registration_stage_trains_the_registration_path_alone(tmp_path: Path) -> None:
    samples = _samples(2)
    config = _config(tmp_path, stage="registration", flow_supervision=1.0, deformation_scale=4.0, lr=3e-4)
    trainer = Trainer(config, samples, [])
    fusion_before = {n: p.clone() for n, p in trainer.net.fusion_net.named_parameters()}
    fixed, label = make_batch(samples, [0, 1], None)
    before = _registration_loss(trainer, fixed, label)
    figures = [trainer.train_step(fixed, label, torch.Generator().manual_seed(9)) for _ in range(12)]
    assert _registration_loss(trainer, fixed, label) < before - 0.05
    assert all(f["fusion"] == 0 for f in figures)
    assert all(torch.equal(p, fusion_before[n]) for n, p in trainer.net.fusion_net.named_parameters())
    assert trainer.state.mu == 1.0


def test_registration_stage_can_keep_what_the_fusion_reads(tmp_path: Path) -> None:
    samples = _samples(2)
    config = _config(tmp_path, stage="registration", flow_supervision=1.0, deformation_scale=4.0, lr=3e-4,
                     freeze_features=True)
    trainer = Trainer(config, samples, [])
    kept = {n: p.clone() for n, p in trainer.net.named_parameters()
            if n.startswith(("encoder.", "transfer.classifier.", "fusion_net."))}
    learns = {n: p.clone() for n, p in trainer.net.named_parameters()
              if n.startswith(("transfer.transfer.", "reg_net."))}
    fixed, label = make_batch(samples, [0, 1], None)
    before = _registration_loss(trainer, fixed, label)
    for _ in range(12):
        trainer.train_step(fixed, label, torch.Generator().manual_seed(9))
    assert _registration_loss(trainer, fixed, label) < before - 0.05
    params = dict(trainer.net.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in kept.items())
    assert sum(not torch.equal(params[n], p) for n, p in learns.items()) > len(learns) // 2
    with pytest.raises(InputError, match="registration stage"):
        _config(tmp_path, stage="fusion", freeze_features=True)


def test_fusion_stage_steps_reduce_the_fusion_loss(tmp_path: Path) -> None:
    samples = _samples(2)
    trainer = Trainer(_config(tmp_path, stage="fusion", lr=3e-4), samples, [])
    fixed, label = make_batch(samples, [0, 1], None)
    before = _eval_loss(trainer, fixed, label, term="fusion")
    for _ in range(8):
        trainer.train_step(fixed, label, torch.Generator().manual_seed(9))
    assert _eval_loss(trainer, fixed, label, term="fusion") < 0.9 * before


def test_fusion_stage_learns_the_fusion_of_a_teacher(tmp_path: Path) -> None:
    torch.manual_seed(3)
    teacher_file = tmp_path / "teacher.safetensors"
    save_weights(teacher_file, BSAFusionNet(), {"modality": "CT", "image_size": 32})
    samples = _samples(2)
    config = _config(tmp_path, stage="fusion", lr=3e-4, fusion_teacher=str(teacher_file))
    trainer = Trainer(config, samples, [])
    fixed, label = make_batch(samples, [0, 1], None)
    target = trainer.teacher.fuse_aligned(fixed, label)
    moving, _ = random_deformation(label, generator=torch.Generator().manual_seed(9), **trainer.config.deformation())

    def distance() -> float:
        return _evaluated(trainer, fixed, moving, lambda out: teacher_loss(out.fused, target))

    before = distance()
    figures = [trainer.train_step(fixed, label, torch.Generator().manual_seed(9)) for _ in range(8)]
    assert distance() < 0.8 * before
    assert all(f["teacher"] > 0 for f in figures)
    assert all(f["total"] >= f["fusion"] + f["teacher"] for f in figures)
    with pytest.raises(InputError, match="fusion and joint stages"):
        _config(tmp_path, stage="registration", fusion_teacher=str(teacher_file))
    with pytest.raises(InputError, match="fuses CT-MRI, this run trains PET-MRI"):
        Trainer(_config(tmp_path, stage="fusion", modality="PET", fusion_teacher=str(teacher_file)), samples, [])


def test_registration_stage_keeps_the_lowest_endpoint_error_that_registers_the_phantom(tmp_path: Path) -> None:
    val_size = 48  # validated at another size than trained: the net runs at its own, as in inference
    config = _config(tmp_path, stage="registration", flow_supervision=1.0, epochs=2, val_size=val_size)
    state = Trainer(config, _samples(4), _samples(2, first_seed=10, size=val_size)).run()
    assert {"epe", "epe_unregistered", "ssim", "ncc", "folding"} <= set(state.validation)
    assert "Qabf" not in state.validation  # no fusion in this stage
    assert [point["step"] for point in state.curve] == [2, 4]
    assert state.curve[-1]["samples"] == 8
    best = load_checkpoint(tmp_path / BEST_CHECKPOINT)["state"]
    # those that register the built-in phantom better than none first, then the lowest held-out EPE
    chosen = max(state.curve, key=lambda point: (registers_the_phantom(point), -point["epe"]))
    assert best["best_epoch"] == chosen["epoch"] and {"phantom_epe", "phantom_ncc"} <= set(chosen)


def test_mixing_pairs_is_for_the_registration_stage_only(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="registration stage only"):
        _config(tmp_path, stage="joint", pretrain_steps=10)
    with pytest.raises(InputError, match="registration stage only"):
        _config(tmp_path, stage="fusion", shapes_fraction=0.3)
    assert _config(tmp_path, stage="fusion", shapes_fraction=0.3, fusion_teacher="CT").shapes_fraction == 0.3
    with pytest.raises(InputError, match="stage must be"):
        _config(tmp_path, stage="warp")
    with pytest.raises(InputError, match="add up to at most 1"):
        _config(tmp_path, stage="registration", mono_fraction=0.6, synthetic_fraction=0.6)
    assert TrainConfig.from_dict({"run_dir": "r", "freeze_registration": True}).stage == "fusion"


def test_random_contrast_keeps_the_anatomy_and_changes_the_intensities() -> None:
    images, _ = make_batch(_samples(4), [0, 1, 2, 3], None)
    first = random_contrast(images, torch.Generator().manual_seed(3))
    again = random_contrast(images, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert first.shape == images.shape and float(first.min()) >= 0 and float(first.max()) <= 1
    assert float((first - images).abs().mean()) > 0.05
    # the same structure: the images' edges stay where they were
    edges = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs() > 0.02  # noqa: E731
    overlap = (edges(first) & edges(images)).sum() / edges(images).sum()
    assert overlap > 0.6


def test_pair_mix_follows_the_curriculum() -> None:
    assert pair_mix(0, 100, 0.2, 0.3) == PairMix(0.5, 0.5)
    assert pair_mix(99, 100, 0.2, 0.3, pretrain_synthetic=0.0) == PairMix(1.0, 0.0)  # mono-modal only
    assert pair_mix(100, 100, 0.2, 0.3) == PairMix(0.2, 0.3)
    fixed = torch.zeros(400, 1, 4, 4)
    label = torch.ones(400, 1, 4, 4)
    assert pair_mix(100, 100, 0.2, 0.3, shapes=0.1) == PairMix(0.2, 0.3, 0.1)
    fixed = torch.zeros(400, 1, 32, 32)
    label = torch.ones(400, 1, 32, 32)
    batch = mix_pairs(fixed, label, PairMix(0.25, 0.25, 0.2), torch.Generator().manual_seed(0))
    is_mri = (batch.label == 0).flatten(1).all(dim=1)
    is_label = (batch.label == 1).flatten(1).all(dim=1)
    shapes = ~batch.real_fixed
    assert torch.equal(batch.real_moving, is_label)
    assert 0.2 < float(batch.real_moving.float().mean()) < 0.4
    assert 0.15 < float(is_mri.float().mean()) < 0.35
    assert 0.1 < float(shapes.float().mean()) < 0.3
    assert torch.equal(batch.fixed[~shapes], fixed[~shapes])  # only random-shape pairs replace the MRI
    assert bool((batch.fixed[shapes].flatten(1).amax(dim=1) == 1).all())  # a rendered image in [0, 1]
    same = mix_pairs(fixed, label, PairMix(), torch.Generator().manual_seed(0))
    assert same.label is label and bool(same.real_moving.all()) and bool(same.real_fixed.all())


def test_some_pairs_stay_undeformed() -> None:
    label = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    moving, displacement = random_deformation(label, generator=torch.Generator().manual_seed(2))
    kept_moving, kept_d = undeform_some(label, moving, displacement, 0.25, torch.Generator().manual_seed(3))
    undeformed = (kept_d == 0).flatten(1).all(dim=1)
    assert 0.15 < float(undeformed.float().mean()) < 0.35
    assert torch.equal(kept_moving[undeformed], label[undeformed])  # the moving image is the label itself
    assert torch.equal(kept_moving[~undeformed], moving[~undeformed])
    assert torch.equal(kept_d[~undeformed], displacement[~undeformed])
    again = undeform_some(label, moving, displacement, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(again[1], kept_d)  # the draw is the generator's
    assert torch.equal(undeform_some(label, moving, displacement, 0.0, torch.Generator())[1], displacement)


def test_aligned_fraction_is_a_share(tmp_path: Path) -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(InputError, match="aligned fraction must be in"):
            _config(tmp_path, aligned_fraction=bad)


def test_curriculum_steps_train_on_mixed_pairs(tmp_path: Path) -> None:
    config = _config(tmp_path, stage="registration", pretrain_steps=1, synthetic_fraction=0.5, epochs=1)
    trainer = Trainer(config, _samples(4), [])
    seen: list[torch.Tensor | None] = []
    step = trainer.train_step
    trainer.train_step = lambda fixed, label, generator, real=None, real_fixed=None: seen.append(real) or step(  # type: ignore[method-assign]
        fixed, label, generator, real, real_fixed
    )
    trainer.run()
    assert len(seen) == 2 and all(real is not None for real in seen)
    assert not bool(seen[0].any())  # pre-training: no real pair


def test_bf16_autocast_on_the_cpu(tmp_path: Path) -> None:
    samples = _samples(2)
    trainer = Trainer(_config(tmp_path, amp="bf16", stage="registration", flow_supervision=1.0), samples, [])
    assert trainer.amp_dtype == torch.bfloat16
    fixed, label = make_batch(samples, [0, 1], None)
    figures = trainer.train_step(fixed, label, torch.Generator().manual_seed(9))
    assert all(torch.isfinite(torch.tensor(v)) for v in figures.values())
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())
    with pytest.raises(InputError, match="fp16 autocast is for GPUs"):
        Trainer(_config(tmp_path / "f", amp="fp16"), samples, [])
    assert Trainer(_config(tmp_path / "n", amp="none"), samples, []).amp_dtype is None


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    train, val = _samples(4), _samples(2, first_seed=10)
    first = Trainer(_config(tmp_path, epochs=2), train, val)
    state = first.run(time_limit_s=1e-6)
    assert state.global_step == 1 and not first.finished
    assert [point["step"] for point in state.curve] == [1]  # validated before stopping: the export has figures
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["state"]["global_step"] == 1
    assert load_checkpoint(tmp_path / BEST_CHECKPOINT)["state"]["global_step"] == 1
    rows = list(csv.DictReader((tmp_path / LOG_CSV).open()))  # the stop's validation is a row (of epoch 1, part done)
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "1")] and float(rows[0]["val_epe"]) > 0
    second = Trainer(_config(tmp_path, epochs=2), train, val)
    second.resume()
    assert second.run().global_step == 4 and second.finished
    rows = list(csv.DictReader((tmp_path / LOG_CSV).open()))  # the whole epoch's row replaces the part's
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "2"), ("2", "4")]


def test_moving_average_of_the_weights_is_validated_kept_and_resumed(tmp_path: Path) -> None:
    train, val = _samples(4), _samples(2, first_seed=10)
    config = _config(tmp_path, stage="registration", flow_supervision=1.0, ema_decay=0.5, epochs=2)
    trainer = Trainer(config, train, val)
    start = {n: p.clone() for n, p in trainer.net.named_parameters()}
    fixed, label = make_batch(train, [0, 1], None)
    trainer.train_step(fixed, label, torch.Generator().manual_seed(9))
    after_one = {n: p.clone() for n, p in trainer.net.named_parameters()}
    trainer.train_step(fixed, label, torch.Generator().manual_seed(9))
    average = dict(trainer.validated_net.named_parameters())
    name = "reg_net.f1_FR1.flow_output.0.weight"  # a flow head: zero at the start, learning from the first step
    assert not torch.equal(start[name], after_one[name])
    # the first update copies the weights, each later one moves the average half way towards them
    expected = 0.5 * after_one[name] + 0.5 * trainer.net.get_parameter(name)
    torch.testing.assert_close(average[name], expected)
    assert not torch.equal(average[name], trainer.net.get_parameter(name))

    trainer._validate()
    trainer.save(best=True)
    checkpoint = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    weights = checkpoint_weights(checkpoint)
    torch.testing.assert_close(weights[name], average[name])
    assert all(torch.equal(weights[f"transfer.modal_dis.{k}"], v)  # the discriminator is the classifier
               for k, v in trainer.validated_net.transfer.classifier.state_dict().items())
    assert not torch.equal(checkpoint["model"][name], weights[name])  # the iterate is kept for the resume

    resumed = Trainer(config, train, val)
    resumed.resume()
    torch.testing.assert_close(dict(resumed.validated_net.named_parameters())[name], average[name])
    resumed._validate()  # the average validated again gives the same figures
    assert resumed.state.validation == pytest.approx(trainer.state.validation, abs=1e-6)
    with pytest.raises(InputError, match="EMA decay"):
        _config(tmp_path, ema_decay=1.0)
