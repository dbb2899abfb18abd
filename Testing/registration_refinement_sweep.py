"""Does the registration refinement help, case by case, and with which settings?

On aanlib cases deformed as ``bsafusion evaluate --aligned ... --seed S`` deforms them (``--aligned-pairs``:
not deformed at all), for given weights: the endpoint error of the network's displacement and of that
displacement refined with :class:`RefineOptions` (defaults, or ``--set name=value ...``), per case and over
all slices, each against no registration. The refinement runs as ``fuse_batch(..., refine=...)`` runs it: at the
working size, on the network's displacement, all slices of a case in one batch. ``--against-label`` fits the
refinement to the moving modality's own aligned image instead of the MRI (a same-modality pair: what the
refinement reaches when the similarity is not the limit). A measuring aid, not part of the library::

    python Testing/registration_refinement_sweep.py CT --modality CT --cases 28 --set prior_weight=3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch
from registration_diagnostics import add_case_arguments, register

from BSAFusionCore import load_model
from BSAFusionCore.evaluation.methods import luminance
from BSAFusionCore.evaluation.testset import EvalCase, channels_first, generated_cases
from BSAFusionCore.options import RefineOptions
from BSAFusionCore.pairs import aanlib_files
from BSAFusionCore.refinement import refine_displacement


def endpoint_errors(field: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    """Mean EPE per slice of (N, 2, H, W) against (N, H, W, 2)."""
    return np.linalg.norm(field.permute(0, 2, 3, 1).double().numpy() - truth, axis=-1).mean(axis=(1, 2))


def options_from(settings: list[str]) -> RefineOptions:
    defaults = RefineOptions()
    values = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        default = getattr(defaults, name)
        if default is None:  # an optional choice (the similarity): given as text
            values[name] = value.strip()
        elif isinstance(default, bool):
            values[name] = value.strip().lower() in ("1", "true", "yes")
        else:
            values[name] = type(default)(value)
    return dataclasses.replace(defaults, **values)


def sweep_case(model, cases: list[EvalCase], options: RefineOptions, against_label: bool = False) -> dict[str, float]:
    fixed = torch.cat([channels_first(c.fixed) for c in cases]).float()
    moving = torch.cat([channels_first(c.moving) for c in cases]).float()
    network = register(model, fixed, moving)
    target = torch.cat([channels_first(luminance(c.label)) for c in cases]) if against_label else fixed
    moving_luminance = torch.cat([channels_first(luminance(c.moving)) for c in cases])
    started = time.perf_counter()
    refined = refine_displacement(target, moving_luminance, network, options, modality=model.modality)
    seconds = time.perf_counter() - started
    truth = np.stack([c.truth for c in cases])
    return {"slices": len(cases), "none": float(np.linalg.norm(truth, axis=-1).mean()),
            "network": float(endpoint_errors(network, truth).mean()),
            "refined": float(endpoint_errors(refined, truth).mean()), "seconds_per_slice": seconds / len(cases)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(parser, "cases, comma-separated (e.g. 2,16,28)")
    parser.add_argument("--aligned-pairs", action="store_true", help="no deformation: how far the pairs are moved")
    parser.add_argument("--against-label", action="store_true",
                        help="refine against the aligned moving-modality image instead of the MRI")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="RefineOptions to change")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    options = options_from(args.set)
    deformation = {"max_translation": 0.0, "elastic_magnitude": 0.0} if args.aligned_pairs else {}
    rows = {}
    for case in args.cases.split(","):
        cases = generated_cases(aanlib_files(args.aanlib, args.modality, {case}), seed=args.seed, **deformation)
        rows[case] = sweep_case(model, cases, options, args.against_label)
    slices = sum(r["slices"] for r in rows.values())
    total = {key: sum(r[key] * r["slices"] for r in rows.values()) / slices
             for key in ("none", "network", "refined", "seconds_per_slice")}
    summary = {"weights": args.weights, "seed": args.seed, "aligned_pairs": args.aligned_pairs,
               "against_label": args.against_label,
               "options": dataclasses.asdict(options), "similarity": options.similarity_for(model.modality),
               "slices": slices,
               "cases_refinement_better": sum(r["refined"] < r["network"] for r in rows.values()),
               "cases": {k: {n: round(v, 4) for n, v in r.items()} for k, r in rows.items()},
               **{k: round(v, 4) for k, v in total.items()}}
    if not args.aligned_pairs:
        summary |= {"network_ratio": round(total["network"] / total["none"], 4),
                    "refined_ratio": round(total["refined"] / total["none"], 4)}
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
