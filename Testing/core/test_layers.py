"""The layers of docs/architecture.md, read from the imports of the tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "BSAFusionCore"
LAYERS = [
    {"options", "errors", "progress", "files", "geometry"},
    {"network"},
    {"images", "color", "pairs", "deformation", "weights", "model_info", "resources", "model", "allocator", "inference",
     "memory", "metrics", "examples", "figures", "modality_guess", "prealign", "refinement"},
    {"volumes", "evaluation", "training"},
    {"cli", "__main__"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(imported top-level module of BSAFusionCore or an outside package, the statement) of a file."""
    package = list(path.relative_to(CORE).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [])
            targets = [parts[0]] if parts else [alias.name for alias in node.names]
            found += [(target, ast.unparse(node)) for target in targets]
        elif isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], ast.unparse(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module.split(".")[0], ast.unparse(node)))
    return found


SOURCES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    own = path.relative_to(CORE).parts[0].removesuffix(".py")
    for target, statement in imports_of(path):
        if target in LAYER_OF and target != own:
            assert LAYER_OF[target] <= LAYER_OF[own], f"{own} (layer {LAYER_OF[own]}) imports {statement}"


def test_only_the_command_line_parses_arguments() -> None:
    parsing = [str(p.relative_to(CORE)) for p in SOURCES
               if p.relative_to(CORE).parts[0] != "cli" and any(t == "argparse" for t, _ in imports_of(p))]
    assert parsing == []


def test_every_module_has_a_layer() -> None:
    tops = {p.relative_to(CORE).parts[0].removesuffix(".py") for p in SOURCES}
    assert tops <= set(LAYER_OF) | {"py.typed"}


def test_evaluation_volumes_and_running_do_not_import_training() -> None:
    users = [str(p.relative_to(CORE)) for p in SOURCES
             if p.relative_to(CORE).parts[0].removesuffix(".py") in {"evaluation", "volumes", "inference", "model"}
             and any(target == "training" for target, _ in imports_of(p))]
    assert users == []
