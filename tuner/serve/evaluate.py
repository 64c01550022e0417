"""The held-out test set (`--test-data`): checked before any trial, scored once on the export.

`load_test_set` scans the test folder (the same layouts as `--data`) and holds it to the
training classes, so a wrong folder stops the run at its start with one line. `score_files`
feeds the exported `model.keras` each file as a user would: decoded at its own size
(`tuner.data.decode.read_image`, what `python -m tuner.predict` does) and resized inside the
model; files of one size go in one call, which changes no result, since the model treats each
image alone. A file that cannot be read is skipped and counted. The figures are
`tuner.metrics.scores`, the same as every trial's.

`make_block` is what metadata.json (`test`) and PROJECT_DIR/test.json hold; `summary_line` is
the line the search prints under its leaderboard. Nothing here trains, selects or calibrates:
the test images reach the model only after it was exported.

Light to import: TensorFlow loads when a file is decoded.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from tuner import metrics
from tuner.data.folders import ImageSet, Skipped, check_test_classes, scan
from tuner.errors import DataError

# Files decoded ahead of the model, and the most decoded bytes held at once: a folder of
# 12-megapixel photos stays within a few hundred MB.
WINDOW_FILES = 32
WINDOW_BYTES = 256 * 2**20
TEST_FORMAT = 1


def load_test_set(
    folder: Path, class_names: Sequence[str], searched: Sequence[ImageSet] = ()
) -> tuple[ImageSet, list[Skipped]]:
    """The test images of `folder`, labelled as the training classes, and the files the scan
    could not use.

    Args:
        folder: the `--test-data` folder.
        class_names: the training classes, in label order.
        searched: the training and validation images, none of which may be a test image.

    Raises:
        DataError: the folder cannot give a test set (missing, no images, one class), its
            classes differ from `class_names`, or it holds files the search trained or
            validated on; one line that names `--test-data`.
    """
    images, skipped = scan_test_set(folder)
    images = check_test_classes(class_names, images)
    used = {os.path.realpath(p) for image_set in searched for p in image_set.paths}
    shared = [p for p in images.paths if os.path.realpath(p) in used]
    if shared:
        raise DataError(
            f"--test-data: {len(shared)} of its {len(images)} images are also training or "
            f"validation images (e.g. {shared[0]}), so their scores would not be held out. Pass "
            "a test folder apart from --data and --val-data."
        )
    return images, skipped


def scan_test_set(folder: Path) -> tuple[ImageSet, list[Skipped]]:
    """The test images of `folder` as scanned (`tuner.data.folders.scan`), with their own class
    names; a folder that gives none is a `DataError` that names `--test-data`."""
    try:
        return scan(folder)
    except DataError as error:
        raise DataError(f"--test-data: {error}") from None


def score_files(
    model: Any, images: ImageSet, *, predict: Callable[[Any, np.ndarray], np.ndarray] | None = None
) -> tuple[dict[str, Any], list[Skipped]]:
    """Scores `model` (raw RGB pixels of any size in, probabilities out) on every file of
    `images`, each decoded at its own size; returns `tuner.metrics.scores` and the files that
    could not be decoded.

    Args:
        model: the exported Keras model.
        images: the test images (`load_test_set`).
        predict: `predict(model, batch)` -> probabilities; defaults to an inference call.
    """
    from tuner.data.decode import read_image

    predict = predict or _call
    paths = list(images.paths)
    probabilities: list[np.ndarray | None] = [None] * len(paths)
    skipped: list[Skipped] = []

    def read(path: str) -> np.ndarray | DataError:
        try:
            return read_image(path)
        except DataError as error:
            return error

    def flush(window: list[tuple[int, np.ndarray]]) -> None:
        for indices, batch in _same_size(window):
            out = metrics.as_matrix(predict(model, batch))
            for i, row in zip(indices, out, strict=True):
                probabilities[i] = row
        window.clear()

    threads = min(8, os.cpu_count() or 1)
    window: list[tuple[int, np.ndarray]] = []
    held = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # A few files decode ahead of the model, and the model takes a window at a time: memory
        # holds one window and the look-ahead, whatever the folder's size.
        pending: deque[tuple[int, Future]] = deque()
        following = iter(enumerate(paths))
        for index, path in islice(following, 2 * threads):
            pending.append((index, pool.submit(read, path)))
        while pending:
            index, future = pending.popleft()
            for nxt, path in islice(following, 1):
                pending.append((nxt, pool.submit(read, path)))
            pixels = future.result()
            if isinstance(pixels, DataError):
                skipped.append(Skipped(paths[index], _reason(pixels)))
                continue
            window.append((index, pixels))
            held += pixels.nbytes
            if len(window) >= WINDOW_FILES or held >= WINDOW_BYTES:
                flush(window)
                held = 0
    flush(window)
    kept = [i for i, p in enumerate(probabilities) if p is not None]
    n_classes = len(images.class_names)
    matrix = (
        np.stack([probabilities[i] for i in kept]) if kept else np.zeros((0, n_classes), "float64")
    )
    labels = np.asarray(images.labels)[kept]
    return metrics.scores(matrix, labels, n_classes), skipped


def _same_size(window: list[tuple[int, np.ndarray]]) -> list[tuple[list[int], np.ndarray]]:
    """The window's images grouped by height and width, each group one batch."""
    groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for index, pixels in window:
        groups.setdefault(tuple(pixels.shape), []).append((index, pixels))
    return [([i for i, _ in group], np.stack([p for _, p in group])) for group in groups.values()]


def _call(model: Any, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model(batch.astype("float32"), training=False))


def _reason(error: DataError) -> str:
    # read_image says "Cannot use image 'PATH': REASON. Pass a readable image file."
    text = str(error)
    if ": " in text:
        text = text.split(": ", 1)[1]
    return text.removesuffix(" Pass a readable image file.").rstrip(".")


def make_block(
    scores: dict[str, Any],
    *,
    trial_id: str,
    export: Path,
    refit: bool,
    folder: Path,
    class_names: Sequence[str],
    skipped: int,
    temperature: float,
) -> dict[str, Any]:
    """What metadata.json (`test`) and PROJECT_DIR/test.json hold: which export was scored on
    which folder, and its figures (`tuner.metrics.scores`, flat)."""
    return {
        "format": TEST_FORMAT,
        "trial_id": trial_id,
        "export": str(export),
        "refit": bool(refit),
        "folder": str(folder),
        "class_names": list(class_names),
        "skipped": int(skipped),
        "temperature": float(temperature),
        **scores,
    }


def summary_line(block: dict[str, Any]) -> str:
    """One line of the test figures: `test (N images): accuracy A, balanced accuracy B, ECE E,
    log-loss L`."""
    skipped = block.get("skipped") or 0
    parts = [
        f"accuracy {block['accuracy']:.4f}",
        f"balanced accuracy {block['balanced_accuracy']:.4f}",
    ]
    if block.get("auc") is not None:
        parts.append(f"AUC {block['auc']:.4f}")
    parts += [f"ECE {block['ece']:.4f}", f"log-loss {block['loss']:.4f}"]
    images = f"{block['images']} images" + (f", {skipped} skipped" if skipped else "")
    return f"test ({images}): " + ", ".join(parts)
