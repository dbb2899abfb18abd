"""Guess the moving volume's modality (CT, PET or SPECT) from its DICOM tag or its name."""

from __future__ import annotations

import re

DICOM_TO_MODALITY = {"CT": "CT", "PT": "PET", "NM": "SPECT"}
"""DICOM (0008,0060) Modality codes; SPECT series are stored as nuclear medicine (NM)."""

NAME_WORDS = {
    "ct": "CT",
    "cect": "CT",
    "pet": "PET",
    "pt": "PET",
    "fdg": "PET",
    "suv": "PET",
    "spect": "SPECT",
    "nm": "SPECT",
}

DICOM_MODALITY_ATTRIBUTE = "DICOM.Modality"


def guess_modality(name: str, dicom_modality: str | None = None) -> str | None:
    """``"CT"``, ``"PET"``, ``"SPECT"`` or None: the DICOM code wins, else a word in the name."""
    if dicom_modality and dicom_modality.strip().upper() in DICOM_TO_MODALITY:
        return DICOM_TO_MODALITY[dicom_modality.strip().upper()]
    for word in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])", name.lower()):
        if word in NAME_WORDS:
            return NAME_WORDS[word]
    return None


def dicom_modality_of(node) -> str | None:
    """The DICOM Modality code stored on the node or on its subject hierarchy item, if any."""
    value = node.GetAttribute(DICOM_MODALITY_ATTRIBUTE)
    if value:
        return value
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if hierarchy is None:
        return None
    item = hierarchy.GetItemByDataNode(node)
    while item and item != hierarchy.GetSceneItemID():
        value = hierarchy.GetItemAttribute(item, DICOM_MODALITY_ATTRIBUTE)
        if value:
            return value
        item = hierarchy.GetItemParent(item)
    return None


def guess_node_modality(node) -> str | None:
    """Modality of a volume node from its DICOM tag, else from its name."""
    return guess_modality(node.GetName() or "", dicom_modality_of(node))
