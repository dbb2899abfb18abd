"""Does a model register the built-in phantom, and does it still fuse it?

The phantom's known deformations (``example_pair(size, seed, modality)``; seed 0 is the demo's pair)
are anatomy no training run has seen: they show how far a registration carries beyond the training
heads. The moving phantom has the model's modality (CT, PET or SPECT contrast; ``--modality`` for a
checkpoint). For each seed: the endpoint error of the predicted displacement against the exact inverse
of the known field and the NCC of the warped image against the aligned one, each beside no registration;
then, on the aligned phantom, the displacement the model predicts where none is needed (mean and
largest, px) and its fusion against the plain average (the five metrics), the check that the fusion
is intact.

    python Testing/registration_phantom.py CT                      # shipped weights
    python Testing/registration_phantom.py RUN_DIR/best.pt --size 256 --modality PET   # a training checkpoint
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import BSAFusionCore as bf
from BSAFusionCore.metrics import fusion_metrics
from BSAFusionCore.metrics.registration import ncc
from BSAFusionCore.model import FusionModel, model_from_network
from BSAFusionCore.network import BSAFusionNet
from BSAFusionCore.options import MODALITIES
from BSAFusionCore.training.trainer import checkpoint_weights, load_checkpoint
from BSAFusionCore.training.validation import make_phantom_set


def load(source: str, size: int) -> FusionModel:
    """Weights (a path or CT/PET/SPECT), or a training checkpoint fusing at ``size`` and registering at its
    training size, as its export would."""
    if source.endswith(".pt") and Path(source).is_file():
        checkpoint = load_checkpoint(Path(source))
        net = BSAFusionNet()
        net.load_state_dict(checkpoint_weights(checkpoint))
        config = checkpoint["config"]
        modality = config["modality"] if "," not in config["modality"] else None
        return model_from_network(net, "cpu", {"image_size": size, "registration_size": config["image_size"],
                                               "registers": True, "modality": modality})
    return bf.load_model(source, device="cpu")


def phantom_figures(model: FusionModel, size: int, seeds: list[int], modality: str | None = None) -> dict:
    """The figures above; the moving phantom in ``modality`` (default: the model's, else CT)."""
    modality = modality or model.modality or "CT"
    rows = []
    data = make_phantom_set([modality], size, tuple(seeds))  # as the training validation has them
    for index, seed in enumerate(seeds):
        mri, moving, aligned = data.fixed[index, 0].numpy(), data.moving[index, 0].numpy(), data.label[index, 0].numpy()
        truth = data.true_flow[index].permute(1, 2, 0).numpy()
        result = bf.fuse_images(mri, moving, model)
        rows.append({
            "seed": seed,
            "epe": float(np.linalg.norm(result.displacement - truth, axis=2).mean()),
            "epe_none": float(np.linalg.norm(truth, axis=2).mean()),
            "ncc": float(ncc(result.warped, aligned)),
            "ncc_none": float(ncc(moving, aligned)),
        })
    mri, aligned = data.fixed[0, 0].numpy(), data.label[0, 0].numpy()
    result = bf.fuse_images(mri, aligned, model)
    fused, motion = result.fused, np.linalg.norm(result.displacement, axis=2)
    ours, average = fusion_metrics(mri, aligned, fused), fusion_metrics(mri, aligned, (mri + aligned) / 2)
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("epe", "epe_none", "ncc", "ncc_none")}
    fusion = {name: {"model": ours[name], "average": average[name]} for name in ours}
    still = {"mean": float(motion.mean()), "max": float(motion.max())}
    return {"seeds": rows, "mean": mean, "aligned_displacement": still, "aligned_fusion": fusion}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="weights, CT/PET/SPECT, or a training checkpoint (.pt)")
    parser.add_argument("--size", type=int, default=256, help="phantom size (and a checkpoint's working size)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--modality", choices=MODALITIES, help="the moving phantom's contrast (default: the model's)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    figures = phantom_figures(load(args.model, args.size), args.size, args.seeds, args.modality)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
