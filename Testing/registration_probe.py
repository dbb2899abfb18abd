"""How fast does the registration path learn? The issue's probe (``shared/tools/regprobe.py``) on our API.

Trains only the registration path of BSAFusionNet (encoder, MFRH classifier, head injection + Transfer,
BSFA; no fusion net, no discriminator) on the aanlib CT-MRI pairs with case 28 held out: flow supervision
(EPE against the exact inverse field) + (1 - SSIM) + L1 of the warped moving image against its label,
Adam with the trainer's flow-head learning rates, zero-initialised flow heads, random 90-degree turns,
the published deformation at SIZE. Every 100 steps it prints the training and held-out EPE and SSIM
against no registration, so the ~600-step plateau and what shortens it can be seen in one run.

    python Testing/registration_probe.py --mode mono --steps 1000 --flow-head-lr matched

``--mode``: ``mono`` (MRI against the deformed MRI), ``cross`` (MRI against the deformed CT) or
``curr:N`` (mono for N steps, then cross; validated cross). A measuring aid, not part of the library.
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
from BSAFusionCore.training.losses import endpoint_errors, ssim_loss
from BSAFusionCore.training.trainer import TrainConfig, flow_head_groups, zero_flow_heads

HELD_OUT = "28"
VALIDATION_SEED = 7


def _batch(samples: list[PairSample], indices: list[int], mono: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed and moving images; with ``mono`` the moving side is the MRI itself."""
    fixed, moving = make_batch(samples, indices, None)
    return fixed, (fixed.clone() if mono else moving)


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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    files = aanlib_files(args.aanlib, "CT")
    samples = load_file_pairs(files, args.size)
    val = [s for s, f in zip(samples, files, strict=True) if f.case == HELD_OUT]
    train = [s for s, f in zip(samples, files, strict=True) if f.case != HELD_OUT]
    switch = {"mono": args.steps + 1, "cross": 0}.get(args.mode)
    if switch is None:
        switch = int(args.mode.removeprefix("curr:"))
    deformation = TrainConfig(run_dir="unused", image_size=args.size).deformation()

    net = BSAFusionNet()
    zero_flow_heads(net)
    for part in (net.fusion_net, net.transfer.modal_dis):
        part.requires_grad_(False)
    optimiser = torch.optim.Adam(flow_head_groups(net, args.lr, args.flow_head_lr))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: min(1.0, (i + 1) / args.warmup) if args.warmup else 1.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16")

    def flow(fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        with autocast:
            return net(fixed, moving, with_discriminator=False, with_fusion=False).flow.float()

    val_fixed, val_label = _batch(val, list(range(len(val))), mono=args.mode == "mono")
    val_moving, field = random_deformation(
        val_label, generator=torch.Generator().manual_seed(VALIDATION_SEED), **deformation)
    val_truth = invert_displacement(field)
    none = endpoint_errors(torch.zeros_like(val_truth), val_truth).mean().item()
    ssim_none = 1 - ssim_loss(val_moving, val_label).item()

    def validate() -> tuple[float, float]:
        net.eval()
        with torch.no_grad():
            predicted = torch.cat([flow(val_fixed[i:i + 8], val_moving[i:i + 8]) for i in range(0, len(val), 8)])
        net.train()
        warped = warp_image(val_moving, predicted)
        return endpoint_errors(predicted, val_truth).mean().item(), 1 - ssim_loss(warped, val_label).item()

    header = {**vars(args), "train": len(train), "val": len(val), "epe_none": round(none, 3)}
    sys.stdout.write(json.dumps(header) + "\n")
    generator = torch.Generator().manual_seed(1)
    errors: list[tuple[float, float]] = []
    start = time.time()
    for step in range(1, args.steps + 1):
        picks = torch.randint(len(train), (args.batch_size,), generator=generator).tolist()
        fixed, label = _batch(train, picks, mono=step <= switch)
        turns = int(torch.randint(4, (1,), generator=generator))
        fixed, label = torch.rot90(fixed, turns, (2, 3)), torch.rot90(label, turns, (2, 3))
        moving, field = random_deformation(label, generator=generator, **deformation)
        truth = invert_displacement(field)
        predicted = flow(fixed, moving)
        warped = warp_image(moving, predicted)
        epe = endpoint_errors(predicted, truth).mean()
        loss = epe + ssim_loss(warped, label) + (warped - label).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        errors.append((epe.item(), endpoint_errors(torch.zeros_like(truth), truth).mean().item()))
        if step % 100 == 0:
            val_epe, val_ssim = validate()
            recent = errors[-100:]
            row = {"step": step, "seconds": round(time.time() - start),
                   "train_epe": round(sum(e for e, _ in recent) / len(recent), 3),
                   "train_epe_none": round(sum(n for _, n in recent) / len(recent), 3),
                   "val_epe": round(val_epe, 3), "val_epe_none": round(none, 3),
                   "val_ssim": round(val_ssim, 3), "val_ssim_none": round(ssim_none, 3)}
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
