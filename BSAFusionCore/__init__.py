"""BSAFusionCore: single-stage registration and fusion of unaligned MRI + CT/PET/SPECT (BSAFusion, AAAI 2025).

The 2D API::

    import BSAFusionCore as bf
    model = bf.load_model("CT")                 # or a .safetensors / authors' .pkl path
    result = bf.fuse_images(mri, ct, model)      # numpy arrays in [0, 1]
    result.fused, result.warped, result.displacement

The inference API is imported on first use, so that ``BSAFusionCore.errors`` and
``BSAFusionCore.progress`` load without torch (the Slicer module imports them at start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import BSAFusionError, Cancelled, InputError, WeightsError

if TYPE_CHECKING:
    from .inference import BatchFusion, FusionResult, fuse_batch, fuse_images
    from .model import FusionModel, load_model, model_from_network, resolve_device

__version__ = "0.1.0"

__all__ = [
    "BSAFusionError",
    "BatchFusion",
    "Cancelled",
    "FusionModel",
    "FusionResult",
    "InputError",
    "WeightsError",
    "__version__",
    "fuse_batch",
    "fuse_images",
    "load_model",
    "model_from_network",
    "resolve_device",
]
_LAZY = {"BatchFusion": ".inference", "FusionResult": ".inference", "fuse_batch": ".inference",
         "fuse_images": ".inference", "FusionModel": ".model", "load_model": ".model",
         "model_from_network": ".model", "resolve_device": ".model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
