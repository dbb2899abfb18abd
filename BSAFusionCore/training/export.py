"""Export a training checkpoint as fp16 safetensors weights with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from ..files import atomic_output
from ..metrics import FUSION_METRICS, HIGHER_IS_BETTER
from ..model_info import FUSION_SOURCE
from ..network import BSAFusionNet
from ..weights import save_weights
from .outline import MAX_OUTLINE_CHANGE
from .trainer import TrainConfig, TrainState, check_working_size, checkpoint_weights, load_checkpoint
from .validation import PHANTOM_SEEDS

if TYPE_CHECKING:
    from ..model import FusionModel

_FIGURES = (
    ("ssim", "SSIM warped vs label (higher is better)"),
    ("ncc", "NCC warped vs label (higher is better)"),
    ("epe", "endpoint error vs ground truth, px (lower is better)"),
)
NOT_REGISTERING = "**Registration: not trained.**"
"""How the model card of weights that do not register says so."""
_STAGE_WORDS = {
    "registration": "the registration path alone (encoder, MFRH, Transfer, BSFA; the fusion net not run)",
    "fusion": "the fusion net only (the registration path: encoder, MFRH, Transfer and BSFA, frozen as it started)",
    "joint": "every part",
}


def registers(config: TrainConfig) -> bool:
    """Whether the run's weights register: a frozen registration net keeps what it started with (the
    initial weights' registration, or zero displacement from zeroed flow heads)."""
    if not config.freezes_registration:
        return True
    return config.init_registers if config.init_weights else not config.zero_flow_init


def stage_record(config: TrainConfig, state: TrainState) -> dict:
    """What one stage did (settings, steps, time, hardware, learning curve), as the metadata and model
    cards of the weights trained from it carry it."""
    return {
        "stage": config.stage,
        "modality": config.modality,
        "init_weights": config.init_weights,
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "flow_supervision": config.flow_supervision,
        "ema_decay": config.ema_decay,
        "freeze_features": config.freeze_features,
        "aligned_fraction": config.aligned_fraction,
        "epochs_done": state.epoch,
        "steps": state.global_step,
        "training_hours": round(state.elapsed_s / 3600, 2),
        "hardware": "; ".join(state.hardware),
        "curve": state.curve,
    }


def recorded_stages(metadata: dict) -> list[dict]:
    """The stages a weights file's metadata records; for our files from before ``stages`` existed, one
    summary of their training (none for the authors' or other files)."""
    if "stages" in metadata:
        return list(metadata["stages"])
    if metadata.get("source") != "bsafusion train":
        return []
    return [{
        # before stages, --freeze-registration trained everything but the BSFA net
        "stage": metadata.get("stage") or ("joint" if metadata.get("registers", True) else "joint, BSFA frozen"),
        "modality": metadata.get("modality"),
        "init_weights": "",
        "image_size": metadata.get("training_image_size"),
        "batch_size": metadata.get("batch_size"),
        "epochs_done": metadata.get("epochs_done"),
        "steps": metadata.get("steps"),
        "training_hours": metadata.get("training_hours"),
        "hardware": metadata.get("hardware", ""),
        "curve": [],
    }]


def stage_history(config: TrainConfig, state: TrainState) -> list[dict]:
    """Every stage that made the run's weights, oldest first, this one last."""
    return [*state.earlier_stages, stage_record(config, state)]


def export_metadata(config: TrainConfig, state: TrainState, working_size: int | None = None) -> dict:
    """What the weights file records about its training; ``image_size`` is the inference resolution."""
    return {
        "modality": config.modality if "," not in config.modality else None,  # a registration for several
        "modalities": config.modality.split(","),
        "image_size": working_size or config.image_size,
        "training_image_size": config.image_size,
        # the displacement is learned in the training size's pixels: predicted there whatever image_size is
        **({"registration_size": config.image_size} if registers(config) else {}),
        "source": "bsafusion train",
        "registers": registers(config),
        "stage": config.stage,
        "data": config.data_description,
        "train_pairs": state.train_pairs,
        "val_pairs": state.val_pairs,
        "epochs_done": state.epoch,
        "epochs_planned": config.epochs,
        "steps": state.global_step,
        "batch_size": config.batch_size,
        "training_hours": round(state.elapsed_s / 3600, 2),
        "hardware": "; ".join(state.hardware),
        "validation": state.validation,
        "validation_epoch": state.validation_epoch,
        "stages": stage_history(config, state),
    }


