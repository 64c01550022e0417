"""Arrays that stay on disk: rows read on demand with plain file reads, never held whole.

A search's decoded pixels grow with the dataset (25,000 images at 299 px are 6.7 GB), so they are
not kept in memory: `DiskArray` reads the rows a batch asks for from the `.npy` file the pixel
store wrote, and `RowWriter` writes decoded rows to a file as they come. Reads go through the
operating system's page cache; unlike a memory map, whose touched pages count as the process's
resident memory until it is unmapped, a plain read leaves nothing resident once the batch is
freed. `DiskArray` supports what the pixel consumers use: `len`, `shape`, `dtype`, a slice of rows
and an integer array of rows (gathered in file order, runs of neighbouring rows read at once).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DiskArray", "RowWriter"]


class DiskArray:
    """A read-only array whose rows are read from a file on demand.

    Args:
        path: the file.
        shape: the whole array's shape in the file.
        dtype: its dtype.
        offset: where the rows start in the file (after an `.npy` header).
        rows: which rows of the file this array holds, in order; None: all of them.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, ...],
        dtype: str | np.dtype,
        *,
        offset: int = 0,
        rows: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self._file_shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._offset = int(offset)
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = self._file_shape[0] if self._rows is None else len(self._rows)
        self.shape = (n, *self._file_shape[1:])
        self._row_bytes = int(np.prod(self._file_shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def of_npy(cls, path: str | os.PathLike) -> DiskArray:
        """The array of an `.npy` file (C order)."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(f)
            offset = f.tell()
        if fortran_order:
            raise ValueError(f"{path} is in Fortran order; DiskArray reads C order only")
        return cls(path, shape, dtype, offset=offset)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_bytes

    def take(self, rows: np.ndarray | list[int]) -> DiskArray:
        """The rows `rows` of this array, as another `DiskArray` (nothing is read)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} rows")
        file_rows = rows if self._rows is None else self._rows[rows]
        return DiskArray(
            self.path, self._file_shape, self.dtype, offset=self._offset, rows=file_rows
        )

    def __getitem__(self, index: slice | np.ndarray | list[int] | int) -> np.ndarray:
        if isinstance(index, slice):
            # A contiguous slice is one run of neighbouring rows: `_gather` reads it at once.
            return self._gather(np.arange(*index.indices(len(self))))
        if isinstance(index, (int, np.integer)):
            position = int(index) + (len(self) if index < 0 else 0)
            return self._gather(np.array([position]))[0]
        return self._gather(np.asarray(index))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[0 : len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def _gather(self, index: np.ndarray) -> np.ndarray:
        """Rows `index` (of this array), read in file order, runs of neighbours at once."""
        index = index.astype(np.int64).reshape(-1)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} rows")
        index = np.where(index < 0, index + len(self), index)
        file_rows = index if self._rows is None else self._rows[index]
        out = np.empty((len(index), *self._file_shape[1:]), dtype=self.dtype)
        if not len(index):
            return out
        order = np.argsort(file_rows, kind="stable")
        ordered = file_rows[order]
        # Runs of consecutive file rows: each is one read.
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(ordered)]])
        with open(self.path, "rb", buffering=0) as f:
            for begin, end in zip(starts, ends, strict=True):
                first, count = int(ordered[begin]), int(end - begin)
                f.seek(self._offset + first * self._row_bytes)
                chunk = f.read(count * self._row_bytes)
                if len(chunk) != count * self._row_bytes:
                    raise OSError(f"{self.path} ended early at row {first}")
                rows = np.frombuffer(chunk, dtype=self.dtype).reshape(count, *self._file_shape[1:])
                out[order[begin:end]] = rows
        return out


class RowWriter:
    """Writes rows of one shape and dtype to a raw file, in order, as they come; `array()` then
    reads them back as a `DiskArray`. Nothing written stays in memory.

    Args:
        path: the file (created; removed by `remove`).
        row_shape: the shape of one row.
        dtype: the rows' dtype.
    """

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], dtype: str) -> None:
        self.path = Path(path)
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"Expected a row of shape {self.row_shape}; received {row.shape}")
        self._file.write(row.tobytes())
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def array(self) -> DiskArray:
        """Everything written so far, read from the file."""
        self.close()
        return DiskArray(self.path, (self.rows, *self.row_shape), self.dtype)

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
