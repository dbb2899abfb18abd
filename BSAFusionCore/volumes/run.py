"""One volume case from files to an output folder: checks first, then the work, then the folder
appears complete (or not at all). Used by ``bsafusion fuse`` and ``bsafusion batch``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..errors import InputError
from ..files import check_output_folder, staged_folder
from ..memory import DEFAULT_MAX_MEMORY_GB, check_volume_files_memory
from ..model import FusionModel, check_model_modality, load_model, model_source, resolve_device
from ..options import VolumeOptions
from ..progress import CancelFlag, ProgressCallback
from .io import read_volume
from .outputs import write_outputs
from .pipeline import fuse_volumes

log = logging.getLogger(__name__)


def check_color_fusion(options: VolumeOptions, modality: str | None) -> None:
    """Colour fusion is for PET/SPECT tracers; refuse it for CT. ``modality`` may be a model source
    (a bundled name or a weights path, which says nothing before loading) or a loaded model's modality."""
    if options.color_fusion and (modality or "").upper() == "CT":
        raise InputError("--color-fusion colours a PET or SPECT tracer; it does not apply to CT (leave it out)")


def fuse_volume_files(
    fixed: str | os.PathLike[str],
    moving: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    modality: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    options: VolumeOptions | None = None,
    device: str | None = None,
    overwrite: bool = False,
    max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> dict[str, Any]:
    """Fuse the volume file ``moving`` onto ``fixed`` and write ``output_dir`` (see docs/volumes.md);
    returns the record. The model is ``weights`` or the bundled one of ``modality`` (default CT);
    ``options`` default to :class:`VolumeOptions`' defaults."""
    options = options or VolumeOptions()
    source = model_source(modality or "CT", weights)
    check_output_folder(output_dir, overwrite)
    resolve_device(device)
    check_color_fusion(options, source)  # a bundled model: before any work
    check_volume_files_memory(fixed, moving, options.batch_size, max_memory_gb)
    fixed_image = read_volume(fixed, "fixed volume")
    moving_image = read_volume(moving, "moving volume")
    model = load_model(source, device=device)
    check_model_modality(model, modality)
    check_color_fusion(options, model.modality)
    with staged_folder(output_dir, overwrite) as folder:
        record = fuse_case(
            fixed_image, moving_image, model, folder, options, max_memory_gb=max_memory_gb, progress=progress,
            cancel=cancel, inputs={"fixed": str(fixed), "moving": str(moving), "model_source": source},
        )
    log.info("wrote %s", output_dir)
    return record


def fuse_case(
    fixed: sitk.Image,
    moving: sitk.Image,
    model: FusionModel,
    folder: Path,
    options: VolumeOptions,
    *,
    inputs: dict[str, str],
    max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> dict[str, Any]:
    """Fuse one read pair with ``options`` and write every output into ``folder``; returns the record."""
    result = fuse_volumes(fixed, moving, model, **options.as_kwargs(), progress=progress, cancel=cancel,
                          max_memory_gb=max_memory_gb)
    return write_outputs(result, fixed, folder, inputs)
