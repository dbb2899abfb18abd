"""Fusion quality (the paper's five metrics) and registration accuracy."""

from .fusion import FUSION_METRICS, HIGHER_IS_BETTER, fusion_metrics, qabf, qcv, qs, qssim, qvif
from .registration import (
    endpoint_error,
    folding_fraction,
    jacobian_determinant,
    registration_metrics,
    similarity_metrics,
)

__all__ = [
    "FUSION_METRICS",
    "HIGHER_IS_BETTER",
    "endpoint_error",
    "folding_fraction",
    "fusion_metrics",
    "jacobian_determinant",
    "qabf",
    "qcv",
    "qs",
    "qssim",
    "qvif",
    "registration_metrics",
    "similarity_metrics",
]