def model_card(config: TrainConfig, state: TrainState, weights_name: str, working_size: int | None = None,
               modality: str | None = None) -> str:
    """The markdown model card of exported weights; ``modality``: the one they are for, when a registration
    trained on several takes that modality's fusion."""
    deformation = config.deformation()
    size = working_size or config.image_size
    if config.init_weights:
        start = f"fine-tuned from `{config.init_weights}`"
    else:
        start = "trained from random initialisation" + (" (flow heads zeroed)" if config.zero_flow_init else "")
    routing = "the flow learns from every loss (published routing)" if config.fusion_steers_registration else (
        "the fusion loss kept off the flow (see docs/training.md)"
    )
    if config.stage == "registration":
        routing = "no fusion loss"
    if config.flow_supervision:
        routing += (
            f", plus the endpoint error against the synthetic field with weight {config.flow_supervision:g}"
            " (not a loss of the paper)"
        )
    losses = "every loss of the BSAFusion paper"
    if config.stage == "registration":
        losses = "the registration losses of the BSAFusion paper (modality cross-entropies, smoothness, consistency)"
    curriculum = ""
    if config.pretrain_steps or config.mono_fraction or config.synthetic_fraction or config.shapes_fraction:
        first = (f"the first {config.pretrain_steps} steps on mono-modal (MRI against MRI) and random-contrast "
                 f"pairs only ({config.pretrain_synthetic_fraction:.0%} random contrast), then "
                 if config.pretrain_steps else "")
        curriculum = (
            f" Curriculum: {first}{config.mono_fraction:.0%} mono-modal, {config.synthetic_fraction:.0%} "
            f"random-contrast, {config.shapes_fraction:.0%} random-shape and the rest real pairs (docs/training.md)."
        )
    if config.aligned_fraction:
        curriculum += (
            f" {config.aligned_fraction:.0%} of the pairs were left undeformed (true displacement zero), so that"
            " aligned pairs stay as they are."
        )
    if config.outline_fraction:
        curriculum += (
            f" {config.outline_fraction:.0%} of the real pairs had the moving image's outline shrunk (by up to"
            f" {MAX_OUTLINE_CHANGE:.0%} of the side), nothing moved, so that where the signal ends is no cue."
        )
    if config.fusion_teacher:
        curriculum += (
            f" The fused image also learned to reproduce the fusion of the aligned pair by `{config.fusion_teacher}`"
            f" (L1 + (1 - SSIM), weight {config.teacher_weight:g}; not a loss of the paper)."
        )
    if config.ema_decay:
        curriculum += (
            f" The weights are the exponential moving average of the training weights (decay {config.ema_decay:g}),"
            " which is also what was validated."
        )
    if config.freeze_features:
        curriculum += (
            " The encoder, the MFRH classifier and the fusion net were kept as the initial weights have them "
            "(everything the fusion net reads), so their trained fusion stays valid; Transfer and BSFA learned "
            "to register."
        )
    pairs = _pairs(config.modality)
    lines = [
        f"# BSAFusion weights for {f'{modality}-MRI' if modality else pairs}: `{weights_name}`",
        "",
        *([f"The registration was trained on {pairs} pairs together; the fusion is for {modality}-MRI (below).", ""]
          if modality and modality != config.modality else []),
        f"Made with `bsafusion train --stage {config.stage}` (BSAFusionCore): {start}; trained "
        f"{_STAGE_WORDS[config.stage]} with {losses} (AAAI 2025), {routing}, on aligned pairs deformed by "
        f"synthetic affine + elastic fields.{curriculum}",
        "",
        f"- Data: {config.data_description or 'not recorded'}; {state.train_pairs} training pairs, "
        f"{state.val_pairs} held-out validation pairs (whole cases).",
        f"- Working resolution: {size}x{size} (inference resizes to it)"
        + ("." if size == config.image_size else f"; trained at {config.image_size}x{config.image_size}"
           + (f", where the displacement is predicted (`registration_size` {config.image_size})."
              if registers(config) else ".")),
        f"- Epochs: {state.epoch} of {config.epochs} planned ({state.global_step} steps, batch {config.batch_size});"
        f" Adam, cosine annealing {config.lr:g} -> {config.lr_min:g} over the planned run; final mu {state.mu:.3f}.",
        f"- Training time: {state.elapsed_s / 3600:.2f} h on {'; '.join(state.hardware) or 'unknown hardware'}.",
        f"- Synthetic deformation: translation up to {config.max_translation:g} of the size, elastic sigma "
        f"{deformation['elastic_sigma']:g} px, kernel {deformation['elastic_kernel']}, magnitude "
        f"{deformation['elastic_magnitude']:g} (= the published field scaled to this size).",
        "- Stored as float16 safetensors; load with `BSAFusionCore.load_model(path)`.",
        "",
    ]
    if not registers(config):
        lines[1:1] = [
            "",
            f"{NOT_REGISTERING} The registration net was frozen as it started, predicting no "
            "displacement, so these weights fuse images that are already aligned (for volumes, after the "
            "rigid/affine pre-alignment). The file records `\"registers\": false`.",
        ]
    if state.validation:
        val_size = config.validation_size
        lines += [
            f"## Validation (epoch {state.validation_epoch}, "
            f"{state.val_pairs} held-out pairs at {val_size}x{val_size}, fixed published synthetic deformations"
            + (f"; the network run at its training size {config.image_size}x{config.image_size}"
               if val_size != config.image_size else "") + ")",
            "",
            "| figure | no registration | this model |",
            "|---|---|---|",
        ]
        for key, label in _FIGURES:
            lines.append(
                f"| {label} | {state.validation[f'{key}_unregistered']:.4f} | {state.validation[key]:.4f} |"
            )
        if "folding" in state.validation:
            lines.append(f"| pixels where the mapping folds (Jacobian <= 0) | 0 | {state.validation['folding']:.2%} |")
        if "aligned_motion" in state.validation:
            lines.append("| displacement predicted on the same pairs undeformed (aligned), mean px (lower is better) "
                         f"| 0 | {state.validation['aligned_motion']:.3f} |")
        if "phantom_epe" in state.validation:
            v = state.validation
            lines += [
                f"| built-in phantom, its {len(PHANTOM_SEEDS)} known deformations: endpoint error px (lower is better) "
                f"| {v['phantom_epe_unregistered']:.4f} | {v['phantom_epe']:.4f} |",
                f"| built-in phantom: NCC warped vs aligned (higher is better) | {v['phantom_ncc_unregistered']:.4f} "
                f"| {v['phantom_ncc']:.4f} |",
                "| built-in phantom, aligned: displacement predicted, mean px (lower is better) | 0 "
                f"| {v['phantom_aligned_motion']:.3f} |",
            ]
        groups = sorted({key.split("/")[0] for key in state.validation if "/" in key})
        if groups:
            lines += ["", "Per modality (held-out cases of each):", "",
                      "| modality | EPE px (none) | SSIM (none) | NCC (none) | folding |", "|---|---|---|---|---|"]
            for group in groups:
                v = {key.split("/", 1)[1]: value for key, value in state.validation.items()
                     if key.startswith(f"{group}/")}
                lines.append(
                    f"| {group} | {v['epe']:.3f} ({v['epe_unregistered']:.3f}) | {v['ssim']:.4f} "
                    f"({v['ssim_unregistered']:.4f}) | {v['ncc']:.4f} ({v['ncc_unregistered']:.4f}) "
                    f"| {v['folding']:.2%} |"
                )
        fusion = [name for name in FUSION_METRICS if name in state.validation]
        if fusion:
            lines += [
                "",
                "Fusion metrics of the fused image against the MRI and the aligned label (the paper's five):",
                "",
                "| metric | average of the two images | this model |",
                "|---|---|---|",
            ]
            for name in fusion:
                better = "higher" if HIGHER_IS_BETTER[name] else "lower"
                lines.append(
                    f"| {name} ({better} is better) | {state.validation[f'{name}_average']:.4f} "
                    f"| {state.validation[name]:.4f} |"
                )
    else:
        lines.append("No validation figures were recorded for this checkpoint.")
    history = stage_history(config, state)
    if len(history) > 1:
        lines += _stage_lines(history)
    for number, record in enumerate(history, start=1):
        if record["curve"]:
            this = " (this stage)" if number == len(history) else ""
            held_out = _pairs(record.get("modality"))
            title = f"Learning curve of stage {number}, {record['stage']}{this} (held-out {held_out} pairs)"
            lines += _curve_lines(record["curve"], title)
    return "\n".join(lines) + "\n"


