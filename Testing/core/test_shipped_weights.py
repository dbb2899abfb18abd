"""The weights shipped in Resources/weights: format, size, model cards, and that they fuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import BSAFusionCore as bf
from BSAFusionCore.examples import head_phantom
from BSAFusionCore.metrics import fusion_metrics
from BSAFusionCore.metrics.registration import ncc
from BSAFusionCore.options import MODALITIES
from BSAFusionCore.resources import WEIGHTS_DIR_VARIABLE, bundled_weights
from BSAFusionCore.training.validation import make_phantom_set
from BSAFusionCore.weights import read_weights

MAX_BYTES = 25 * 2**20


@pytest.fixture(autouse=True)
def _shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_DIR_VARIABLE, raising=False)


@pytest.mark.parametrize("modality", MODALITIES)
def test_shipped_weights_are_checked_fp16_files_with_a_model_card(modality: str) -> None:
    path = bundled_weights(modality)
    assert path.stat().st_size <= MAX_BYTES
    state, metadata = read_weights(path)
    assert metadata["modality"] == modality and metadata["image_size"] == 256
    assert all(tensor.dtype == torch.float16 for tensor in state.values())
    card = path.with_suffix(".md").read_text(encoding="utf-8")
    assert f"{modality}-MRI" in card and "Held-out evaluation" in card
    assert ("Registration: not trained" in card) == (metadata["registers"] is False)
    assert bf.load_model(modality, device="cpu").modality == modality


def test_shipped_ct_weights_fuse_an_aligned_pair_better_than_the_average() -> None:
    """The built-in phantom, aligned, fused as a pair known to be aligned (``zero_displacement``)."""
    mri, ct = head_phantom(128, "MRI"), head_phantom(128, "CT")
    fused = bf.fuse_images(mri, ct, bf.load_model("CT", device="cpu"), zero_displacement=True).fused
    ours, average = fusion_metrics(mri, ct, fused), fusion_metrics(mri, ct, (mri + ct) / 2)
    assert ours["Qabf"] > average["Qabf"] + 0.05  # edges of both images carried over (0.64 vs 0.55)
    assert ours["Qcv"] < average["Qcv"]  # (528 vs 651)


@pytest.mark.parametrize("modality", MODALITIES)
def test_shipped_weights_register_the_example_or_say_they_do_not(modality: str) -> None:
    """Weights that say they register undo known deformations of the built-in phantom in their modality
    (three seeds, as ``Testing/registration_phantom.py``) better than no registration, on average; the others
    give exactly zero displacement, as their metadata says."""
    model = bf.load_model(modality, device="cpu")
    data = make_phantom_set([modality], 256)  # the deformations the training validation registers too
    errors, errors_none, similarity, similarity_none = [], [], [], []
    for index in range(len(data.groups)):
        mri, moving, aligned = data.fixed[index, 0].numpy(), data.moving[index, 0].numpy(), data.label[index, 0].numpy()
        result = bf.fuse_images(mri, moving, model)
        if not model.registers:
            assert not result.displacement.any()
            return
        truth = data.true_flow[index].permute(1, 2, 0).numpy()
        errors.append(np.linalg.norm(result.displacement - truth, axis=2).mean())
        errors_none.append(np.linalg.norm(truth, axis=2).mean())
        similarity.append(ncc(result.warped, aligned))
        similarity_none.append(ncc(moving, aligned))
    assert np.mean(errors) < np.mean(errors_none)  # CT: 1.99 vs 2.29 px
    assert np.mean(similarity) > np.mean(similarity_none)  # CT: 0.909 vs 0.893
