"""``bsafusion fuse`` on volume files, with a small random-weight model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BSAFusionCore.cli import main


def run_fuse(phantom_files: dict[str, Path], out: Path, *options: str) -> int:
    return main(["fuse", "--fixed", str(phantom_files["fixed"]), "--moving", str(phantom_files["moving"]),
                 "--modality", "CT", "--output-dir", str(out), "--device", "cpu", *options])


def test_fuse_writes_every_output_and_the_displacement_reproduces_warped(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_fuse(phantom_files, out, "--prealign", "rigid", "--ct-window", "brain", "--batch-size", "5") == 0
    names = {"fused.nrrd", "warped.nrrd", "displacement.nrrd", "prealignment.tfm", "record.json", "preview.png"}
    assert {p.name for p in out.iterdir()} == names  # and no temporary files left

    fixed = sitk.ReadImage(str(phantom_files["fixed"]))
    moving = sitk.ReadImage(str(phantom_files["moving"]))
    warped = sitk.ReadImage(str(out / "warped.nrrd"))
    displacement = sitk.ReadImage(str(out / "displacement.nrrd"))
    fused = sitk.ReadImage(str(out / "fused.nrrd"))
    record = json.loads((out / "record.json").read_text())

    for image in (warped, displacement, fused):
        assert image.GetSize() == fixed.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), fixed.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), fixed.GetDirection(), atol=1e-9)
    assert displacement.GetPixelID() == sitk.sitkVectorFloat64
    again = sitk.Resample(moving, fixed, sitk.DisplacementFieldTransform(displacement), sitk.sitkLinear,
                          record["warped_outside_value"], sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(warped), atol=1e-3)

    values = sitk.GetArrayViewFromImage(fused)
    assert fused.GetPixelID() == sitk.sitkFloat32
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.1
    assert record["model"]["modality"] == "CT"
    assert record["options"]["prealign"] == "rigid"
    assert record["slices"]["total"] == 12
    assert {"torch", "SimpleITK", "bsafusion"} <= set(record["versions"])
    assert record["timings"]["ms_per_slice"] > 0
    prealignment = sitk.ReadTransform(str(out / "prealignment.tfm"))
    np.testing.assert_allclose(prealignment.GetParameters(), record["prealignment"]["parameters"], atol=1e-9)
    assert record["prealignment"]["type"] == "Euler3DTransform" and record["outputs"][3] == "prealignment.tfm"
    assert sitk.ReadImage(str(out / "preview.png")).GetNumberOfComponentsPerPixel() == 3


def test_model_displacement_is_in_plane_without_prealignment(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path
) -> None:
    assert run_fuse(phantom_files, tmp_path, "--prealign", "none") == 0
    displacement = sitk.ReadImage(str(tmp_path / "displacement.nrrd"))
    vectors = sitk.GetArrayViewFromImage(displacement)
    through_plane = np.asarray(displacement.GetDirection()).reshape(3, 3)[:, 1]  # slices along index axis 1
    assert np.abs(vectors).max() > 0.1  # the random model does move things
    np.testing.assert_allclose(vectors @ through_plane, 0.0, atol=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"moving": "missing.nrrd"}, "does not exist"),
        ({"weights": "nowhere.safetensors"}, "does not exist"),
        ({"output": "a-file"}, "is an existing file; choose a folder"),
    ],
)
def test_bad_input_gives_exit_code_2_and_no_outputs(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    change: dict[str, str], message: str,
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / change.get("output", "out")
    moving = tmp_path / change["moving"] if "moving" in change else phantom_files["moving"]
    extra = ["--weights", str(tmp_path / change["weights"])] if "weights" in change else []
    code = main(["fuse", "--fixed", str(phantom_files["fixed"]), "--moving", str(moving), "--modality", "CT",
                 "--output-dir", str(out), *extra])
    assert code == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_2d_image_where_a_volume_is_needed(bundled: Path, phantom_files: dict[str, Path], tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    flat = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(phantom_files["moving"]))[:, :, 3], str(flat))
    code = main(["fuse", "--fixed", str(phantom_files["fixed"]), "--moving", str(flat),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "2-D" in caplog.text


def test_color_fusion_of_ct_and_an_earlier_folder_are_refused_before_any_work(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_fuse(phantom_files, tmp_path / "out", "--color-fusion") == 2
    assert "does not apply to CT" in caplog.text and not (tmp_path / "out").exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "prealignment.tfm").write_text("from an earlier run")
    assert run_fuse(phantom_files, earlier) == 2
    assert "already holds files" in caplog.text
    assert run_fuse(phantom_files, earlier, "--overwrite", "--prealign", "none") == 0
    assert not (earlier / "prealignment.tfm").exists()  # the earlier set is replaced whole
    assert (earlier / "record.json").is_file()


def test_volumes_over_the_memory_limit_are_refused_before_reading(
    bundled: Path, phantom_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_fuse(phantom_files, tmp_path / "out", "--max-memory", "1") == 2
    assert "fusing volumes of" in caplog.text and "more than the limit of 1 GB" in caplog.text
    assert not (tmp_path / "out").exists()
