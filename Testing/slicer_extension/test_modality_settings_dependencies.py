"""Modality guess, panel settings -> process options, and the dependency install plan."""

from __future__ import annotations

from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from BSAFusionSlicerLib import dependencies  # noqa: E402
from BSAFusionSlicerLib.modality import guess_node_modality  # noqa: E402
from BSAFusionSlicerLib.settings import PanelSettings  # noqa: E402

from BSAFusionCore.errors import InputError  # noqa: E402
from BSAFusionCore.modality_guess import guess_modality  # noqa: E402


@pytest.mark.parametrize(
    ("name", "tag", "expected"),
    [
        ("mridir_ct_1.5x1.5x2.5", None, "CT"),
        ("Head CT", None, "CT"),
        ("PET-FDG", None, "PET"),
        ("spect2", None, "SPECT"),
        ("T2 MRI", None, None),
        ("contrast", None, None),  # "ct" inside a word does not count
        ("series 3", "PT", "PET"),
        ("series 3", "NM", "SPECT"),
        ("CT looking name", "MR", "CT"),  # an MR tag says nothing about the moving modality
    ],
)
def test_guess_modality(name: str, tag: str | None, expected: str | None) -> None:
    assert guess_modality(name, tag) == expected


def test_dicom_modality_of_the_series_item_wins_over_the_name() -> None:
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "4: head ct")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.GetSceneItemID(), "study")
    series = hierarchy.CreateFolderItem(study, "series")
    hierarchy.CreateItem(series, node)
    assert guess_node_modality(node) == "CT"
    hierarchy.SetItemAttribute(series, "DICOM.Modality", "PT")
    assert guess_node_modality(node) == "PET"


def test_settings_become_process_options(tmp_path: Path) -> None:
    assert PanelSettings().process_options() == {"prealign": "rigid", "axis": None, "batch_size": 8, "device": "auto"}
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"")
    ct = PanelSettings("CT", "file", str(model), "none", "j", "bone", color_fusion=True, batch_size=2)
    assert ct.process_options() == {
        "prealign": "none",
        "axis": 1,
        "batch_size": 2,
        "device": "auto",
        "model": str(model),
        "ct_window": "bone",
    }
    pet = PanelSettings("PET", ct_window="bone", color_fusion=True, colormap="jet").process_options()
    assert pet["color_fusion"] and pet["colormap"] == "jet" and "ct_window" not in pet
    assert PanelSettings(fuse_only=True).process_options()["fuse_only"] is True
    assert PanelSettings(refine=True).process_options()["refine"] is True
    assert "refine" not in PanelSettings().process_options()
    with pytest.raises(InputError, match="model file not found"):
        PanelSettings(model_source="file", model_file=str(tmp_path / "none.pkl")).process_options()


def test_install_plan_routes_torch_through_the_pytorch_extension() -> None:
    plan = dependencies.install_plan(["torch", "kornia", "safetensors"], pytorch_extension_available=True)
    assert plan.torch_via_pytorch_extension and plan.pip_requirements == ("kornia", "safetensors")
    plan = dependencies.install_plan(["torch", "kornia"], pytorch_extension_available=False)
    assert not plan.torch_via_pytorch_extension and plan.pip_requirements == ("torch", "kornia")
    assert "kornia" in plan.describe()


def test_pip_arguments_pin_slicers_own_packages(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    arguments = dependencies.pip_arguments(("kornia",), constraints)
    assert arguments == ["kornia", "--constraint", str(constraints)]
    pins = constraints.read_text().splitlines()
    assert any(line.startswith("numpy==") for line in pins)
    assert any(line.startswith("SimpleITK==") for line in pins)


def test_missing_packages_finds_nothing_missing_here_and_names_what_is(monkeypatch) -> None:
    assert dependencies.missing_packages() == []
    monkeypatch.setattr(dependencies, "REQUIRED", ("torch", "surely_not_installed_package"))
    assert dependencies.missing_packages() == ["surely_not_installed_package"]
