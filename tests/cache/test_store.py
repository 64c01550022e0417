"""Tests for tuner.cache.store: reuse, staleness, corruption, memory-mapping, crashes and concurrency."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import start_python
from tuner.cache import files as cache_io
from tuner.cache import store as cache_module
from tuner.cache.store import ArrayCache, CacheEntry, fingerprint
from tuner.errors import CacheError

SHAPE = (50, 4, 3)
KEY = {"backbone": "tiny", "size": 32, "cut": 5, "files": [("a.png", 10, 123), ("b.png", 11, 456)]}


def _data(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _producer(data: np.ndarray, batch: int = 16, calls: list[int] | None = None):
    def produce():
        if calls is not None:
            calls.append(1)
        for begin in range(0, len(data), batch):
            yield data[begin : begin + batch]

    return produce


def _build(cache: ArrayCache, key=KEY, data=None, calls=None) -> CacheEntry:
    data = _data() if data is None else data
    return cache.get_or_build(
        "tiny-32-cut5", key, shape=data.shape, produce=_producer(data, calls=calls)
    )


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# ------------------------------------------------------------------------------ fingerprint


def test_fingerprint_is_canonical():
    a = {"b": 1, "a": [1, 2.5, {"x": "y"}], "files": [("p", 1, 2)]}
    b = {"files": [["p", 1, 2]], "a": [1, 2.5, {"x": "y"}], "b": 1}
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 24
    assert fingerprint(a) != fingerprint({**a, "b": 2})


def test_fingerprint_rejects_non_json():
    with pytest.raises(TypeError, match="JSON"):
        fingerprint({"x": object()})


def test_path_for_sanitizes_name(tmp_path):
    cache = ArrayCache(tmp_path)
    path = cache.path_for("../evil name/xception-96", KEY)
    assert path.parent == tmp_path
    assert path.name == f"evil_name_xception-96-{fingerprint(KEY)}.npy"
    assert cache.path_for("xception-96-cut131", KEY).name.startswith("xception-96-cut131-")


# ----------------------------------------------------------------------------- build/reuse


def test_build_then_reuse(tmp_path):
    cache = ArrayCache(tmp_path)
    data = _data()
    calls: list[int] = []
    progress: list[int] = []
    first = cache.get_or_build(
        "tiny-32-cut5",
        KEY,
        shape=SHAPE,
        produce=_producer(data, calls=calls),
        progress=progress.append,
    )
    assert first.built and first.array.dtype == np.float16
    assert progress == [16, 32, 48, 50]
    np.testing.assert_array_equal(first.array, data.astype(np.float16))
    assert not first.array.flags.writeable

    second = _build(ArrayCache(tmp_path), data=data, calls=calls)
    assert not second.built
    assert calls == [1]
    assert second.path == first.path
    np.testing.assert_array_equal(second.array, first.array)
    assert cache.lookup("tiny-32-cut5", KEY) is not None

    stem = first.path.stem
    assert _files(tmp_path) == [f"{stem}.json", f"{stem}.npy"]
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["fingerprint"] == fingerprint(KEY)
    assert meta["shape"] == list(SHAPE) and meta["format"] == cache_module.FORMAT_VERSION
    # A plain .npy that NumPy reads without pickle.
    np.testing.assert_array_equal(np.load(first.path, allow_pickle=False), first.array)


def test_float32_dtype_and_lookup_miss(tmp_path):
    cache = ArrayCache(tmp_path)
    assert cache.lookup("tiny", KEY) is None
    data = _data()
    entry = cache.get_or_build("tiny", KEY, shape=SHAPE, dtype="float32", produce=_producer(data))
    assert entry.array.dtype == np.float32
    np.testing.assert_array_equal(entry.array, data)


def test_different_key_gives_different_file(tmp_path):
    cache = ArrayCache(tmp_path)
    a = _build(cache)
    b = _build(cache, key={**KEY, "cut": 6}, data=_data(seed=1))
    assert a.path != b.path and b.built
    assert len(cache.entries()) == 2
    np.testing.assert_array_equal(_build(cache).array, a.array)


def test_entries_and_clear(tmp_path):
    cache = ArrayCache(tmp_path)
    _build(cache)
    cache.get_or_build("other-1", KEY, shape=(3, 2), produce=lambda: [np.zeros((3, 2))])
    listing = cache.entries()
    assert [e["name"] for e in listing] == ["other-1", "tiny-32-cut5"]
    tiny = listing[1]
    assert tiny["shape"] == SHAPE and tiny["dtype"] == "<f2" and tiny["complete"]
    assert tiny["bytes"] == tiny["path"].stat().st_size > 50 * 4 * 3 * 2
    assert cache.clear("tiny") == 1
    assert [e["name"] for e in cache.entries()] == ["other-1"]
    assert cache.clear() == 1
    assert _files(tmp_path) == []


# --------------------------------------------------------------------------- stale/corrupt


def _rewrite_sidecar(path: Path, **changes) -> None:
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta.update(changes)
    sidecar.write_text(json.dumps(meta))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 7)


def _flip_bytes(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(-20, os.SEEK_END)
        chunk = bytearray(f.read(4))
        f.seek(-20, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in chunk))


def _garbage_sidecar(path: Path) -> None:
    path.with_suffix(".json").write_bytes(b"\x00not json{")


def _missing_sidecar(path: Path) -> None:
    path.with_suffix(".json").unlink()


def _stale_key(path: Path) -> None:
    _rewrite_sidecar(path, key={**KEY, "cut": 99})


def _bad_header(path: Path) -> None:
    _rewrite_sidecar(path, shape=[SHAPE[0], 3, 4])


def _swapped_data(path: Path) -> None:
    # A valid .npy of the right shape and dtype, but not the data the checksum describes.
    np.save(path, _data(seed=7).astype(np.float16))


def _pickled_object(path: Path) -> None:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "damage",
    [
        _stale_key,
        _truncate,
        _flip_bytes,
        _garbage_sidecar,
        _missing_sidecar,
        _bad_header,
        _swapped_data,
        _pickled_object,
    ],
)
@pytest.mark.parametrize("budget", [2**30, 0], ids=["in-memory", "on-disk"])
def test_damaged_entry_is_rebuilt(tmp_path, caplog, damage, budget):
    cache = ArrayCache(tmp_path, memory_budget=budget)
    data = _data()
    path = _build(cache, data=data).path
    damage(path)

    with caplog.at_level(logging.WARNING, logger="tuner.cache.store"):
        assert cache.lookup("tiny-32-cut5", KEY) is None
    assert "Discarding cache entry" in caplog.text
    assert _files(tmp_path) == []  # Deleted, not merely skipped.

    damage_again = _build(cache, data=data)
    damage(damage_again.path)
    calls: list[int] = []
    rebuilt = _build(cache, data=data, calls=calls)
    assert rebuilt.built and calls == [1]
    np.testing.assert_array_equal(rebuilt.array, data.astype(np.float16))
    assert not _build(cache, data=data).built


def test_sidecar_without_npy_is_discarded(tmp_path):
    cache = ArrayCache(tmp_path)
    path = _build(cache).path
    path.unlink()
    assert cache.lookup("tiny-32-cut5", KEY) is None
    assert _files(tmp_path) == []


def test_stale_temp_files_are_removed_and_never_read(tmp_path):
    cache = ArrayCache(tmp_path)
    stem = cache.path_for("tiny-32-cut5", KEY).stem
    orphan = tmp_path / f".{stem}.999999.abcdef.tmp.npy"
    np.save(orphan, _data().astype(np.float16))
    entry = _build(cache)
    assert entry.built
    assert _files(tmp_path) == [f"{stem}.json", f"{stem}.npy"]


# ------------------------------------------------------------------------------------ memory


def test_on_disk_above_budget_and_in_memory_below(tmp_path):
    from tuner.cache.diskarray import DiskArray

    data = _data()
    built = _build(ArrayCache(tmp_path, memory_budget=100), data=data)
    assert isinstance(built.array, DiskArray) and built.built
    reused = _build(ArrayCache(tmp_path, memory_budget=100), data=data)
    assert isinstance(reused.array, DiskArray) and not reused.built
    np.testing.assert_array_equal(np.asarray(reused.array), data.astype(np.float16))
    np.testing.assert_array_equal(reused.array[[3, 1]], data.astype(np.float16)[[3, 1]])

    small = _build(ArrayCache(tmp_path), data=data)
    assert isinstance(small.array, np.ndarray) and not small.built
    np.testing.assert_array_equal(small.array, reused.array)


# ----------------------------------------------------------------------------- wrong produce


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ([np.zeros((30, 4, 3)), np.zeros((10, 4, 3))], "exactly shape\\[0\\]=50 rows"),
        ([np.zeros((40, 4, 3)), np.zeros((20, 4, 3))], "exactly shape\\[0\\]=50 rows"),
        ([np.zeros((25, 4, 3)), np.zeros((25, 3, 4))], "batch 1 with shape=\\(25, 3, 4\\)"),
        ([np.zeros((50, 12))], "batch 0 with shape=\\(50, 12\\)"),
    ],
)
def test_wrong_produce_raises_value_error(tmp_path, batches, match):
    cache = ArrayCache(tmp_path)
    with pytest.raises(ValueError, match=match):
        cache.get_or_build("tiny", KEY, shape=SHAPE, produce=lambda: iter(batches))
    assert _files(tmp_path) == []


def test_produce_exception_propagates_and_cleans_up(tmp_path):
    def produce():
        yield np.zeros((10, 4, 3))
        raise RuntimeError("backbone exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        ArrayCache(tmp_path).get_or_build("tiny", KEY, shape=SHAPE, produce=produce)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("shape", [(), (-1, 3), "abc", (2.5, 3), None])
def test_invalid_shape(tmp_path, shape):
    with pytest.raises(ValueError, match="shape"):
        ArrayCache(tmp_path).get_or_build("t", KEY, shape=shape, produce=lambda: [])


def test_object_dtype_refused(tmp_path):
    with pytest.raises(ValueError, match="numeric dtype"):
        ArrayCache(tmp_path).get_or_build("t", KEY, shape=(1,), dtype="O", produce=lambda: [])


# ------------------------------------------------------------------------------ disk trouble


def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_write_failure_mid_build_is_cache_error(tmp_path, monkeypatch, code):
    cache = ArrayCache(tmp_path)
    written: list[int] = []
    real_write = cache_io.write_bytes

    def write_then_fail(f, data):
        if written:
            raise OSError(code, os.strerror(code))
        written.append(1)
        real_write(f, data)

    monkeypatch.setattr(cache_io, "write_bytes", write_then_fail)
    with pytest.raises(CacheError) as info:
        _build(cache)
    message = str(info.value)
    assert "\n" not in message and "--cache-dir DIR" in message
    assert errno.errorcode[code] in message and str(tmp_path) in message
    if code == errno.ENOSPC:
        assert "free space" in message
    assert _files(tmp_path) == []


def test_disk_full_is_detected_before_producing(tmp_path, monkeypatch):
    cache = ArrayCache(tmp_path)
    monkeypatch.setattr(cache_io.os, "posix_fallocate", _raise(errno.ENOSPC))
    calls: list[int] = []
    with pytest.raises(CacheError, match="No space left on device \\(ENOSPC\\)"):
        _build(cache, calls=calls)
    assert calls == []  # Failed before the expensive part.
    assert _files(tmp_path) == []


def test_unsupported_fallocate_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_io.os, "posix_fallocate", _raise(errno.EOPNOTSUPP))
    assert _build(ArrayCache(tmp_path)).built


def test_publish_failure_leaves_nothing(tmp_path, monkeypatch):
    cache = ArrayCache(tmp_path)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(errno.EIO, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(cache_io.os, "replace", replace)
    with pytest.raises(CacheError, match="EIO"):
        _build(cache)
    assert _files(tmp_path) == []


def test_unwritable_root_is_cache_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="Cannot create the activation cache in"):
        ArrayCache(blocker / "cache")

    # Tests run as root, where chmod 555 does not stop writes: simulate a read-only mount.
    monkeypatch.setattr(cache_io, "write_bytes", _raise(errno.EROFS))
    with pytest.raises(CacheError, match="EROFS.*--cache-dir DIR"):
        ArrayCache(tmp_path / "ro")
    assert _files(tmp_path / "ro") == []


# ------------------------------------------------------------------------ real processes

_WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    from pathlib import Path
    import numpy as np
    from tuner.cache.store import ArrayCache

    root, tag, rows, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    work = Path(root).parent
    key = {"backbone": "tiny", "rows": rows}
    data = np.arange(rows * 8, dtype=np.float32).reshape(rows, 8) / 7

    def produce():
        with open(work / "builds.txt", "a") as f:
            f.write(tag + "\\n")
        for begin in range(0, rows, 4):
            time.sleep(delay)
            yield data[begin : begin + 4]

    def progress(done):
        (work / f"progress-{tag}.txt").write_text(str(done))

    # Barrier: both workers ask for the entry only once both are ready, so they truly overlap.
    (work / f"ready-{tag}").touch()
    others = [a for a in sys.argv[5:]]
    while not all((work / f"ready-{o}").exists() for o in others):
        time.sleep(0.01)
    entry = ArrayCache(root).get_or_build(
        "tiny", key, shape=(rows, 8), produce=produce, progress=progress
    )
    print(json.dumps({
        "built": entry.built,
        "digest": hashlib.sha256(np.ascontiguousarray(entry.array)).hexdigest(),
        "expected": hashlib.sha256(data.astype(np.float16)).hexdigest(),
    }))
    """
)


