"""The instance refinement of a displacement (``BSAFusionCore.refinement``) and its ``refine`` option."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

import BSAFusionCore as bf
from BSAFusionCore.errors import Cancelled, InputError
from BSAFusionCore.evaluation.testset import channels_first
from BSAFusionCore.examples import deform, head_phantom, smooth_displacement
from BSAFusionCore.network import warp_image
from BSAFusionCore.options import REFINE_MODALITIES, RefineOptions, refine_options, refine_warning
from BSAFusionCore.refinement import (
    _unit_gradients,
    head_masks,
    lncc_distance,
    mapped_fixed,
    ngf_distance,
    refine_displacement,
    remove_scaling,
)

FAST = RefineOptions(iterations=60)


def endpoint_error(field: torch.Tensor, truth: torch.Tensor) -> float:
    return float((field - truth).norm(dim=1).mean())


@pytest.fixture(scope="module")
def deformed_ct() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the MRI phantom under a known smooth field, the aligned CT phantom, that field: the displacement that
    aligns the CT with the deformed MRI)."""
    truth = smooth_displacement(96, magnitude=4.0, seed=1)
    mri, ct = deform(head_phantom(96, "MRI"), truth), head_phantom(96, "CT")
    return channels_first(mri), channels_first(ct), channels_first(truth)


def test_ngf_sees_edges_whatever_their_contrast() -> None:
    mri = channels_first(head_phantom(64, "MRI"))
    noise = torch.tensor([0.01])
    edges = _unit_gradients(mri, noise)
    same, inverted = ngf_distance(edges, mri, noise), ngf_distance(edges, 1 - mri, noise)
    assert torch.allclose(same, inverted)  # the contrast does not matter, only where the edges are
    assert float(ngf_distance(edges, torch.roll(mri, 3, dims=-1), noise)) > float(same) + 0.1


def test_refinement_recovers_a_known_deformation_across_modalities(deformed_ct) -> None:
    mri, ct, truth = deformed_ct
    start = torch.zeros_like(truth)
    refined = refine_displacement(mri, ct, start, FAST)
    assert endpoint_error(refined, truth) < 0.8 * endpoint_error(start, truth)  # measured: 2.07 -> 1.52 px


def test_refinement_improves_a_rough_start_and_leaves_the_inputs_alone(deformed_ct) -> None:
    mri, ct, truth = deformed_ct
    rough = truth * 0.5
    copies = [t.clone() for t in (mri, ct, rough)]
    refined = refine_displacement(mri, ct, rough, FAST)
    assert endpoint_error(refined, truth) < endpoint_error(rough, truth)
    assert all(torch.equal(a, b) for a, b in zip((mri, ct, rough), copies, strict=True))


def test_each_slice_is_refined_on_its_own(deformed_ct) -> None:
    mri, ct, _ = deformed_ct
    fixed = torch.cat((mri, torch.flip(mri, (-1,))))
    moving = torch.cat((ct, torch.flip(ct, (-1,))))
    start = torch.zeros(2, 2, 96, 96)
    both = refine_displacement(fixed, moving, start, RefineOptions(iterations=10))
    alone = refine_displacement(fixed[1:], moving[1:], start[1:], RefineOptions(iterations=10))
    assert torch.allclose(both[1:], alone, atol=1e-4)  # float rounding of the batched convolutions, grown by Adam


def test_refinement_can_be_cancelled(deformed_ct) -> None:
    mri, ct, truth = deformed_ct
    flag = threading.Event()
    flag.set()
    with pytest.raises(Cancelled):
        refine_displacement(mri, ct, torch.zeros_like(truth), FAST, cancel=flag)


