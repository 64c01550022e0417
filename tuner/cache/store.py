"""A safe on-disk cache of large arrays keyed by what produced them.

The frozen part of a backbone gives the same activations for the same image in every epoch of every
trial, so tuner computes them once and keeps them here. This module knows nothing about Keras: an
entry is an array named by a readable prefix and identified by a JSON-able key (backbone, weights,
input size, cut point, the list of image files with their sizes and mtimes, ...). It imports only
NumPy and the standard library.

On-disk format (format version 1), for an entry with stem ``<name>-<fingerprint>``:

- ``<stem>.npy``: a plain NumPy ``.npy`` file (format 1.0 header, C order), written batch by batch.
- ``<stem>.json``: the sidecar, written last. Its presence marks the entry as complete. It holds
  ``format``, ``name``, ``fingerprint``, ``key``, ``shape``, ``dtype``, ``nbytes`` (data bytes,
  header excluded), ``checksum`` (``{"algorithm": "blake2b-128", "hex": ...}`` over the data bytes
  in C order), ``created`` (Unix time) and ``build_seconds``.
- ``<stem>.lock``: an empty file locked with ``fcntl.flock`` around check-build-publish; removed by
  its holder when done.
- ``.<stem>.<pid>.<random>.tmp.npy`` / ``.tmp.json``: a writer's temporary files. They are only ever
  written by the holder of the entry's lock, so whoever holds that lock may delete any it finds:
  they belong to a writer that died.

Nothing is ever unpickled: arrays are read with ``np.load(..., allow_pickle=False)`` and the sidecar
with ``json``. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.cache import files as cache_io
from tuner.cache.diskarray import DiskArray
from tuner.cache.files import fingerprint
from tuner.errors import CacheError

__all__ = ["ArrayCache", "CacheEntry", "FORMAT_VERSION", "fingerprint"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped whenever the layout of the files changes; older entries are then rebuilt, never read."""

_CHECKSUM_ALGORITHM = "blake2b-128"
_STEM_RE = re.compile(rf"^(?P<name>.+)-(?P<fingerprint>[0-9a-f]{{{cache_io.FINGERPRINT_CHARS}}})$")
_TEMP_RE = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]+)\.tmp\.(?:npy|json)$")


@dataclass(frozen=True)
class CacheEntry:
    """A valid cache entry, as returned by `ArrayCache.lookup` and `ArrayCache.get_or_build`."""

    # Read-only: in memory up to the memory budget, else a `DiskArray` read a batch at a time.
    array: np.ndarray | DiskArray
    path: Path  # The .npy file.
    built: bool  # True when this call built the entry, False when it reused one.
    seconds: float  # Time spent building (produce included) or validating and loading.


class _DataError(Exception):
    """Internal: the entry on disk is invalid. Never escapes this module."""


