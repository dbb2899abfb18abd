"""How fast does the registration path learn? The issue's probe (``shared/tools/regprobe.py``) on our API.

Trains only the registration path of BSAFusionNet (encoder, MFRH classifier, head injection + Transfer,
BSFA; no fusion net, no discriminator) on the aanlib CT-MRI pairs with case 28 held out: flow supervision
(EPE against the exact inverse field) + (1 - SSIM) + L1 of the warped moving image against its label,
Adam with the trainer's flow-head learning rates, zero-initialised flow heads (or ``--init`` weights),
random 90-degree turns, the published deformation at SIZE. Every 100 steps it prints the training and
held-out EPE and SSIM against no registration, so the ~600-step plateau and what shortens it can be seen
in one run.

    python Testing/registration_probe.py --mode mono --steps 1000 --flow-head-lr matched

``--mode``: ``mono`` (MRI against the deformed MRI), ``mono-ct`` (CT against the deformed CT: what the
CT's own structure allows a learned registration), ``cross`` (MRI against the deformed CT),
``curr:N`` (mono for N steps, then cross; validated cross) or ``bridge`` (a feature-level bridge from a
mono-modal net: the student registers the MRI against the deformed CT, its BSFA frozen, and its tokens
after Transfer are pulled towards those of the frozen ``--teacher`` on the MRI against the *MRI* deformed
by the same field, plus the flow and image losses; validated cross and mono). ``--init`` reads weights,
``--save`` writes fp32 weights at every validation, with the stage records of the initial weights and of
the probe run, so that ``bsafusion train --init`` can continue from them. A measuring aid, not part of the
library. The twelfth session's mono -> cross cycle (docs/training.md; CAND7 = the seventh session's CT
candidate, `git show 8ae2053:Resources/candidates/BSAFusion_CT.safetensors`):

    python Testing/registration_probe.py --mode mono --steps 700 --init CAND7 \
        --save ~/bsafusion_runs/mono700.safetensors
    python Testing/registration_probe.py --mode cross --steps 900 --init ~/bsafusion_runs/mono700.safetensors \
        --save ~/bsafusion_runs/cross_after_mono900.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from BSAFusionCore.deformation import invert_displacement, random_deformation
from BSAFusionCore.network import BSAFusionNet, warp_image
from BSAFusionCore.options import FLOW_HEAD_LRS
from BSAFusionCore.pairs import PairSample, aanlib_files, load_file_pairs
from BSAFusionCore.training.data import make_batch
from BSAFusionCore.training.export import recorded_stages
from BSAFusionCore.training.losses import endpoint_errors, ssim_loss
from BSAFusionCore.training.trainer import TrainConfig, flow_head_groups, zero_flow_heads
from BSAFusionCore.weights import load_network, save_weights

HELD_OUT = "28"
VALIDATION_SEED = 7


def _batch(samples: list[PairSample], indices: list[int], mono: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed and moving images; with ``mono`` the moving side is the MRI itself."""
    fixed, moving = make_batch(samples, indices, None)
    return fixed, (fixed.clone() if mono else moving)


