"""The Slicer scripted CLI module: its SEM XML, and its script run standalone from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BSAFusionCore.resources import WEIGHTS_DIR_VARIABLE

MODULE = Path(__file__).resolve().parents[2] / "BSAFusionSlicer" / "BSAFusionCLI"
SCRIPT = MODULE / "BSAFusionCLI.py"
PARAMETER_TAGS = {"image", "transform", "file", "string", "string-enumeration", "integer", "float", "boolean"}


def run_script(*args: str, weights_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if weights_dir is not None:
        env[WEIGHTS_DIR_VARIABLE] = str(weights_dir)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def parameters() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(MODULE / "BSAFusionCLI.xml").getroot()
    return {e.findtext("name"): e for group in root.iter("parameters") for e in group if e.tag in PARAMETER_TAGS}


def test_xml_declares_images_and_a_nonlinear_transform() -> None:
    root = ElementTree.parse(MODULE / "BSAFusionCLI.xml").getroot()
    assert root.tag == "executable"
    for tag in ("category", "title", "description", "version"):
        assert root.findtext(tag)
    params = parameters()
    assert params["fixedVolume"].tag == params["movingVolume"].tag == "image"
    assert [params[n].findtext("index") for n in ("fixedVolume", "movingVolume")] == ["0", "1"]
    assert params["fusedVolume"].findtext("channel") == "output"
    assert params["displacementTransform"].get("type") == "nonlinear"
    assert params["displacementTransform"].findtext("channel") == "output"
    flags = [p.findtext("longflag") for p in params.values() if p.findtext("index") is None]
    assert all(flags) and len(set(flags)) == len(flags)
    assert all(p.findtext("label") and p.findtext("description") for p in params.values())
    assert "CMakeLists.txt" in os.listdir(MODULE)


def test_xml_flag_prints_the_description() -> None:
    done = run_script("--xml")
    assert done.returncode == 0
    assert ElementTree.fromstring(done.stdout).findtext("title") == "BSAFusion (CLI)"


def test_script_runs_standalone(weights_dir: Path, phantom_files: dict[str, Path], tmp_path: Path) -> None:
    out = {name: tmp_path / name for name in ("fused.nrrd", "warped.nrrd", "displacement.h5", "pre.h5", "r.json")}
    done = run_script(
        str(phantom_files["fixed"]), str(phantom_files["moving"]), "--modality", "CT", "--prealign", "rigid",
        "--ct-window", "soft-tissue", "--device", "cpu", "--fused", str(out["fused.nrrd"]),
        "--warped", str(out["warped.nrrd"]), "--displacement", str(out["displacement.h5"]),
        "--prealignment", str(out["pre.h5"]), "--record", str(out["r.json"]), weights_dir=weights_dir,
    )
    assert done.returncode == 0, done.stderr
    assert "<filter-start>" in done.stdout and "<filter-end>" in done.stdout
    fractions = [float(line[len("<filter-progress>"):-len("</filter-progress>")])
                 for line in done.stdout.splitlines() if line.startswith("<filter-progress>")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(path.is_file() for path in out.values())

    # the .h5 grid transform, applied to the original moving volume, gives the warped output
    moving = sitk.ReadImage(str(phantom_files["moving"]))
    warped = sitk.ReadImage(str(out["warped.nrrd"]))
    record = json.loads(out["r.json"].read_text())
    transform = sitk.ReadTransform(str(out["displacement.h5"]))
    again = sitk.Resample(moving, warped, transform, sitk.sitkLinear, record["warped_outside_value"],
                          sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(warped), atol=1e-3)


def test_script_reports_bad_input(weights_dir: Path, phantom_files: dict[str, Path], tmp_path: Path) -> None:
    done = run_script(str(phantom_files["fixed"]), str(tmp_path / "missing.nrrd"),
                      "--fused", str(tmp_path / "f.nrrd"), weights_dir=weights_dir)
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not (tmp_path / "f.nrrd").exists()


def test_outputs_appear_together_or_not_at_all(
    weights_dir: Path, phantom_files: dict[str, Path], tmp_path: Path
) -> None:
    fused = tmp_path / "fused.nrrd"
    fused.write_text("an earlier run's output")
    done = run_script(
        str(phantom_files["fixed"]), str(phantom_files["moving"]), "--modality", "CT", "--prealign", "none",
        "--device", "cpu", "--fused", str(fused), "--warped", str(tmp_path / "warped.nrrd"),
        "--displacement", str(tmp_path / "displacement.unknown-format"), weights_dir=weights_dir,
    )
    assert done.returncode != 0  # the displacement cannot be written in that format, after fused and warped were
    assert fused.read_text() == "an earlier run's output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.nrrd"]  # no warped, no temporary files


def test_xml_is_valid_for_an_independent_parser_of_slicers_execution_model() -> None:
    ctk_cli = pytest.importorskip("ctk_cli")  # parses CLI descriptions as Slicer does
    from BSAFusionCore.options import (
        COLORMAPS,
        CT_WINDOW_AUTO,
        CT_WINDOW_CHOICES,
        DEFAULT_PREALIGN,
        MODALITIES,
        PREALIGN_MODES,
        SLICE_AXIS_CHOICES,
    )

    module = ctk_cli.CLIModule(str(MODULE / "BSAFusionCLI.xml"))
    assert (module.title, module.category) == ("BSAFusion (CLI)", "Registration")
    found = {p.name: p for p in module.parameters()}
    assert set(found) == set(parameters())
    assert [found[n].index for n in ("fixedVolume", "movingVolume")] == [0, 1]
    assert {n for n, p in found.items() if p.channel == "output"} == {
        "fusedVolume", "warpedVolume", "displacementTransform", "prealignmentTransform", "recordFile"}
    enumerations = {n: (p.elements, p.default) for n, p in found.items() if p.typ == "string-enumeration"}
    assert enumerations == {
        "modality": (list(MODALITIES), "CT"),
        "prealign": (list(PREALIGN_MODES), DEFAULT_PREALIGN),
        "ctWindow": (list(CT_WINDOW_CHOICES), CT_WINDOW_AUTO),
        "colormap": (list(COLORMAPS), COLORMAPS[0]),
        "axis": (list(SLICE_AXIS_CHOICES), "auto"),
    }
    for parameter in found.values():  # each default is a value of the parameter's type
        if parameter.default is not None:
            parameter.parseValue(str(parameter.default))
