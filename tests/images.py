"""Tiny, learnable image files made on the fly, for tests: bright or dark, stripes or blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
