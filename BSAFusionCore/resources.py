"""Where the shipped weights are: found beside the package, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError
from .options import MODALITIES

WEIGHTS_DIR_VARIABLE = "BSAFUSION_WEIGHTS_DIR"


def bundled_weights_dir() -> Path:
    """``$BSAFUSION_WEIGHTS_DIR``, else ``Resources/weights`` beside the ``BSAFusionCore`` package."""
    override = os.environ.get(WEIGHTS_DIR_VARIABLE)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "Resources" / "weights"


def bundled_weights(modality: str) -> Path:
    """The shipped weights file for ``modality`` ("CT", "PET" or "SPECT")."""
    name = modality.upper()
    if name not in MODALITIES:
        raise WeightsError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    path = bundled_weights_dir() / f"BSAFusion_{name}.safetensors"
    if not path.is_file():
        raise WeightsError(
            f"no bundled weights for {name}: {path} does not exist. Pass a weights file "
            f"(ours or an authors' BSAFusion_{name}.pkl), or train them with 'bsafusion train'"
        )
    return path