class ArrayCache:
    """A directory of `.npy` arrays with JSON sidecars, safe against crashes and concurrent writers.

    Every lookup verifies the entry fully before trusting it: the sidecar's key must equal the
    requested key, the header's shape and dtype and the file size must match, and a blake2b
    checksum of the data must match the sidecar. Verification reads the data once, sequentially,
    and hashes it at roughly 0.5-1 GB/s on one core, so it costs about as much as loading the
    array, a second or two per GB. Anything that fails, or raises, is deleted and rebuilt.

    Args:
        root: Directory holding the entries; created when missing.
        memory_budget: Entries larger than this many bytes are returned as a `DiskArray` (read
            a batch at a time with plain reads, docs/design.md §1) instead of loaded into
            memory. Defaults to 2 GiB.

    Raises:
        CacheError: If `root` cannot be created or written to.
    """

    def __init__(self, root: str | os.PathLike, *, memory_budget: int = 2 * 2**30) -> None:
        if memory_budget < 0:
            raise ValueError(
                f"`memory_budget >= 0` must hold. Received: memory_budget={memory_budget}"
            )
        self.root = Path(root).expanduser()
        self.memory_budget = int(memory_budget)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # A real write, not os.access: root passes access() everywhere, even on a read-only
            # mount, and finding out after an hour of backbone passes would be worse.
            probe = self.root / f".probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            try:
                with open(probe, "wb") as f:
                    cache_io.write_bytes(f, b"ok")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    probe.unlink()
        except OSError as error:
            raise cache_io.cache_error(
                "create the activation cache in", self.root, error
            ) from error
        self._clean_orphans(blocking=False)

    # ----------------------------------------------------------------------------------- paths

    def path_for(self, name: str, key: Mapping[str, Any]) -> Path:
        """Returns the `.npy` path of an entry: ``root / f"{name}-{fingerprint(key)}.npy"``.

        Args:
            name: Readable prefix such as ``"xception-96-cut131"``; characters outside
                ``[A-Za-z0-9._-]`` become ``_``.
            key: The entry's identity; see `fingerprint`.

        Returns:
            The path, whether or not the entry exists.
        """
        return self.root / f"{cache_io.sanitize_name(name)}-{fingerprint(key)}.npy"

    # ---------------------------------------------------------------------------------- lookup

    def lookup(self, name: str, key: Mapping[str, Any]) -> CacheEntry | None:
        """Returns the valid entry for `key`, or None.

        Blocks while another process builds the same entry, then sees its result. A stale or
        corrupt entry is deleted and logged as a warning, never returned.

        Args:
            name: Readable prefix; see `path_for`.
            key: The entry's identity; see `fingerprint`.

        Returns:
            The entry with `built=False`, or None when there is no valid one.
        """
        path = self.path_for(name, key)
        with self._locked(path):
            return self._lookup_locked(path, key)

    def get_or_build(
        self,
        name: str,
        key: Mapping[str, Any],
        *,
        shape: tuple[int, ...],
        dtype: str = "float16",
        produce: Callable[[], Iterable[np.ndarray]],
        progress: Callable[[int], None] | None = None,
    ) -> CacheEntry:
        """Returns the valid entry for `key`, building and publishing it first when needed.

        Holds the entry's lock from the check to the publication, so two processes asking for the
        same entry build it once: the second waits and reuses it. Different entries build in
        parallel. `produce` is only called when building.

        Args:
            name: Readable prefix; see `path_for`.
            key: The entry's identity; see `fingerprint`. Include everything the data depends on.
            shape: Shape of the whole array; axis 0 is the one `produce` batches along.
            dtype: Dtype stored on disk; batches are cast to it as written. Defaults to
                `"float16"`.
            produce: Called once, with no arguments; yields consecutive batches along axis 0 whose
                concatenation has `shape`.
            progress: Called with the number of rows written so far after each batch.

        Returns:
            The entry; `built` says whether this call built it.

        Raises:
            CacheError: If writing fails (disk full, read-only, permissions). No partial file is
                left behind.
            ValueError: If `produce` yields batches of the wrong shape or the wrong total number
                of rows, or if `shape` or `dtype` are invalid.
        """
        shape = cache_io.check_shape(shape)
        np_dtype = cache_io.check_dtype(dtype)
        path = self.path_for(name, key)
        asked = time.perf_counter()
        with self._locked(path):
            locked = time.perf_counter()
            entry = self._lookup_locked(path, key)
            if entry is None:
                entry = self._build_locked(path, name, key, shape, np_dtype, produce, progress)
            cache_io.log_lock(
                name,
                waited=locked - asked,
                held=time.perf_counter() - locked,
                built=entry.built,
                file=path.name,
            )
            return entry

    # -------------------------------------------------------------------------------- listing

    def entries(self) -> list[dict[str, Any]]:
        """Lists the entries on disk without verifying their data, for a ``--cache info`` view.

        Returns:
            One dict per `.npy` file, sorted by name: ``name``, ``shape`` (tuple, or None when the
            sidecar is missing or unreadable), ``dtype`` (str or None), ``bytes`` (size of the
            `.npy` file), ``path`` (Path) and ``complete`` (False when the sidecar is missing or
            unreadable: such a file is never used and will be rebuilt or cleared).
        """
        listing = []
        for npy in sorted(self.root.glob("*.npy")):
            match = _STEM_RE.match(npy.stem)
            if match is None or npy.name.startswith("."):
                continue
            try:
                size = npy.stat().st_size
            except OSError:
                continue  # Deleted while we were listing.
            meta = cache_io.read_sidecar(npy.with_suffix(".json"))
            complete = meta is not None
            listing.append(
                {
                    "name": match["name"],
                    "shape": tuple(meta["shape"]) if complete else None,
                    "dtype": meta["dtype"] if complete else None,
                    "bytes": size,
                    "path": npy,
                    "complete": complete,
                }
            )
        return listing

    def clear(self, name_prefix: str | None = None) -> int:
        """Deletes entries, with their sidecars and any temporary files of dead writers.

        An entry that another process is building right now is skipped (and logged), so clearing
        while a search runs never pulls files from under a writer.

        Args:
            name_prefix: Only delete entries whose name starts with this prefix (sanitized like
                names). Defaults to None: every entry.

        Returns:
            The number of entries deleted (an `.npy` and/or its sidecar count as one).
        """
        prefix = None if name_prefix is None else cache_io.sanitize_name(name_prefix)
        stems = set()
        for candidate in list(self.root.glob("*.npy")) + list(self.root.glob("*.json")):
            match = _STEM_RE.match(candidate.stem)
            if match is None or candidate.name.startswith("."):
                continue
            if prefix is None or match["name"].startswith(prefix):
                stems.add(candidate.stem)
        removed = 0
        for stem in sorted(stems):
            path = self.root / f"{stem}.npy"
            with self._locked(path, blocking=False) as acquired:
                if not acquired:
                    logger.warning("Cache entry %s is being built by another process; kept.", path)
                    continue
                self._remove_temps(stem)
                if cache_io.remove_entry(path):
                    removed += 1
        self._clean_orphans(blocking=False)
        return removed

    # ------------------------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _locked(self, path: Path, *, blocking: bool = True) -> Iterator[bool]:
        """Holds an exclusive flock on ``<stem>.lock``; yields False if not blocking and busy.

        The holder unlinks the lock file before releasing it, so the directory does not fill with
        lock files. That opens a race (a waiter may end up locking an unlinked inode while a
        newcomer creates a fresh file), closed the usual way: after locking, check the path still
        names the inode we locked, and start over if not.
        """
        lock_path = path.with_suffix(".lock")
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise cache_io.cache_error("create a lock file", lock_path, error) from error
            try:
                fcntl.flock(fd, flags)
                try:
                    same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BlockingIOError:
                os.close(fd)
                break
            except BaseException:
                os.close(fd)
                raise
            if same:
                try:
                    yield True
                finally:
                    with contextlib.suppress(OSError):
                        lock_path.unlink()
                    os.close(fd)  # Releases the flock.
                return
            os.close(fd)
        yield False

    def _lookup_locked(self, path: Path, key: Mapping[str, Any]) -> CacheEntry | None:
        start = time.perf_counter()
        stem = path.stem
        self._remove_temps(stem)  # We hold the lock, so any temp file of this stem is an orphan.
        sidecar = path.with_suffix(".json")
        if not path.exists() and not sidecar.exists():
            return None
        try:
            array = self._load_verified(path, key)
        except Exception as error:  # Anything at all: an entry we cannot verify is not trusted.
            reason = (
                str(error) if isinstance(error, _DataError) else f"{type(error).__name__}: {error}"
            )
            logger.warning("Discarding cache entry %s: %s. It will be rebuilt.", path, reason)
            try:
                cache_io.remove_entry(path)
            except OSError as remove_error:
                logger.warning("Could not delete %s: %s", path, remove_error)
            return None
        return CacheEntry(array=array, path=path, built=False, seconds=time.perf_counter() - start)

    def _load_verified(self, path: Path, key: Mapping[str, Any]) -> np.ndarray:
        meta = cache_io.read_sidecar(path.with_suffix(".json"))
        if meta is None:
            raise _DataError("the sidecar is missing or unreadable (an interrupted write)")
        if meta.get("format") != FORMAT_VERSION:
            raise _DataError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        expected_fp = fingerprint(key)
        if meta.get("fingerprint") != expected_fp or cache_io.canonical_json(
            meta["key"]
        ) != cache_io.canonical_json(key):
            raise _DataError("stale: the sidecar's key differs from the requested key")
        shape = tuple(int(n) for n in meta["shape"])
        dtype = np.dtype(meta["dtype"])
        nbytes = math.prod(shape) * dtype.itemsize
        if meta.get("nbytes") != nbytes:
            raise _DataError(
                f"sidecar nbytes={meta.get('nbytes')} but shape and dtype give {nbytes}"
            )
        checksum = meta.get("checksum") or {}
        if checksum.get("algorithm") != _CHECKSUM_ALGORITHM:
            raise _DataError(f"unknown checksum algorithm {checksum.get('algorithm')!r}")

        # Cheap checks first: the header and the file size, before reading any data.
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(f)
            else:
                raise _DataError(f".npy version {version} not written by this module")
            file_shape, fortran_order, file_dtype = header
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
        if tuple(file_shape) != shape or file_dtype != dtype or fortran_order:
            raise _DataError(
                f"header says shape={tuple(file_shape)} dtype={file_dtype} "
                f"fortran_order={fortran_order}, sidecar says shape={shape} dtype={dtype}"
            )
        if size != offset + nbytes:
            raise _DataError(f"file is {size} bytes, expected {offset + nbytes} (truncated?)")

        if nbytes > self.memory_budget:
            digest = cache_io.checksum_file(path, offset, nbytes)
            array = DiskArray(path, shape, dtype, offset=offset)
        else:
            array = np.load(path, allow_pickle=False)
            digest = cache_io.checksum_of(array)
            array.flags.writeable = False
        if array.shape != shape or array.dtype != dtype:
            raise _DataError(f"loaded shape={array.shape} dtype={array.dtype}, expected {shape}")
        if digest != checksum.get("hex"):
            raise _DataError("checksum mismatch: the data was modified or corrupted on disk")
        return array

    def _build_locked(
        self,
        path: Path,
        name: str,
        key: Mapping[str, Any],
        shape: tuple[int, ...],
        dtype: np.dtype,
        produce: Callable[[], Iterable[np.ndarray]],
        progress: Callable[[int], None] | None,
    ) -> CacheEntry:
        start = time.perf_counter()
        stem = path.stem
        token = f"{os.getpid()}.{secrets.token_hex(6)}"
        tmp_npy = self.root / f".{stem}.{token}.tmp.npy"
        tmp_json = self.root / f".{stem}.{token}.tmp.json"
        sidecar = path.with_suffix(".json")
        nbytes = math.prod(shape) * dtype.itemsize
        # Small entries are filled in memory as they are written, so returning them needs no
        # second read; large ones are read from the published file a batch at a time instead.
        in_memory = np.empty(shape, dtype) if nbytes <= self.memory_budget else None
        try:
            digest, overflowed = cache_io.write_npy(
                tmp_npy, shape, dtype, produce, into=in_memory, progress=progress
            )
            if overflowed:
                logger.warning(
                    "%d values of %s overflowed %s and were stored as inf; pass dtype="
                    "'float32' if the model needs them.",
                    overflowed,
                    stem,
                    dtype,
                )
            meta = {
                "format": FORMAT_VERSION,
                "name": cache_io.sanitize_name(name),
                "fingerprint": fingerprint(key),
                "key": json.loads(cache_io.canonical_json(key)),
                "shape": list(shape),
                "dtype": dtype.str,
                "nbytes": nbytes,
                "checksum": {"algorithm": _CHECKSUM_ALGORITHM, "hex": digest},
                "created": time.time(),
                "build_seconds": round(time.perf_counter() - start, 3),
            }
            cache_io.write_json(tmp_json, meta)
            self._publish(tmp_npy, tmp_json, path)
        except BaseException:
            for leftover in (tmp_npy, tmp_json):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            if path.exists() and not sidecar.exists():
                with contextlib.suppress(OSError):
                    path.unlink()
            raise

        if in_memory is not None:
            in_memory.flags.writeable = False
            array = in_memory
        else:
            array = DiskArray.of_npy(path)
        seconds = time.perf_counter() - start
        logger.info("Built cache entry %s (%d bytes) in %.1f s.", path, nbytes, seconds)
        return CacheEntry(array=array, path=path, built=True, seconds=seconds)

    def _publish(self, tmp_npy: Path, tmp_json: Path, path: Path) -> None:
        # Drop any old sidecar first so it can never pair with the new data, then the data, then
        # the sidecar last. A crash between the steps leaves an .npy without a sidecar, which is
        # never trusted.
        """Renames a written entry into place, its sidecar last."""
        sidecar = path.with_suffix(".json")
        with cache_io.reraise_as_cache_error("publish", path):
            with contextlib.suppress(FileNotFoundError):
                sidecar.unlink()
            os.replace(tmp_npy, path)
            os.replace(tmp_json, sidecar)
            cache_io.fsync_dir(self.root)

    def _remove_temps(self, stem: str) -> None:
        """Deletes temp files of `stem`; only call while holding that stem's lock."""
        for temp in self.root.glob(f".{stem}.*.tmp.*"):
            match = _TEMP_RE.match(temp.name)
            if match is None or match["stem"] != stem:
                continue
            try:
                temp.unlink()
                logger.info("Removed %s, left by a writer (pid %s) that died.", temp, match["pid"])
            except FileNotFoundError:
                pass
            except OSError as error:
                logger.warning("Could not remove orphan temp file %s: %s", temp, error)

    def _clean_orphans(self, *, blocking: bool) -> None:
        """Removes temp files of dead writers for every stem whose lock is free right now."""
        try:
            stems = {m["stem"] for t in self.root.glob(".*.tmp.*") if (m := _TEMP_RE.match(t.name))}
        except OSError:
            return
        for stem in stems:
            try:
                with self._locked(self.root / f"{stem}.npy", blocking=blocking) as acquired:
                    if acquired:
                        self._remove_temps(stem)
            except CacheError:
                return  # Opportunistic: never fail a caller over housekeeping.
