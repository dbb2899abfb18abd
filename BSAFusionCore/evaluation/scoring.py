"""Metrics of one method on one case, under both references of the fusion metrics."""

from __future__ import annotations

import numpy as np

from ..metrics import FUSION_METRICS, fusion_metrics, registration_metrics
from .methods import MethodOutput, luminance
from .testset import EvalCase

LABEL_SUFFIX = "label"
"""Fusion metrics with A = the aligned label: the honest reference for unaligned inputs."""
WARPED_SUFFIX = "warped"
"""Fusion metrics with A = the method's own warped image, as in the paper's protocol."""


def fusion_columns() -> list[str]:
    """Column names of the fusion metrics, e.g. ``Qabf_label`` and ``Qabf_warped``."""
    return [f"{name}_{suffix}" for suffix in (LABEL_SUFFIX, WARPED_SUFFIX) for name in FUSION_METRICS]


def _unit(image: np.ndarray) -> np.ndarray:
    return np.clip(luminance(image).astype(np.float64), 0.0, 1.0)


def score(case: EvalCase, output: MethodOutput) -> dict[str, float]:
    """Fusion metrics (colour on Y) against the label and against the warped image, registration
    accuracy of the warped image and displacement, and the seconds taken."""
    fixed, fused = _unit(case.fixed), _unit(output.fused)
    label, warped = _unit(case.label), _unit(output.warped)
    row: dict[str, float] = {}
    for suffix, reference in ((LABEL_SUFFIX, label), (WARPED_SUFFIX, warped)):
        row.update({f"{name}_{suffix}": value for name, value in fusion_metrics(reference, fixed, fused).items()})
    row.update(registration_metrics(warped, label, output.displacement, case.truth))
    row["Seconds"] = output.seconds
    return row
