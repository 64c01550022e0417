"""Imports run one way: from the CLI at the top down to the errors at the bottom, and the light
modules never import TensorFlow or Keras when they are imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tuner"

# Lowest first. A module may import (at any depth, lazily too) only modules of lower layers.
LAYERS: list[set[str]] = [
    {"errors"},
    # Leaves: each owns one thing and needs only the errors.
    {
        "backbones",
        "cache_io",
        "cluster",
        "config",
        "csvtext",
        "cuts",
        "data",
        "demo",
        "diskarray",
        "card",
        "heap",
        "hed",
        "hp",
        "pipeline",
        "preprocessing",
        "probe",
        "runtime",
        "serving",
    },
    {"cache", "decode", "display", "model", "oracles", "project", "spaces", "tblogs", "weights"},
    {"effort", "live", "pixels", "recorder", "reuse", "sharing", "trials"},
    {"activations", "boardtext"},
    {"features", "leaderboard"},
    {"training"},
    {"artifact", "engine", "refit"},
    {"runner"},
    {"export", "predict", "search"},
]
# Modules whose import must stay light: `--help`, the leaderboard and the renderers answer at once.
LIGHT = {
    "errors",
    "cluster",
    "export",
    "predict",
    "config",
    "csvtext",
    "heap",
    "hed",
    "data",
    "decode",
    "diskarray",
    "display",
    "effort",
    "hp",
    "pipeline",
    "boardtext",
    "leaderboard",
    "live",
    "pixels",
    "probe",
    "project",
    "runner",
    "runtime",
    "search",
    "sharing",
    "spaces",
    "trials",
    "weights",
}
HEAVY = {"tensorflow", "keras", "keras_tuner"}


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"tuner.{module} is in no layer: add it to LAYERS")


def tuner_imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tuner":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("tuner."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tuner.")}
    return found


def top_level_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_one_way(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    wrong = sorted(m for m in tuner_imports(tree) if layer_of(m) >= layer_of(module))
    assert not wrong, f"tuner.{module} imports {wrong}, which are not below it"


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_light_modules_import_nothing_heavy_at_import_time(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    assert not top_level_imports(tree) & HEAVY


MAX_LINES = 550  # "about 500": a module past this holds more than one concern


@pytest.mark.parametrize("module", MODULES)
def test_no_module_grows_past_about_500_lines(module):
    lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
    assert lines <= MAX_LINES, f"tuner.{module} has {lines} lines: split it by concern"
