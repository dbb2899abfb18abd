"""Options and conventions shared by every front end (CLI, Slicer panel, Slicer CLI module, Python).

Written once here and imported everywhere. Torch-free: the Slicer module imports it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

MODALITIES = ("CT", "PET", "SPECT")
"""The moving modalities the network is trained for (the fixed image is always MRI)."""

PREALIGN_MODES = ("none", "rigid", "affine")
DEFAULT_PREALIGN = "rigid"
"""Volumes come from different scanners and frames of reference: a rigid 3-D pre-alignment by
default (the real pair of ``../shared/data/volumes``: outline Dice 0.731 without, 0.904 with)."""
DEFAULT_PREALIGN_2D = "none"
"""2-D pairs are usually slices of one grid: no pre-alignment by default. On the aligned held-out
aanlib CT-MRI slices (case 28, 256 px) a rigid 2-D alignment by mutual information itself moves them
by 1.8 px on average (max 3.3); it pays on clearly misaligned pairs: a shift of (8, 5) px and a
6-degree turn, 13.1 px on average, is left at 3.3 px (affine: 4.1 px on the aligned, 3.8 left)."""

CT_WINDOWS: dict[str, tuple[float, float] | None] = {
    "soft-tissue": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "full": None,
}
"""CT window presets, (level, width) in HU; ``"full"`` is the volume's own range (padding left out)."""

CT_WINDOW_AUTO = "auto"
CT_WINDOW_PERCENTILES = "percentiles"
CT_WINDOW_CHOICES = (CT_WINDOW_AUTO, *CT_WINDOWS, CT_WINDOW_PERCENTILES)
"""``auto`` (the default): :data:`DEFAULT_CT_WINDOW` for a CT in Hounsfield units, else the
percentiles; ``percentiles``: the same percentile mapping as the other modalities."""

DEFAULT_CT_WINDOW = "soft-tissue"
"""Closest to the CT the network was trained on (AANLIB: brain near 0.45, bone saturated, air 0)."""

CT_PADDING_BELOW_HU = -1024.0
"""CT values below air are scanner padding or outside the reconstruction circle (-2048, -3024):
background, never image content."""

COLORMAPS = ("hot", "jet")

TRAINING_STAGES = ("registration", "fusion", "joint")
"""What a training run trains (docs/training.md): the registration path alone, the fusion net on a frozen
registration, or everything."""

FLOW_HEAD_LRS = ("level", "matched", "published")
"""How the BSFA flow heads' learning rates follow the level (``training.trainer.flow_head_groups``)."""

SLICE_AXIS_CHOICES = ("auto", "i", "j", "k")
"""The slice axis as the panel and the Slicer CLI module name it: ``auto`` (the fixed volume's axis
nearest inferior-superior) or an ITK index axis; the library takes None or 0, 1, 2."""


def slice_axis_index(choice: str) -> int | None:
    """``"auto"`` -> None, ``"i"``/``"j"``/``"k"`` -> 0/1/2 (the inverse of :func:`slice_axis_choice`)."""
    if choice not in SLICE_AXIS_CHOICES:
        raise ValueError(f"slice axis must be one of {', '.join(SLICE_AXIS_CHOICES)}, got {choice!r}")
    return None if choice == "auto" else SLICE_AXIS_CHOICES.index(choice) - 1


def slice_axis_choice(axis: int | None) -> str:
    """None -> ``"auto"``, 0/1/2 -> ``"i"``/``"j"``/``"k"``."""
    return "auto" if axis is None else SLICE_AXIS_CHOICES[axis + 1]

SIZE_MULTIPLE = 16
"""The network's working size must be a multiple of its patch size."""
MIN_SIZE = 32
"""The smallest image side the network (and its metrics) accept."""
WORKING_SIZE = 256
"""The published working resolution: images are resized to it, results resized back."""

DEFAULT_PERCENTILES = (0.5, 99.5)
"""Intensity percentiles mapped to 0 and 1 (the MRI, PET, SPECT; CT with ``percentiles``)."""
DEFAULT_BATCH_SIZE = 8
"""Slices per model call."""


@dataclass(frozen=True)
class VolumeOptions:
    """How a volume pair is fused (the keyword options of ``fuse_volumes``); defaults as documented."""

    prealign: str = DEFAULT_PREALIGN
    axis: int | None = None  # ITK index axis to slice through; None: the one nearest inferior-superior
    ct_window: str = CT_WINDOW_AUTO
    color_fusion: bool = False
    colormap: str = COLORMAPS[0]
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    batch_size: int = DEFAULT_BATCH_SIZE
    fuse_only: bool = False  # no in-plane registration by the network: slices fused as they lie after prealign

    def changed(self) -> dict[str, Any]:
        """The options set to something else than their default."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
