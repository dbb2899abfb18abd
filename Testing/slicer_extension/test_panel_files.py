"""The panel's .ui parses, names every widget the module uses, and agrees with the CLI module's XML."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "BSAFusionSlicer"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "BSAFusionSlicer.ui"
MODULE_FILE = MODULE_DIR / "BSAFusionSlicer.py"
CLI_XML = MODULE_DIR / "BSAFusionCLI" / "BSAFusionCLI.xml"


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def parameter_annotations() -> dict[str, ast.expr]:
    """Field name -> annotation of the ``parameterNodeWrapper`` class."""
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == "BSAFusionSlicerParameterNode":
            return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no BSAFusionSlicerParameterNode class")


def combo_items(widget: ET.Element) -> list[str]:
    return [item.find("property/string").text for item in widget.findall("item")]


def parameter_name(widget: ET.Element) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == "SlicerParameterName":
            return prop.find("string").text
    return None


def test_every_widget_the_module_uses_exists_in_the_ui() -> None:
    used = {
        node.attr
        for node in ast.walk(module_tree())
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert {"applyButton", "progressBar", "statusLabel", "gpuNameLabel"} <= used
    assert used <= set(ui_widgets())


def test_every_bound_widget_names_a_parameter_and_every_parameter_has_a_widget() -> None:
    bound = {parameter_name(w) for w in ui_widgets().values()} - {None}
    assert bound == set(parameter_annotations())


def test_combo_boxes_offer_what_the_pipeline_accepts() -> None:
    from BSAFusionSlicerLib.settings import DEVICES, MODEL_SOURCES

    from BSAFusionCore.options import COLORMAPS, CT_WINDOW_CHOICES, MODALITIES, PREALIGN_MODES, SLICE_AXIS_CHOICES

    widgets = ui_widgets()
    assert combo_items(widgets["modalityComboBox"]) == list(MODALITIES)
    assert combo_items(widgets["prealignComboBox"]) == list(PREALIGN_MODES)
    assert combo_items(widgets["ctWindowComboBox"]) == list(CT_WINDOW_CHOICES)
    assert combo_items(widgets["colormapComboBox"]) == list(COLORMAPS)
    assert combo_items(widgets["sliceAxisComboBox"]) == list(SLICE_AXIS_CHOICES)
    assert combo_items(widgets["deviceComboBox"]) == list(DEVICES)
    assert combo_items(widgets["modelSourceComboBox"]) == list(MODEL_SOURCES)


def test_cli_parameters_use_the_names_and_values_of_the_cli_xml(tmp_path: Path) -> None:
    if not CLI_XML.is_file():
        pytest.skip(f"{CLI_XML} is absent")
    from BSAFusionSlicerLib.cli_route import cli_parameters
    from BSAFusionSlicerLib.logic import OutputNodes
    from BSAFusionSlicerLib.settings import PanelSettings

    declared = {}
    for parameter in ET.parse(CLI_XML).getroot().iter():
        name = parameter.find("name")
        if name is not None and parameter.tag != "parameters":
            declared[name.text] = [e.text for e in parameter.findall("element")]
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"")
    for settings in (
        PanelSettings("CT", "file", str(model_file), "rigid", "k", "bone", device="cpu", batch_size=4),
        PanelSettings("PET", slice_axis="auto", color_fusion=True, colormap="jet", fuse_only=True),
        PanelSettings("CT", refine=True),
    ):
        parameters = cli_parameters("F", "M", OutputNodes("a", "b", "c"), settings, "record.json")
        assert set(parameters) <= set(declared)
        for name, value in parameters.items():
            if declared[name]:
                assert value in declared[name], name
        assert parameters["axis"] in ("auto", "i", "j", "k")
