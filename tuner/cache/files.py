"""The files of a cache entry: how keys become fingerprints, how sidecars are read, how bytes
reach the disk durably, and what a failing disk is told to the user as.

`tuner.cache.store.ArrayCache` builds on these; they know nothing about entries being looked up or
built. NumPy and the standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import operator
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tuner.errors import CacheError

FINGERPRINT_CHARS = 24  # 96 bits of sha256: collisions are not a practical concern.
CHUNK_BYTES = 64 * 2**20  # Hash memory-mapped data in slices so the page cache can evict as we go.
MAX_NAME_CHARS = 80


def json_default(value: Any) -> Any:
    # Paths and NumPy scalars show up in keys naturally; anything else is a caller bug.
    """Converts the non-JSON values keys hold naturally (paths, NumPy scalars); refuses others."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(
        f"Cache keys must hold only JSON values (str, int, float, bool, None, lists, dicts). "
        f"Received: {type(value).__name__}={value!r}"
    )


def canonical_json(key: Mapping[str, Any]) -> str:
    """A key's canonical JSON text: equal keys give equal text, whatever their order."""
    if not isinstance(key, Mapping):
        raise TypeError(f"A cache key must be a mapping. Received: key={key!r}")
    # sort_keys and fixed separators make equal keys give equal text whatever the insertion order;
    # tuples serialise as lists, so (path, size, mtime_ns) and [path, size, mtime_ns] are one key.
    return json.dumps(
        key, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
        default=json_default,
    )  # fmt: skip


def fingerprint(key: Mapping[str, Any]) -> str:
    """Returns the identity of a cache key: sha256 of its canonical JSON, first 24 hex characters.

    Args:
        key: JSON-able mapping (str, int, float, bool, None, lists, tuples, nested dicts;
            `os.PathLike` and NumPy scalars are converted). Key order does not matter.

    Returns:
        24 lowercase hex characters.

    Raises:
        TypeError: If the key holds a value JSON cannot represent.
        ValueError: If the key holds NaN or infinity.
    """
    return hashlib.sha256(canonical_json(key).encode("ascii")).hexdigest()[:FINGERPRINT_CHARS]


def sanitize_name(name: str) -> str:
    # The name is only a readable prefix (the fingerprint carries the identity), so squashing odd
    # characters is harmless and keeps the stem safe as a file name and as a glob pattern.
    """An entry's readable name, made safe as a file name and a glob pattern."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return cleaned[:MAX_NAME_CHARS] or "entry"


def check_shape(shape: Any) -> tuple[int, ...]:
    """`shape` as a tuple of non-negative ints, or a ValueError that says what was wrong."""
    try:
        # operator.index refuses floats and strings, which int() would silently accept.
        result = None if isinstance(shape, str) else tuple(operator.index(n) for n in shape)
    except TypeError:
        result = None
    if not result or any(n < 0 for n in result):
        raise ValueError(
            f"`shape` must be a non-empty tuple of non-negative ints. Received: shape={shape!r}"
        )
    return result


def check_dtype(dtype: Any) -> np.dtype:
    """`dtype` as a native-order numeric NumPy dtype, or a ValueError."""
    try:
        result = np.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"`dtype` must be a NumPy dtype. Received: dtype={dtype!r}") from error
    if result.kind not in "biuf" or result.hasobject:
        raise ValueError(
            f"`dtype` must be a numeric dtype such as 'float16'. Received: dtype={dtype!r}"
        )
    return result.newbyteorder("=")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """An entry's sidecar as a dict, or None when it is missing, unreadable or incomplete."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    required = ("format", "fingerprint", "key", "shape", "dtype", "nbytes", "checksum")
    if not isinstance(meta, dict) or any(name not in meta for name in required):
        return None
    if not isinstance(meta["shape"], list) or not isinstance(meta["dtype"], str):
        return None
    return meta


