"""The BSAFusion training loop (NETWORK_SPEC.md section 12), in stages.

Adam with cosine annealing, the adaptive mu, the discriminator reloaded from the classifier after
each epoch, mixed precision (bf16 on CPUs that support it, bf16/fp16 on GPUs), checkpoints every N
steps with exact resume, a time limit that stops cleanly, and DistributedDataParallel when started
by ``torchrun``. Stages (``options.TRAINING_STAGES``): ``registration`` trains the registration path alone,
``fusion`` the fusion net on a frozen registration path, ``joint`` everything with every loss. The data
order, augmentation and synthetic deformation of every step are derived from (seed, epoch, step,
rank), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..deformation import invert_displacement, random_deformation
from ..errors import InputError
from ..files import atomic_output
from ..model import cpu_supports_bf16
from ..network import BSAFusionNet, BSAFusionOutput
from ..network.registration import LEVELS
from ..options import FLOW_HEAD_LRS, MIN_SIZE, SIZE_MULTIPLE, TRAINING_STAGES, WORKING_SIZE
from ..pairs import PairSample
from ..progress import CancelFlag, ProgressCallback, check_cancel, report
from .curriculum import MixedBatch, mix_pairs, pair_mix, undeform_some
from .data import make_batch
from .losses import bsafusion_loss, registration_stage_loss, teacher_loss
from .outline import reshape_outlines
from .validation import (
    ValidationSet,
    make_phantom_set,
    make_validation_set,
    phantom_figures,
    registers_the_phantom,
    validate,
)

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOG_CSV = "log.csv"
VALIDATION_SEED = 20250101


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in its checkpoints."""

    run_dir: str
    modality: str = "CT"
    image_size: int = 256
    batch_size: int = 32
    epochs: int = 3000
    lr: float = 5e-5
    lr_min: float = 5e-7
    val_every: int = 10  # epochs; 0 = never
    checkpoint_every: int = 500  # optimiser steps; 0 = only at the end of each epoch
    seed: int = 0
    amp: str = "auto"  # auto | none | bf16 | fp16 (GPU only)
    deformation_scale: float = 1.0  # 1 = the published deformation size
    aligned_fraction: float = 0.0  # share of pairs left undeformed (true flow zero; see undeform_some)
    max_translation: float = 0.01
    max_steps: int = 0  # stop (with a checkpoint) after this many steps in total; 0 = run to the end
    zero_flow_init: bool = True  # a fresh network starts from the identity flow (see zero_flow_heads)
    fusion_steers_registration: bool = False  # True: the published gradient routing
    flow_supervision: float = 0.0  # weight of the endpoint error against the known field (0 = published)
    flow_head_lr: str = "level"  # level | matched | published: the flow heads' learning rates (flow_head_groups)
    stage: str = "joint"  # registration | fusion (registration path frozen) | joint (see TRAINING_STAGES)
    pretrain_steps: int = 0  # registration stage: the first steps train on mono-modal and random-contrast pairs only
    mono_fraction: float = 0.0  # registration stage, after pre-training: share of MRI-against-MRI pairs
    synthetic_fraction: float = 0.0  # ... and of random-contrast pairs (see curriculum.PairMix)
    pretrain_synthetic_fraction: float = 0.5  # share of random-contrast pairs during pre-training (the rest mono)
    shapes_fraction: float = 0.0  # ... and of random-shape pairs (see shapes.py)
    outline_fraction: float = 0.0  # registration stage: share of real pairs whose moving outline shrinks (outline.py)
    freeze_features: bool = False  # registration stage: keep the fusion net's inputs (encoder, MFRH classifier)
    fusion_teacher: str = ""  # weights whose fusion of the aligned pair the fused image learns too ("" = none)
    teacher_weight: float = 1.0  # weight of that term (see losses.teacher_loss)
    ema_decay: float = 0.0  # > 0: validate, keep and export a moving average of the weights (see Trainer.ema)
    val_size: int = 0  # validation resolution (the net runs at image_size, resized); 0 = image_size
    init_weights: str = ""  # the weights a fine-tuning run started from ("" = random initialisation)
    init_registers: bool = True  # whether those weights register (their metadata's "registers")
    data_description: str = ""

    def __post_init__(self) -> None:
        if self.stage not in TRAINING_STAGES:
            raise InputError(f"stage must be one of {', '.join(TRAINING_STAGES)}, got {self.stage!r}")
        if self.flow_head_lr not in FLOW_HEAD_LRS:
            raise InputError(f"flow_head_lr must be one of {', '.join(FLOW_HEAD_LRS)}, got {self.flow_head_lr!r}")
        mixes = self.pretrain_steps or self.mono_fraction or self.synthetic_fraction
        if (mixes or (self.shapes_fraction and not self.fusion_teacher)) and self.stage != "registration":
            raise InputError(
                "mono-modal, random-contrast and random-shape pairs (pretrain steps, mono/synthetic/shapes "
                "fractions) are for the registration stage only: the fusion must learn from real pairs "
                "(random shapes also with a fusion teacher, which shows the fusion they should get)"
            )
        if not 0 <= self.outline_fraction <= 1:
            raise InputError(f"the outline fraction must be in [0, 1], got {self.outline_fraction:g}")
        if self.outline_fraction and self.stage != "registration":
            raise InputError("changed outlines (outline fraction) are for the registration stage only: the fusion "
                             "must learn from the images as they are")
        if self.freeze_features and self.stage != "registration":
            raise InputError("freeze_features is an option of the registration stage")
        if self.fusion_teacher and self.stage == "registration":
            raise InputError(
                "a fusion teacher is for the fusion and joint stages (the registration stage has no fusion)"
            )
        if not 0 <= self.aligned_fraction <= 1:
            raise InputError(f"the aligned fraction must be in [0, 1], got {self.aligned_fraction:g}")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"the EMA decay must be in [0, 1), got {self.ema_decay:g}")
        if self.teacher_weight < 0:
            raise InputError(f"the teacher weight must be >= 0, got {self.teacher_weight:g}")
        pair_mix(0, 0, self.mono_fraction, self.synthetic_fraction, shapes=self.shapes_fraction)  # checks the shares
        pair_mix(0, 1, 0, 0, self.pretrain_synthetic_fraction)

    @staticmethod
    def upgraded(values: dict) -> dict:
        """A config stored in a checkpoint, in today's names (older runs recorded ``freeze_registration``
        and ``level_scaled_flow_lr``)."""
        values = dict(values)
        if values.pop("freeze_registration", False):
            values["stage"] = "fusion"
        if "level_scaled_flow_lr" in values:
            values["flow_head_lr"] = "level" if values.pop("level_scaled_flow_lr") else "published"
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config stored in a checkpoint."""
        return cls(**cls.upgraded(values))

    @property
    def freezes_registration(self) -> bool:
        return self.stage == "fusion"

    @property
    def validation_size(self) -> int:
        return self.val_size or self.image_size

    def deformation(self, size: int | None = None) -> dict[str, float | int]:
        """Arguments of :func:`random_deformation` giving the published deformation at ``size``
        (default: the training size).

        Sigma, kernel and magnitude are scaled by size / 256, so the field has the same
        shape relative to the image as the published one at 256x256.
        """
        ratio = (size or self.image_size) / WORKING_SIZE
        kernel = max(3, round(101 * ratio) // 2 * 2 + 1)
        return {
            "max_translation": self.max_translation,
            "elastic_magnitude": self.deformation_scale * ratio,
            "elastic_sigma": 16.0 * ratio,
            "elastic_kernel": kernel,
        }


@dataclass
class TrainState:
    """Where a run is; with the model, optimiser and RNG states it makes a resume exact."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    mu: float = 1.0
    sums: dict[str, float] = field(default_factory=dict)  # this epoch so far (all ranks)
    count: int = 0  # batches summed in ``sums``
    elapsed_s: float = 0.0
    best_score: float = float("-inf")
    best_epoch: int = -1
    validation: dict[str, float] = field(default_factory=dict)  # latest
    validation_epoch: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)  # every validation: step, samples, figures
    train_pairs: int = 0
    val_pairs: int = 0
    hardware: list[str] = field(default_factory=list)  # every machine the run has used
    earlier_stages: list[dict] = field(default_factory=list)  # the initial weights' stages (export.stage_record)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def step_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integers (epoch, step, rank, ...)."""
    value = seed & (2**63 - 1)
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**63 - 1)
    return value


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int, dist_: Distributed) -> list[list[int]]:
    """This rank's batches of sample indices for ``epoch``; every rank gets the same number."""
    per_rank = count // dist_.world
    if per_rank == 0:
        raise InputError(f"{count} training pairs cannot be shared by {dist_.world} processes")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(step_seed(seed, epoch)))
    shard = order[dist_.rank * per_rank : (dist_.rank + 1) * per_rank].tolist()
    return [shard[i : i + batch_size] for i in range(0, per_rank, batch_size)]


