"""The package's layers are its folders, and imports run one way: from the commands at the top
down to the foundations at the bottom (docs/design.md, "Layers"). The light modules never import
TensorFlow, Keras or KerasTuner when they are imported, and neither does any subpackage's
`__init__`, which only re-exports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import run_python

PACKAGE = Path(__file__).resolve().parent.parent / "tuner"

# Lowest first. A unit may import (at any depth, lazily too) units of lower layers, and modules of
# its own subpackage; the root's foundation modules are units of their own.
LAYERS: list[set[str]] = [
    {"errors", "_lazy", "_version", "metrics"},
    {"hp", "config"},
    {"runtime", "cache", "models", "project"},
    {"ui", "cluster"},
    {"data"},
    {"frozen", "serve"},
    {"train"},
    {"engine"},
    # The command-line harness the commands share, just below them: a unit may not import its own
    # layer, and every command imports it.
    {"_cli"},
    # The commands and the public API: what a user runs or imports.
    {"search", "leaderboard", "export", "predict", "weights", "__init__"},
]
SUBPACKAGES = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
ROOT_MODULES = {p.stem for p in PACKAGE.glob("*.py")}
HEAVY = {"tensorflow", "keras", "keras_tuner"}
# Modules that load TensorFlow, Keras or KerasTuner when imported; every other module must not,
# so that `--help`, the leaderboard and the renderers answer at once.
HEAVY_AT_IMPORT = {
    "cluster.chief",
    "cluster.client",
    "engine.oracles",
    "engine.transfer",
    "frozen.activations",
    "frozen.features",
    "models.network",
    "project.tblogs",
    "serve.bundle",
    "serve.formats",
    "train.context",
    "train.recorder",
    "train.refit",
    "train.reuse",
    "train.trial",
}


def _unit(dotted: str) -> str:
    """`tuner.models.cuts` -> `models`; `tuner.errors` -> `errors`."""
    return dotted.split(".")[1]


def _modules() -> list[str]:
    """Every module of the package, as a dotted name below `tuner` (`models.cuts`, `errors`)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found.append(".".join(parts))
    return found


MODULES = _modules()


def _source(module: str) -> ast.Module:
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    return ast.parse(path.read_text())


def _tuner_imports(module: str) -> set[str]:
    """The `tuner` modules and subpackages `module` imports, at any depth, as dotted names."""
    found = set()
    for node in ast.walk(_source(module)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"tuner.{module}: use absolute imports")
            if node.module == "tuner":
                found |= {f"tuner.{alias.name}" for alias in node.names}
            elif node.module.startswith("tuner."):
                found.add(node.module)
                if node.module[6:] in SUBPACKAGES:  # from tuner.models import cuts
                    found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tuner.")}
    return found


def _layer_of(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"tuner.{unit} is in no layer: add it to LAYERS and to docs/design.md")


def _top_level_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_subpackage_and_root_module_has_a_layer():
    units = SUBPACKAGES | ROOT_MODULES
    assert not units - set().union(*LAYERS), "add the new unit to LAYERS and docs/design.md"
    assert not set().union(*LAYERS) - units, "LAYERS names a unit that is gone"


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_one_way(module):
    unit = _unit(f"tuner.{module}")
    wrong = sorted(
        imported
        for imported in _tuner_imports(module)
        if _unit(imported) != unit and _layer_of(_unit(imported)) >= _layer_of(unit)
    )
    assert not wrong, f"tuner.{module} imports {wrong}, which are not below it"


def test_no_import_cycle_inside_a_subpackage():
    graph = {
        m: {i[6:] for i in _tuner_imports(m) if _unit(i) == _unit(f"tuner.{m}") and i[6:] != m}
        for m in MODULES
        if "." in m and not m.endswith("__init__")
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join(path + (module,))}")
        if module in done:
            return
        for other in graph.get(module, ()):
            visit(other, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


@pytest.mark.parametrize("package", sorted(SUBPACKAGES))
def test_a_subpackage_init_only_re_exports(package):
    tree = _source(f"{package}.__init__")
    for node in tree.body:
        allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.If)
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        assert is_docstring or isinstance(node, allowed), (
            f"tuner/{package}/__init__.py defines {type(node).__name__} at line {node.lineno}: "
            "an __init__ only re-exports; move the code into a module"
        )
    assert not _top_level_imports(tree) & HEAVY


LIGHT = sorted(
    m
    for m in MODULES
    if m.removesuffix(".__init__") not in HEAVY_AT_IMPORT and not m.startswith("__")
)


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_import_nothing_heavy_at_import_time(module):
    assert not _top_level_imports(_source(module)) & HEAVY


@pytest.mark.parametrize("module", sorted(HEAVY_AT_IMPORT))
def test_the_heavy_list_names_only_modules_that_are_heavy(module):
    # The list is the exact set docs/design.md gives: a module that became light leaves it.
    assert _top_level_imports(_source(module)) & HEAVY, f"tuner.{module} is light now"


def test_importing_every_subpackage_loads_no_tensorflow():
    code = (
        "import sys, importlib\n"
        f"for name in {sorted(SUBPACKAGES)!r}: importlib.import_module('tuner.' + name)\n"
        "import tuner\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr


MAX_LINES = 550  # "about 500": a module past this holds more than one concern


@pytest.mark.parametrize("module", MODULES)
def test_no_module_grows_past_about_500_lines(module):
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"tuner.{module} has {lines} lines: split it by concern"
