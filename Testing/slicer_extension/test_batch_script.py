"""``batch_process_folder.py`` (the script for ``Slicer --python-script``) run with plain Python."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")

from BSAFusionCore.network import BSAFusionNet  # noqa: E402
from BSAFusionCore.weights import save_weights  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "BSAFusionSlicer" / "batch_process_folder.py"


@pytest.fixture(scope="module")
def batch():
    spec = importlib.util.spec_from_file_location("batch_process_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "small.safetensors"
    save_weights(path, BSAFusionNet(), {"modality": "CT", "image_size": 64})
    return path


def test_batch_processes_good_cases_reports_bad_ones_and_resumes(
    batch, weights, tmp_path, fixed_image, moving_image
) -> None:
    cases = tmp_path / "cases"
    (cases / "case1").mkdir(parents=True)
    sitk.WriteImage(sitk.Cast(fixed_image, sitk.sitkInt16), str(cases / "case1" / "t2_mri.nrrd"))
    sitk.WriteImage(sitk.Cast(moving_image, sitk.sitkInt16), str(cases / "case1" / "head_ct.nii.gz"))
    (cases / "case2").mkdir()
    sitk.WriteImage(sitk.Cast(fixed_image, sitk.sitkInt16), str(cases / "case2" / "t2_mri.nrrd"))
    out = tmp_path / "out"

    assert batch.main([str(cases), str(out), "--model", str(weights), "--device", "cpu", "--prealign", "none"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["batch-status-1-of-1.json", "case1"]  # case2 has no CT
    status = json.loads((out / "batch-status-1-of-1.json").read_text())
    assert status["done"] == ["case1"] and status["failed"][0].startswith("case2: expected one MRI and one CT")
    result = out / "case1"
    assert sorted(p.name for p in result.iterdir()) == [
        "displacement.nrrd", "fused.nrrd", "preview.png", "record.json", "warped.nrrd"]
    record = json.loads((result / "record.json").read_text())
    assert record["inputs"]["moving"].endswith("head_ct.nii.gz") and record["inputs"]["model_source"] == str(weights)

    fused = sitk.ReadImage(str(result / "fused.nrrd"))
    assert fused.GetSize() == fixed_image.GetSize()
    np.testing.assert_allclose(fused.GetDirection(), fixed_image.GetDirection(), atol=1e-6)
    field = sitk.ReadImage(str(result / "displacement.nrrd"))
    transform = sitk.DisplacementFieldTransform(field)
    moving = sitk.ReadImage(str(cases / "case1" / "head_ct.nii.gz"), sitk.sitkFloat32)
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(result / "warped.nrrd")))
    again = sitk.GetArrayFromImage(sitk.Resample(moving, fixed_image, transform, sitk.sitkLinear, -1e4))
    inside = again > -1e4
    assert inside.sum() > 1000
    np.testing.assert_allclose(again[inside], warped[inside], atol=1e-2)

    (result / "record.json").write_text("{}")  # a finished case is not redone
    assert batch.main([str(cases), str(out), "--model", str(weights), "--device", "cpu"]) == 1
    assert (result / "record.json").read_text() == "{}"
    assert batch.main([str(tmp_path / "missing"), str(out)]) == 2
