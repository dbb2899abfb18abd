"""Which Python packages BSAFusion still needs inside Slicer, and how to install them safely."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("torch", "kornia", "safetensors", "scipy", "tqdm")
"""What BSAFusionCore imports beyond Slicer's own packages (import name = pip name)."""

PROTECTED = ("numpy", "SimpleITK", "vtk")
"""Slicer's own packages: pinned to their installed versions so that pip never replaces them."""


@dataclass(frozen=True)
class InstallPlan:
    """What the confirmation dialog lists: torch through the PyTorch extension when possible, then pip."""

    torch_via_pytorch_extension: bool
    pip_requirements: tuple[str, ...]

    def describe(self) -> str:
        """A few lines for the confirmation dialog."""
        lines = []
        if self.torch_via_pytorch_extension:
            lines.append("PyTorch, through the PyTorch extension (a GPU build matched to the driver if any)")
        if self.pip_requirements:
            lines.append("with pip: " + ", ".join(self.pip_requirements))
        pinned = ", ".join(f"{name} {version}" for name, version in protected_versions().items())
        lines.append(f"Slicer's own packages stay as they are ({pinned}).")
        return "\n".join(lines)


def missing_packages() -> list[str]:
    """The import names of REQUIRED that cannot be found (nothing is imported)."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_plan(missing: list[str], pytorch_extension_available: bool) -> InstallPlan:
    """Torch goes through the PyTorch extension when it is installed; everything else through pip."""
    via_extension = "torch" in missing and pytorch_extension_available
    pip = tuple(name for name in missing if not (name == "torch" and via_extension))
    return InstallPlan(torch_via_pytorch_extension=via_extension, pip_requirements=pip)


def protected_versions() -> dict[str, str]:
    """Installed versions of Slicer's own packages that pip can see."""
    versions = {}
    for name in PROTECTED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def pip_arguments(requirements: tuple[str, ...], constraints_file: Path) -> list[str]:
    """Arguments for ``slicer.util.pip_install``; writes the constraints that pin Slicer's packages."""
    constraints_file.write_text("".join(f"{n}=={v}\n" for n, v in protected_versions().items()), encoding="utf-8")
    return [*requirements, "--constraint", str(constraints_file)]
