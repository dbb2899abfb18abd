"""The panel's settings (as the parameter node stores them) -> keyword options of ``process``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from BSAFusionCore.errors import InputError
from BSAFusionCore.options import CT_WINDOW_AUTO, DEFAULT_PREALIGN, slice_axis_index

MODEL_SOURCES = ("bundled", "file")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class PanelSettings:
    """What the user chose in the panel, with the panel's own spellings."""

    modality: str = "CT"
    model_source: str = "bundled"
    model_file: str = ""
    prealign: str = DEFAULT_PREALIGN
    slice_axis: str = "auto"
    ct_window: str = CT_WINDOW_AUTO
    color_fusion: bool = False
    colormap: str = "hot"
    device: str = "auto"
    batch_size: int = 8
    fuse_only: bool = False
    refine: bool = False

    def process_options(self) -> dict[str, Any]:
        """Keyword options of ``process``: CT windows only for CT (``auto`` is the library default, left
        out), colour fusion only for PET/SPECT, ``fuse_only`` and ``refine`` only when set."""
        options: dict[str, Any] = {
            "prealign": self.prealign,
            "axis": slice_axis_index(self.slice_axis),
            "batch_size": self.batch_size,
            "device": self.device,
        }
        if self.fuse_only:
            options["fuse_only"] = True
        if self.refine:
            options["refine"] = True
        if self.model_source == "file":
            if not Path(self.model_file).is_file():
                raise InputError(f"model file not found: '{self.model_file}'")
            options["model"] = self.model_file
        if self.modality == "CT" and self.ct_window != CT_WINDOW_AUTO:
            options["ct_window"] = self.ct_window
        if self.modality in ("PET", "SPECT") and self.color_fusion:
            options["color_fusion"] = True
            options["colormap"] = self.colormap
        return options
