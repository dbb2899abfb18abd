"""Options and conventions shared by every front end (CLI, Slicer panel, Slicer CLI module, Python).

Written once here and imported everywhere. Torch-free: the Slicer module imports it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import InputError

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


REFINE_SIMILARITIES = ("ngf", "mapped")
"""The refinement's similarities: ``"ngf"``, normalised gradient fields of the MRI and the warped moving image
(edges, whatever their contrast); ``"mapped"``, local normalised cross-correlation of the warped moving image
and the MRI mapped to the moving modality's intensities (a lookup of the MRI's intensity, blurred, fitted to
the pair: ``BSAFusionCore.refinement.mapped_fixed``)."""
REFINE_SIMILARITY = {"CT": "ngf", "PET": "mapped", "SPECT": "mapped"}
"""The similarity :class:`RefineOptions` uses for each modality when it names none (NGF for unknown weights),
chosen on the held-out cases (docs/registration_refinement.md): PET case 41 ``mapped`` 0.906 x no
registration against NGF 0.932 x; CT ``ngf`` (the MRI's intensities do not tell bone from air)."""

REFINE_MODALITIES = ("CT", "PET", "SPECT")
"""Modalities for which the instance refinement (:class:`RefineOptions`, each with its
:data:`REFINE_SIMILARITY`) is measured to help: held-out EPE against no registration, network -> refined, CT
case 28 0.898 -> 0.788 (all ten CT cases 0.893 -> 0.877), PET case 41 0.959 -> 0.906, SPECT cases 9 and 21
0.989 -> 0.977 (docs/registration_refinement.md). Weights of unknown modality get a warning."""


@dataclass(frozen=True)
class RefineOptions:
    """The instance refinement of a predicted displacement (``BSAFusionCore.refinement``).

    A smooth correction of the network's field, fitted to one pair by maximising a similarity of the fixed
    and the warped moving image (``similarity``: normalised gradient fields, or local correlation with the
    MRI mapped to the moving modality) under a Gaussian prior. Defaults chosen on the held-out CT case 28
    (docs/training.md, "Twenty-first session"); ``remove_scaling`` added in the twenty-third session,
    ``similarity`` in the twenty-fourth.
    """

    iterations: int = 100
    step: float = 0.1  # pixels: how far one Adam step may move a control point's displacement
    prior_weight: float = 5.0  # weight of the Gaussian prior on the control noise against the similarity
    smoothness: float = 1 / 16  # Gaussian sigma of the correction, as a fraction of the image side
    grid_spacing: int = 4  # pixels between the correction's control points
    edge_noise: float = 1.0  # NGF's edge threshold, as a multiple of the fixed image's mean gradient
    remove_scaling: bool = True  # take out the result's scaling about the fixed head's centre (see refinement)
    similarity: str | None = None  # one of REFINE_SIMILARITIES; None: the modality's (REFINE_SIMILARITY)

    def __post_init__(self) -> None:
        for name in ("iterations", "grid_spacing"):
            if getattr(self, name) < 1:
                raise ValueError(f"refinement {name} must be at least 1, got {getattr(self, name)}")
        for name in ("step", "smoothness", "edge_noise"):
            if not getattr(self, name) > 0:
                raise ValueError(f"refinement {name} must be positive, got {getattr(self, name)}")
        if self.prior_weight < 0:
            raise ValueError(f"refinement prior_weight must not be negative, got {self.prior_weight}")
        if self.similarity is not None and self.similarity not in REFINE_SIMILARITIES:
            raise ValueError(f"refinement similarity must be one of {', '.join(REFINE_SIMILARITIES)}, "
                             f"got {self.similarity!r}")

    def similarity_for(self, modality: str | None) -> str:
        """The similarity to fit with: the one named, else the modality's (NGF where it is not known)."""
        return self.similarity or REFINE_SIMILARITY.get(modality or "", "ngf")


def refine_options(refine: bool | RefineOptions) -> RefineOptions | None:
    """The ``refine`` argument of the fusion functions: False -> None, True -> the defaults, options as given."""
    if isinstance(refine, RefineOptions):
        return refine
    if not isinstance(refine, bool):
        raise TypeError(f"refine must be a bool or RefineOptions, got {type(refine).__name__}")
    return RefineOptions() if refine else None


def check_refine_request(refine: bool | RefineOptions, fuse_only: bool) -> RefineOptions | None:
    """:func:`refine_options`, refusing a refinement of a registration that ``fuse_only`` skips."""
    refinement = refine_options(refine)
    if refinement is not None and fuse_only:
        raise InputError("refining the registration and fusing without registering (fuse-only / zero "
                         "displacement) exclude each other; leave one of them out")
    return refinement


def refine_warning(refinement: RefineOptions | None, modality: str | None) -> str | None:
    """A sentence for the log when a refinement is asked for a modality it is not measured to help."""
    if refinement is None or modality in REFINE_MODALITIES:
        return None
    return (f"the registration refinement is measured to help {', '.join(REFINE_MODALITIES)} only; for "
            f"{modality or 'weights of unknown modality'} it may move the registration away from the truth "
            f"(it fits with {refinement.similarity_for(modality).upper()})")


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
    refine: bool = False  # the network's in-plane displacement refined per slice (RefineOptions; CT)

    def changed(self) -> dict[str, Any]:
        """The options set to something else than their default."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
