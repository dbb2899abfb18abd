"""The volume branch of ``bsafusion fuse``: read two volumes, fuse them, write the output folder."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from math import prod
from pathlib import Path

import SimpleITK as sitk
from tqdm import tqdm

from ..errors import InputError
from ..files import check_output_folder, staged_folder
from ..inference import FusionModel, check_model_modality, load_model, resolve_device
from ..memory import check_volume_memory, file_image_info
from ..options import (
    COLORMAPS,
    CT_WINDOW_AUTO,
    CT_WINDOW_CHOICES,
    DEFAULT_CT_WINDOW,
    DEFAULT_PREALIGN,
    MODALITIES,
    PREALIGN_MODES,
)
from ..progress import ProgressCallback
from .io import read_volume
from .outputs import write_outputs
from .pipeline import fuse_volumes

log = logging.getLogger(__name__)

# The volume-only options and their defaults (2D images refuse any other value).
VOLUME_DEFAULTS = {
    "prealign": DEFAULT_PREALIGN, "axis": None, "ct_window": CT_WINDOW_AUTO, "color_fusion": False, "colormap": "hot",
    "percentiles": (0.5, 99.5), "batch_size": 8,
}


def add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that only volumes have (the input, output and model options belong to ``fuse``)."""
    group = parser.add_argument_group("volumes (NRRD, NIfTI, MHA, DICOM folder)")
    group.add_argument("--prealign", choices=PREALIGN_MODES, default=VOLUME_DEFAULTS["prealign"],
                       help=f"3-D pre-alignment before the slice-wise step (default: {DEFAULT_PREALIGN}; none when the "
                            "volumes are already aligned)")
    group.add_argument("--axis", type=int, choices=(0, 1, 2), default=VOLUME_DEFAULTS["axis"],
                       help="ITK index axis to slice through (default: the one nearest inferior-superior)")
    group.add_argument("--ct-window", choices=CT_WINDOW_CHOICES, default=VOLUME_DEFAULTS["ct_window"],
                       help=f"map CT intensities (HU) with this window; auto: {DEFAULT_CT_WINDOW} for a CT in HU, "
                            "else the percentiles; padding below -1024 HU is background (default: auto)")
    group.add_argument("--color-fusion", action="store_true",
                       help="colour the (PET/SPECT) moving volume with --colormap; RGB fused output")
    group.add_argument("--colormap", choices=COLORMAPS, default=VOLUME_DEFAULTS["colormap"])
    group.add_argument("--percentiles", type=float, nargs=2, default=VOLUME_DEFAULTS["percentiles"],
                       metavar=("LOW", "HIGH"), help="intensity percentiles mapped to 0 and 1 (default: 0.5 99.5)")
    group.add_argument("--batch-size", type=int, default=VOLUME_DEFAULTS["batch_size"],
                       help="slices per model call (default: 8)")


def volume_options_given(args: argparse.Namespace) -> list[str]:
    """The volume-only options set to something else than their default, as ``--name value``."""
    given = []
    for name, default in VOLUME_DEFAULTS.items():
        value = getattr(args, name, default)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if values != (list(default) if isinstance(default, tuple) else [default]):
            shown = "" if isinstance(value, bool) else " " + " ".join(map(str, values))
            given.append(f"--{name.replace('_', '-')}{shown}")
    return given


def check_color_fusion(args: argparse.Namespace, modality: str | None) -> None:
    """Colour fusion is for PET/SPECT tracers; refuse it for CT. ``modality`` may be a model source
    (a bundled name or a weights path, which says nothing before loading) or a loaded model's modality."""
    if getattr(args, "color_fusion", False) and (modality or "").upper() == "CT":
        raise InputError("--color-fusion colours a PET or SPECT tracer; it does not apply to CT (leave it out)")


def model_source(modality: str | None, weights: str | None) -> str:
    """What to give ``load_model``: a weights file when given, else the bundled model of ``modality``."""
    if weights:
        return str(weights)
    if modality is None or modality.upper() not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return modality.upper()


def run_volume_fuse(args: argparse.Namespace) -> int:
    """Fuse ``args.moving`` onto ``args.fixed`` and write everything into ``args.output_dir``."""
    source = model_source(args.modality or "CT", args.weights)
    overwrite = getattr(args, "overwrite", False)
    check_output_folder(args.output_dir, overwrite)
    resolve_device(args.device)
    check_color_fusion(args, source)  # a bundled model: before any work
    check_files_memory(args.fixed, args.moving, args)
    fixed = read_volume(args.fixed, "fixed volume")
    moving = read_volume(args.moving, "moving volume")
    model = load_model(source, device=args.device)
    check_model_modality(model, args.modality)
    check_color_fusion(args, model.modality)
    with staged_folder(args.output_dir, overwrite) as folder, terminal_progress() as progress:
        fuse_case(fixed, moving, model, folder, args, progress,
                  inputs={"fixed": str(args.fixed), "moving": str(args.moving), "model_source": source})
    log.info("wrote %s", args.output_dir)
    return 0


def check_files_memory(fixed: Path, moving: Path, args: argparse.Namespace) -> None:
    """The memory check from the files' headers, before reading their voxels (volume files; a DICOM
    folder is checked once read, by :func:`fuse_volumes`)."""
    info = file_image_info(fixed), file_image_info(moving)
    if None in info:
        return
    stored = sum(prod(size) * components * component_bytes for size, components, component_bytes in info)
    check_volume_memory([size for size, _, _ in info], stored, args.batch_size, getattr(args, "max_memory", None))


def fuse_case(
    fixed: sitk.Image, moving: sitk.Image, model: FusionModel, folder: Path, args: argparse.Namespace,
    progress: ProgressCallback | None, inputs: dict[str, str],
) -> None:
    """One case: fuse with the volume options of ``args`` and write the output folder."""
    result = fuse_volumes(
        fixed, moving, model, prealign=args.prealign, axis=args.axis, ct_window=args.ct_window,
        color_fusion=args.color_fusion, colormap=args.colormap, percentiles=tuple(args.percentiles),
        batch_size=args.batch_size, progress=progress, max_memory_gb=getattr(args, "max_memory", None),
    )
    write_outputs(result, fixed, folder, {"inputs": inputs})


@contextmanager
def terminal_progress() -> Iterator[ProgressCallback]:
    """A tqdm bar on the terminal, driven by a progress callback."""
    with tqdm(total=100, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:

        def update(fraction: float, stage: str) -> None:
            bar.set_description_str(stage, refresh=False)
            bar.update(round(100 * fraction) - bar.n)

        yield update