def check_working_size(size: int, name: str) -> None:
    """The network's resolution: square, a multiple of the patch size, at least the minimum size."""
    if size % SIZE_MULTIPLE or size < MIN_SIZE:
        raise InputError(f"{name} must be a multiple of {SIZE_MULTIPLE} and >= {MIN_SIZE}, got {size}")


def zero_flow_heads(net: BSAFusionNet) -> None:
    """Zero the last convolution of every BSFA flow head, so a fresh network predicts no motion.

    Our choice, not the published code's (which keeps PyTorch's random initialisation and starts
    from displacements of tens of pixels): training then starts at "no registration" and improves
    on it, which matters when the training budget is short.
    """
    with torch.no_grad():
        for _, conv in net.reg_net.flow_heads():
            conv.weight.zero_()
            conv.bias.zero_()


def flow_head_groups(net: BSAFusionNet, lr: float, rule: str = "level") -> list[dict]:
    """Adam parameter groups: every BSFA flow head at its own rate by ``rule``, the rest at ``lr``.

    Our choice, not the published code's (``"published"``: one lr for all). Adam moves every weight by
    about lr per step whatever the size of its gradient, so one step of a flow head moves its output by
    about lr x its fan-in, and level i's flow enters the composed flow multiplied by 2^(5-i). ``"level"``
    divides by 2^(5-i) (the default): the level-1 head (fan-in 2,304) still moves the field by ~1 px in
    its first step, about half the error of the published deformation at 128 px. ``"matched"`` also
    divides by the fan-in relative to level 5's, so that one step moves the field alike through every
    head: no first-step jump and registration from step ~300 instead of ~600, but slower later
    (eleventh session, docs/training.md).
    """
    heads = net.reg_net.flow_heads() if rule != "published" else []
    finest_fan_in = min(conv.weight[0].numel() for _, conv in heads) if heads else 1
    factors = {}
    for level, conv in heads:
        fan_in = finest_fan_in / conv.weight[0].numel() if rule == "matched" else 1.0
        for parameter in conv.parameters():
            factors[id(parameter)] = 2.0 ** (level - LEVELS) * fan_in
    scaled: dict[float, list[nn.Parameter]] = {}
    for parameter in net.parameters():
        if parameter.requires_grad:
            scaled.setdefault(factors.get(id(parameter), 1.0), []).append(parameter)
    return [{"params": params, "lr": lr * factor} for factor, params in sorted(scaled.items())]


