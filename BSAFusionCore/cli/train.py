"""``bsafusion train``: train or fine-tune BSAFusion, resume a run, export its weights."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import InputError
from ..options import FLOW_HEAD_LRS, TRAINING_STAGES

log = logging.getLogger(__name__)


# Settings a resumed run takes from its checkpoint.
_FIXED_BY_RUN = (
    "modality", "image_size", "batch_size", "epochs", "lr", "lr_min", "seed", "deformation_scale",
    "fusion_steers_registration", "flow_supervision", "flow_head_lr", "stage", "pretrain_steps",
    "mono_fraction", "synthetic_fraction", "pretrain_synthetic_fraction", "val_size", "shapes_fraction",
    "freeze_features", "fusion_teacher", "teacher_weight", "ema_decay", "aligned_fraction", "outline_fraction",
)
# Settings a resumed run keeps unless the command line gives them, with their defaults.
_KEPT_UNLESS_GIVEN = {"val_every": 10, "checkpoint_every": 500}
# What runs older than these options did.
_BEFORE_THE_OPTION = {
    "flow_supervision": 0.0, "flow_head_lr": "published", "stage": "joint", "pretrain_steps": 0,
    "mono_fraction": 0.0, "synthetic_fraction": 0.0, "pretrain_synthetic_fraction": 0.5, "val_size": 0,
    "shapes_fraction": 0.0, "freeze_features": False, "fusion_teacher": "", "teacher_weight": 1.0,
    "ema_decay": 0.0, "aligned_fraction": 0.0, "outline_fraction": 0.0,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train BSAFusion on aligned pairs (synthetic deformations), resume, or export weights",
        description=(
            "Train BSAFusion on aligned MRI + CT/PET/SPECT pairs; the moving image is deformed "
            "synthetically and the network learns to undo it while fusing. Run under torchrun for "
            "several GPUs/processes. With --export, only write the run's best weights."
        ),
    )
    data = parser.add_argument_group("data (one source)")
    data.add_argument("--aanlib", type=Path, help="folder with <X>-MRI/{MRI,<X>}/NAME.png (or that <X>-MRI folder)")
    data.add_argument("--pairs-csv", type=Path, help="CSV with columns fixed,moving[,case] (paths relative to it)")
    data.add_argument(
        "--volume-pair", type=Path, nargs=2, action="append", metavar=("FIXED", "MOVING"),
        help="two aligned 3D volumes (MRI first), sliced along --axis; repeatable",
    )
    data.add_argument("--axis", type=int, default=2, help="slicing axis of volumes: 0, 1 or 2 (i, j, k; default 2)")
    data.add_argument(
        "--modality", default="CT",
        help="moving modality: CT, PET or SPECT (default CT); with --aanlib and --stage registration also several, "
        "e.g. CT,PET,SPECT (one registration for all, each modality's held-out cases as when trained alone)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", type=Path, required=True, help="folder of checkpoints and logs")
    run.add_argument("--resume", action="store_true", help="continue the run in --run-dir from last.pt")
    run.add_argument(
        "--init",
        help="start from these weights: ours, the authors' .pkl, CT/PET/SPECT, or a training checkpoint (.pt) "
        "such as the previous stage's RUN_DIR/best.pt",
    )
    run.add_argument(
        "--max-minutes", type=float, default=0.0,
        help="stop cleanly after about this many minutes (checkpoint, then export of the best weights); "
        "continue later with --resume",
    )
    run.add_argument("--export", type=Path, metavar="WEIGHTS", help="export the run's best checkpoint and exit")
    run.add_argument(
        "--export-size", type=int, metavar="N",
        help="with --export: the working resolution the weights record for inference (default: the training size)",
    )
    run.add_argument(
        "--fusion-from", metavar="WEIGHTS",
        help="with --export of a registration run: fuse the registered pair with these weights' fusion (a file or "
        "CT/PET/SPECT; their encoder, classifier and fusion net go into the file; the working size becomes theirs; "
        "a registration for several modalities becomes these weights' modality's)",
    )
    run.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the GPU of this process, else CPU)")
    run.add_argument(
        "--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
        help="mixed precision (losses stay fp32): auto = bf16 on CPUs with native bf16 and on GPUs that have it, "
        "else fp16 on GPUs and fp32 on CPUs",
    )
    stages = parser.add_argument_group("stages and curriculum (docs/training.md has the schedule)")
    stages.add_argument(
        "--stage", choices=TRAINING_STAGES, default="joint",
        help="registration: the registration path alone with its losses; fusion: the fusion net on the frozen "
        "registration path (encoder, MFRH, Transfer, BSFA); joint: everything with every loss (default)",
    )
    stages.add_argument(
        "--pretrain-steps", type=int, default=0,
        help="registration stage: the first N steps on mono-modal (MRI vs MRI) and random-contrast pairs only",
    )
    stages.add_argument(
        "--pretrain-synthetic-fraction", type=float, default=0.5,
        help="during those steps, the share of random-contrast pairs (default 0.5; the rest mono-modal)",
    )
    stages.add_argument(
        "--mono-fraction", type=float, default=0.0, help="registration stage, afterwards: share of MRI vs MRI pairs"
    )
    stages.add_argument(
        "--synthetic-fraction", type=float, default=0.0,
        help="registration stage, afterwards: share of pairs whose moving image is a random contrast of the MRI "
        "or of the moving image",
    )
    stages.add_argument(
        "--shapes-fraction", type=float, default=0.0,
        help="registration stage, afterwards: share of random-shape pairs (synthetic label maps under two "
        "unrelated random contrasts, SynthMorph's idea)",
    )
    stages.add_argument(
        "--outline-fraction", type=float, default=0.0,
        help="registration stage: share of the real pairs whose moving image has its outline shrunk by up to 4%% "
        "of the side, nothing moved, so that the registration does not stretch images that end short",
    )
    stages.add_argument(
        "--freeze-features", action="store_true",
        help="registration stage: keep the encoder and the MFRH classifier (all the fusion net reads) as --init "
        "gives them, so that its trained fusion stays valid while Transfer and BSFA learn to register",
    )
    stages.add_argument(
        "--fusion-teacher", default="", metavar="WEIGHTS",
        help="fusion and joint stages: the fused image also learns to reproduce these weights' fusion of the "
        "aligned pair (ours, CT/PET/SPECT or the authors'), e.g. to keep the fusion of fusion-only weights "
        "on a registration-trained encoder",
    )
    stages.add_argument(
        "--teacher-weight", type=float, default=1.0,
        help="weight of the teacher term, L1 + (1 - SSIM) against the teacher's fused image (default 1)",
    )
    hyper = parser.add_argument_group("training")
    hyper.add_argument("--image-size", type=int, default=256, help="training resolution, multiple of 16")
    hyper.add_argument("--batch-size", type=int, default=32, help="per process")
    hyper.add_argument("--epochs", type=int, default=3000)
    hyper.add_argument("--lr", type=float, default=5e-5)
    hyper.add_argument("--lr-min", type=float, default=5e-7)
    hyper.add_argument("--val-fraction", type=float, default=0.1, help="share of cases held out for validation")
    hyper.add_argument(
        "--val-size", type=int, default=256,
        help="validation resolution (default 256, the published one); the network runs at --image-size as in inference",
    )
    hyper.add_argument("--val-every", type=int, help="validate every N epochs (0: never; default 10, or the run's own "
                       "with --resume)")
    hyper.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default 500, or the run's own "
                       "with --resume)")
    hyper.add_argument("--max-steps", type=int, default=0, help="stop after N steps in total (0: no limit)")
    hyper.add_argument(
        "--ema-decay", type=float, default=0.0, metavar="D",
        help="validate, keep and export the exponential moving average of the weights with this decay, e.g. "
        "0.998 (0 = off: the weights themselves)",
    )
    hyper.add_argument("--deformation-scale", type=float, default=1.0, help="1 = the published deformation size")
    hyper.add_argument(
        "--aligned-fraction", type=float, default=0.0, metavar="F",
        help="share of pairs left undeformed (the true flow is zero), so that aligned pairs stay as they are "
        "(default 0: every pair is deformed, as published)",
    )
    hyper.add_argument("--seed", type=int, default=0)
    hyper.add_argument(
        "--fusion-steers-registration", action="store_true",
        help="let the fusion loss train the flow too (published); by default only the registration losses do",
    )
    hyper.add_argument(
        "--flow-supervision", type=float, default=0.0, metavar="WEIGHT",
        help="add the endpoint error against the synthetic deformation's known field with this weight "
        "(not in the paper; 0 = off)",
    )
    hyper.add_argument(
        "--flow-head-lr", choices=FLOW_HEAD_LRS, default="level",
        help="the BSFA flow heads' learning rates: 'level' (default) lr / 2^(5-level); 'matched' also divided "
        "by the head's fan-in relative to level 5's, so that one step moves the field alike through every "
        "head (learns from step ~300 instead of ~600, slower later); 'published' one lr for all",
    )
    hyper.add_argument(
        "--published-flow-lr", dest="flow_head_lr", action="store_const", const="published",
        help="the same as --flow-head-lr published",
    )
    hyper.add_argument(
        "--freeze-registration", dest="stage", action="store_const", const="fusion",
        help="the same as --stage fusion: keep the registration path as it starts and train the fusion net, "
        "e.g. to fine-tune the fusion of given weights on new data",
    )
    hyper.add_argument(
        "--random-flow-init", action="store_true",
        help="keep the random initialisation of the flow heads (published) instead of starting from zero motion",
    )
    parser.set_defaults(func=run_train)


def _modalities(args: argparse.Namespace) -> list[str]:
    modalities = [m.strip() for m in args.modality.split(",")]
    if len(modalities) > 1 and (args.stage != "registration" or not args.aanlib):
        raise InputError(
            f"several modalities ({args.modality}) train one registration: give --stage registration and --aanlib; "
            "the fusion and joint stages train one modality each"
        )
    return modalities


def _split_samples(args: argparse.Namespace, size: int):
    """(training, held-out, description): several modalities are split one by one, as alone."""
    from dataclasses import replace

    from .. import pairs

    modalities = _modalities(args)
    if len(modalities) == 1:
        samples, description = _load_samples(args, size)
        return *pairs.split_by_case(samples, args.val_fraction, args.seed), description
    train, val = [], []
    for modality in modalities:
        samples = pairs.load_file_pairs(pairs.aanlib_files(args.aanlib, modality), size)
        samples = [replace(s, case=f"{modality}:{s.case}", name=f"{modality}:{s.name}") for s in samples]
        part_train, part_val = pairs.split_by_case(samples, args.val_fraction, args.seed)
        train += part_train
        val += part_val
    return train, val, f"{args.aanlib} ({', '.join(f'{m}-MRI' for m in modalities)})"


def _load_samples(args: argparse.Namespace, size: int):
    from .. import pairs

    sources = [s for s in (args.aanlib, args.pairs_csv, args.volume_pair) if s]
    if len(sources) != 1:
        raise InputError("give exactly one data source: --aanlib, --pairs-csv or --volume-pair")
    if args.aanlib:
        files = pairs.aanlib_files(args.aanlib, args.modality)
        return pairs.load_file_pairs(files, size), f"{args.aanlib} ({args.modality}-MRI)"
    if args.pairs_csv:
        files = pairs.csv_files(args.pairs_csv)
        return pairs.load_file_pairs(files, size), str(args.pairs_csv)
    samples = []
    for fixed, moving in args.volume_pair:
        samples += pairs.load_volume_pair(fixed, moving, size, axis=args.axis)
    return samples, ", ".join(f"{f.name} + {m.name} (axis {args.axis})" for f, m in args.volume_pair)


def _initial_state(source: str):
    """(state dict, whether it registers, the stages that made it) of ``--init``: a training checkpoint
    or weights."""
    if source.endswith(".pt") and Path(source).is_file():
        from ..training.export import registers, stage_history
        from ..training.trainer import TrainConfig, TrainState, checkpoint_weights, load_checkpoint

        checkpoint = load_checkpoint(Path(source))
        config, state = TrainConfig.from_dict(checkpoint["config"]), TrainState(**checkpoint["state"])
        return checkpoint_weights(checkpoint), registers(config), stage_history(config, state)
    from ..model import load_model
    from ..training.export import recorded_stages

    start = load_model(source, device="cpu")
    if start.fusion_net is not None:
        log.warning("%s fuses with a network of its own, which training does not carry on: the run starts from "
                    "its registration network", source)
    return start.net.state_dict(), start.registers, recorded_stages(start.metadata)


def _export(run_dir: Path, output: Path, working_size: int | None = None, fusion_from: str | None = None) -> int:
    from ..training.export import export_checkpoint
    from ..training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT

    checkpoint = run_dir / BEST_CHECKPOINT
    if not checkpoint.is_file():
        checkpoint = run_dir / LAST_CHECKPOINT
    if not checkpoint.is_file():
        raise InputError(f"{run_dir} has no checkpoint to export")
    weights, card = export_checkpoint(checkpoint, output, working_size, fusion_from)
    log.info("exported %s to %s and %s", checkpoint, weights, card)
    return 0


def run_train(args: argparse.Namespace) -> int:
    export_only = (("--export-size", args.export_size), ("--fusion-from", args.fusion_from))
    given = [flag for flag, value in export_only if value]
    if given and not args.export:
        raise InputError(f"{' and '.join(given)} go with --export WEIGHTS (they shape the exported file)")
    if args.export:
        return _export(args.run_dir, args.export, args.export_size, args.fusion_from)
    from ..training.trainer import LAST_CHECKPOINT, TrainConfig, Trainer, load_checkpoint

    last = args.run_dir / LAST_CHECKPOINT
    if last.is_file() and not args.resume:
        raise InputError(f"{args.run_dir} already holds a run: pass --resume, or choose another --run-dir")
    saved: dict = {}
    if args.resume:
        if not last.is_file():
            raise InputError(f"nothing to resume: {last} does not exist")
        saved = TrainConfig.upgraded(load_checkpoint(last)["config"])
        for name in _FIXED_BY_RUN:  # the run's own settings win over the command line's
            setattr(args, name, saved.get(name, _BEFORE_THE_OPTION.get(name)))
        for name, value in _KEPT_UNLESS_GIVEN.items():
            if getattr(args, name) is None:
                setattr(args, name, saved.get(name, value))
    for name, value in _KEPT_UNLESS_GIVEN.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_minutes < 0:
        raise InputError(f"--max-minutes must be >= 0, got {args.max_minutes:g}")
    train, val, description = _split_samples(args, args.image_size)
    val_size = args.val_size or args.image_size
    if val and val_size != args.image_size:  # the same held-out cases, read at the validation size
        val = _split_samples(args, val_size)[1]
    log.info("%d training pairs, %d validation pairs (at %d px)", len(train), len(val), val_size)
    config = TrainConfig(
        run_dir=str(args.run_dir), modality=args.modality, image_size=args.image_size,
        batch_size=args.batch_size, epochs=args.epochs, lr=args.lr, lr_min=args.lr_min,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, seed=args.seed, amp=args.amp,
        deformation_scale=args.deformation_scale, aligned_fraction=args.aligned_fraction,
        max_steps=args.max_steps, data_description=description,
        zero_flow_init=not args.random_flow_init, fusion_steers_registration=args.fusion_steers_registration,
        flow_supervision=args.flow_supervision, flow_head_lr=args.flow_head_lr,
        stage=args.stage, pretrain_steps=args.pretrain_steps, mono_fraction=args.mono_fraction,
        synthetic_fraction=args.synthetic_fraction, pretrain_synthetic_fraction=args.pretrain_synthetic_fraction,
        shapes_fraction=args.shapes_fraction, outline_fraction=args.outline_fraction,
        freeze_features=args.freeze_features,
        fusion_teacher=str(args.fusion_teacher), teacher_weight=args.teacher_weight, ema_decay=args.ema_decay,
        val_size=args.val_size,
        init_weights=saved.get("init_weights", "") if args.resume else str(args.init or ""),
        init_registers=saved.get("init_registers", True),
    )
    initial, earlier_stages = None, []
    if args.init and not args.resume:
        initial, config.init_registers, earlier_stages = _initial_state(str(args.init))
    trainer = Trainer(config, train, val, device=args.device, initial_state=initial)
    if not args.resume:
        trainer.state.earlier_stages = earlier_stages
    try:
        if args.resume:
            trainer.resume()
        trainer.run(time_limit_s=args.max_minutes * 60 or None)
    finally:
        trainer.close()
    if trainer.dist.main:  # finished or stopped: the best weights so far, ready to use or to commit
        _export(args.run_dir, args.run_dir / f"BSAFusion_{'+'.join(_modalities(args))}.safetensors")
        if not trainer.finished:
            log.info("stopped at step %d; continue with --resume", trainer.state.global_step)
    return 0
