"""What a weights file says about itself, read from its header without torch or loading the tensors
(the Slicer panel shows it as soon as a model is chosen)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .options import MODALITIES
from .resources import bundled_weights

METADATA_KEY = "bsafusion"
FUSION_SOURCE = "fusion_features"
"""Metadata entry of weights whose fusion pass has a network of its own: the weights it came from (file name,
sha256, image size, stages)."""
_MAX_HEADER_BYTES = 10_000_000


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The BSAFusion metadata of a ``.safetensors`` file (raises :class:`WeightsError` when it has none)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise WeightsError(f"{path} is too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if not 0 < length <= _MAX_HEADER_BYTES:
                raise WeightsError(f"{path} is not a safetensors file")
            header = json.loads(file.read(length))
        return json.loads(header["__metadata__"][METADATA_KEY])
    except WeightsError:
        raise
    except OSError as error:
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{path} has no BSAFusion metadata (not our weights file?)") from error


def registration_summary(source: str | Path) -> tuple[bool | None, str]:
    """(registers?, one line for the user) of a bundled name (``"CT"``...) or a weights path;
    None when it cannot be told before loading (an authors' ``.pkl``, an unreadable file)."""
    name = str(source)
    try:
        path = bundled_weights(name) if name.upper() in MODALITIES else Path(name)
        if path.suffix.lower() == ".pkl":
            return None, "authors' checkpoint: registers and fuses as published"
        metadata = read_metadata(path)
    except WeightsError as error:
        return None, str(error)
    if metadata.get("registers", True) is False:
        return False, (f"{path.name}: fusion only, does NOT register (zero displacement): the volumes "
                       "must already be aligned (keep the rigid pre-alignment)")
    fusion = metadata.get(FUSION_SOURCE)
    if fusion:
        return True, f"{path.name}: registers, then fuses with the fusion of {fusion.get('weights', 'other weights')}"
    return True, f"{path.name}: registers and fuses"
