"""The modality of a volume node, from the DICOM tag stored with it or from its name."""

from __future__ import annotations

from BSAFusionCore.modality_guess import guess_modality

DICOM_MODALITY_ATTRIBUTE = "DICOM.Modality"


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
