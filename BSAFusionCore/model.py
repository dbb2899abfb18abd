"""Models: loading weights (ours, the authors', bundled), the device, the precision, a cache.
Running them is :mod:`BSAFusionCore.inference`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .allocator import retain_freed_memory
from .errors import InputError, WeightsError
from .network import BSAFusionNet
from .network.folded import fold_for_inference
from .options import MIN_SIZE, MODALITIES, SIZE_MULTIPLE, WORKING_SIZE
from .resources import bundled_weights
from .weights import load_network

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FusionModel:
    """A loaded network on a device, ready for :func:`fuse_batch`; ``fusion_net``: the fusion pass's own
    network, for weights whose registration and fusion were trained apart (see :mod:`.weights`)."""

    net: BSAFusionNet
    device: torch.device
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    precision: str = "auto"
    fusion_net: BSAFusionNet | None = None
    engine: BSAFusionNet = field(init=False, repr=False)
    fusion_engine: BSAFusionNet = field(init=False, repr=False)
    """What fuses a registered pair: the inference form of ``fusion_net``, else the engine itself."""

    def __post_init__(self) -> None:
        if self.precision not in (*PRECISIONS, "auto"):
            raise InputError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for key in ("image_size", "registration_size"):
            size = self.metadata.get(key)
            if size is not None and (not isinstance(size, int) or size % SIZE_MULTIPLE or size < MIN_SIZE):
                raise WeightsError(f"{self.source or 'the weights'}: {key} {size!r} in the metadata is not a "
                                   f"working size (a multiple of {SIZE_MULTIPLE}, >= {MIN_SIZE}); the file is damaged")
        if self.device.type == "cpu":
            retain_freed_memory()
        self.net = self.net.to(self.device).eval()
        self.engine = fold_for_inference(self.net).to(self.device)
        self.fusion_engine = self.engine
        if self.fusion_net is not None:
            self.fusion_net = self.fusion_net.to(self.device).eval()
            self.fusion_engine = fold_for_inference(self.fusion_net).to(self.device)
        if self.precision == "auto":
            self.precision = "fp32"
            if self.device.type == "cuda" and mixed_precision_agrees(self, "bf16"):
                self.precision = "bf16"

    @property
    def modality(self) -> str | None:
        return self.metadata.get("modality")

    @property
    def registers(self) -> bool:
        """False for weights whose registration net was never trained (their displacement is zero)."""
        return self.metadata.get("registers", True) is not False

    @property
    def image_size(self) -> int:
        """The working resolution: the network fuses at ``image_size`` x ``image_size``."""
        return int(self.metadata.get("image_size") or WORKING_SIZE)

    @property
    def registration_size(self) -> int:
        """The resolution the displacement is predicted at: ``image_size`` unless the weights record
        another (ours trained registration at 128 px and fuse best at 256 px; see :func:`fuse_batch`)."""
        return int(self.metadata.get("registration_size") or self.image_size)

    @property
    def two_passes(self) -> bool:
        """Whether :func:`fuse_batch` registers, then fuses the registered pair in a second pass: weights
        that register at another size than they fuse at, or whose fusion pass has its own network."""
        return self.registration_size != self.image_size or self.fusion_net is not None

    @property
    def network_batch(self) -> int:
        """Slices per network call: one on the CPU, where larger batches are slower per slice
        (memory-bound; see docs/BENCHMARKS.md); everything at once on a GPU."""
        return 1 if self.device.type == "cpu" else 1 << 30

    def autocast(self) -> torch.autocast:
        """Mixed precision for the network, per ``precision`` (fp32 disables it)."""
        return autocast_for(self.device, self.precision)


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to ``precision`` ("fp32" disables it) on ``device``."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def mixed_precision_agrees(model: FusionModel, precision: str, *, fused_tolerance: float = 0.02,
                           displacement_tolerance: float = 0.25) -> bool:
    """Whether ``precision`` reproduces float32 on a probe pair (the built-in example), the fusion at
    ``image_size`` and the displacement at ``registration_size``, as :func:`~.inference.fuse_batch` runs them.

    Agreement: fused within ``fused_tolerance`` and displacement within ``displacement_tolerance``
    pixels, both as the 99th percentile of the absolute difference.
    """
    from .examples import example_pair

    def pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        mri, ct, _ = example_pair(size)
        return torch.from_numpy(mri)[None, None].to(model.device), torch.from_numpy(ct)[None, None].to(model.device)

    one_pass = not model.two_passes
    flow_pair = pair(model.registration_size)
    fuse_pair = flow_pair if one_pass else pair(model.image_size)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        """(fused, flow): one engine call when the sizes agree."""
        out = model.engine(*flow_pair, with_discriminator=False, with_fusion=one_pass)
        fused = out.fused if one_pass else model.fusion_engine.fuse_aligned(*fuse_pair)
        return fused.float(), out.flow.float()

    with torch.inference_mode():
        exact = run()
        with autocast_for(model.device, precision):
            mixed = run()
    fused_error = torch.quantile((exact[0] - mixed[0]).abs().flatten(), 0.99).item()
    flow_error = torch.quantile((exact[1] - mixed[1]).abs().flatten(), 0.99).item()
    agrees = fused_error <= fused_tolerance and flow_error <= displacement_tolerance
    log.info("%s vs fp32 on the probe pair: fused %.4f, displacement %.3f px (99th percentiles): %s",
             precision, fused_error, flow_error, "using it" if agrees else "staying with fp32")
    return agrees


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def _mps_works() -> bool:
    try:
        return bool(torch.backends.mps.is_available()) and bool(torch.ones(1, device="mps").add(1).item() == 2)
    except Exception:  # a broken MPS runtime raises many kinds of errors
        return False


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": CUDA when available, else MPS when it works, else the CPU.

    An unknown or unavailable device raises :class:`InputError` naming the choices.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_works() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use {DEVICE_CHOICES}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} was asked for but no CUDA GPU is available; use cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif resolved.type == "mps":
        if not _mps_works():
            raise InputError(f"device {device!r} was asked for but MPS (Apple GPU) is not available; use cpu or auto")
    elif resolved.type != "cpu":
        raise InputError(f"device {device!r} is not supported: use {DEVICE_CHOICES}")
    return resolved


_cache: dict[tuple[str, float, str, str], FusionModel] = {}
_cache_lock = threading.Lock()


def load_model(source: str | Path, device: str | torch.device | None = None,
               precision: str = "auto") -> FusionModel:
    """Load weights: our ``.safetensors``, an authors' ``.pkl``, or a bundled "CT"/"PET"/"SPECT".

    ``precision``: "fp32", "bf16" or "fp16" autocast, or "auto": bf16 on CUDA when it reproduces fp32
    on a probe pair (:func:`mixed_precision_agrees`), else fp32.
    Models are cached per (file, modification time, device, precision), so repeated calls are instant.
    """
    path = weights_path(source)
    target = resolve_device(device)
    key = (str(path.resolve()), path.stat().st_mtime, str(target), precision)
    with _cache_lock:
        if key not in _cache:
            net, meta, fusion_net = load_network(path)
            _cache[key] = FusionModel(net, target, meta, source=str(path), precision=precision,
                                      fusion_net=fusion_net)
            log.info("loaded %s on %s", path, target)
            if not _cache[key].registers:
                log.warning("%s: the registration of these weights was not trained (zero displacement); they "
                            "fuse images that are already aligned (see their model card)", path.name)
        return _cache[key]


def weights_path(source: str | Path) -> Path:
    """The file of a bundled name ("CT", "PET", "SPECT") or a path; raises :class:`WeightsError` naming the
    choices when it is neither."""
    if isinstance(source, str) and source.upper() in MODALITIES and not Path(source).exists():
        return bundled_weights(source)
    path = Path(source)
    if path.exists():
        return path
    looks_like_a_name = isinstance(source, str) and not path.suffix and len(path.parts) == 1
    if looks_like_a_name:
        raise WeightsError(
            f"{source!r} is neither a bundled model ({', '.join(MODALITIES)}) nor an existing file; "
            "give one of those names or the path of a weights file (.safetensors, or the authors' .pkl)"
        )
    raise WeightsError(f"weights file {path} does not exist")


def as_model(model: FusionModel | str | Path, device: str | torch.device | None = None) -> FusionModel:
    """A loaded model as it is; a bundled name or a path loaded with :func:`load_model`."""
    if isinstance(model, FusionModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, device=device)
    raise InputError(
        f"model must be a FusionModel, a bundled name ({', '.join(MODALITIES)}) or a weights path, "
        f"got {type(model).__name__}"
    )


def model_source(modality: str | None, weights: str | Path | None) -> str:
    """What to give :func:`load_model`: the weights file when given, else the bundled model of ``modality``."""
    if weights:
        return str(weights)
    if modality is None or modality.upper() not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return modality.upper()


def check_model_modality(model: FusionModel, given: str | None) -> None:
    """Refuse weights made for another modality than the one the user named (``given``; None: any)."""
    if given and model.modality and given.upper() != model.modality.upper():
        raise InputError(
            f"the weights {model.source} are for {model.modality}-MRI but the modality given is {given.upper()}: "
            f"give weights for {given.upper()}, or leave the modality out to use these"
        )


def model_from_network(net: BSAFusionNet, device: str | torch.device | None = None,
                       metadata: dict[str, Any] | None = None, precision: str = "auto") -> FusionModel:
    """Wrap an in-memory network (e.g. during training) for :func:`fuse_batch`."""
    return FusionModel(net, resolve_device(device), dict(metadata or {}), source="<in memory>", precision=precision)
