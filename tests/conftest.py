"""Shared fixtures: tiny, learnable image folders made on the fly, and a fast search config.

Every test runs the production path with the registry's own `tiny` backbone at small sizes and
`weights=None`-style random init, so the whole suite stays within minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from tests.images import make_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


@pytest.fixture
def search_config(tmp_path: Path, image_folder: Path):
    from tuner.config import SearchConfig

    def make(**changes):
        settings = dict(
            data=image_folder,
            backbones=("tiny",),
            project_dir=tmp_path / "project",
            weights="none",
            image_size=32,
            max_trials=2,
            epochs_head=2,
            epochs_finetune=1,
            batch_size=8,
            patience=0,
            verbose=0,
        )
        settings.update(changes)
        return SearchConfig(**settings)

    return make


FIXED_SPACE = """
[head.units]
type = "fixed"
value = 16

[head.dropout]
type = "fixed"
value = 0.0

[head.learning_rate]
type = "fixed"
value = 0.01

[finetune.unfreeze_blocks]
type = "fixed"
value = {k}

[finetune.learning_rate]
type = "fixed"
value = 0.001
"""


@pytest.fixture
def fixed_space(tmp_path: Path):
    """Writes a one-point space (a 16-unit head, unfreezing `k` blocks); returns its path."""

    def make(k: int = 1) -> Path:
        path = tmp_path / f"fixed{k}.toml"
        path.write_text(FIXED_SPACE.format(k=k))
        return path

    return make


@pytest.fixture
def prepared():
    """`tuner.engine.transfer.prepare` for a config: the `Workbench` every trial shares. The space is the
    tiny family's, with the config's --space file laid over it, unless one is given."""
    from tuner.engine.spaces import load_space
    from tuner.engine.transfer import prepare

    def make(config, space=None, display=None):
        space = space or load_space(family="tiny", path=config.space)
        return prepare(config, space, display)

    return make


@pytest.fixture
def searched(prepared):
    """Prepares and runs a search for a config; returns (workbench, tuner)."""
    from tuner.engine.runner import _search as run_search

    def make(config, space=None):
        bench = prepared(config, space)
        return bench, run_search(bench)

    return make
