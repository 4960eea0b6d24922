"""Imports only go down: cli → api → service → notifications → mail → projections →
domain → language (the users' language, which imports no other package of the
project)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]

# Highest first: a package may import those after it, never those before.
LAYERS: Final = (
    "cli",
    "api",
    "service",
    "notifications",
    "mail",
    "projections",
    "domain",
    "language",
)


def imported_packages(path: Path) -> set[str]:
    """The project packages `path` imports, at any depth (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


def modules_of(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_package_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = set(LAYERS[LAYERS.index(layer) :])
    upward = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
        for path in modules_of(layer)
        if imported_packages(path) - allowed
    }
    assert upward == {}


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def later():\n    from api.app import create_app\n")
    assert imported_packages(module) == {"api"}


def test_every_layer_has_modules() -> None:
    assert all(modules_of(layer) for layer in LAYERS)
