"""Scoring one method's output on one case, colour included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from BSAFusionCore.color import rgb_to_ycbcr
from BSAFusionCore.evaluation import EvalCase, MethodOutput
from BSAFusionCore.evaluation.scoring import fusion_columns, score
from BSAFusionCore.metrics import fusion_metrics


def _y(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_ycbcr(torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None])[0, 0].double().numpy()


def test_colour_is_scored_on_y_against_both_references(make_phantom):
    fixed = make_phantom(1)
    base = make_phantom(2)
    label = np.stack([base, 0.5 * base, np.clip(1.2 * base, 0, 1)], axis=2)
    moving = np.roll(label, 3, axis=1)
    truth = np.zeros((*fixed.shape, 2))
    truth[..., 0] = -3.0
    case = EvalCase("c", fixed, moving, label, truth)
    fused = np.clip(0.5 * label + 0.5 * fixed[..., None], 0, 1)
    output = MethodOutput(fused=fused, warped=moving, displacement=np.zeros_like(truth), seconds=0.25)

    row = score(case, output)

    expected_label = fusion_metrics(_y(label), fixed, _y(fused))
    expected_warped = fusion_metrics(_y(moving), fixed, _y(fused))
    for name, value in expected_label.items():
        assert row[f"{name}_label"] == pytest.approx(value, rel=1e-6, nan_ok=True)
        assert row[f"{name}_warped"] == pytest.approx(expected_warped[name], rel=1e-6, nan_ok=True)
    assert row["EPE"] == pytest.approx(3.0)
    assert row["Folding"] == 0.0
    assert row["Seconds"] == 0.25
    assert row["NCC"] < 1.0  # the warped image is still shifted against the label
    assert list(row)[:10] == fusion_columns()