def probe_metadata(args: argparse.Namespace, step: int, seconds: float, earlier: list[dict]) -> dict:
    """Weights metadata for the probe's output: the stages of its initial weights and this probe run
    (its learning curve, at the probe's own size and seeds, is in the log, not in the record)."""
    record = {"stage": f"registration probe, {args.mode}", "modality": "CT",
              "init_weights": args.init or args.teacher or "", "image_size": args.size, "batch_size": args.batch_size,
              "lr": args.lr, "flow_supervision": 1.0, "steps": step, "training_hours": round(seconds / 3600, 2),
              "hardware": f"CPU, {args.threads} torch thread(s)", "curve": []}
    return {"source": "Testing/registration_probe.py", "modality": "CT", "registers": True,
            "image_size": args.size, "probe": vars(args), "stages": [*earlier, record]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aanlib", default="../shared/data/aanlib")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--mode", default="mono")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--flow-head-lr", choices=FLOW_HEAD_LRS, default="level")
    parser.add_argument("--warmup", type=int, default=0, help="linear lr warm-up over this many steps")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", help="start from these weights (default: random, flow heads zero)")
    parser.add_argument("--teacher", help="bridge: the frozen mono-modal net (also the start without --init)")
    parser.add_argument("--feature-weight", type=float, default=1.0, help="bridge: weight of the token loss")
    parser.add_argument("--save", help="write the weights here at every validation (fp32 safetensors)")
    args = parser.parse_args(argv)
    bridge = args.mode == "bridge"
    field_teacher = args.mode == "field-teacher"
    if (bridge or field_teacher) and not args.teacher:
        parser.error(f"--mode {args.mode} needs --teacher")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    files = aanlib_files(args.aanlib, "CT")
    samples = load_file_pairs(files, args.size)
    val = [s for s, f in zip(samples, files, strict=True) if f.case == HELD_OUT]
    train = [s for s, f in zip(samples, files, strict=True) if f.case != HELD_OUT]
    switch = {"mono": args.steps + 1, "mono-ct": 0, "cross": 0, "bridge": 0, "field-teacher": 0}.get(args.mode)
    ct_only = args.mode == "mono-ct"
    if switch is None:
        switch = int(args.mode.removeprefix("curr:"))
    deformation = TrainConfig(run_dir="unused", image_size=args.size).deformation()

    start_weights = args.init or (args.teacher if bridge else None)
    earlier: list[dict] = []
    if start_weights:
        net, start_meta = load_network(start_weights)[:2]
        net.train()
        earlier = recorded_stages(start_meta)
    else:
        net = BSAFusionNet()
        zero_flow_heads(net)
    frozen = [net.fusion_net, net.transfer.modal_dis] + ([net.reg_net] if bridge else [])
    for part in frozen:
        part.requires_grad_(False)
    teacher = load_network(args.teacher)[0].requires_grad_(False) if bridge or field_teacher else None
    optimiser = torch.optim.Adam(flow_head_groups(net, args.lr, args.flow_head_lr))  # trainable parameters only
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: min(1.0, (i + 1) / args.warmup) if args.warmup else 1.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16")

    def run(model: BSAFusionNet, fixed: torch.Tensor, moving: torch.Tensor):
        with autocast:
            return model(fixed, moving, with_discriminator=False, with_fusion=False)

    def flow(fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        return run(net, fixed, moving).flow.float()

    def train_modes() -> None:
        """Training mode, the frozen parts in eval mode (as the trainer's stages keep them)."""
        net.train()
        for part in frozen:
            part.eval()

    val_fixed, val_ct = make_batch(val, list(range(len(val))), None)
    val_moving_both, field = random_deformation(
        torch.cat((val_ct, val_fixed), 1), generator=torch.Generator().manual_seed(VALIDATION_SEED), **deformation)
    val_truth = invert_displacement(field)
    none = endpoint_errors(torch.zeros_like(val_truth), val_truth).mean().item()
    mono_val = args.mode == "mono"
    val_label = val_fixed if mono_val else val_ct
    val_moving = val_moving_both[:, 1:] if mono_val else val_moving_both[:, :1]
    ssim_none = 1 - ssim_loss(val_moving, val_label).item()

    def validate(moving: torch.Tensor, label: torch.Tensor) -> tuple[float, float]:
        fixed = val_ct if ct_only else val_fixed
        net.eval()
        with torch.no_grad():
            predicted = torch.cat([flow(fixed[i:i + 8], moving[i:i + 8]) for i in range(0, len(val), 8)])
        train_modes()
        warped = warp_image(moving, predicted)
        return endpoint_errors(predicted, val_truth).mean().item(), 1 - ssim_loss(warped, label).item()

    train_modes()
    header = {**vars(args), "train": len(train), "val": len(val), "epe_none": round(none, 3)}
    if start_weights:
        header["start_val_epe"] = round(validate(val_moving, val_label)[0], 3)
        if not ct_only:
            header["start_val_mono_epe"] = round(validate(val_moving_both[:, 1:], val_fixed)[0], 3)
    sys.stdout.write(json.dumps(header) + "\n")
    generator = torch.Generator().manual_seed(1)
    errors: list[tuple[float, float]] = []
    features: list[float] = []
    start = time.time()
    for step in range(1, args.steps + 1):
        picks = torch.randint(len(train), (args.batch_size,), generator=generator).tolist()
        fixed, label = _batch(train, picks, mono=step <= switch)
        if ct_only:
            fixed = label.clone()
        turns = int(torch.randint(4, (1,), generator=generator))
        fixed, label = torch.rot90(fixed, turns, (2, 3)), torch.rot90(label, turns, (2, 3))
        moving_both, field = random_deformation(torch.cat((label, fixed), 1), generator=generator, **deformation)
        moving = moving_both[:, :1]
        truth = invert_displacement(field)
        out = run(net, fixed, moving)
        predicted = out.flow.float()
        warped = warp_image(moving, predicted)
        epe = endpoint_errors(predicted, truth).mean()
        if field_teacher:
            with torch.no_grad():
                target = run(teacher, fixed, moving_both[:, 1:]).flow.float()
            loss = endpoint_errors(predicted, target).mean()
        else:
            loss = epe
        loss = loss + ssim_loss(warped, label) + (warped - label).abs().mean()
        if bridge:
            with torch.no_grad():
                target = run(teacher, fixed, moving_both[:, 1:])
            feature = sum(((mine.float() - theirs.float()) ** 2).mean() / theirs.float().var() / 2
                          for mine, theirs in ((out.tokens_fixed_after_transfer, target.tokens_fixed_after_transfer),
                                               (out.tokens_moving_after_transfer, target.tokens_moving_after_transfer)))
            loss = loss + args.feature_weight * feature
            features.append(feature.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        errors.append((epe.item(), endpoint_errors(torch.zeros_like(truth), truth).mean().item()))
        if step % 100 == 0:
            val_epe, val_ssim = validate(val_moving, val_label)
            recent = errors[-100:]
            row = {"step": step, "seconds": round(time.time() - start),
                   "train_epe": round(sum(e for e, _ in recent) / len(recent), 3),
                   "train_epe_none": round(sum(n for _, n in recent) / len(recent), 3),
                   "val_epe": round(val_epe, 3), "val_epe_none": round(none, 3),
                   "val_ssim": round(val_ssim, 3), "val_ssim_none": round(ssim_none, 3)}
            if bridge:
                row["train_feature"] = round(sum(features[-100:]) / len(features[-100:]), 4)
                row["val_mono_epe"] = round(validate(val_moving_both[:, 1:], val_fixed)[0], 3)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
            if args.save:
                metadata = probe_metadata(args, step, time.time() - start, earlier)
                save_weights(args.save, net, metadata, dtype=torch.float32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
