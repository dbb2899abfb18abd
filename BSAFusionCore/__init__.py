"""BSAFusionCore: single-stage registration and fusion of unaligned MRI + CT/PET/SPECT (BSAFusion, AAAI 2025).

The 2D API::

    import BSAFusionCore as bf
    model = bf.load_model("CT")                 # or a .safetensors / authors' .pkl path
    result = bf.fuse_images(mri, ct, model)      # numpy arrays in [0, 1]
    result.fused, result.warped, result.displacement
"""

from .errors import BSAFusionError, Cancelled, InputError, WeightsError
from .inference import (
    BatchFusion,
    FusionModel,
    FusionResult,
    fuse_batch,
    fuse_images,
    load_model,
    model_from_network,
    resolve_device,
)

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
