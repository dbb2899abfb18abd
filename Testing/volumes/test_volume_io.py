"""Reading volumes (a DICOM series folder, bad files) and writing them atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from volume_phantoms import CT_CONTRAST, moving_grid, sample

from BSAFusionCore.errors import InputError
from BSAFusionCore.volumes.io import prepare_output_dir, read_volume, write_image


def write_dicom_series(volume: sitk.Image, folder: Path) -> None:
    """One file per slice, with the tags that place each slice in the patient frame."""
    folder.mkdir()
    direction = volume.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125.1.424242"
    for k in range(volume.GetDepth()):
        image = volume[:, :, k]
        tags = {
            "0008|0060": "CT", "0020|000d": series + ".0", "0020|000e": series,
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*direction[0:7:3], *direction[1:8:3])),
            "0020|0032": "\\".join(f"{v:.6f}" for v in volume.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1), "0028|0030": "\\".join(str(s) for s in volume.GetSpacing()[:2]),
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(image)


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path: Path) -> None:
    volume = sample(moving_grid(), CT_CONTRAST, pixel_type=sitk.sitkInt16)
    write_dicom_series(volume, tmp_path / "series")
    read = read_volume(tmp_path / "series", "moving volume")
    assert read.GetSize() == volume.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), volume.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(read.GetOrigin(), volume.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(volume))


def test_unreadable_and_empty_inputs(tmp_path: Path) -> None:
    (tmp_path / "junk.nrrd").write_text("not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_volume(tmp_path / "junk.nrrd", "fixed volume")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(tmp_path / "empty", "fixed volume")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "none.nii.gz", "fixed volume")


def test_writing_leaves_only_the_finished_file(tmp_path: Path) -> None:
    volume = sample(moving_grid(), CT_CONTRAST)
    write_image(volume, tmp_path / "out.nrrd")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]
    with pytest.raises(RuntimeError):
        write_image(volume, tmp_path / "out.unknown-format")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


def test_output_folder_checks(tmp_path: Path) -> None:
    assert prepare_output_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot be created"):
        prepare_output_dir(tmp_path / "file")