def _float_output(output: BSAFusionOutput) -> BSAFusionOutput:
    """The output in float32 (losses are computed outside autocast)."""
    values = {}
    for item in dataclasses.fields(output):
        value = getattr(output, item.name)
        if isinstance(value, Tensor):
            value = value.float()
        elif isinstance(value, list):
            value = [v.float() for v in value]
        values[item.name] = value
    return BSAFusionOutput(**values)


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast type: ``auto`` is bf16 on CPUs with native bf16, bf16 (else fp16) on GPUs."""
    if config.amp not in ("auto", "none", "bf16", "fp16"):
        raise InputError(f"amp must be auto, none, bf16 or fp16, got {config.amp!r}")
    if config.amp == "none":
        return None
    if device.type == "cpu":
        if config.amp == "fp16":
            raise InputError("fp16 autocast is for GPUs; on the CPU use --amp bf16 (or auto)")
        native = cpu_supports_bf16()
        if config.amp == "bf16" and not native:
            log.warning(
                "this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 autocast is emulated and runs about 10x "
                "slower than float32 here; --amp auto chooses float32 on such CPUs"
            )
        return torch.bfloat16 if config.amp == "bf16" or native else None
    if device.type != "cuda":
        return None
    if config.amp == "fp16":
        return torch.float16
    if config.amp == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size())
    return Distributed()


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def describe_hardware(device: torch.device, world: int) -> str:
    """E.g. ``2 x NVIDIA H200`` or ``CPU, 2 cores, 1 torch thread``."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    processes = f", {world} processes" if world > 1 else ""
    return f"CPU, {cores} cores, {torch.get_num_threads()} torch thread(s) per process{processes}"


