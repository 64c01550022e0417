"""From image files to uint8 pixels: decoding and resizing, several files at a time.

`load_pixels` decodes each file with `tf.io` and resizes it exactly as
`keras.layers.Resizing(size, size, interpolation="bilinear")` does, so the exported model (which
holds such a layer) sees the pixels the search trained on. Files are told apart by their contents;
a file that cannot be used becomes a `tuner.data.folders.Skipped` with a one-line reason and never stops
the run. `read_image` decodes one file for a caller that wants it or an error.

TensorFlow is imported only inside the functions that decode, so importing this module is cheap.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tuner.cache.diskarray import DiskArray, RowWriter
from tuner.data.folders import ImageSet, Skipped
from tuner.errors import ConfigError, DataError

# The decoders allocate height * width * channels from the header; above this many pixels a file is
# skipped before decoding, so a decompression bomb (a tiny PNG claiming 12000x12000) never allocates.
MAX_PIXELS = 50_000_000
# Files are read whole before decoding; this keeps a huge non-image named `.jpg` out of memory.
MAX_FILE_BYTES = 1 << 30

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "load_pixels", "read_image", "resize_like_training"]


class _Unusable(Exception):
    """Internal: one file cannot be used; the message is its one-line `Skipped.reason`."""


def _tf() -> Any:
    import tensorflow as tf  # lazy: scanning and splitting must not pay for TensorFlow

    return tf


def _read_bytes(path: str) -> bytes:
    try:
        # O_NONBLOCK: a FIFO named `x.jpg` (or one swapped in since `scan`) would block `open`.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _Unusable("not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise _Unusable(f"file too large ({info.st_size} bytes > {MAX_FILE_BYTES} bytes)")
            data = f.read()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _Unusable("symlink loop") from err
        if err.errno in (errno.EACCES, errno.EPERM):
            raise _Unusable("permission denied") from err
        if err.errno == errno.ENOENT:
            gone = "broken symlink" if os.path.islink(path) else "file no longer exists"
            raise _Unusable(gone) from err
        if err.errno == errno.EISDIR:
            raise _Unusable("not a regular file") from err
        raise _Unusable(f"cannot be read ({err.strerror or err})") from err
    if not data:
        raise _Unusable("zero-byte file")
    return data


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _sniff(data: bytes) -> str:
    """Returns the format from the magic bytes (the extension may lie)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if _looks_like_text(data):
        raise _Unusable("not an image (a text file)")
    raise _Unusable("not an image (contents are not JPEG, PNG, GIF or BMP data)")


def _skip_gif_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise _Unusable("not a decodable image (truncated GIF)")
        n = data[pos]
        pos += 1 + n
        if n == 0:
            return pos


def _first_gif_frame(data: bytes) -> tuple[bytes, int, int]:
    """Cuts a GIF after its first image, so decoding never touches the later frames.

    `tf.io.decode_gif` decodes every frame even when only the first is kept; a GIF of thousands of
    frames would allocate them all.

    Returns:
        The cut GIF, and the width and height of its first frame.
    """
    pos = 13
    if len(data) < pos:
        raise _Unusable("not a decodable image (truncated GIF)")
    if data[10] & 0x80:  # global colour table
        pos += 3 * (1 << ((data[10] & 7) + 1))
    while pos < len(data):
        block = data[pos]
        if block == 0x21:  # extension: label byte, then sub-blocks
            pos = _skip_gif_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor
            if pos + 10 > len(data):
                raise _Unusable("not a decodable image (truncated GIF)")
            width, height = struct.unpack("<HH", data[pos + 5 : pos + 9])
            packed = data[pos + 9]
            pos += 10
            if packed & 0x80:  # local colour table
                pos += 3 * (1 << ((packed & 7) + 1))
            pos = _skip_gif_sub_blocks(data, pos + 1)  # +1: LZW minimum code size
            return data[:pos] + b"\x3b", width, height
        elif block == 0x3B:  # trailer before any image
            break
        else:
            raise _Unusable("not a decodable image (corrupt GIF)")
    raise _Unusable("not a decodable image (GIF holds no frame)")


def _header_size(data: bytes, kind: str) -> tuple[int, int]:
    """Returns (width, height) from the header alone, never decoding pixels."""
    try:
        if kind == "JPEG":
            height, width, _ = (int(v) for v in _tf().io.extract_jpeg_shape(data).numpy())
        elif kind == "PNG":
            if data[12:16] != b"IHDR" or len(data) < 24:
                raise _Unusable("not a decodable image (corrupt PNG header)")
            width, height = struct.unpack(">II", data[16:24])
        elif kind == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
        else:  # BMP: a 12-byte core header has 16-bit sizes, later headers signed 32-bit ones
            (dib,) = struct.unpack("<I", data[14:18])
            if dib == 12:
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            width, height = abs(width), abs(height)  # negative height means top-down rows
    except struct.error as err:
        raise _Unusable(f"not a decodable image (truncated {kind} header)") from err
    except _Unusable:
        raise
    except Exception as err:  # noqa: BLE001 - a TF op error on a bad JPEG header
        raise _Unusable(f"not a decodable image (corrupt {kind} header)") from err
    return width, height


