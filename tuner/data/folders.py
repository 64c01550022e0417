"""From a folder of images to labelled image sets, without decoding anything.

This module owns which files are the data and what their labels are:

* `scan` finds the images and their labels without decoding anything. It reads two layouts: one
  subfolder per class (as `keras.utils.image_dataset_from_directory` reads, files in nested
  sub-subfolders belonging to the class folder), or a flat folder whose file names carry the label
  before the first dot (Kaggle dogs-vs-cats: `cat.123.jpg`).
* `stratified_split` and `check_validation_classes` make the validation set;
  `check_test_classes` holds a test folder to the training classes.
* `summarize_skipped`, `write_skipped` and `fingerprint_files` report unusable files and key
  caches. Decoding is `tuner.data.decode`'s.

A file that cannot be used never stops the run: it becomes a `Skipped` with a one-line reason. Only
a folder that cannot give a dataset at all (missing, no images, one class) raises `DataError`.

It never imports TensorFlow, so scanning and splitting stay cheap.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # matched in any case

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSet",
    "Skipped",
    "check_test_classes",
    "check_validation_classes",
    "fingerprint_files",
    "scan",
    "stratified_split",
    "summarize_skipped",
    "write_skipped",
]


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Image files and their labels, in a deterministic order.

    `labels` is stored as a read-only int32 copy. Two sets are equal when their paths, labels and
    class names are equal.
    """

    paths: tuple[str, ...]  # absolute paths, sorted by `scan`; subsets keep the order
    labels: np.ndarray  # int32, one per path, an index into class_names
    class_names: tuple[str, ...]  # sorted; two names mean one sigmoid unit downstream

    def __post_init__(self) -> None:
        paths = tuple(str(p) for p in self.paths)
        labels = np.array(self.labels, dtype=np.int32).reshape(-1)
        names = tuple(str(n) for n in self.class_names)
        if len(labels) != len(paths):
            raise ValueError(
                f"Expected one label per path. Received: {len(paths)} paths, {len(labels)} labels."
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(
                f"Expected labels in [0, {len(names)}) to index class_names. Received: "
                f"labels from {labels.min()} to {labels.max()}."
            )
        labels.flags.writeable = False  # the dataclass is frozen; so is its array
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.paths)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageSet):
            return NotImplemented
        return (
            self.paths == other.paths
            and self.class_names == other.class_names
            and np.array_equal(self.labels, other.labels)
        )

    def __hash__(self) -> int:
        return hash((self.paths, self.class_names))

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """Returns the images at `indices` (integer positions or a boolean mask), same classes."""
        index = np.asarray(indices)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        return ImageSet(
            paths=tuple(self.paths[i] for i in index),
            labels=self.labels[index],
            class_names=self.class_names,
        )

    def counts(self) -> dict[str, int]:
        """Returns the number of images of each class, zero counts included, in class order."""
        per_class = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) that could not be used, and why."""

    path: str  # as found, absolute
    reason: str  # one line, e.g. "zero-byte file", "too large (12000x12000 > 50 megapixels)"


# --------------------------------------------------------------------------------------------------
# Scanning


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_hidden(name: str) -> bool:
    # Hidden entries are never data: .DS_Store, ._cat.jpg (macOS resource forks), .ipynb_checkpoints.
    return name.startswith(".")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    # DirEntry.is_dir follows symlinks and swallows only ENOENT; a link loop raises ELOOP.
    try:
        return entry.is_dir()
    except OSError:
        return False


def _check_file(path: str) -> str | None:
    """Returns why an image file cannot be read, or None when it looks readable (not decoded)."""
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        if err.errno == errno.ENOENT and os.path.islink(path):
            return "broken symlink"
        if err.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return f"cannot be read ({err.strerror or err})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "zero-byte file"
    # os.access answers for the real user; root passes even on chmod 000, and can read it too.
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _walk(
    folder: str, ancestors: frozenset[tuple[int, int]], found: list[str], skipped: list[Skipped]
) -> None:
    """Collects image files under `folder`, following symlinks but never round a loop."""
    try:
        info = os.stat(folder)
        key = (info.st_dev, info.st_ino)
    except OSError as err:
        skipped.append(Skipped(folder, f"folder cannot be read ({err.strerror or err})"))
        return
    if key in ancestors:
        skipped.append(Skipped(folder, "symlink loop (folder links back to a parent)"))
        return
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        skipped.append(Skipped(folder, "permission denied (cannot list folder)"))
        return
    except OSError as err:
        skipped.append(Skipped(folder, f"folder cannot be listed ({err.strerror or err})"))
        return
    inside = ancestors | {key}
    for entry in entries:
        if _is_hidden(entry.name):
            continue
        path = os.path.join(folder, entry.name)
        if _is_dir(entry):  # follows symlinks; False for a broken or looping link
            _walk(path, inside, found, skipped)
        elif _is_image_name(entry.name):
            found.append(path)


def _usable(paths: Iterable[str], skipped: list[Skipped]) -> list[str]:
    usable = []
    for path in paths:
        reason = _check_file(path)
        if reason is None:
            usable.append(path)
        else:
            skipped.append(Skipped(path, reason))
    return usable


def _accepted() -> str:
    return ", ".join(IMAGE_EXTENSIONS) + " (any case)"


def scan(directory: str | os.PathLike[str]) -> tuple[ImageSet, list[Skipped]]:
    """Finds the labelled images in a folder, without decoding them.

    The layout is decided from what the folder holds:

    * Subfolders that contain image files: one class per subfolder (files in nested folders belong
      to the top-level class folder). Image files lying loose at the top level next to class
      folders are reported as skipped ("outside any class folder") rather than guessed at.
      A class folder whose images all turn out unreadable is dropped and reported as skipped.
    * Otherwise, image files at the top level: the label of each file is its name up to the first
      dot (`cat.123.jpg` -> `cat`, `IMG.jpg` -> `IMG`).

    Hidden entries (names starting with ".") are ignored, and so are files without an image
    extension. Symlinks are followed; loops, broken links, zero-byte and unreadable files are
    skipped. Decoding happens later, in `load_pixels`.

    Args:
        directory: The data folder.

    Returns:
        The images, sorted by path with sorted class names, and the files skipped with reasons.

    Raises:
        DataError: The folder is missing or not a folder, holds no usable images, or holds only
            one class.
    """
    root = os.path.abspath(os.fspath(directory))
    entries = _list_data_folder(root)
    skipped: list[Skipped] = []
    top_files = [
        os.path.join(root, e.name) for e in entries if not _is_dir(e) and _is_image_name(e.name)
    ]
    per_class: dict[str, list[str]] = {}
    root_info = os.stat(root)
    # The data folder counts as a parent too: a link inside a class folder back to it is a loop.
    above = frozenset({(root_info.st_dev, root_info.st_ino)})
    for entry in entries:
        if _is_dir(entry):
            found: list[str] = []
            _walk(os.path.join(root, entry.name), above, found, skipped)
            if found:
                per_class[entry.name] = found

    if per_class:  # layout (a): one subfolder per class
        for path in top_files:
            skipped.append(
                Skipped(path, "outside any class folder (put each image in its class subfolder)")
            )
        labelled: dict[str, list[str]] = {}
        for name, found in per_class.items():
            usable = _usable(found, skipped)
            if usable:
                labelled[name] = usable
            else:
                folder = os.path.join(root, name)
                skipped.append(
                    Skipped(folder, "class folder has no readable images; class dropped")
                )
        n_candidates = sum(len(f) for f in per_class.values())
    else:  # layout (b): flat folder, label before the first dot
        labelled = {}
        for path in _usable(top_files, skipped):
            labelled.setdefault(os.path.basename(path).split(".", 1)[0], []).append(path)
        n_candidates = len(top_files)
    return _labelled_images(root, labelled, n_candidates, skipped), skipped


def _list_data_folder(root: str) -> list[os.DirEntry[str]]:
    """The data folder's visible entries, sorted by name; a missing or unlistable folder is a
    `DataError` that says what to pass instead."""
    if not os.path.exists(root):
        raise DataError(
            f"Data folder not found: {root!r}. Pass an existing folder holding one subfolder of "
            "images per class (or files named like 'cat.1.jpg')."
        )
    if not os.path.isdir(root):
        raise DataError(
            f"The data path is not a folder: {root!r}. Pass the folder that holds the images "
            "(one subfolder per class, or files named like 'cat.1.jpg'), not a file."
        )
    try:
        with os.scandir(root) as it:
            return sorted((e for e in it if not _is_hidden(e.name)), key=lambda e: e.name)
    except OSError as err:
        raise DataError(
            f"Cannot list the data folder {root!r}: {err.strerror or err}. Check its permissions."
        ) from err


def _labelled_images(
    root: str, labelled: dict[str, list[str]], n_candidates: int, skipped: list[Skipped]
) -> ImageSet:
    """The usable images of each class as one `ImageSet`, sorted by path; too few images or
    classes is a `DataError`."""
    if not labelled:
        if n_candidates:
            raise DataError(
                f"None of the {n_candidates} image files in {root!r} can be read: "
                f"{summarize_skipped(skipped)}. Fix or replace those files."
            )
        raise DataError(
            f"No images found in {root!r}: expected files ending in {_accepted()}, either in one "
            "subfolder per class or named '<label>.<anything>.<ext>' (e.g. 'cat.1.jpg')."
        )
    class_names = tuple(sorted(labelled))
    if len(class_names) < 2:
        only = class_names[0]
        raise DataError(
            f"Found only one class, {only!r}, in {root!r}; at least 2 classes are needed. Add a "
            "subfolder of images for each other class (or, in a flat folder, files named "
            "'<label>.<n>.jpg' with other labels)."
        )
    pairs = sorted(
        (path, label) for label, name in enumerate(class_names) for path in labelled[name]
    )
    return ImageSet(
        paths=tuple(p for p, _ in pairs),
        labels=np.array([lab for _, lab in pairs], dtype=np.int32),
        class_names=class_names,
    )


# --------------------------------------------------------------------------------------------------
# Validation sets


def stratified_split(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Holds out a seeded share of each class for validation.

    Each class is shuffled by its own generator, seeded from `seed` and the class name, so adding
    images to one class leaves the split of the others unchanged. Every class keeps at least one
    image on each side; both returned sets keep the input order.

    Args:
        images: The images to split.
        fraction: The share of each class held out for validation, `0 < fraction < 1`.
        seed: The random seed.

    Returns:
        `(train, val)`, both with `images.class_names`.

    Raises:
        ConfigError: `fraction` is not strictly between 0 and 1.
        DataError: A class has fewer than 2 images, so it cannot appear on both sides.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise ConfigError(
            f"The validation fraction must be a number with 0 < fraction < 1, but got "
            f"fraction={fraction!r}. Pass e.g. 0.2."
        )
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(
            f"The validation fraction must satisfy 0 < fraction < 1, but got fraction={fraction!r}. "
            "Pass e.g. 0.2."
        )
    counts = images.counts()
    too_small = [(name, n) for name, n in counts.items() if n < 2]
    if too_small:
        listed = ", ".join(
            f"{name!r} has {n} image{'' if n == 1 else 's'}" for name, n in too_small
        )
        raise DataError(
            f"Cannot split a validation set off the training data: {listed}, and each class needs "
            "at least 2 (one for training, one for validation). Add images to that class or pass a "
            "separate validation folder with --val-data."
        )
    val_mask = np.zeros(len(images), dtype=bool)
    for label, name in enumerate(images.class_names):
        members = np.flatnonzero(images.labels == label)
        n_val = min(max(int(round(len(members) * float(fraction))), 1), len(members) - 1)
        rng = np.random.default_rng(
            [int(seed) % 2**64, zlib.crc32(name.encode("utf-8", "replace"))]
        )
        val_mask[rng.permutation(members)[:n_val]] = True
    return images.subset(~val_mask), images.subset(val_mask)


def check_validation_classes(train: ImageSet, val: ImageSet) -> ImageSet:
    """Relabels a separately scanned validation set onto the training classes.

    Args:
        train: The training images; their class names define the label indices.
        val: The validation images, scanned from their own folder.

    Returns:
        `val` with `train.class_names` and labels that index them. Training classes missing from
        the validation folder are allowed.

    Raises:
        DataError: The validation folder has classes the training data lacks.
    """
    extra = sorted(set(val.class_names) - set(train.class_names))
    if extra:
        raise DataError(
            "The validation data has classes the training data lacks: "
            f"{', '.join(repr(n) for n in extra)} (training classes: "
            f"{', '.join(repr(n) for n in train.class_names)}). Remove those classes from the "
            "validation folder, or add them to the training folder."
        )
    index = {name: i for i, name in enumerate(train.class_names)}
    mapping = np.array([index[name] for name in val.class_names], dtype=np.int32)
    return ImageSet(paths=val.paths, labels=mapping[val.labels], class_names=train.class_names)


def check_test_classes(class_names: Sequence[str], test: ImageSet) -> ImageSet:
    """Relabels a separately scanned test set onto the training classes, which it must hold
    exactly: a test set without a class cannot measure its recall, and one with an extra class
    scores images the model can never get right.

    Args:
        class_names: The training classes, in label order.
        test: The test images, scanned from their own folder.

    Returns:
        `test` with `class_names` and labels that index them.

    Raises:
        DataError: The test folder lacks a training class or has one the training data lacks.
    """
    missing = [n for n in class_names if n not in set(test.class_names)]
    extra = sorted(set(test.class_names) - set(class_names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"has {', '.join(repr(n) for n in extra)}, which training lacks")
        raise DataError(
            f"The test data's classes differ from the training classes: it {' and '.join(parts)} "
            f"(training classes: {', '.join(repr(n) for n in class_names)}). Pass a --test-data "
            "folder with one subfolder of images per training class."
        )
    index = {name: i for i, name in enumerate(class_names)}
    mapping = np.array([index[name] for name in test.class_names], dtype=np.int32)
    return ImageSet(paths=test.paths, labels=mapping[test.labels], class_names=tuple(class_names))


# --------------------------------------------------------------------------------------------------
# Reporting and cache keys


def _short(path: str) -> str:
    # Class folder plus file name: "cats/1.jpg" and "dogs/1.jpg" stay distinguishable.
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else path


def summarize_skipped(skipped: Sequence[Skipped], limit: int = 3) -> str:
    """Describes skipped files in one line, with up to `limit` examples.

    Args:
        skipped: The skipped files.
        limit: How many examples to name. Defaults to 3.

    Returns:
        E.g. "skipped 5 files that could not be used (e.g. cats/a.jpg: zero-byte file; ...)", or
        "" when nothing was skipped.
    """
    if not skipped:
        return ""
    n = len(skipped)
    line = f"skipped {n} file{'' if n == 1 else 's'} that could not be used"
    examples = "; ".join(f"{_short(s.path)}: {s.reason}" for s in list(skipped)[: max(limit, 0)])
    return f"{line} (e.g. {examples})" if examples else line


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_skipped(skipped: Sequence[Skipped], path: str | os.PathLike[str]) -> None:
    """Writes one "path<TAB>reason" line per skipped file (an empty file when none).

    Tabs, newlines and backslashes inside names are escaped so each entry stays one line; names
    that are not valid UTF-8 are written with backslash escapes.

    Args:
        skipped: The skipped files.
        path: The file to write, e.g. PROJECT_DIR/skipped.txt; its parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{_one_line(s.path)}\t{_one_line(s.reason)}\n" for s in skipped)
    target.write_text(lines, encoding="utf-8", errors="backslashreplace")


def fingerprint_files(images: ImageSet) -> list[tuple[str, int, int]]:
    """Returns (path, size in bytes, mtime in ns) for each image, for cache keys.

    A file that can no longer be read gets (path, -1, -1), so the key changes instead of raising.
    """
    prints = []
    for path in images.paths:
        try:
            info = os.stat(path)
        except OSError:
            prints.append((path, -1, -1))
        else:
            prints.append((path, int(info.st_size), int(info.st_mtime_ns)))
    return prints