def checksum_of(array: np.ndarray) -> str:
    """blake2b-128 over the array's bytes in C order, in slices so a memmap is read once."""
    hasher = hashlib.blake2b(digest_size=16)
    flat = array.reshape(-1)
    step = max(1, CHUNK_BYTES // max(1, array.dtype.itemsize))
    for begin in range(0, flat.size, step):
        hasher.update(np.ascontiguousarray(flat[begin : begin + step]))
    return hasher.hexdigest()


def checksum_file(path: Path, offset: int, nbytes: int) -> str:
    """`checksum_of` the `nbytes` bytes from `offset` of a file, read in chunks with plain reads:
    unlike a memory map's, the pages read do not stay resident in this process."""
    hasher = hashlib.blake2b(digest_size=16)
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        left = nbytes
        while left:
            got = f.readinto(view[: min(left, CHUNK_BYTES)])
            if not got:
                raise OSError(errno.EIO, f"{path} ended {left} bytes early")
            hasher.update(view[:got])
            left -= got
    return hasher.hexdigest()


def write_bytes(f: BinaryIO | Any, data: Any) -> None:
    """The one place data reaches the disk; a seam the tests use to simulate a full disk."""
    f.write(data)


def write_npy(
    path: Path,
    shape: tuple[int, ...],
    dtype: np.dtype,
    produce: Callable[[], Iterable[np.ndarray]],
    *,
    into: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Writes the batches `produce()` yields as one `.npy` file of `shape` and `dtype` at `path`,
    durably (header, reserved size, rows, fsync); returns the data's checksum (`checksum_of`) and
    how many finite values overflowed to inf in the cast.

    Args:
        path: the file to write.
        shape: the array's shape; the batches stack along its first axis.
        dtype: the stored dtype; batches are cast to it.
        produce: yields the batches, called once the file's size is reserved.
        into: an array of `shape` filled with the same rows as they are written. Defaults to none.
        progress: called with the rows written so far after each batch. Defaults to none.

    Raises:
        CacheError: the disk refused (`cache_error`).
        ValueError: a batch has the wrong row shape, or the rows do not add up to `shape[0]`.
    """
    try:
        f = open(path, "wb")
    except OSError as error:
        raise cache_error("write", path, error) from error
    nbytes = math.prod(shape) * dtype.itemsize
    hasher = hashlib.blake2b(digest_size=16)
    with f:
        with reraise_as_cache_error("write", path):
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": shape,
            }
            np.lib.format.write_array_header_1_0(f, header)
            offset = f.tell()
            preallocate(f, offset + nbytes)
        overflowed = _write_rows(f, path, shape, dtype, produce(), hasher, into, progress)
        with reraise_as_cache_error("write", path):
            f.flush()
            if f.tell() != offset + nbytes:
                raise OSError(errno.EIO, f"wrote {f.tell()} bytes, expected {offset + nbytes}")
            os.fsync(f.fileno())
    return hasher.hexdigest(), overflowed


def _write_rows(
    f: BinaryIO,
    path: Path,
    shape: tuple[int, ...],
    dtype: np.dtype,
    batches: Iterable[np.ndarray],
    hasher: Any,
    into: np.ndarray | None,
    progress: Callable[[int], None] | None,
) -> int:
    """Writes `batches` to `f` as rows of `shape`, checked and cast to `dtype`; returns how many
    finite values overflowed to inf."""
    row_shape = shape[1:]
    rows = 0
    overflowed = 0
    for index, batch in enumerate(batches):
        batch = np.asarray(batch)
        if batch.ndim != len(shape) or batch.shape[1:] != row_shape:
            raise ValueError(
                f"produce() must yield batches of shape (n, *{row_shape}) to fill "
                f"shape={shape}. Received: batch {index} with shape={batch.shape}"
            )
        if rows + len(batch) > shape[0]:
            raise ValueError(
                f"produce() must yield exactly shape[0]={shape[0]} rows in total. "
                f"Received: {rows + len(batch)} rows after batch {index}"
            )
        cast = np.ascontiguousarray(batch.astype(dtype, copy=False))
        if dtype.kind == "f" and batch.dtype.kind == "f":
            overflowed += int(np.count_nonzero(np.isinf(cast) & np.isfinite(batch)))
        with reraise_as_cache_error("write", path):
            write_bytes(f, cast)
        hasher.update(cast)
        if into is not None:
            into[rows : rows + len(cast)] = cast
        rows += len(cast)
        if progress is not None:
            progress(rows)
    if rows != shape[0]:
        raise ValueError(
            f"produce() must yield exactly shape[0]={shape[0]} rows in total. Received: {rows} rows"
        )
    return overflowed


def write_json(path: Path, value: Any) -> None:
    """Writes `value` as JSON at `path`, durably (fsync)."""
    with reraise_as_cache_error("write", path):
        with open(path, "w", encoding="utf-8") as f:
            write_bytes(f, json.dumps(value, indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())


def preallocate(f: BinaryIO, size: int) -> None:
    # Reserving the whole file up front turns "disk full" into an error before the expensive
    # backbone pass rather than after it. Filesystems without fallocate just skip the reservation.
    """Reserves `size` bytes for `f`, so a full disk fails before the work, not after it."""
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise
    except AttributeError:  # Not on every POSIX (macOS).
        return


def fsync_dir(directory: Path) -> None:
    # Makes the renames durable; some filesystems refuse fsync on a directory, which is harmless.
    """Makes the renames inside `directory` durable, where the filesystem allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_entry(path: Path) -> bool:
    """Deletes an entry's sidecar (first, so the data is never trusted alone) and its data."""
    removed = False
    for part in (path.with_suffix(".json"), path):
        try:
            part.unlink()
            removed = True
        except FileNotFoundError:
            pass
    return removed


_FIXES = {
    errno.ENOSPC: "free space or pass --cache-dir DIR on a larger disk",
    errno.EDQUOT: "free space within your quota or pass --cache-dir DIR",
    errno.EROFS: "pass --cache-dir DIR on a writable disk",
    errno.EACCES: "fix the permissions or pass --cache-dir DIR",
    errno.EPERM: "fix the permissions or pass --cache-dir DIR",
}


def cache_error(action: str, path: Path, error: OSError) -> CacheError:
    """A `CacheError` that names the action, the path, the reason and the fix."""
    code = errno.errorcode.get(error.errno or 0, "unknown errno")
    reason = error.strerror or str(error)
    fix = _FIXES.get(error.errno, "check the disk or pass --cache-dir DIR")
    return CacheError(f"Cannot {action} {path}: {reason} ({code}). To continue, {fix}.")


@contextlib.contextmanager
def reraise_as_cache_error(action: str, path: Path) -> Iterator[None]:
    """Turns an `OSError` inside the block into `cache_error(action, path, ...)`."""
    try:
        yield
    except OSError as error:
        raise cache_error(action, path, error) from error


# `scripts/bench_distributed.py` sets this to a file: every entry asked for appends one JSON line
# (the process, the entry, seconds waited for its lock, seconds held, whether it built it), so the
# bench can compare each wait with the build it waited for.
LOCK_LOG = "TUNER_LOCK_LOG"


def log_lock(name: str, *, waited: float, held: float, built: bool, file: str = "") -> None:
    """Appends one line to the `TUNER_LOCK_LOG` file, when it is set."""
    target = os.environ.get(LOCK_LOG)
    if not target:
        return
    line = json.dumps(
        {
            "pid": os.getpid(),
            "entry": name,
            "file": file,  # one file per entry and key: built at most once across processes
            "waited_s": round(waited, 4),
            "held_s": round(held, 4),
            "built": bool(built),
            "t": time.time(),
        }
    )
    with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as log:
        log.write(line + "\n")