def _spawn(tmp_path: Path, tag: str, rows: int, delay: float, *others: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(_WORKER)
    command = [str(script), str(tmp_path / "cache"), tag, str(rows), str(delay), *others]
    return start_python(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_build_once(tmp_path):
    workers = [_spawn(tmp_path, "a", 40, 0.05, "b"), _spawn(tmp_path, "b", 40, 0.05, "a")]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    assert len((tmp_path / "builds.txt").read_text().split()) == 1
    assert sorted(r["built"] for r in results) == [False, True]
    assert all(r["digest"] == r["expected"] for r in results)
    root = tmp_path / "cache"
    names = _files(root)
    assert len(names) == 2 and {Path(n).suffix for n in names} == {".npy", ".json"}


@pytest.mark.slow
def test_killed_writer_is_never_trusted(tmp_path):
    rows = 400
    writer = _spawn(tmp_path, "k", rows, 0.05)
    progress = tmp_path / "progress-k.txt"
    deadline = time.monotonic() + 30
    while not (progress.exists() and progress.read_text() and int(progress.read_text()) >= 12):
        assert writer.poll() is None, writer.communicate()[1]
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)

    root = tmp_path / "cache"
    leftovers = _files(root)
    assert any(".tmp." in name for name in leftovers)  # The killed writer's partial file.
    assert not any(name.endswith(".json") and not name.startswith(".") for name in leftovers)

    cache = ArrayCache(root)
    key = {"backbone": "tiny", "rows": rows}
    assert cache.lookup("tiny", key) is None
    data = np.arange(rows * 8, dtype=np.float32).reshape(rows, 8) / 7
    entry = cache.get_or_build(
        "tiny", key, shape=(rows, 8), produce=lambda: iter(np.array_split(data, 7))
    )
    assert entry.built
    np.testing.assert_array_equal(entry.array, data.astype(np.float16))
    assert not any(".tmp." in name or name.endswith(".lock") for name in _files(root))
