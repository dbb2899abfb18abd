"""Guess a moving volume's modality (CT, PET or SPECT) from its DICOM Modality code or its name."""

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


def guess_modality(name: str, dicom_modality: str | None = None) -> str | None:
    """``"CT"``, ``"PET"``, ``"SPECT"`` or None: the DICOM code wins, else a word in the name."""
    if dicom_modality and dicom_modality.strip().upper() in DICOM_TO_MODALITY:
        return DICOM_TO_MODALITY[dicom_modality.strip().upper()]
    for word in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])", name.lower()):
        if word in NAME_WORDS:
            return NAME_WORDS[word]
    return None
