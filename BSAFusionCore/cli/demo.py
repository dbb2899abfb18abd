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
from ..options import MODALITIES
from .common import run_record, write_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="fuse the built-in example MRI + unaligned CT (or PET, SPECT) with the shipped weights",
        description="Generates a head phantom as MRI and as a deformed CT (PET, SPECT), registers and fuses them, "
                    "and writes the images and an overview.png side by side.",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    parser.add_argument("--modality", default="CT", type=str.upper, choices=MODALITIES,
                        help="the moving phantom's contrast and the shipped weights used (default CT)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--refine", action="store_true",
                        help="refine the network's registration on the pair (docs/registration_refinement.md)")
    parser.set_defaults(func=run_demo)


def _demo_model(modality: str, device: str) -> tuple[FusionModel, str]:
    try:
        model = load_model(modality, device=device)
        return model, (f"shipped {modality} weights"
                       + ("" if model.registers else " (fusion only: registration not trained)"))
    except WeightsError as error:
        log.warning("%s", error)
        log.warning("RUNNING WITH UNTRAINED (random, seed 0) WEIGHTS: the output shows the pipeline, not "
                    "the quality of BSAFusion")
        torch.manual_seed(0)
        return model_from_network(BSAFusionNet(), device), "UNTRAINED random weights (seed 0)"


def run_demo(args: argparse.Namespace) -> int:
    modality, name = args.modality, args.modality.lower()
    model, weights = _demo_model(modality, args.device)
    mri, moving, _ = example_pair(args.size, 0, modality)
    aligned = head_phantom(args.size, modality)  # the moving image before the example's deformation
    warning = None
    if model.registers:
        moving_name, panels = f"{name}_unaligned", f"MRI | unaligned {modality} | warped {modality} | fused"
    else:
        warning = f"These weights do not register: the {modality} shown is the example's aligned {modality}"
        log.warning("these weights do not register: the demo fuses the example %s before its deformation", modality)
        moving, moving_name, panels = aligned, name, f"MRI | {modality} | fused"
    refine = args.refine and model.registers
    if refine:
        weights += " + registration refinement"
    result = fuse_images(mri, moving, model, refine=refine)
    out = args.output_dir
    images = {"mri": mri, moving_name: moving, "warped": result.warped, "fused": result.fused}
    for image_name, image in images.items():
        write_image(out / f"{image_name}.png", image)
    np.save(out / "displacement.npy", result.displacement)
    magnitude = np.linalg.norm(result.displacement, axis=-1)
    before, after = similarity_metrics(moving, aligned), similarity_metrics(result.warped, aligned)
    if model.registers:
        shown = [("MRI (fixed)", mri), (f"{modality}, unaligned", moving), (f"{modality}, registered", result.warped),
                 ("fused", result.fused)]
    else:
        shown = [("MRI", mri), (f"{modality} (aligned)", moving), ("fused", result.fused)]
    caption = (f"{weights}. {modality} vs its aligned original: NCC {before['NCC']:.3f} -> {after['NCC']:.3f}, "
               f"SSIM {before['SSIM']:.3f} -> {after['SSIM']:.3f}; mean displacement {magnitude.mean():.2f} px")
    labelled_panels(out / "overview.png", shown, caption, warning)
    write_json(out / "demo.json", run_record(
        weights=weights, modality=modality, device=str(model.device), refine=refine,
        mean_displacement_px=float(magnitude.mean()),
        moving_vs_aligned_before=before, moving_vs_aligned_after=after,
    ))
    log.info("demo with %s on %s: wrote %s/overview.png (%s); mean displacement %.2f px; "
             "%s vs its aligned original: NCC %.3f -> %.3f, SSIM %.3f -> %.3f", weights, model.device, out, panels,
             magnitude.mean(), modality, before["NCC"], after["NCC"], before["SSIM"], after["SSIM"])
    return 0
