"""Model files: our safetensors format, and the authors' ``.pkl`` checkpoints.

Nothing here executes code from a file: safetensors holds raw tensors, and the authors'
checkpoints are read with ``torch.load(weights_only=True)``. Every file is checked before use
(format, version, every expected tensor with its shape, finite values, the recorded sha256).

A file may also hold ``fusion_features.*``: an encoder and token classifier of the fusion pass's own
(:data:`FUSION_FEATURES`). Such weights register with the network's encoder, Transfer and BSFA net, then
fuse the registered pair with the file's fusion net reading those features: the two passes of
:func:`~BSAFusionCore.inference.fuse_batch` were trained apart (registration and fusion want different
encoders; docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import WeightsError
from .files import atomic_output
from .model_info import METADATA_KEY
from .network import CHECKPOINT_PARTS, BSAFusionNet
from .options import MODALITIES

log = logging.getLogger(__name__)

FORMAT = "bsafusion-weights"
FORMAT_VERSION = 1
FUSION_FEATURES = "fusion_features."
"""Key prefix of the fusion pass's own encoder and token classifier (:data:`FUSION_FEATURE_PARTS`)."""
FUSION_FEATURE_PARTS = ("encoder.", "transfer.classifier.")


class LoadedNetwork(NamedTuple):
    """A weights file's network, metadata, and the fusion pass's network where the file has its own
    features for it (else None: the network fuses too)."""

    net: BSAFusionNet
    metadata: dict[str, Any]
    fusion_net: BSAFusionNet | None


def tensors_sha256(state: dict[str, Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_weights(path: str | Path, net: BSAFusionNet, metadata: dict[str, Any] | None = None,
                 dtype: torch.dtype = torch.float16, fusion_net: BSAFusionNet | None = None) -> dict[str, Any]:
    """Write ``net`` as safetensors with our metadata in its header; returns that metadata.

    ``fusion_net``: the network of the fusion pass, when it is another than ``net``: its fusion net
    replaces ``net``'s in the file and its encoder and classifier are stored as ``fusion_features.*``.
    """
    path = Path(path)
    state = net.state_dict()
    if fusion_net is not None:
        fusion_state = fusion_net.state_dict()
        state = {**state, **{name: t for name, t in fusion_state.items() if name.startswith("fusion_net.")},
                 **{FUSION_FEATURES + name: t for name, t in fusion_state.items()
                    if name.startswith(FUSION_FEATURE_PARTS)}}
    state = {name: t.detach().to("cpu", dtype).contiguous() for name, t in state.items()}
    meta = {**(metadata or {}), "format": FORMAT, "format_version": FORMAT_VERSION,
            "dtype": str(dtype).removeprefix("torch."), "sha256": tensors_sha256(state)}
    modality = meta.get("modality")
    if modality is not None and modality not in MODALITIES:
        raise WeightsError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return meta


def _expected_shapes() -> dict[str, torch.Size]:
    return {name: t.shape for name, t in BSAFusionNet().state_dict().items()}


def check_state(state: dict[str, Tensor], source: str | Path) -> None:
    """Every tensor of the network present with its shape, nothing extra, all finite; the fusion pass's
    own features (``fusion_features.*``) either complete or absent."""
    expected = _expected_shapes()
    if any(name.startswith(FUSION_FEATURES) for name in state):
        expected.update({FUSION_FEATURES + name: shape for name, shape in expected.items()
                         if name.startswith(FUSION_FEATURE_PARTS)})
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{source} does not hold BSAFusion weights: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
        )
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise WeightsError(f"{source}: {name} has shape {tuple(state[name].shape)}, expected {tuple(shape)}")
        if not torch.isfinite(state[name]).all():
            raise WeightsError(f"{source}: {name} holds NaN or infinite values")


def _file_kind(path: Path) -> str:
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; give a weights file in it (.safetensors, or the authors' .pkl)")
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes): it was not written completely; copy it again")
    with path.open("rb") as f:
        head = f.read(9)
    # safetensors: a little-endian u64 header length, then the JSON header. Checked first: the
    # length's first byte may well be 0x80, which also starts a pickle.
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    raise WeightsError(f"{path} is neither a safetensors file nor a PyTorch checkpoint")


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read and check our safetensors weights: (state dict, metadata)."""
    path = Path(path)
    if _file_kind(path) != "safetensors":
        raise WeightsError(f"{path} is not a safetensors file")
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is corrupt or truncated: {error}") from error
    if METADATA_KEY not in header:
        raise WeightsError(f"{path} is a safetensors file without BSAFusion metadata")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: its BSAFusion metadata is not valid JSON") from error
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path}: format {meta.get('format')!r} version {meta.get('format_version')!r} is not "
            f"{FORMAT!r} version {FORMAT_VERSION}"
        )
    if tensors_sha256(state) != meta.get("sha256"):
        raise WeightsError(f"{path}: the tensors do not match the sha256 recorded in the file (corrupt?)")
    check_state(state, path)
    return state, meta


def read_reference_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read an authors' checkpoint (four state dicts) as one flat state dict of our network."""
    path = Path(path)
    if _file_kind(path) != "torch":
        raise WeightsError(f"{path} is not a PyTorch checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad or unsafe pickles
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            # Never pass on torch's advice to load with weights_only=False: that would run the file's code.
            raise WeightsError(
                f"{path} was refused: besides tensors it holds executable Python objects, which are never loaded "
                "(a BSAFusion checkpoint holds only tensors). Ask its provider for a plain state dict or .safetensors"
            ) from None
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {error}") from error
    if not isinstance(checkpoint, dict) or not set(CHECKPOINT_PARTS) <= set(checkpoint):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise WeightsError(
            f"{path} is not a BSAFusion checkpoint: expected the keys {sorted(CHECKPOINT_PARTS)}, found {keys}"
        )
    state = {name: tensor.float() for name, tensor in BSAFusionNet.state_from_reference(checkpoint).items()}
    check_state(state, path)
    return state


def load_network(path: str | Path) -> LoadedNetwork:
    """Float32 networks in eval mode from our weights or an authors' checkpoint (see :class:`LoadedNetwork`)."""
    path = Path(path)
    if _file_kind(path) == "torch":
        state = read_reference_checkpoint(path)
        meta: dict[str, Any] = {"source": "authors-checkpoint", "file": path.name, "image_size": 256}
    else:
        state, meta = read_weights(path)
    state = {name: t.float() for name, t in state.items()}
    features = {name.removeprefix(FUSION_FEATURES): state.pop(name) for name in list(state)
                if name.startswith(FUSION_FEATURES)}
    net = BSAFusionNet()
    net.load_state_dict(state, strict=True)
    fusion_net = None
    if features:
        fusion_net = BSAFusionNet()
        fusion_net.load_state_dict({**state, **features}, strict=True)
        fusion_net.eval()
    return LoadedNetwork(net.eval(), meta, fusion_net)


def import_reference(source: str | Path, destination: str | Path, *, modality: str | None = None,
                     dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Convert an authors' ``.pkl`` checkpoint to our safetensors format."""
    net = BSAFusionNet()
    net.load_state_dict(read_reference_checkpoint(source), strict=True)
    meta = {"modality": modality, "image_size": 256,
            "training": {"source": f"imported from the authors' checkpoint {Path(source).name}"}}
    return save_weights(destination, net, meta, dtype=dtype)
