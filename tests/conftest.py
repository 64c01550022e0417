"""Shared fixtures: tiny, learnable image folders made on the fly, and a fast search config.

Every test runs the production path with the registry's own `tiny` backbone at small sizes and
`weights=None`-style random init, so the whole suite stays within minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def draw(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One RGB uint8 image of a learnable kind: bright or dark, stripes or blobs."""
    img = rng.integers(0, 40, (size, size, 3)).astype(np.int32)
    if kind == "bright":
        img += 180
    elif kind == "dark":
        img += 20
    elif kind == "stripes":
        img[:, ::4] += 200
    else:  # "blob"
        c = rng.integers(8, size - 8, 2)
        yy, xx = np.mgrid[:size, :size]
        img[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < 36] += 200
    return np.clip(img, 0, 255).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def write_jpeg(path: Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_jpeg(array, quality=95).numpy())


def make_folder(
    root: Path,
    classes=("bright", "dark"),
    per_class: int = 12,
    size: int = 32,
    seed: int = 0,
    layout: str = "folders",
) -> Path:
    """A dataset of PNG files in class subfolders (or flat `label.N.png` files)."""
    rng = np.random.default_rng(seed)
    for label in classes:
        for i in range(per_class):
            image = draw(label, rng, size)
            if layout == "folders":
                write_png(root / label / f"{i:03d}.png", image)
            else:
                write_png(root / f"{label}.{i}.png", image)
    return root


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
    """`tuner.engine.prepare` for a config: the `Workbench` every trial shares. The space is the
    tiny family's, with the config's --space file laid over it, unless one is given."""
    from tuner.engine import prepare
    from tuner.spaces import load_space

    def make(config, space=None, display=None):
        space = space or load_space(family="tiny", path=config.space)
        return prepare(config, space, display)

    return make


@pytest.fixture
def searched(prepared):
    """Prepares and runs a search for a config; returns (workbench, tuner)."""
    from tuner.engine import run_search

    def make(config, space=None):
        bench = prepared(config, space)
        return bench, run_search(bench)

    return make