def _check_pixels(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise _Unusable(f"not a decodable image (header says {width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise _Unusable(f"too large ({width}x{height} > {MAX_PIXELS / 1e6:g} megapixels)")


def _tf_message(err: BaseException) -> str:
    message = str(getattr(err, "message", None) or err)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\]", "", message)
    line = (message.strip().splitlines() or [type(err).__name__])[0].strip()
    return line if len(line) <= 120 else line[:117] + "..."


def _decode(data: bytes) -> Any:
    """Decodes bytes to a uint8 (height, width, 3) tensor, or raises `_Unusable`."""
    tf = _tf()
    kind = _sniff(data)
    _check_pixels(*_header_size(data, kind))
    if kind == "GIF":
        data, width, height = _first_gif_frame(data)
        _check_pixels(width, height)
    try:
        # channels=3 turns grayscale, palette, RGBA (alpha dropped) and CMYK JPEG into RGB;
        # dtype=uint8 scales 16-bit PNGs down.
        pixels = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    except MemoryError as err:
        raise _Unusable("too large to decode (out of memory)") from err
    except Exception as err:  # noqa: BLE001 - any decoder failure is one skipped file
        if kind == "JPEG" and b"\xff\xd9" not in data[-64:]:
            raise _Unusable("not a decodable image (truncated JPEG)") from err
        raise _Unusable(f"not a decodable image ({kind}: {_tf_message(err)})") from err
    if pixels.shape.rank != 3 or pixels.shape[-1] != 3 or 0 in pixels.shape:
        raise _Unusable(f"not a decodable image ({kind} decoded to shape {pixels.shape})")
    return pixels


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decodes one image file to RGB pixels at its own size, as `load_pixels` does.

    Args:
        path: An image file (JPEG, PNG, GIF or BMP, told apart by contents, not extension).

    Returns:
        A uint8 array of shape (height, width, 3); the first frame of an animated GIF.

    Raises:
        DataError: The file cannot be used; the message gives the path and the reason.
    """
    path = os.fspath(path)
    try:
        return _decode(_read_bytes(path)).numpy()
    except _Unusable as err:
        raise DataError(f"Cannot use image {path!r}: {err}. Pass a readable image file.") from err


def resize_like_training(pixels: Any, size: int) -> np.ndarray:
    """uint8 (height, width, 3) pixels resized to (size, size, 3) as training images are:
    `keras.layers.Resizing`'s bilinear resize, rounded and clipped to uint8."""
    return _resize(pixels, size)


def _resize(pixels: Any, size: int) -> np.ndarray:
    if tuple(pixels.shape[:2]) == (size, size):
        # A bilinear resize onto the same grid samples every pixel at its own center: uint8
        # values come back unchanged (tests/data/test_folders.py), so the resize is skipped.
        array = np.asarray(pixels)
        if array.dtype == np.uint8:
            return array
    tf = _tf()
    # Exactly keras.layers.Resizing(size, size, interpolation="bilinear") on the TF backend: the
    # layer casts to float32 and calls tf.image.resize with antialias=False.
    resized = tf.image.resize(
        tf.cast(pixels, tf.float32), (size, size), method="bilinear", antialias=False
    )
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)


def _load_one(path: str, size: int) -> np.ndarray | _Unusable:
    try:
        return _resize(_decode(_read_bytes(path)), size)
    except _Unusable as err:
        return err


def load_pixels(
    images: ImageSet,
    size: int,
    *,
    progress: Callable[[int], None] | None = None,
    writer: RowWriter | None = None,
    threads: int | None = None,
) -> tuple[ImageSet, np.ndarray | DiskArray, list[Skipped]]:
    """Decodes and resizes every image, skipping those that fail.

    Files are told apart by their contents. Grayscale, palette, RGBA (alpha dropped), CMYK JPEG and
    16-bit PNG all become 8-bit RGB; an animated GIF gives its first frame. Image sizes are read
    from the header first, and a file above `MAX_PIXELS` is skipped before anything is allocated.
    The resize is `tf.image.resize(method="bilinear", antialias=False)`, what
    `keras.layers.Resizing(size, size, interpolation="bilinear")` does, rounded to uint8.

    Files are decoded by `threads` threads (TensorFlow's decoders release the GIL), a window at a
    time, and kept in input order.

    Args:
        images: The images to load.
        size: The side of the square output, in pixels.
        progress: Called after each file with the number of files done so far. Defaults to None.
        writer: Where decoded rows go as they come, so they never accumulate in memory; the pixels
            are then returned as its `DiskArray`. Defaults to None: an array in memory.
        threads: Decoding threads. Defaults to the number of CPUs (at most 8).

    Returns:
        `(kept, pixels, skipped)`: the images that decoded (input order, failures removed), uint8
        pixels of shape (len(kept), size, size, 3), and the skipped files with one-line reasons.

    Raises:
        ConfigError: `size` is not a positive integer.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"The image size must be an integer >= 1, but got size={size!r}.")
    size = int(size)
    threads = threads or min(8, os.cpu_count() or 1)
    out = None if writer is not None else np.empty((len(images), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    skipped: list[Skipped] = []
    paths = list(images.paths)
    window = 16 * threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for begin in range(0, len(paths), window):
            part = paths[begin : begin + window]
            for i, result in enumerate(pool.map(_load_one, part, [size] * len(part)), begin):
                if isinstance(result, _Unusable):
                    skipped.append(Skipped(paths[i], str(result)))
                else:
                    if writer is not None:
                        writer.write(result)
                    else:
                        assert out is not None
                        out[len(kept)] = result
                    kept.append(i)
                if progress is not None:
                    progress(i + 1)
    pixels = writer.array() if writer is not None else out[: len(kept)]  # type: ignore[index]
    return images.subset(kept), pixels, skipped