_PHANTOM_PENALTY = 1e6
"""Ranks a registration that does worse than none on the built-in phantom below every one that does better."""


def _all_reduce(values: list[float], dist_: Distributed, device: torch.device, maximum: bool = False) -> list[float]:
    """``values`` summed (or their maximum) over every process, each of which must call it at the same point;
    on ``device``, which the process group's backend needs (NCCL: the GPU)."""
    if dist_.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if maximum else dist.ReduceOp.SUM)
    return tensor.tolist()


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _atomic_save(obj: object, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_weights(checkpoint: dict) -> dict[str, Tensor]:
    """The network weights a training checkpoint stands for: the moving average of a run that keeps
    one (what it validated), else the model. The discriminator is the classifier, as after every epoch."""
    if "ema" not in checkpoint:
        return checkpoint["model"]
    state = {name.removeprefix("module."): value for name, value in checkpoint["ema"].items() if name != "n_averaged"}
    classifier, discriminator = "transfer.classifier.", "transfer.modal_dis."
    state.update({discriminator + name[len(classifier):]: value
                  for name, value in state.items() if name.startswith(classifier)})
    return state


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint written by :class:`Trainer`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(f"cannot read the training checkpoint {path}: {error}") from error


class Trainer:
    """Trains one :class:`BSAFusionNet` on aligned pairs; see :meth:`run`."""

    def __init__(
        self,
        config: TrainConfig,
        train_samples: list[PairSample],
        val_samples: list[PairSample],
        *,
        device: torch.device | str | None = None,
        initial_state: dict[str, Tensor] | None = None,
    ) -> None:
        check_working_size(config.image_size, "image_size")
        if config.batch_size < 1 or config.epochs < 1:
            raise InputError("batch_size and epochs must be positive")
        if not train_samples:
            raise InputError("no training pairs")
        self.config = config
        self.train_samples = train_samples
        self.dist = _setup_distributed()
        self.device = torch.device(device) if device is not None else _default_device()
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(config.seed)
        self.net = BSAFusionNet().to(self.device)
        if initial_state is not None:
            self.net.load_state_dict(initial_state)
        elif config.zero_flow_init:
            zero_flow_heads(self.net)
        self.net.reload_discriminator()
        # oneDNN's convolutions (forward and backward) run faster channels-last on the CPU (docs/BENCHMARKS.md).
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        for module in self._frozen_modules():
            module.requires_grad_(False)
        # Our choice, not the published code's: with the published routing the fusion loss pushes the
        # displacements to tens of pixels through the flow the fusion branch warps with (docs/training.md).
        self.net.detach_fusion_flow = not config.fusion_steers_registration
        self.model: nn.Module = self.net
        if self.dist.world > 1:
            # The checkpoint's unused LayerNorms get no gradient.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids, find_unused_parameters=True)
        torch.manual_seed(step_seed(config.seed, self.dist.rank))  # dropout differs between ranks

        self.steps_per_epoch = len(epoch_batches(len(train_samples), config.batch_size, 0, 0, self.dist))
        self.total_steps = self.steps_per_epoch * config.epochs
        groups = flow_head_groups(self.net, config.lr, config.flow_head_lr)
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.total_steps, eta_min=config.lr_min
        )
        # The exponential moving average of the weights: what is validated, kept as best and exported. Our
        # choice, not the published code's: the held-out EPE of single iterates swings by ~0.2 px between
        # validations (docs/training.md).
        self.ema = (AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                    if config.ema_decay else None)
        self.amp_dtype = _amp_dtype(config, self.device)
        self.teacher = self._load_teacher() if config.fusion_teacher else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState(train_pairs=len(train_samples), val_pairs=len(val_samples))
        self.validation: ValidationSet | None = None
        self.phantom: ValidationSet | None = None
        if val_samples and self.dist.main:
            size = val_samples[0].fixed.shape[-1]
            self.validation = make_validation_set(val_samples, config.deformation(size), VALIDATION_SEED)
            self.phantom = make_phantom_set(config.modality.split(","), size)
        self._writer = self._tensorboard() if self.dist.main else None

    def _load_teacher(self) -> nn.Module:
        """The fusion teacher's inference engine, frozen (its file checked as every model file is)."""
        from ..model import load_model

        teacher = load_model(self.config.fusion_teacher, device=self.device)
        if teacher.modality not in (None, self.config.modality):
            raise InputError(
                f"the fusion teacher {self.config.fusion_teacher} fuses {teacher.modality}-MRI, this run trains "
                f"{self.config.modality}-MRI"
            )
        return teacher.fusion_engine.requires_grad_(False).eval()

    def _frozen_modules(self) -> list[nn.Module]:
        """What the stage keeps as it starts (in eval mode while training, see :meth:`_set_modes`).

        Registration: the fusion net, which is not run; with ``freeze_features`` also everything the
        fusion net reads (the encoder and the MFRH classifier), so that the fusion of the initial
        weights stays valid while Transfer and BSFA learn to register. Fusion: the whole registration
        path (the encoder, MFRH classifier, Transfer and BSFA), so that the registration it starts
        with is exactly what the weights keep.
        """
        net = self.net
        if self.config.stage == "registration":
            if self.config.freeze_features:
                return [net.fusion_net, net.encoder, net.transfer.classifier]
            return [net.fusion_net]
        if self.config.stage == "fusion":
            return [net.encoder, net.transfer, net.reg_net]
        return []

    def _set_modes(self) -> None:
        self.model.train()
        for module in self._frozen_modules():
            module.eval()

    # ----------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "state": dataclasses.asdict(self.state),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self._gather_rng(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def _gather_rng(self) -> list[dict[str, Tensor]]:
        state = _rng_state(self.device)
        if self.dist.world == 1:
            return [state]
        states: list = [None] * self.dist.world
        dist.all_gather_object(states, state)
        return states

    def save(self, *, best: bool = False) -> None:
        """Write ``last.pt`` (and ``best.pt``); every rank must call it (RNG states are gathered)."""
        checkpoint = self.checkpoint()
        if self.dist.main:
            log.info("step %d: checkpoint %s", self.state.global_step, self.run_dir / LAST_CHECKPOINT)
            _atomic_save(checkpoint, self.run_dir / LAST_CHECKPOINT)
            if best:
                _atomic_save(checkpoint, self.run_dir / BEST_CHECKPOINT)

    def close(self) -> None:
        """Leave the process group of a distributed run."""
        if dist.is_initialized():
            dist.destroy_process_group()

    def resume(self, path: Path | None = None) -> None:
        """Continue from a checkpoint (default: ``last.pt`` of the run folder)."""
        checkpoint = load_checkpoint(path or self.run_dir / LAST_CHECKPOINT)
        saved = TrainConfig.from_dict(checkpoint["config"])
        for name in ("image_size", "batch_size", "epochs", "seed", "modality"):
            if getattr(saved, name) != getattr(self.config, name):
                raise InputError(
                    f"cannot resume: the checkpoint was made with {name}={getattr(saved, name)!r}, "
                    f"this run has {getattr(self.config, name)!r}"
                )
        self.net.load_state_dict(checkpoint["model"])
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState(**checkpoint["state"])
        rng = checkpoint["rng"]
        _set_rng_state(rng[self.dist.rank] if len(rng) == self.dist.world else rng[0], self.device)
        log.info("resumed at epoch %d, step %d", self.state.epoch, self.state.global_step)

    # ----------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(
        self, fixed: Tensor, label: Tensor, generator: torch.Generator, real: Tensor | None = None,
        real_fixed: Tensor | None = None,
    ) -> dict[str, float]:
        """One optimiser step on a batch: deform the label, run the network, apply the stage's losses.

        ``real`` / ``real_fixed`` (N,) bool mark the pairs whose label is the real moving modality /
        whose fixed image is a real MRI (default: all).
        """
        config = self.config
        fixed, label = fixed.to(self.device), label.to(self.device)
        moving, displacement = random_deformation(label, generator=generator, **config.deformation())
        if config.aligned_fraction:
            moving, displacement = undeform_some(label, moving, displacement, config.aligned_fraction, generator)
        true_flow = invert_displacement(displacement) if config.flow_supervision else None
        registration_only = config.stage == "registration"
        self._set_modes()
        layout = self.memory_format
        with self._autocast():
            output = self.model(fixed.contiguous(memory_format=layout), moving.contiguous(memory_format=layout),
                                with_fusion=not registration_only)
        output = _float_output(output)
        if registration_only:
            terms = registration_stage_loss(
                output, label, true_flow=true_flow, flow_supervision=config.flow_supervision, real_moving=real,
                real_fixed=real_fixed,
            )
        else:
            terms = bsafusion_loss(
                output, fixed, label, self.state.mu,
                fusion_steers_registration=config.fusion_steers_registration,
                true_flow=true_flow, flow_supervision=config.flow_supervision,
            )
        if self.teacher is not None:
            with torch.no_grad(), self._autocast():
                target = self.teacher.fuse_aligned(fixed, label)
            terms.teacher = teacher_loss(output.fused, target.float())
            terms.total = terms.total + config.teacher_weight * terms.teacher
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        return terms.as_floats()

    def _step_generators(self, epoch: int, step: int) -> tuple[torch.Generator, torch.Generator]:
        seed = step_seed(self.config.seed, epoch, step, self.dist.rank)
        augment = torch.Generator().manual_seed(seed)
        deform = torch.Generator(device=self.device).manual_seed(seed + 1)
        return augment, deform

    def _batch(self, indices: list[int], augment: torch.Generator) -> MixedBatch:
        """The augmented pairs of a step, mixed as the curriculum says."""
        config = self.config
        fixed, label = make_batch(self.train_samples, indices, augment)
        mix = pair_mix(self.state.global_step, config.pretrain_steps, config.mono_fraction, config.synthetic_fraction,
                       config.pretrain_synthetic_fraction, config.shapes_fraction)
        batch = mix_pairs(fixed, label, mix, augment)
        if config.outline_fraction:
            batch = batch._replace(label=reshape_outlines(batch.label, config.outline_fraction, augment,
                                                          eligible=batch.real_moving))
        return batch

    def run(
        self,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        time_limit_s: float | None = None,
    ) -> TrainState:
        """Train to the last epoch (or ``max_steps``); returns the final state.

        With ``time_limit_s``, stop with a checkpoint at the first step that ends later than that
        many seconds after the start (see :attr:`finished`).
        """
        config, state = self.config, self.state
        deadline = time.perf_counter() + time_limit_s if time_limit_s else None
        hardware = describe_hardware(self.device, self.dist.world)
        if hardware not in state.hardware:
            state.hardware.append(hardware)
        while state.epoch < config.epochs:
            batches = epoch_batches(len(self.train_samples), config.batch_size, config.seed, state.epoch, self.dist)
            bar = tqdm(
                total=len(batches), initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                disable=None if self.dist.main else True, leave=False,
            )
            started = epoch_started = time.perf_counter()
            samples_done = 0
            for step in range(state.step_in_epoch, len(batches)):
                check_cancel(cancel)
                augment, deform = self._step_generators(state.epoch, step)
                batch = self._batch(batches[step], augment)
                figures = self.train_step(batch.fixed, batch.label, deform, batch.real_moving, batch.real_fixed)
                samples_done += len(batches[step])
                for name, value in figures.items():
                    state.sums[name] = state.sums.get(name, 0.0) + value
                state.count += 1
                state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{figures['total']:.4f}")
                report(progress, state.global_step / self.total_steps, f"epoch {state.epoch + 1}")
                stop = 0 < config.max_steps <= state.global_step
                out_of_time = deadline is not None and self._any_process(time.perf_counter() > deadline)
                if out_of_time:
                    log.info("time limit reached at step %d: validating, then stopping with a checkpoint",
                             state.global_step)
                    stop = True
                if stop or (config.checkpoint_every and state.global_step % config.checkpoint_every == 0):
                    state.elapsed_s += time.perf_counter() - started
                    started = time.perf_counter()
                    samples_per_s = self._samples_per_s(samples_done, epoch_started)  # before validating, as _end_epoch
                    validated = out_of_time and self.validation is not None
                    best = validated and self._validate()
                    if out_of_time:  # the part epoch's row; the whole epoch's replaces it on resume
                        means = self._epoch_means()
                        if self.dist.main:
                            self._log(self._row(samples_per_s, means, state.epoch + 1, validated))
                    self.save(best=best)
                if stop:
                    bar.close()
                    return state
            bar.close()
            state.elapsed_s += time.perf_counter() - started
            self._end_epoch(self._samples_per_s(samples_done, epoch_started))
        return state

    def _samples_per_s(self, samples: int, since: float) -> float:
        """Training speed of this epoch so far (``samples`` per process since ``since``), every process together;
        NaN (not measured) when this process trained none of it, as for an epoch resumed at its last step."""
        if samples == 0:
            return float("nan")
        return samples * self.dist.world / max(time.perf_counter() - since, 1e-9)

    @property
    def validated_net(self) -> BSAFusionNet:
        """The weights the run validates and exports: the moving average when it keeps one."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def finished(self) -> bool:
        """Whether the run has done every planned epoch."""
        return self.state.epoch >= self.config.epochs

    def _any_process(self, flag: bool) -> bool:
        """Whether ``flag`` holds in any process, so that all stop at the same step."""
        return bool(_all_reduce([float(flag)], self.dist, self.device, maximum=True)[0])

    def _epoch_means(self) -> dict[str, float]:
        """The loss means of the epoch so far over every process (each must call it)."""
        names = sorted(self.state.sums)
        totals = _all_reduce([self.state.sums[n] for n in names] + [float(self.state.count)], self.dist, self.device)
        return {n: t / max(totals[-1], 1.0) for n, t in zip(names, totals[:-1], strict=True)}

    def _end_epoch(self, samples_per_s: float) -> None:
        """Adapt mu, reload the discriminator, validate, log and checkpoint."""
        config, state = self.config, self.state
        means = self._epoch_means()
        if config.stage != "registration":  # no fusion, no mu to adapt
            state.mu = means["ssim_fused_warped"] / max(means["ssim_fused_fixed"], 1e-12)
        self.net.reload_discriminator()
        state.epoch += 1
        state.step_in_epoch, state.sums, state.count = 0, {}, 0
        due = config.val_every and (state.epoch % config.val_every == 0 or state.epoch == config.epochs)
        validated = bool(due) and self.validation is not None
        improved = validated and self._validate()
        if self.dist.main:
            self._log(self._row(samples_per_s, means, state.epoch, validated))
        self.save(best=improved)

    def _row(self, samples_per_s: float, means: dict[str, float], epoch: int, validated: bool) -> dict[str, float]:
        """A row of ``log.csv``: ``epoch`` (the one under way when a time limit stops it mid-way), the loss
        means and, when ``validated``, the figures of the validation just made."""
        state = self.state
        row: dict[str, float] = {
            "epoch": epoch, "step": state.global_step, "lr": self.scheduler.get_last_lr()[0],
            "mu": state.mu, "samples_per_s": samples_per_s, "elapsed_s": state.elapsed_s,
        }
        row.update({f"loss_{n}": v for n, v in means.items()})
        if validated:
            row.update({f"val_{n}": v for n, v in state.validation.items()})
        return row

    def _validate(self) -> bool:
        """Validate now (main process, when there is a validation set); whether it is the best so far."""
        config, state = self.config, self.state
        if self.validation is None:
            return False
        state.validation = validate(
            self.validated_net, self.validation, self.device, config.batch_size, self._autocast(),
            working_size=config.image_size, with_fusion=config.stage != "registration",
        )
        if self.phantom is not None:
            state.validation.update(phantom_figures(self.validated_net, self.phantom, self.device, config.batch_size,
                                                    self._autocast(), working_size=config.image_size))
        state.validation_epoch = state.epoch
        samples = state.global_step * config.batch_size * self.dist.world
        state.curve.append({"epoch": state.epoch, "step": state.global_step, "samples": samples, **state.validation})
        log.info("step %d: validation %s", state.global_step,
                 ", ".join(f"{k} {v:.4f}" for k, v in state.validation.items() if not k.endswith("_average")))
        if config.stage == "registration":  # the figure the stage optimises, where the phantom is registered
            score = -state.validation["epe"] - (0.0 if registers_the_phantom(state.validation) else _PHANTOM_PENALTY)
        elif config.freezes_registration:  # the registration figures cannot change: keep the latest
            score = float(state.global_step)
        else:
            score = state.validation["ssim"] + state.validation["ncc"]
        if score <= state.best_score:
            return False
        state.best_score, state.best_epoch = score, state.epoch
        return True

    # ----------------------------------------------------------------- logs
    def _log(self, row: dict[str, float]) -> None:
        log.info("epoch %d: loss %.4f, mu %.3f, %.2f samples/s", row["epoch"], row["loss_total"], row["mu"],
                 row["samples_per_s"])
        path = self.run_dir / LOG_CSV
        rows = []
        if path.is_file():  # keep what precedes this epoch (a resumed run may repeat later ones)
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) < row["epoch"]]
        rows.append(row)
        columns = list(dict.fromkeys(key for r in rows for key in r))
        with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    self._writer.add_scalar(key, value, row["epoch"])
            self._writer.flush()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed: logging to %s only", LOG_CSV)
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))
