"""The search's images as pixels: scanned, checked, split, decoded once per size and stored once.

`prepare_data` turns `--data` (and `--val-data`) into a `SearchData`: the training and validation
image sets, and their decoded pixels at any size a backbone asks for. Everything the user can get
wrong in the data is found before any file is written: pixels decoded while the data is checked
are stored in the cache (`PixelStore`) only once it passed, so a bad dataset leaves nothing behind,
and a rerun decodes nothing. With the store, pixels stay on disk and are read a batch at a time
(`tuner.cache.diskarray.DiskArray`); without it they are held in memory once, per split and size.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tuner.cache.diskarray import DiskArray, RowWriter
from tuner.cache.files import log_lock
from tuner.cache.store import ArrayCache
from tuner.config import SearchConfig
from tuner.data import decode
from tuner.data import folders as data_module
from tuner.data.folders import ImageSet, Skipped
from tuner.errors import TunerError
from tuner.project.layout import SKIPPED_FILE
from tuner.ui.display import SearchDisplay

PIXELS_FORMAT = 1
_CHUNK_ROWS = 256  # rows per write when a decoding is stored
SPLITS = ("train", "val")

Decoded = tuple[
    ImageSet, "np.ndarray | DiskArray", list[Skipped]
]  # (kept images, uint8 pixels, skipped files)


# Decoded pixels are staged in the temporary folder as `STAGING<pid>-<size>-<random>.tmp` until
# the data pass their checks and the store takes them. A process killed meanwhile (SIGKILL, OOM)
# cannot remove its file; the next search removes the files of processes no longer running.
STAGING = "tuner-pixels-"


def sweep_staging(folder: str | None = None) -> list[Path]:
    """Removes the staging files in `folder` (the temporary folder) whose process is gone;
    returns them. A file whose process still runs, or whose name carries no process id (an
    older version's), is left alone."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{STAGING}*-*-*.tmp"):
        pid = path.name[len(STAGING) :].split("-", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


class PixelStore:
    """Decoded, resized pixels of an image set, kept in the cache so that a rerun decodes nothing.

    An entry is keyed like the activations: by every file's path, size and mtime, the class names
    and the size. Its index (which files decoded, and why the others did not) is stored beside it,
    as JSON bytes in a uint8 entry, and is written last: without it the pixels are not used.
    The cache folder is only created by `save`, so a lookup never writes a file.
    """

    def __init__(self, root: Path, *, memory_budget: int) -> None:
        self.root = root
        self.memory_budget = memory_budget
        self._cache: ArrayCache | None = None

    def _open(self, create: bool) -> ArrayCache | None:
        if self._cache is None and (create or self.root.is_dir()):
            self._cache = ArrayCache(self.root, memory_budget=self.memory_budget)
        return self._cache

    @staticmethod
    def key(images: ImageSet, size: int) -> dict[str, Any]:
        """The cache key of `images` decoded at `size`."""
        return {
            "format": PIXELS_FORMAT,
            "size": size,
            "classes": list(images.class_names),
            "files": [list(f) for f in data_module.fingerprint_files(images)],
        }

    def load(self, images: ImageSet, size: int) -> Decoded | None:
        """What `tuner.data.decode.load_pixels` would return for `images` at `size`, or None when it is
        not stored."""
        cache = self._open(create=False)
        if cache is None:
            return None
        key = self.key(images, size)
        index = cache.lookup(f"pixels-{size}-index", key)
        pixels = cache.lookup(f"pixels-{size}", key) if index is not None else None
        if index is None or pixels is None:
            return None
        info = json.loads(bytes(np.asarray(index.array)).decode())
        keep = np.zeros(len(images), dtype=bool)
        keep[info["kept"]] = True
        skipped = [Skipped(path, reason) for path, reason in info["skipped"]]
        return images.subset(keep), DiskArray.of_npy(pixels.path), skipped

    @contextlib.contextmanager
    def claim(self, images: ImageSet, size: int, *, waiting: Any) -> Iterator[dict[str, bool]]:
        """Holds the right to decode `images` at `size` for this process: in a distributed search
        (`tuner.cluster`) the others wait here, then find the stored pixels instead of decoding
        them again. `waiting()` is called once when another process holds it. Yields a dict
        whose "built" the holder sets when it decoded (for `TUNER_LOCK_LOG`)."""
        import fcntl
        import hashlib
        import time

        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(json.dumps(self.key(images, size)).encode()).hexdigest()[:16]
        fd = os.open(self.root / f"pixels-{size}-{digest}.claim", os.O_CREAT | os.O_RDWR, 0o644)
        asked = time.perf_counter()
        state = {"built": False}
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
            locked = time.perf_counter()
            yield state
            log_lock(
                f"pixels-{size}",
                waited=locked - asked,
                held=time.perf_counter() - locked,
                built=state["built"],
                file=f"pixels-{size}-{digest}.claim",
            )
        finally:
            os.close(fd)  # releases the lock

    def save(self, images: ImageSet, size: int, result: Decoded) -> Decoded:
        """Stores `result`, the decoding of `images` at `size`; returns it read from the store."""
        kept, pixels, skipped = result
        cache = self._open(create=True)
        assert cache is not None
        key = self.key(images, size)
        position = {path: i for i, path in enumerate(images.paths)}
        info = {
            "kept": [position[path] for path in kept.paths],
            "skipped": [[item.path, item.reason] for item in skipped],
        }
        blob = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)

        def chunks() -> Iterator[np.ndarray]:
            for start in range(0, len(pixels), _CHUNK_ROWS):
                yield np.asarray(pixels[start : start + _CHUNK_ROWS])

        entry = cache.get_or_build(
            f"pixels-{size}", key, shape=tuple(pixels.shape), dtype="uint8", produce=chunks
        )
        cache.get_or_build(
            f"pixels-{size}-index",
            key,
            shape=blob.shape,
            dtype="uint8",
            produce=lambda: iter([blob]),
        )
        return kept, DiskArray.of_npy(entry.path), skipped


class Decoder:
    """Decodes image sets, from the store when it holds them.

    With a store, decoded rows go to a temporary file as they come and are read back from disk:
    the pixels are never held whole in memory. Until `commit`, what it decodes is held back from
    the store (the data is still being checked); from then on it is stored as soon as it is
    decoded, and `settled` gives the stored copy.
    """

    def __init__(
        self, store: PixelStore | None, display: SearchDisplay, *, shared: bool = False
    ) -> None:
        self.store = store
        self.display = display
        # Several processes share the store (a distributed search): one decodes, the others wait.
        self.shared = shared
        self._claims = contextlib.ExitStack()
        self._unsaved: list[tuple[ImageSet, int, Decoded, RowWriter]] = []
        self._stored: dict[int, Decoded] = {}  # by id() of the decoded pixels
        self._committed = False
        if store is not None:
            sweep_staging()  # what killed searches left, whether or not this one decodes

    def decode(self, images: ImageSet, size: int) -> Decoded:
        """`images` decoded and resized to `size` (see `tuner.data.decode.load_pixels`)."""
        found = self.store.load(images, size) if self.store is not None else None
        if found is not None:
            return found
        if self.store is not None and self.shared:
            # Held until `commit` stored the pixels, or `discard`.
            claim = self._claims.enter_context(
                self.store.claim(
                    images,
                    size,
                    waiting=lambda: self.display.message(
                        f"waiting for another process decoding {len(images)} images at {size}px"
                    ),
                )
            )
            found = self.store.load(images, size)
            if found is not None:
                return found
            claim["built"] = True
        writer = None
        if self.store is not None:
            fd, name = tempfile.mkstemp(prefix=f"{STAGING}{os.getpid()}-{size}-", suffix=".tmp")
            os.close(fd)
            writer = RowWriter(name, (size, size, 3), "uint8")
        try:
            with self.display.build_progress(
                f"decoding {len(images)} images at {size}px", len(images)
            ) as update:
                found = decode.load_pixels(images, size, progress=update, writer=writer)
        except BaseException:
            if writer is not None:
                writer.remove()
            raise
        if writer is not None:
            self._unsaved.append((images, size, found, writer))
            if self._committed:
                self.commit()
        return found

    def settled(self, decoded: Decoded) -> Decoded:
        """`decoded`, or its stored copy once `commit` stored it."""
        return self._stored.get(id(decoded[1]), decoded)

    def commit(self) -> None:
        """The data passed every check: store what was decoded, and from now on all of it."""
        self._committed = True
        for images, size, found, writer in self._unsaved:
            assert self.store is not None
            try:
                self._stored[id(found[1])] = self.store.save(images, size, found)
            finally:
                writer.remove()
        self._unsaved.clear()
        self._claims.close()

    def discard(self) -> None:
        """Removes the temporary files of what was decoded but not stored."""
        for *_, writer in self._unsaved:
            writer.remove()
        self._unsaved.clear()
        self._claims.close()


class SearchData:
    """The training and validation images of a search, and their pixels at any size.

    Args:
        train: the training images.
        val: the validation images.
        sources: for each split, the decoded image set its images are a subset of (one folder
            split in two shares one source).
        decoder: decodes a source at a size not seen yet.
    """

    def __init__(
        self,
        train: ImageSet,
        val: ImageSet,
        *,
        sources: dict[str, ImageSet],
        decoder: Decoder,
    ) -> None:
        self.train = train
        self.val = val
        self.class_names = tuple(train.class_names)
        self.n_classes = len(self.class_names)
        self._sources = sources
        self._decoder = decoder
        self._arrays: dict[tuple[str, int], np.ndarray] = {}

    def images(self, which: str) -> ImageSet:
        """The "train" or "val" image set."""
        return self.train if which == "train" else self.val

    def labels(self, which: str) -> np.ndarray:
        """Class indices of the "train" or "val" images."""
        return np.asarray(self.images(which).labels)

    def pixels(self, which: str, size: int) -> np.ndarray | DiskArray:
        """The "train" or "val" images as uint8 pixels, N x size x size x 3, in image order: on
        disk (`DiskArray`, read a batch at a time) when the search caches, else in memory."""
        if (which, size) not in self._arrays:
            source = self._sources[which]
            self._add(source, size, self._decoder.decode(source, size))
        return self._arrays[(which, size)]

    def _add(self, source: ImageSet, size: int, decoded: Decoded) -> None:
        # Rows of the decoded array, in the order of each split drawn from `source`: an index
        # into the file when the pixels are on disk (nothing is read), a copy in memory otherwise.
        kept, array, _ = self._decoder.settled(decoded)
        index = {p: i for i, p in enumerate(kept.paths)}
        for split in SPLITS:
            if self._sources[split] is source and (split, size) not in self._arrays:
                rows = [index[p] for p in self.images(split).paths]
                self._arrays[(split, size)] = (
                    array.take(rows) if isinstance(array, DiskArray) else array[rows]
                )


def prepare_data(config: SearchConfig, size: int, display: SearchDisplay) -> SearchData:
    """Scans, decodes (at `size`, the first backbone's input size), checks and splits the data.

    Creates the project directory and writes `skipped.txt` there only once the data passed.

    Raises:
        DataError, TunerError: what is wrong with the data, in one line.
    """
    store = (
        PixelStore(config.resolved_cache_dir, memory_budget=config.cache_memory)
        if config.cache
        else None
    )
    decoder = Decoder(store, display, shared=config.role != "single")
    try:
        return _prepare(config, size, display, decoder)
    finally:
        decoder.discard()  # what a failed check left undecided


def _prepare(
    config: SearchConfig, size: int, display: SearchDisplay, decoder: Decoder
) -> SearchData:
    train_all, skipped = data_module.scan(config.data)
    val_all = None
    if config.val_data is not None:
        val_all, val_skipped = data_module.scan(config.val_data)
        skipped = skipped + val_skipped
    train_decoded = decoder.decode(train_all, size)
    train_kept = train_decoded[0]
    skipped = skipped + train_decoded[2]
    if val_all is not None:
        val_decoded = decoder.decode(val_all, size)
        val_kept = val_decoded[0]
        skipped = skipped + val_decoded[2]
        usable = [name for name, n in train_kept.counts().items() if n > 0]
        if len(usable) < 2:
            raise TunerError(
                f"Training data needs at least 2 classes with usable images. Received: "
                f"{usable} in {config.data}"
            )
        val = data_module.check_validation_classes(train_kept, val_kept)
        train = train_kept
        result = SearchData(
            train, val, sources={"train": train_kept, "val": val_kept}, decoder=decoder
        )
        added = [(val_kept, val_decoded)]
    else:
        train, val = data_module.stratified_split(train_kept, config.val_split, config.seed)
        result = SearchData(
            train, val, sources={"train": train_kept, "val": train_kept}, decoder=decoder
        )
        added = []

    config.project_dir.mkdir(parents=True, exist_ok=True)
    decoder.commit()
    for source, decoded in [*added, (train_kept, train_decoded)]:
        result._add(source, size, decoded)
    if skipped:
        data_module.write_skipped(skipped, config.project_dir / SKIPPED_FILE)
        display.warning(
            data_module.summarize_skipped(skipped)
            + f" (all listed in {config.project_dir / SKIPPED_FILE})"
        )
    display.message(
        f"{len(train)} training and {len(val)} validation images, "
        f"{len(train.class_names)} classes: {', '.join(train.class_names)}"
    )
    return result
