"""Pixels stay on disk: `DiskArray` reads rows like an array would, and a cached search holds no
decoded pixels in memory and leaves no temporary file behind."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from tuner.cache.diskarray import DiskArray, RowWriter


def _stored(tmp_path, shape=(50, 3, 4), dtype="uint8"):
    data = np.random.default_rng(0).integers(0, 255, shape).astype(dtype)
    np.save(tmp_path / "a.npy", data)
    return data, DiskArray.of_npy(tmp_path / "a.npy")


def test_reads_what_the_array_holds(tmp_path):
    data, disk = _stored(tmp_path)
    assert disk.shape == data.shape and len(disk) == 50 and disk.dtype == data.dtype
    np.testing.assert_array_equal(disk[3:17], data[3:17])
    np.testing.assert_array_equal(disk[40:100], data[40:100])
    np.testing.assert_array_equal(disk[::7], data[::7])
    index = np.array([9, 2, 2, 49, 0, 10, 11, 12, -1])
    np.testing.assert_array_equal(disk[index], data[index])
    np.testing.assert_array_equal(disk[[]], data[[]])
    np.testing.assert_array_equal(disk[-2], data[-2])
    np.testing.assert_array_equal(np.asarray(disk), data)
    with pytest.raises(IndexError):
        disk[np.array([50])]


def test_take_is_a_view_of_rows(tmp_path):
    data, disk = _stored(tmp_path, dtype="float32")
    rows = np.array([7, 3, 30, 31, 32, 1])
    split = disk.take(rows)
    assert split.shape == (6, 3, 4)
    np.testing.assert_array_equal(split[0:6], data[rows])
    np.testing.assert_array_equal(split[np.array([5, 0])], data[rows[[5, 0]]])
    np.testing.assert_array_equal(split.take([2, 3])[0:2], data[[30, 31]])


def test_a_row_writer_streams_rows_to_a_file(tmp_path):
    writer = RowWriter(tmp_path / "rows.tmp", (2, 2), "uint8")
    rows = [np.full((2, 2), i, "uint8") for i in range(5)]
    for row in rows:
        writer.write(row)
    with pytest.raises(ValueError, match="shape"):
        writer.write(np.zeros((3, 2)))
    np.testing.assert_array_equal(np.asarray(writer.array()), np.stack(rows))
    writer.remove()
    assert not (tmp_path / "rows.tmp").exists()


def test_a_cached_search_keeps_its_pixels_on_disk(search_config, prepared, tmp_path, monkeypatch):
    """The same pixels as the in-memory path, read from the pixel store, and no temporary file
    left: after a first run, after a rerun (which decodes nothing), and after a failed check."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cached = prepared(search_config())
    memory = prepared(search_config(cache=False, project_dir=tmp_path / "nocache"))
    for which in ("train", "val"):
        pixels = cached.data.pixels(which, 32)
        assert isinstance(pixels, DiskArray)
        assert isinstance(memory.data.pixels(which, 32), np.ndarray)
        np.testing.assert_array_equal(np.asarray(pixels), memory.data.pixels(which, 32))
    # A second size, decoded after the data was checked, is stored at once.
    np.testing.assert_array_equal(
        np.asarray(cached.data.pixels("train", 40)), memory.data.pixels("train", 40)
    )
    again = prepared(search_config())
    assert isinstance(again.data.pixels("train", 32), DiskArray)
    assert not list((tmp_path / "tmp").iterdir())