def test_refine_options_are_checked() -> None:
    with pytest.raises(ValueError, match="iterations"):
        RefineOptions(iterations=0)
    with pytest.raises(ValueError, match="step"):
        RefineOptions(step=0)
    with pytest.raises(TypeError, match="bool or RefineOptions"):
        refine_options("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="similarity must be one of ngf, mapped"):
        RefineOptions(similarity="mi")
    assert refine_options(False) is None and refine_options(True) == RefineOptions()
    chosen = [RefineOptions().similarity_for(m) for m in ("CT", "PET", "SPECT", None)]
    assert chosen == ["ngf", "mapped", "mapped", "ngf"]
    assert RefineOptions(similarity="ngf").similarity_for("PET") == "ngf"
    assert refine_warning(RefineOptions(), "CT") is None and refine_warning(RefineOptions(), "PET") is None
    assert refine_warning(RefineOptions(), "SPECT") is None
    assert "CT, PET, SPECT only; for weights of unknown modality" in refine_warning(RefineOptions(), None)


def test_fuse_batch_refines_before_it_fuses(small_model, deformed_ct) -> None:
    mri, ct, _ = deformed_ct
    plain = bf.fuse_batch(small_model, mri, ct)
    refined = bf.fuse_batch(small_model, mri, ct, refine=FAST)
    assert not torch.allclose(plain.displacement, refined.displacement)
    assert torch.allclose(refined.warped, bf.network.warp_image(ct, refined.displacement), atol=1e-5)
    with pytest.raises(InputError, match="exclude each other"):
        bf.fuse_batch(small_model, mri, ct, zero_displacement=True, refine=True)
    flag = threading.Event()
    flag.set()
    with pytest.raises(Cancelled):
        bf.fuse_batch(small_model, mri, ct, refine=FAST, cancel=flag)


def test_fuse_images_refines_and_says_so_for_other_modalities(small_model, deformed_ct, caplog) -> None:
    mri, ct, _ = deformed_ct
    result = bf.fuse_images(mri[0, 0].numpy(), ct[0, 0].numpy(), small_model, refine=FAST)
    assert result.displacement.shape == (96, 96, 2) and np.isfinite(result.displacement).all()
    assert ("measured to help" in caplog.text) == (small_model.modality not in REFINE_MODALITIES)


def _disc(size: int = 64, radius: float = 20.0) -> torch.Tensor:
    rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((rows - 30.0) ** 2 + (columns - 34.0) ** 2) <= radius**2).float()[None, None]


def test_remove_scaling_takes_out_a_scaling_about_the_head_and_nothing_else() -> None:
    head = _disc()
    rows, columns = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    scaling = 0.05 * torch.stack((columns - 34.0, rows - 30.0))[None]  # 1 px outwards at 20 px from the centre
    shift = torch.tensor([0.7, -0.4]).view(1, 2, 1, 1).expand(1, 2, 64, 64)
    inner = _disc(radius=12.0).bool()[0, 0]
    left = remove_scaling(scaling + shift, head)
    assert float((left - shift)[0, :, inner].abs().max()) < 0.03  # the scaling is gone inside the head
    assert torch.allclose(remove_scaling(shift, head), shift, atol=1e-5)  # a shift is no scaling
    assert torch.equal(remove_scaling(scaling, torch.zeros_like(head)), scaling)  # no head: unchanged
    far = remove_scaling(scaling, head) - scaling
    assert float(far[0, :, :4, :4].abs().max()) < 1e-3  # tapered to nothing far outside the head


def test_head_masks_fill_the_outline() -> None:
    ring = _disc() - _disc(radius=15.0)
    assert torch.equal(head_masks(ring * 0.5), _disc())


def test_refinement_takes_the_scaling_out_of_its_result(deformed_ct) -> None:
    mri, ct, truth = deformed_ct
    start = truth * 0.5
    kept = refine_displacement(mri, ct, start, dataclasses.replace(FAST, remove_scaling=False))
    removed = refine_displacement(mri, ct, start, FAST)
    assert torch.allclose(removed, remove_scaling(kept, head_masks(mri)), atol=1e-5)


@pytest.fixture(scope="module")
def deformed_pet() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As ``deformed_ct``, with the PET phantom (blurred, its own contrast) as the moving image."""
    truth = smooth_displacement(96, magnitude=4.0, seed=1)
    mri, pet = deform(head_phantom(96, "MRI"), truth), head_phantom(96, "PET")
    return channels_first(mri), channels_first(pet), channels_first(truth)


def test_local_correlation_ignores_local_contrast_and_sees_shifts() -> None:
    mri = channels_first(head_phantom(64, "MRI"))
    same = lncc_distance(mri, mri)  # 0.52: the phantom's flat regions count 1
    assert torch.allclose(lncc_distance(mri, 0.7 - mri), same, atol=1e-5)  # an inverted copy: the same
    assert float(lncc_distance(mri, torch.roll(mri, 3, dims=-1))) > float(same) + 0.1  # measured 0.77


def test_the_mri_is_mapped_to_the_moving_modality(deformed_pet) -> None:
    mri, pet, truth = deformed_pet
    label = warp_image(pet, truth)  # the PET aligned with the deformed MRI
    mapped = mapped_fixed(mri, label, head_masks(mri))
    correlation = lambda a, b: float(torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1])  # noqa: E731
    assert correlation(mapped, label) > max(0.95, correlation(mri, label) + 0.1)  # measured 0.98 against 0.82
    assert float(mapped.min()) >= 0 and float(mapped.max()) <= 1


def test_the_mapped_similarity_registers_a_pet(deformed_pet) -> None:
    mri, pet, truth = deformed_pet
    start = torch.zeros_like(truth)
    options = dataclasses.replace(FAST, similarity="mapped")
    refined = refine_displacement(mri, pet, start, options)
    assert endpoint_error(refined, truth) < 0.95 * endpoint_error(start, truth)  # measured: 2.07 -> 1.85 px
    assert torch.equal(refine_displacement(mri, pet, start, FAST, modality="PET"), refined)  # PET's default
