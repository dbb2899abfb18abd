"""Where does a registration's endpoint error come from, and do inference-time tricks reduce it?

On held-out aanlib cases deformed as ``bsafusion evaluate --aligned ... --seed S`` deforms them (the
same cases, fields and EPE), for given weights:

- **where**: the EPE inside the head (the MRI above 5 % of full intensity, closed and filled) and
  outside it, each against no registration; the error of the field's mean over the image (what a global
  translation would fix), and the EPE the prediction would have with its mean replaced by the true one;
  the calibration of the prediction inside the head (the least-squares slopes, through the origin, of
  the predicted field on the true one and of the true on the predicted: a truth-on-prediction slope near
  1 means the prediction is not shrunk; the product of the two is the share of the field's second moment
  that the prediction explains);
- **passes**: the registration run again on the moving image warped by the result so far, the fields
  composed (``u = step + total(x + step)``), for 1 to ``--passes`` passes;
- **dihedral**: the displacement averaged over the pair turned by 0/90/180/270 degrees (and mirrored),
  each prediction turned back with its vectors.

Through the public API (:func:`BSAFusionCore.fuse_batch`). A measuring aid, not part of the library::

    python Testing/registration_diagnostics.py CT --modality CT --cases 28
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from BSAFusionCore import fuse_batch, load_model
from BSAFusionCore.evaluation.testset import EvalCase, channels_first, generated_cases
from BSAFusionCore.model import FusionModel
from BSAFusionCore.network import warp_image
from BSAFusionCore.options import MODALITIES
from BSAFusionCore.pairs import aanlib_files
from BSAFusionCore.refinement import head_masks


def register(model: FusionModel, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """The weights' displacement (1,2,H,W) for one pair."""
    return fuse_batch(model, fixed, moving, with_warped=False).displacement


def turn(image: torch.Tensor, quarter_turns: int, mirror: bool) -> torch.Tensor:
    """Mirror the columns (optionally), then turn by 90 degrees ``quarter_turns`` times."""
    return torch.rot90(image.flip(-1) if mirror else image, quarter_turns, (-2, -1))


def turn_field_back(field: torch.Tensor, quarter_turns: int, mirror: bool) -> torch.Tensor:
    """Undo :func:`turn` on a displacement (1,2,H,W): the grid and the vectors (x along columns, y along rows)."""
    for _ in range(quarter_turns):
        field = torch.rot90(field, -1, (-2, -1))
        field = torch.stack((-field[:, 1], field[:, 0]), 1)
    if mirror:
        field = field.flip(-1)
        field = torch.stack((-field[:, 0], field[:, 1]), 1)
    return field


def epe(field: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    error = np.linalg.norm(field - truth, axis=-1)
    return float(error[where].mean() if where is not None else error.mean())


def as_hw2(field: torch.Tensor) -> np.ndarray:
    return field[0].permute(1, 2, 0).double().numpy()


def diagnose(model: FusionModel, case: EvalCase, passes: int) -> dict[str, float]:
    fixed = channels_first(case.fixed)
    moving = channels_first(case.moving)
    truth = case.truth
    head = head_masks(fixed)[0, 0].bool().numpy()
    first = register(model, fixed, moving)
    field = as_hw2(first)
    true_mean, mean = truth.mean((0, 1)), field.mean((0, 1))
    t, d = truth[head], field[head]
    row = {
        "epe_none": epe(0 * truth, truth), "epe": epe(field, truth),
        "head_none": epe(0 * truth, truth, head), "head": epe(field, truth, head),
        "outside_none": epe(0 * truth, truth, ~head), "outside": epe(field, truth, ~head),
        "head_share": float(head.mean()),
        "mean_error": float(np.linalg.norm(mean - true_mean)),
        "epe_true_mean": epe(field - mean + true_mean, truth),
        "slope_prediction_on_truth": float((t * d).sum() / (t * t).sum()),
        "slope_truth_on_prediction": float((t * d).sum() / (d * d).sum()),
    }
    total = first
    for k in range(2, passes + 1):
        step = register(model, fixed, warp_image(moving, total))
        total = step + warp_image(total, step)
        row[f"passes_{k}"] = epe(as_hw2(total), truth)
    turned = [first] + [turn_field_back(register(model, turn(fixed, q, m), turn(moving, q, m)), q, m)
                        for m in (False, True) for q in range(4) if q or m]  # the unturned pair is ``first``
    row["dihedral_4"] = epe(as_hw2(torch.stack(turned[:4]).mean(0)), truth)
    row["dihedral_8"] = epe(as_hw2(torch.stack(turned).mean(0)), truth)
    return row


def add_case_arguments(parser: argparse.ArgumentParser, cases_help: str) -> None:
    """The weights, the aanlib cases and how they are deformed, and the threads: shared by the measuring aids."""
    parser.add_argument("weights", help='"CT", "PET", "SPECT" or a weights file')
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument("--cases", required=True, help=cases_help)
    parser.add_argument("--aanlib", default="../shared/data/aanlib")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(parser, "held-out cases, comma-separated (e.g. 9,21)")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    cases = generated_cases(aanlib_files(args.aanlib, args.modality, set(args.cases.split(","))), seed=args.seed)
    rows = [diagnose(model, case, args.passes) for case in cases]
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    references = {"head": mean["head_none"], "outside": mean["outside_none"]}
    for key in [k for k in mean if k not in ("head_share", "mean_error") and not k.endswith("_none")
                and not k.startswith("slope")]:
        mean[f"{key}_ratio"] = mean[key] / references.get(key, mean["epe_none"])
    sys.stdout.write(json.dumps({"weights": args.weights, "cases": args.cases, "slices": len(rows),
                                 **{k: round(v, 4) for k, v in mean.items()}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
