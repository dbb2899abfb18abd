"""``bsafusion evaluate``: the model's fusion and registration quality over a test set."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

import torch

from ..evaluation import (
    SINGLE_STAGE,
    SINGLE_STAGE_REFINED,
    CaseResult,
    EvalCase,
    evaluate,
    generated_cases,
    load_folder_cases,
    single_stage,
    single_stage_refined,
    write_results,
)
from ..evaluation.methods import Method
from ..evaluation.writer import SUMMARY_MD
from ..model import FusionModel, check_model_modality, load_model
from ..pairs import aanlib_files
from .common import add_model_arguments, modality_of, run_record, write_json

log = logging.getLogger(__name__)


def add_testset_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--testset", type=Path,
                        help="folder with fixed/, moving/ and label/ sub-folders of images with the same names")
    source.add_argument("--aligned", type=Path,
                        help="aligned pairs to deform with the synthetic generator: an aanlib-style folder "
                             "(<X>-MRI/{MRI,<X>}/ or {MRI,<X>}/, X = --modality)")
    parser.add_argument("--cases", help="with --aligned: only these cases, comma-separated (e.g. 9,21)")
    parser.add_argument("--count", type=int, help="with --aligned: use this many pairs, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0, help="with --aligned: pair choice and deformations")
    parser.add_argument("--max-translation", type=float, default=0.01,
                        help="with --aligned: translation up to this fraction of the image size (default 0.01)")
    parser.add_argument("--elastic", type=float, default=1.0,
                        help="with --aligned: elastic magnitude of the generator (default 1.0, as in training)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--no-plots", action="store_true", help="skip the box plots")
    parser.add_argument("--refine", action="store_true",
                        help="also run the network with its registration refined on each pair (fuse --refine)")
    add_model_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="fusion metrics and registration accuracy of a model over a test set",
        description="Run the model on every case and write cases.csv, summary.csv, summary.md, box plots "
                    "and run.json. Fusion metrics use A = the aligned label (suffix _label) and, as in the "
                    "paper, A = the model's own warped image (suffix _warped); colour images on Y.",
    )
    add_testset_arguments(parser)
    parser.set_defaults(func=run_evaluate)


def load_cases(args: argparse.Namespace) -> tuple[list[EvalCase], str]:
    """The test set the arguments name, and a sentence describing it."""
    if args.testset is not None:
        cases = load_folder_cases(args.testset)
        return cases, f"test set {args.testset} ({len(cases)} cases)"
    chosen = {case.strip() for case in args.cases.split(",")} if args.cases else None
    pairs = aanlib_files(args.aligned, modality_of(args), chosen)
    cases = generated_cases(pairs, seed=args.seed, count=args.count,
                            max_translation=args.max_translation, elastic_magnitude=args.elastic)
    which = f" (cases {args.cases})" if args.cases else ""
    return cases, (f"{len(cases)} {modality_of(args)}-MRI pairs of {args.aligned}{which} deformed with seed "
                   f"{args.seed} (max translation {args.max_translation}, elastic magnitude {args.elastic})")


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads").replace("  ", " ")


def run_and_write(args: argparse.Namespace, methods: dict[str, Method], title: str) -> int:
    """Shared by ``evaluate`` and ``benchmark``: load, run, write, print the summary."""
    cases, described = load_cases(args)
    model: FusionModel = load_model(args.weights or modality_of(args), device=args.device)
    check_model_modality(model, args.modality)
    results: list[CaseResult] = evaluate(
        model, cases, methods, progress=lambda fraction, stage: log.info("%3.0f%% %s", 100 * fraction, stage)
    )
    notes = [
        described,
        f"model {model.source} (modality {model.modality}, working size {model.image_size}) on {model.device}",
        f"machine: {machine()}",
        "`_label`: fusion metrics with A = the aligned label; `_warped`: A = the method's own warped image "
        "(the paper's protocol); B = the fixed MRI; colour images on the Y channel",
        "Seconds: wall time per slice (registration + fusion), after one untimed warm-up run",
    ]
    written = write_results(args.output_dir, results, title=title, notes=notes, plots=not args.no_plots)
    write_json(args.output_dir / "run.json", run_record(
        command=" ".join(sys.argv), testset=described, weights=model.source, device=str(model.device),
        model=model.metadata, methods=list(methods), machine=machine(),
        files=[p.name for p in written],
    ))
    sys.stdout.write((args.output_dir / SUMMARY_MD).read_text(encoding="utf-8"))
    log.info("wrote %d files to %s", len(written) + 1, args.output_dir)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    methods = {SINGLE_STAGE: single_stage} | ({SINGLE_STAGE_REFINED: single_stage_refined} if args.refine else {})
    return run_and_write(args, methods, "BSAFusion evaluation")
