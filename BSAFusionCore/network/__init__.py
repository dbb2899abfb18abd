"""The published BSAFusion architecture (see ``shared/reference/NETWORK_SPEC.md``)."""

from .bsafusion import CHECKPOINT_PARTS, BSAFusionNet, BSAFusionOutput, check_network_input
from .warp import feature_warp, resize_flow, resize_image, warp_image

__all__ = [
    "CHECKPOINT_PARTS",
    "BSAFusionNet",
    "BSAFusionOutput",
    "check_network_input",
    "feature_warp",
    "resize_flow",
    "resize_image",
    "warp_image",
]
