"""Many volume pairs from a CSV manifest: one output folder each, resumable, shardable."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import BSAFusionError, InputError
from ..files import staged_folder
from ..inference import FusionModel, check_model_modality, load_model
from .command import check_color_fusion, fuse_case, model_source
from .io import prepare_output_dir, read_volume, write_text
from .outputs import is_complete

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


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) to ``(I, N)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard must be I/N with 1 <= I <= N, got {text!r}")
    return int(match[1]), int(match[2])


def shard_of(cases: list[Case], shard: tuple[int, int]) -> list[Case]:
    """The cases of shard I of N: rows I, I + N, I + 2N, ... (1-based)."""
    index, count = shard
    return cases[index - 1 :: count]


def run_batch(args: argparse.Namespace) -> int:
    """Process this shard's cases; 0 when all succeeded or were done before, 1 when any failed."""
    cases = shard_of(read_manifest(args.manifest), parse_shard(args.shard))
    root = prepare_output_dir(args.output_dir)
    models: dict[str, FusionModel] = {}
    status: dict[str, list[str]] = {"done": [], "skipped": [], "failed": []}
    for case in tqdm(cases, unit="case", desc="batch"):
        folder = root / case.name
        if is_complete(folder) and not getattr(args, "overwrite", False):
            log.info("%s: already done, skipped (--overwrite redoes it)", case.name)
            status["skipped"].append(case.name)
            continue
        try:
            _run_case(case, folder, args, models)
        except Exception as error:  # one bad case must not stop the batch
            if isinstance(error, BSAFusionError):
                log.error("%s failed: %s", case.name, error)
            else:
                log.exception("%s failed", case.name)
            status["failed"].append(f"{case.name}: {error}")
            continue
        status["done"].append(case.name)
    shard = args.shard.replace("/", "-of-")
    write_text(json.dumps(status, indent=2) + "\n", root / f"batch-status-{shard}.json")
    log.info("%d done, %d skipped, %d failed", *(len(v) for v in status.values()))
    return 1 if status["failed"] else 0


def _run_case(case: Case, folder: Path, args: argparse.Namespace, models: dict[str, FusionModel]) -> None:
    if case.weights or case.modality:  # the row's own model comes first
        source = model_source(case.modality, case.weights)
    else:
        source = model_source(args.modality or "CT", args.weights)
    check_color_fusion(args, source)  # a bundled model: before any work
    fixed = read_volume(case.fixed, "fixed volume")
    moving = read_volume(case.moving, "moving volume")
    if source not in models:
        models[source] = load_model(source, device=args.device)
    check_model_modality(models[source], case.modality or args.modality)
    check_color_fusion(args, models[source].modality)
    options = argparse.Namespace(**{
        **vars(args),
        "prealign": case.prealign or args.prealign,
        "ct_window": case.ct_window or args.ct_window,
    })
    inputs = {"fixed": str(case.fixed), "moving": str(case.moving), "model_source": source, "case": case.name}
    with staged_folder(folder, overwrite=True) as staging:  # an unfinished earlier attempt is replaced whole
        fuse_case(fixed, moving, models[source], staging, options, None, inputs)
