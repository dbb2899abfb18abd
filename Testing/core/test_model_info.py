"""Reading what a weights file says about itself from its header, without torch (the Slicer panel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from BSAFusionCore.errors import WeightsError
from BSAFusionCore.model_info import read_metadata, registration_summary
from BSAFusionCore.options import MODALITIES
from BSAFusionCore.resources import bundled_weights
from BSAFusionCore.weights import read_weights, save_weights


@pytest.mark.parametrize("modality", MODALITIES)
def test_bundled_weights_header_agrees_with_the_checked_reader(modality: str) -> None:
    path = bundled_weights(modality)
    _, metadata = read_weights(path)
    assert read_metadata(path) == metadata
    registers, summary = registration_summary(modality)
    assert registers is (metadata.get("registers", True) is not False)
    assert summary.startswith(path.name)
    assert ("does NOT register" in summary) is (registers is False)


def test_saved_weights_say_whether_they_register(tmp_path: Path, random_net) -> None:
    for registers in (True, False):
        path = tmp_path / f"{registers}.safetensors"
        save_weights(path, random_net, {"registers": registers})
        assert registration_summary(path)[0] is registers
    two = tmp_path / "two.safetensors"
    save_weights(two, random_net, {"fusion_features": {"weights": "BSAFusion_PET.safetensors"}}, fusion_net=random_net)
    assert registration_summary(two) == (True, "two.safetensors: registers, then fuses with the fusion of "
                                               "BSAFusion_PET.safetensors")


def test_files_that_are_not_our_weights_are_named(tmp_path: Path) -> None:
    other = tmp_path / "notes.safetensors"
    other.write_text("hello, not weights")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_metadata(other)
    assert registration_summary(tmp_path / "missing.safetensors") == (
        None, f"cannot read {tmp_path / 'missing.safetensors'}: No such file or directory")
    assert registration_summary(tmp_path / "BSAFusion_CT.pkl")[0] is None  # an authors' checkpoint