def _stage_lines(history: list[dict]) -> list[str]:
    """The table of the stages that made the weights, oldest first."""
    lines = [
        "",
        "## Stages",
        "",
        "| # | stage | pairs | started from | size | batch | steps | hours | hardware | last held-out EPE px (none) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, record in enumerate(history, start=1):
        curve = record.get("curve") or []
        last = f"{curve[-1]['epe']:.3f} ({curve[-1]['epe_unregistered']:.3f})" if curve else "not recorded"
        size = record.get("image_size")
        lines.append(
            f"| {number} | {record['stage']}{' (features frozen)' if record.get('freeze_features') else ''} "
            f"| {_pairs(record.get('modality'))} | {record.get('init_weights') or 'random initialisation'} "
            f"| {f'{size}x{size}' if size else '?'} "
            f"| {record.get('batch_size') or '?'} | {record.get('steps') or '?'} "
            f"| {record.get('training_hours', '?')} | {record.get('hardware') or '?'} | {last} |"
        )
    return lines


def _pairs(modality: str | None) -> str:
    """The pairs of a run's ``modality`` (``CT`` or ``PET,SPECT``), e.g. ``CT-MRI`` or ``PET-MRI, SPECT-MRI``."""
    return ", ".join(f"{name}-MRI" for name in modality.split(",")) if modality else "?"


def _curve_lines(curve: list[dict], title: str) -> list[str]:
    """A learning curve as a markdown table (the fusion metrics where every point has them)."""
    fusion = [name for name in FUSION_METRICS if all(name in point for point in curve)]
    phantom = all("phantom_epe" in point for point in curve)
    lines = [
        "",
        f"## {title}",
        "",
        "| step | samples | EPE px (none) | SSIM (none) | NCC (none) | folding |"
        + (" phantom EPE px (none) | phantom NCC (none) |" if phantom else "")
        + "".join(f" {name} |" for name in fusion),
        "|---|---|---|---|---|---|" + "---|---|" * phantom + "---|" * len(fusion),
    ]
    for point in curve:
        lines.append(
            f"| {point['step']} | {point['samples']} | {point['epe']:.3f} ({point['epe_unregistered']:.3f}) "
            f"| {point['ssim']:.4f} ({point['ssim_unregistered']:.4f}) "
            f"| {point['ncc']:.4f} ({point['ncc_unregistered']:.4f}) | {point.get('folding', float('nan')):.2%} |"
            + (f" {point['phantom_epe']:.3f} ({point['phantom_epe_unregistered']:.3f}) "
               f"| {point['phantom_ncc']:.4f} ({point['phantom_ncc_unregistered']:.4f}) |" if phantom else "")
            + "".join(f" {point[n]:.4g} |" for n in fusion)
        )
    return lines


def export_checkpoint(checkpoint_path: Path, output: Path, working_size: int | None = None,
                      fusion_from: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``output`` (fp16 safetensors) and ``output`` with suffix ``.md`` (the model card).

    ``fusion_from``: weights (a file or a bundled name) whose fusion the exported weights use for the
    registered pair: their encoder, token classifier and fusion net (see :mod:`..weights`). The run must
    register; the working size is then theirs unless ``working_size`` is given.
    """
    checkpoint = load_checkpoint(Path(checkpoint_path))
    config, state = TrainConfig.from_dict(checkpoint["config"]), TrainState(**checkpoint["state"])
    net = BSAFusionNet()
    net.load_state_dict(checkpoint_weights(checkpoint))
    fusion = _fusion_source(fusion_from, config) if fusion_from is not None else None
    if fusion is not None and working_size is None:
        working_size = fusion.image_size
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if working_size is not None:
        check_working_size(working_size, "the working size")
    modality = fusion.modality if fusion is not None else None  # several modalities' registration: now this one's
    metadata = export_metadata(config, state, working_size)
    if modality:
        metadata["modality"] = modality
    card = model_card(config, state, output.name, working_size, modality)
    if fusion is not None:
        metadata[FUSION_SOURCE] = {"weights": Path(fusion.source).name, "sha256": fusion.metadata.get("sha256"),
                                       "image_size": fusion.image_size, "stages": recorded_stages(fusion.metadata)}
        card += _fusion_card(fusion, config, working_size)
    save_weights(output, net, metadata, dtype=torch.float16,
                 fusion_net=None if fusion is None else fusion.fusion_net or fusion.net)
    card_path = output.with_suffix(".md")
    with atomic_output(card_path) as tmp:
        tmp.write_text(card, encoding="utf-8")
    return output, card_path


def _fusion_source(source: str | Path, config: TrainConfig) -> FusionModel:
    """The weights whose fusion an export takes, checked against the run."""
    from ..model import load_model

    if not registers(config):
        raise InputError("this run does not register: its weights fuse by themselves, there is nothing to combine "
                         "with another fusion (--fusion-from is for registration runs)")
    fusion = load_model(source, device="cpu")
    trained = config.modality.split(",")
    if fusion.modality is not None and fusion.modality not in trained:
        raise InputError(f"{source} fuses {fusion.modality}-MRI, this run registers {_pairs(config.modality)}: "
                         f"give weights for {' or '.join(trained)}")
    return fusion


def _fusion_card(fusion: FusionModel, config: TrainConfig, working_size: int) -> str:
    """The model card's section on a fusion taken from other weights, with their own card when it exists."""
    source = Path(fusion.source)
    lines = [
        "",
        f"## The fusion: from `{source.name}`",
        "",
        f"These weights register with the network above at {config.image_size}x{config.image_size}, then fuse the "
        f"fixed image and the moving image warped by its displacement at {working_size}x{working_size} with the "
        f"encoder, token classifier and fusion net of `{source.name}` (sha256 of its tensors "
        f"`{fusion.metadata.get('sha256', 'not recorded')}`), trained apart from this registration. The file holds "
        "them as its fusion net and `fusion_features.*`; with zero displacement (fuse only) they fuse exactly as "
        f"`{source.name}` does.",
    ]
    theirs = source.with_suffix(".md")
    if theirs.is_file():
        body = theirs.read_text(encoding="utf-8").split("\n\n")[1:]  # their title is replaced by this section's
        # what they say of their own registration does not apply: these weights register with the network above
        body = [paragraph for paragraph in body if not paragraph.startswith(NOT_REGISTERING)]
        lines += ["", "Its model card (headings one level down; without what it says of its own registration, "
                  "which these weights do not use):", "",
                  *[f"#{line}" if line.startswith("#") else line for line in "\n\n".join(body).splitlines()]]
    return "\n".join(lines) + "\n"
