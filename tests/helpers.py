"""Shared test helpers: the repository root, child Python processes that import this checkout, the
tiny search's settings and command-line flags, and the search-space fixture files.

Image files are made by tests/images.py; pytest fixtures built on these helpers are in
tests/conftest.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the checkout under test."""

SPACES = Path(__file__).resolve().parent / "fixtures" / "spaces"
"""Search-space fixture files (`NAME.toml`); `invalid/` holds files the loader must refuse."""


# --------------------------------------------------------------------------------------------
# Child processes


def python_env(**changes: str | None) -> dict[str, str]:
    """This process's environment for a child Python, with this checkout first on PYTHONPATH so
    that the child imports the code under test whatever is installed; `changes` set variables,
    and a change to None removes one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_python(*args: str, env: Mapping[str, str] | None = None, **kwargs: Any):
    """Runs `python ARGS` with this interpreter and `python_env()` (or `env`), its output captured
    as text; other keyword arguments (cwd, timeout, check, ...) go to `subprocess.run`."""
    kwargs.setdefault("capture_output", True)
    environment = python_env() if env is None else dict(env)
    return subprocess.run([sys.executable, *args], env=environment, text=True, **kwargs)


def start_python(*args: str, env: Mapping[str, str] | None = None, **kwargs: Any):
    """Starts `python ARGS` like `run_python`, without waiting: returns the `subprocess.Popen`."""
    environment = python_env() if env is None else dict(env)
    return subprocess.Popen([sys.executable, *args], env=environment, **kwargs)


# --------------------------------------------------------------------------------------------
# The tiny search

TINY_CONFIG: dict[str, Any] = {
    "backbones": ("tiny",),
    "weights": "none",
    "image_size": 32,
    "max_trials": 2,
    "epochs_head": 2,
    "epochs_finetune": 1,
    "batch_size": 8,
    "patience": 0,
    "verbose": 0,
}
"""`SearchConfig` settings of the fast in-process search every engine test starts from."""

TINY_SEARCH: dict[str, Any] = {
    "backbone": "tiny",
    "weights": "none",
    "image_size": 32,
    "max_trials": 4,
    "epochs_head": 2,
    "epochs_finetune": 1,
    "batch_size": 8,
    "patience": 0,
}
"""`python -m tuner.search` options (snake_case) of the fast search the command-line tests run."""


def tiny_config(data: Path, project_dir: Path, **changes: Any):
    """The `SearchConfig` of the tiny search (`TINY_CONFIG` with `changes`) on `data`."""
    from tuner.config import SearchConfig

    return SearchConfig(**{**TINY_CONFIG, "data": data, "project_dir": project_dir, **changes})


def search_flags(data: Path, project: Path, **changes: object) -> list[str]:
    """`python -m tuner.search` flags for a fast search of the tiny backbone (`TINY_SEARCH`, with
    `changes` in snake_case) on `data`, in `project`; a change to None leaves its flag out, so the
    command's default applies."""
    flags = ["--data", str(data), "--project-dir", str(project)]
    for name, value in {**TINY_SEARCH, **changes}.items():
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


# --------------------------------------------------------------------------------------------
# Search-space fixture files


def space_path(name: str) -> Path:
    """The fixture file tests/fixtures/spaces/NAME.toml (NAME may hold a folder: `invalid/typo`)."""
    path = SPACES / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no search-space fixture {path}")
    return path


def fixed(value: object) -> dict[str, object]:
    """A space entry that holds one value."""
    return {"type": "fixed", "value": value}


def choice(*values: object, default: object = None) -> dict[str, object]:
    """A space entry that chooses among `values`, with `default` when one is given."""
    entry: dict[str, object] = {"type": "choice", "values": list(values)}
    if default is not None:
        entry["default"] = default
    return entry


def write_space(
    path: Path, name: str, entries: Mapping[str, Mapping[str, object]] | None = None
) -> Path:
    """Writes fixture space `name` to `path` with whole entries replaced or added, keyed as in
    the file (`{"head.units": choice(8, 16)}`); returns `path`."""
    document = tomllib.loads(space_path(name).read_text())
    tables = {
        f"{group}.{key}": dict(entry)
        for group, table in document.items()
        for key, entry in table.items()
    }
    tables.update({key: dict(entry) for key, entry in (entries or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(tables))
    return path


def _dump(tables: Mapping[str, Mapping[str, object]]) -> str:
    """TOML for a space: one `[group.name]` table of scalars and lists per entry."""
    blocks = []
    for key, entry in tables.items():
        lines = [f"[{key}]"] + [f"{field} = {_toml(value)}" for field, value in entry.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"a space entry holds scalars and lists. Received: {value!r}")
