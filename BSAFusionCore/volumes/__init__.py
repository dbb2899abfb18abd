"""BSAFusion on 3-D volumes: geometry, IO, pre-alignment and the slice-wise pipeline."""

from .pipeline import VolumeFusionResult, fuse_volumes

__all__ = ["VolumeFusionResult", "fuse_volumes"]
