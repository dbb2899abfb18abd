"""Many volume pairs (a CSV manifest, or a folder of case folders): one output folder each,
resumable, shardable."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BSAFusionError, InputError
from ..files import staged_folder
from ..memory import DEFAULT_MAX_MEMORY_GB
from ..modality_guess import guess_modality
from ..model import FusionModel, check_model_modality, load_model, model_source
from ..options import VolumeOptions
from ..progress import ProgressCallback, report
from .io import prepare_output_dir, read_volume, write_text
from .outputs import is_complete
from .run import check_color_fusion, fuse_case

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("case", "fixed", "moving")
OPTIONAL_COLUMNS = ("modality", "weights", "prealign", "ct_window")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Case:
    """One manifest row; empty optional cells fall back to the command-line options."""

    name: str
    fixed: Path
    moving: Path
    modality: str | None = None
    weights: str | None = None
    prealign: str | None = None
    ct_window: str | None = None
    problem: str | None = None  # why this case cannot run (reported as a failure, the others go on)


def read_manifest(path: Path) -> list[Case]:
    """Rows of a CSV with columns case, fixed, moving[, modality, weights, prealign, ct_window]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(f"manifest {path} lacks the column(s) {', '.join(missing)}")
        unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise InputError(f"manifest {path} has unknown column(s) {', '.join(unknown)}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    cases = [_case(row, path.parent, line) for line, row in enumerate(rows, start=2)]
    names = [case.name for case in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"manifest {path} repeats the case name(s) {', '.join(duplicates)}")
    return cases


def _case(row: dict[str, str], base: Path, line: int) -> Case:
    name = row["case"]
    if not _SAFE_NAME.match(name):
        raise InputError(f"manifest line {line}: case name {name!r} is not a safe folder name")
    return Case(
        name=name,
        fixed=base / row["fixed"],
        moving=base / row["moving"],
        **{column: row.get(column) or None for column in OPTIONAL_COLUMNS},
    )


VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def cases_from_folder(cases_dir: Path, modality: str | None = None, weights: str | None = None) -> list[Case]:
    """One case per sub-folder of ``cases_dir``, holding two volumes (files or DICOM folders): the
    moving one named after its modality (``head_ct.nii.gz``, ``PET/``...), the other the MRI. The
    cases' model: ``weights`` if given, else the bundled one of ``modality`` or of the guessed one."""
    cases_dir = Path(cases_dir)
    if not cases_dir.is_dir():
        raise InputError(f"{cases_dir} is not a folder of case folders")
    cases = []
    for folder in sorted(p for p in cases_dir.iterdir() if p.is_dir()):
        entries = [p for p in sorted(folder.iterdir()) if p.is_dir() or p.name.lower().endswith(VOLUME_SUFFIXES)]
        moving = [p for p in entries if guess_modality(p.name)]
        fixed = [p for p in entries if not guess_modality(p.name)]
        if len(moving) != 1 or len(fixed) != 1:
            problem = (f"expected one MRI and one CT/PET/SPECT volume (named so), found "
                       f"{[p.name for p in entries]}")
            cases.append(Case(folder.name, folder, folder, problem=problem))
            continue
        cases.append(Case(folder.name, fixed[0], moving[0], modality=modality or guess_modality(moving[0].name),
                          weights=weights))
    return cases


def shard_of(cases: list[Case], shard: tuple[int, int]) -> list[Case]:
    """The cases of shard I of N: rows I, I + N, I + 2N, ... (1-based)."""
    index, count = shard
    if not 1 <= index <= count:
        raise InputError(f"shard must be I/N with 1 <= I <= N, got {index}/{count}")
    return cases[index - 1 :: count]


@dataclass(frozen=True)
class BatchRun:
    """What a batch applies to rows that do not say otherwise, and how it runs."""

    modality: str | None = None
    weights: str | None = None
    options: VolumeOptions = dataclasses.field(default_factory=VolumeOptions)
    device: str | None = None
    shard: tuple[int, int] = (1, 1)
    overwrite: bool = False  # redo cases that are already done
    max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB


def run_batch(
    cases: list[Case], output_dir: str | os.PathLike[str], run: BatchRun | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, list[str]]:
    """Process this shard's cases into ``output_dir/<case>/``; returns the names done, skipped (done
    before) and failed (with the reason), also written to ``batch-status-I-of-N.json``."""
    run = run or BatchRun()
    cases = shard_of(cases, run.shard)
    root = prepare_output_dir(output_dir)
    models: dict[str, FusionModel] = {}
    status: dict[str, list[str]] = {"done": [], "skipped": [], "failed": []}
    for number, case in enumerate(cases):
        report(progress, number / max(len(cases), 1), f"case {case.name}")
        folder = root / case.name
        if is_complete(folder) and not run.overwrite:
            log.info("%s: already done, skipped (--overwrite redoes it)", case.name)
            status["skipped"].append(case.name)
            continue
        try:
            _run_case(case, folder, run, models)
        except Exception as error:  # one bad case must not stop the batch
            if isinstance(error, BSAFusionError):
                log.error("%s failed: %s", case.name, error)
            else:
                log.exception("%s failed", case.name)
            status["failed"].append(f"{case.name}: {error}")
            continue
        status["done"].append(case.name)
    report(progress, 1.0, "done")
    write_text(json.dumps(status, indent=2) + "\n", root / f"batch-status-{run.shard[0]}-of-{run.shard[1]}.json")
    log.info("%d done, %d skipped, %d failed", *(len(v) for v in status.values()))
    return status


def _run_case(case: Case, folder: Path, run: BatchRun, models: dict[str, FusionModel]) -> None:
    if case.problem:
        raise InputError(case.problem)
    if case.weights or case.modality:  # the row's own model comes first
        source = model_source(case.modality, case.weights)
    else:
        source = model_source(run.modality or "CT", run.weights)
    options = dataclasses.replace(
        run.options, prealign=case.prealign or run.options.prealign, ct_window=case.ct_window or run.options.ct_window
    )
    check_color_fusion(options, source)  # a bundled model: before any work
    fixed = read_volume(case.fixed, "fixed volume")
    moving = read_volume(case.moving, "moving volume")
    if source not in models:
        models[source] = load_model(source, device=run.device)
    check_model_modality(models[source], case.modality or run.modality)
    check_color_fusion(options, models[source].modality)
    inputs = {"fixed": str(case.fixed), "moving": str(case.moving), "model_source": source, "case": case.name}
    with staged_folder(folder, overwrite=True) as staging:  # an unfinished earlier attempt is replaced whole
        fuse_case(fixed, moving, models[source], staging, options, inputs=inputs, max_memory_gb=run.max_memory_gb)
