"""``bsafusion demo``: fuse the built-in example pair with the shipped weights."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from ..examples import example_pair, head_phantom
from ..figures import labelled_panels
from ..images import write_image
from ..inference import fuse_images
from ..metrics.registration import similarity_metrics
from ..model import FusionModel, load_model, model_from_network
from ..network import BSAFusionNet
from .common import run_record, write_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="fuse the built-in example MRI + unaligned CT with the shipped weights",
        description="Generates a head phantom as MRI and as a deformed CT, registers and fuses them, and "
                    "writes the images and an overview.png side by side.",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.set_defaults(func=run_demo)


def _demo_model(device: str) -> tuple[FusionModel, str]:
    try:
        model = load_model("CT", device=device)
        return model, "shipped CT weights" + ("" if model.registers else " (fusion only: registration not trained)")
    except WeightsError as error:
        log.warning("%s", error)
        log.warning("RUNNING WITH UNTRAINED (random, seed 0) WEIGHTS: the output shows the pipeline, not "
                    "the quality of BSAFusion")
        torch.manual_seed(0)
        return model_from_network(BSAFusionNet(), device), "UNTRAINED random weights (seed 0)"


def run_demo(args: argparse.Namespace) -> int:
    model, weights = _demo_model(args.device)
    mri, ct, _ = example_pair(args.size)
    aligned_ct = head_phantom(args.size, "CT")  # the CT before the example's deformation
    warning = None
    if model.registers:
        ct_name, panels = "ct_unaligned", "MRI | unaligned CT | warped CT | fused"
    else:
        warning = "These weights do not register: the CT shown is the example's aligned CT"
        log.warning("these weights do not register: the demo fuses the example CT before its deformation")
        ct, ct_name, panels = aligned_ct, "ct", "MRI | CT | fused"
    result = fuse_images(mri, ct, model)
    out = args.output_dir
    images = {"mri": mri, ct_name: ct, "warped": result.warped, "fused": result.fused}
    for name, image in images.items():
        write_image(out / f"{name}.png", image)
    np.save(out / "displacement.npy", result.displacement)
    magnitude = np.linalg.norm(result.displacement, axis=-1)
    before, after = similarity_metrics(ct, aligned_ct), similarity_metrics(result.warped, aligned_ct)
    if model.registers:
        shown = [("MRI (fixed)", mri), ("CT, unaligned", ct), ("CT, registered", result.warped),
                 ("fused", result.fused)]
    else:
        shown = [("MRI", mri), ("CT (aligned)", ct), ("fused", result.fused)]
    caption = (f"{weights}. CT vs its aligned original: NCC {before['NCC']:.3f} -> {after['NCC']:.3f}, "
               f"SSIM {before['SSIM']:.3f} -> {after['SSIM']:.3f}; mean displacement {magnitude.mean():.2f} px")
    labelled_panels(out / "overview.png", shown, caption, warning)
    write_json(out / "demo.json", run_record(
        weights=weights, device=str(model.device), mean_displacement_px=float(magnitude.mean()),
        ct_vs_aligned_ct_before=before, ct_vs_aligned_ct_after=after,
    ))
    log.info("demo with %s on %s: wrote %s/overview.png (%s); mean displacement %.2f px; "
             "CT vs its aligned original: NCC %.3f -> %.3f, SSIM %.3f -> %.3f", weights, model.device, out, panels,
             magnitude.mean(), before["NCC"], after["NCC"], before["SSIM"], after["SSIM"])
    return 0
