"""An offline demo dataset: small synthetic images of shapes, made once and cached.

`demo_dataset()` draws, from a fixed seed with numpy alone, three classes of 64x64 images - a filled
circle, a filled square or a striped patch - at random positions and sizes, in random colours, on
noisy gradient backgrounds. Shape and background colours come from the same distribution in every
class, and circles and squares share one area distribution, so neither the mean colour nor the amount
of foreground gives the class away; a small CNN learns it in a few epochs.

The files are real JPEGs (written with `tf.io.encode_jpeg`) in one subfolder per class, the layout
`tuner.data.scan` reads first. The folder is built in a temporary sibling and renamed into place, and
a marker file says it is complete, so an interrupted build is never mistaken for a dataset and a later
call reuses a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tuner.errors import DataError

DEMO_VERSION = "demo-v1"  # bump when the drawing changes, so old caches are not reused
DEMO_CLASSES = ("circles", "squares", "stripes")
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
    "demo_dataset",
]

_README = f"""\
tuner demo dataset ({DEMO_VERSION})

Synthetic images made by tuner.demo.demo_dataset() so that `tuner` can show a whole search without
downloading anything. It is rebuilt, byte for byte the same, whenever this folder is deleted.

Classes (one subfolder each, {DEMO_IMAGES_PER_CLASS} JPEG images of {DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE} px per class):
  circles  one filled circle
  squares  one filled axis-aligned square, with the same area distribution as the circles
  stripes  one square patch of parallel stripes at a random angle

Every image has a random background colour with a gradient and noise, and a random shape colour
drawn from the same distribution in every class, so the mean colour says nothing about the class;
the shapes do. The random seed is fixed ({DEMO_SEED}).
"""


def default_demo_dir() -> Path:
    """Returns where the demo dataset lives: `$TUNER_DEMO_DIR`, else `~/.cache/tuner/demo-v1`."""
    env = os.environ.get("TUNER_DEMO_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tuner" / DEMO_VERSION


def _is_complete(folder: Path) -> bool:
    try:
        return (folder / MARKER).read_text(encoding="utf-8") == _MARKER_TEXT
    except OSError:
        return False


def _background(rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    yy, xx = grid
    base = rng.uniform(0, 255, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / DEMO_IMAGE_SIZE - 0.5
    amplitude = rng.uniform(-40, 40, size=3)
    return base + ramp[..., None] * amplitude


def _shape_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    # Resample until the shape stands out from the background's mean colour; the distribution of
    # colours stays the same for every class.
    mean = background.reshape(-1, 3).mean(axis=0)
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - mean) > 90:
            return colour


def _draw(label: str, rng: np.random.Generator) -> np.ndarray:
    """Draws one image of class `label` as uint8 (size, size, 3)."""
    n = DEMO_IMAGE_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    image = _background(rng, (yy, xx))
    colour = _shape_colour(rng, image)
    if label in ("circles", "squares"):
        radius = rng.uniform(10, 20)
        cy, cx = rng.uniform(radius, n - radius, size=2)
        if label == "circles":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        else:
            half = radius * np.sqrt(np.pi) / 2  # same area as the circle of that radius
            mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    else:
        side = rng.uniform(24, 40)
        top, left = rng.uniform(0, n - side, size=2)
        patch = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 9)
        phase = rng.uniform(0, period)
        along = xx * np.cos(angle) + yy * np.sin(angle) + phase
        mask = patch & (np.mod(along, period) < period / 2)
    image[mask] = colour
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _build(folder: Path) -> None:
    import tensorflow as tf  # lazy: only a first build pays for it

    rng = np.random.default_rng(DEMO_SEED)
    for label in DEMO_CLASSES:
        (folder / label).mkdir()
    # Classes interleaved so that every class sees the same stretch of the random stream.
    for i in range(DEMO_IMAGES_PER_CLASS):
        for label in DEMO_CLASSES:
            pixels = _draw(label, rng)
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
            `~/.cache/tuner/demo-v1`.

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
