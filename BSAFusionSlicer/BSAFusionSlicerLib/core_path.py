"""Make ``BSAFusionCore`` importable from the module folder: installed, it is beside this package;
in a source checkout, one folder up. (The CLI module, installed in another folder, has its own.)"""

from __future__ import annotations

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]


def add_core_to_path() -> None:
    """Put the folder holding ``BSAFusionCore`` first on ``sys.path`` unless it is importable already."""
    for folder in (MODULE_DIR, MODULE_DIR.parent):
        if (folder / "BSAFusionCore").is_dir():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return
