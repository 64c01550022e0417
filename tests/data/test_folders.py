"""Tests for tuner.data.folders: scanning both layouts, splits, decoding hostile files, resizing."""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tuner.data import decode
from tuner.data import folders as data
from tuner.data.folders import ImageSet, Skipped
from tuner.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------------
# Tiny image files, written without PIL (which is not a test dependency)


def _rgb(colour: tuple[int, int, int], size: tuple[int, int] = (6, 8)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*size, 3)).copy()


def png_bytes(array: np.ndarray) -> bytes:
    return tf.io.encode_png(array).numpy()


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    return tf.io.encode_jpeg(array, quality=quality).numpy()


def bmp_bytes(rgb: np.ndarray) -> bytes:
    """A 24-bit uncompressed BMP (bottom-up BGR rows padded to 4 bytes)."""
    h, w, _ = rgb.shape
    row = (w * 3 + 3) // 4 * 4
    body = bytearray()
    for y in range(h - 1, -1, -1):
        line = rgb[y, :, ::-1].tobytes()
        body += line + b"\x00" * (row - len(line))
    header = b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    return header + dib + bytes(body)


def gif_bytes(frames: list[np.ndarray], palette: list[list[int]]) -> bytes:
    """A GIF of 4-colour frames (index arrays), LZW-coded with a clear code every 2 pixels.

    Clearing that often keeps every code 3 bits wide, so no real LZW compressor is needed.
    """
    h, w = frames[0].shape
    table = np.zeros((4, 3), np.uint8)
    table[: len(palette)] = palette
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF1, 0, 0) + table.tobytes())
    for frame in frames:
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02"
        flat = [int(v) for v in frame.ravel()]
        codes: list[int] = []
        for i in range(0, len(flat), 2):
            codes += [4, *flat[i : i + 2]]
        codes.append(5)
        acc = nbits = 0
        packed = bytearray()
        for code in codes:
            acc |= code << nbits
            nbits += 3
            while nbits >= 8:
                packed.append(acc & 0xFF)
                acc >>= 8
                nbits -= 8
        if nbits:
            packed.append(acc & 0xFF)
        for i in range(0, len(packed), 255):
            chunk = packed[i : i + 255]
            out += bytes([len(chunk)]) + chunk
        out += b"\x00"
    return bytes(out + b"\x3b")


def solid_gif(colour: tuple[int, int, int], size: tuple[int, int] = (6, 8)) -> bytes:
    return gif_bytes([np.zeros(size, np.int64)], [list(colour)])


def image_bytes(ext: str, colour: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    kind = ext.lower().lstrip(".")
    if kind in ("jpg", "jpeg"):
        return jpeg_bytes(_rgb(colour))
    if kind == "png":
        return png_bytes(_rgb(colour))
    if kind == "bmp":
        return bmp_bytes(_rgb(colour))
    if kind == "gif":
        return solid_gif(colour)
    raise AssertionError(ext)


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def two_classes(root: Path, per_class: int = 3, ext: str = ".png") -> Path:
    for name, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        for i in range(per_class):
            write(root / name / f"{i}{ext}", image_bytes(ext, colour))
    return root


def names(images: ImageSet) -> list[str]:
    return [os.path.basename(p) for p in images.paths]


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {os.path.basename(s.path): s.reason for s in skipped}


# --------------------------------------------------------------------------------------------------
# ImageSet


def test_image_set_helpers():
    images = ImageSet(("/a", "/b", "/c"), np.array([0, 1, 1]), ("cat", "dog"))
    assert len(images) == 3
    assert images.labels.dtype == np.int32
    assert images.counts() == {"cat": 1, "dog": 2}
    assert images.subset([2, 0]).paths == ("/c", "/a")
    assert images.subset(np.array([True, False, True])).paths == ("/a", "/c")
    assert images.subset([]).counts() == {"cat": 0, "dog": 0}
    assert images == ImageSet(["/a", "/b", "/c"], [0, 1, 1], ["cat", "dog"])
    assert images != images.subset([0, 1])
    with pytest.raises(ValueError):
        images.labels[0] = 1  # frozen, array included


def test_image_set_rejects_inconsistent_labels():
    with pytest.raises(ValueError, match="one label per path"):
        ImageSet(("/a",), np.array([0, 1]), ("cat", "dog"))
    with pytest.raises(ValueError, match="index class_names"):
        ImageSet(("/a",), np.array([2]), ("cat", "dog"))


# --------------------------------------------------------------------------------------------------
# scan: layouts


def test_scan_class_folders_with_nested_files(tmp_path):
    write(tmp_path / "dog" / "b.png", image_bytes(".png"))
    write(tmp_path / "cat" / "z.png", image_bytes(".png"))
    write(tmp_path / "cat" / "sub" / "deeper" / "a.jpg", image_bytes(".jpg"))
    write(tmp_path / "dog" / "a.png", image_bytes(".png"))
    images, skipped = data.scan(tmp_path)
    assert skipped == []
    assert images.class_names == ("cat", "dog")
    assert list(images.paths) == sorted(images.paths)
    assert all(os.path.isabs(p) for p in images.paths)
    by_name = dict(zip(images.paths, images.labels.tolist(), strict=True))
    assert by_name[str(tmp_path / "cat" / "sub" / "deeper" / "a.jpg")] == 0
    assert by_name[str(tmp_path / "dog" / "a.png")] == 1
    assert images.counts() == {"cat": 2, "dog": 2}


def test_scan_flat_folder_takes_label_before_first_dot(tmp_path):
    for name in ("cat.1.jpg", "cat.10.jpg", "dog.2.jpg", "dog.7.extra.png", "IMG.jpg"):
        write(tmp_path / name, image_bytes(os.path.splitext(name)[1]))
    images, skipped = data.scan(tmp_path)
    assert skipped == []
    assert images.class_names == ("IMG", "cat", "dog")  # sorted, case kept
    labels = {
        os.path.basename(p): images.class_names[lab]
        for p, lab in zip(images.paths, images.labels, strict=True)
    }
    assert labels == {
        "IMG.jpg": "IMG",
        "cat.1.jpg": "cat",
        "cat.10.jpg": "cat",
        "dog.2.jpg": "dog",
        "dog.7.extra.png": "dog",
    }


@pytest.mark.parametrize(
    "ext",
    [".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".gif", ".GIF", ".Jpg"],
)
def test_every_extension_in_any_case_is_found_and_decoded(tmp_path, ext):
    write(tmp_path / "red" / f"a{ext}", image_bytes(ext, (220, 20, 20)))
    write(tmp_path / "blue" / f"b{ext}", image_bytes(ext, (20, 20, 220)))
    images, skipped = data.scan(tmp_path)
    assert skipped == [] and len(images) == 2
    kept, pixels, bad = decode.load_pixels(images, 4)
    assert bad == [] and pixels.shape == (2, 4, 4, 3)
    blue, red = pixels[0].mean(axis=(0, 1)), pixels[1].mean(axis=(0, 1))
    assert blue[2] > 180 and blue[0] < 60
    assert red[0] > 180 and red[2] < 60


def test_scan_ignores_hidden_and_non_image_files(tmp_path):
    two_classes(tmp_path)
    write(tmp_path / "cat" / ".DS_Store", b"junk")
    write(tmp_path / "cat" / "._0.png", b"resource fork")
    write(tmp_path / "cat" / "notes.txt", b"hello")
    write(tmp_path / ".ipynb_checkpoints" / "x.png", image_bytes(".png"))
    write(tmp_path / "README.md", b"# data")
    images, skipped = data.scan(tmp_path)
    assert images.class_names == ("cat", "dog")
    assert len(images) == 6 and skipped == []


def test_loose_images_next_to_class_folders_are_skipped(tmp_path):
    two_classes(tmp_path)
    write(tmp_path / "stray.jpg", image_bytes(".jpg"))
    images, skipped = data.scan(tmp_path)
    assert images.class_names == ("cat", "dog") and len(images) == 6
    assert reasons(skipped)["stray.jpg"].startswith("outside any class folder")


def test_names_with_spaces_and_non_ascii_work(tmp_path):
    write(tmp_path / "chat noir" / "ü ñ 猫.png", image_bytes(".png"))
    write(tmp_path / "chat noir" / "photo (2).JPG", image_bytes(".jpg"))
    write(tmp_path / "café" / "é.gif", image_bytes(".gif"))
    images, skipped = data.scan(tmp_path)
    assert skipped == []
    assert images.class_names == ("café", "chat noir")
    kept, pixels, bad = decode.load_pixels(images, 8)
    assert bad == [] and len(kept) == 3 and pixels.shape == (3, 8, 8, 3)


def test_folders_that_cannot_be_used_are_reported(tmp_path):
    two_classes(tmp_path)
    write(tmp_path / "empty-class" / "0.jpg", b"")
    images, skipped = data.scan(tmp_path)
    assert images.class_names == ("cat", "dog")
    assert reasons(skipped) == {
        "0.jpg": "zero-byte file",
        "empty-class": "class folder has no readable images; class dropped",
    }


# --------------------------------------------------------------------------------------------------
# scan: errors


def test_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="Data folder not found: .*nope.*Pass an existing folder"):
        data.scan(tmp_path / "nope")


def test_a_file_is_not_a_data_folder(tmp_path):
    path = write(tmp_path / "cat.1.jpg", image_bytes(".jpg"))
    with pytest.raises(DataError, match="not a folder"):
        data.scan(path)


@pytest.mark.parametrize("content", [None, "notes.txt", "sub/notes.csv"])
def test_no_images_names_the_accepted_extensions(tmp_path, content):
    if content:
        write(tmp_path / content, b"text")
    with pytest.raises(DataError) as info:
        data.scan(tmp_path)
    message = str(info.value)
    assert "No images found" in message and "\n" not in message
    for ext in data.IMAGE_EXTENSIONS:
        assert ext in message


def test_only_unreadable_images_is_a_data_error(tmp_path):
    write(tmp_path / "cat" / "a.jpg", b"")
    write(tmp_path / "dog" / "b.jpg", b"")
    with pytest.raises(DataError, match="None of the 2 image files .* zero-byte file"):
        data.scan(tmp_path)


def test_single_class_folder_is_a_data_error(tmp_path):
    write(tmp_path / "cat" / "a.jpg", image_bytes(".jpg"))
    write(tmp_path / "cat" / "b.jpg", image_bytes(".jpg"))
    with pytest.raises(DataError, match="only one class, 'cat'.*at least 2 classes"):
        data.scan(tmp_path)


def test_single_class_flat_folder_is_a_data_error(tmp_path):
    write(tmp_path / "dog.1.jpg", image_bytes(".jpg"))
    write(tmp_path / "dog.2.jpg", image_bytes(".jpg"))
    with pytest.raises(DataError, match="only one class, 'dog'"):
        data.scan(tmp_path)


# --------------------------------------------------------------------------------------------------
# scan: files that cannot be read

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")


@needs_symlinks
def test_symlink_loops_and_broken_links_are_skipped(tmp_path):
    two_classes(tmp_path)
    os.symlink("b.jpg", tmp_path / "cat" / "a.jpg")
    os.symlink("a.jpg", tmp_path / "cat" / "b.jpg")
    os.symlink("missing.png", tmp_path / "dog" / "gone.png")
    os.symlink("..", tmp_path / "dog" / "up")  # a folder loop: walking it must end
    os.symlink(tmp_path / "cat" / "0.png", tmp_path / "dog" / "linked.png")  # a good link
    images, skipped = data.scan(tmp_path)
    found = reasons(skipped)
    assert found["a.jpg"] == "symlink loop" and found["b.jpg"] == "symlink loop"
    assert found["gone.png"] == "broken symlink"
    assert found["up"] == "symlink loop (folder links back to a parent)"
    assert "linked.png" in names(images)
    assert images.counts() == {"cat": 3, "dog": 4}


@needs_symlinks
def test_load_pixels_skips_links_that_broke_after_scan(tmp_path):
    two_classes(tmp_path)
    images, _ = data.scan(tmp_path)
    os.remove(images.paths[0])
    os.symlink(images.paths[0], images.paths[0])  # now a link to itself
    kept, pixels, skipped = decode.load_pixels(images, 4)
    assert [s.reason for s in skipped] == ["symlink loop"]
    assert len(kept) == len(pixels) == 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_named_like_an_image_never_blocks(tmp_path):
    two_classes(tmp_path)
    os.mkfifo(tmp_path / "cat" / "pipe.jpg")
    images, skipped = data.scan(tmp_path)
    assert reasons(skipped) == {"pipe.jpg": "not a regular file"}
    fifo = ImageSet((str(tmp_path / "cat" / "pipe.jpg"),), [0], ("cat", "dog"))
    _, pixels, bad = decode.load_pixels(fifo, 4)
    assert len(pixels) == 0 and [s.reason for s in bad] == ["not a regular file"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads files whatever their mode, so chmod 000 cannot make one unreadable",
)
def test_unreadable_file_is_skipped(tmp_path):
    two_classes(tmp_path)
    secret = write(tmp_path / "cat" / "secret.png", image_bytes(".png"))
    secret.chmod(0)
    try:
        images, skipped = data.scan(tmp_path)
        assert reasons(skipped) == {"secret.png": "permission denied"}
        lone = ImageSet((str(secret),), [0], ("cat", "dog"))
        _, _, bad = decode.load_pixels(lone, 4)
        assert [s.reason for s in bad] == ["permission denied"]
    finally:
        secret.chmod(0o644)


def test_permission_denied_is_skipped_even_as_root(tmp_path, monkeypatch):
    # Root reads any file, so the denial is simulated where the module asks the OS.
    two_classes(tmp_path)
    secret = str(write(tmp_path / "cat" / "secret.png", image_bytes(".png")))
    real_access, real_open = os.access, os.open
    monkeypatch.setattr(os, "access", lambda p, m: p != secret and real_access(p, m))

    def guarded_open(path, *args, **kwargs):
        if os.fspath(path) == secret:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    images, skipped = data.scan(tmp_path)
    assert reasons(skipped) == {"secret.png": "permission denied"}
    lone = ImageSet((secret,), [0], ("cat", "dog"))
    _, _, bad = decode.load_pixels(lone, 4)
    assert [s.reason for s in bad] == ["permission denied"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_file_names_that_are_not_utf8_work(tmp_path):
    two_classes(tmp_path)
    raw = os.path.join(os.fsencode(tmp_path / "dog"), b"\xff\xfe.png")
    try:
        with open(raw, "wb") as f:
            f.write(image_bytes(".png"))
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    images, skipped = data.scan(tmp_path)
    assert skipped == [] and images.counts() == {"cat": 3, "dog": 4}
    kept, _, bad = decode.load_pixels(images, 4)
    assert bad == [] and len(kept) == 7
    data.write_skipped([Skipped(p, "example") for p in images.paths], tmp_path / "skipped.txt")
    assert len((tmp_path / "skipped.txt").read_text(encoding="utf-8").splitlines()) == 7


# --------------------------------------------------------------------------------------------------
# Validation sets


def _many(counts: dict[str, int]) -> ImageSet:
    paths, labels = [], []
    for label, (name, n) in enumerate(sorted(counts.items())):
        paths += [f"/data/{name}/{i:04d}.jpg" for i in range(n)]
        labels += [label] * n
    return ImageSet(tuple(paths), np.array(labels), tuple(sorted(counts)))


def test_stratified_split_is_seeded_and_stratified():
    images = _many({"a": 50, "b": 20, "c": 7})
    train, val = data.stratified_split(images, 0.2, seed=3)
    again_train, again_val = data.stratified_split(images, 0.2, seed=3)
    assert train == again_train and val == again_val
    other_train, _ = data.stratified_split(images, 0.2, seed=4)
    assert other_train != train
    assert val.counts() == {"a": 10, "b": 4, "c": 1}
    assert train.counts() == {"a": 40, "b": 16, "c": 6}
    assert set(train.paths).isdisjoint(val.paths)
    assert sorted(train.paths + val.paths) == sorted(images.paths)
    assert list(train.paths) == sorted(train.paths) and list(val.paths) == sorted(val.paths)
    assert train.class_names == val.class_names == images.class_names


def test_stratified_split_of_one_class_ignores_the_others():
    before = _many({"a": 30, "b": 20})
    after = _many({"a": 30, "b": 25})  # more images of b only
    _, val_before = data.stratified_split(before, 0.2, seed=0)
    _, val_after = data.stratified_split(after, 0.2, seed=0)
    in_a = [p for p in val_before.paths if "/a/" in p]
    assert in_a == [p for p in val_after.paths if "/a/" in p]


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_every_class_keeps_one_image_on_each_side(fraction):
    images = _many({"a": 2, "b": 3, "c": 40})
    train, val = data.stratified_split(images, fraction, seed=0)
    assert min(train.counts().values()) >= 1
    assert min(val.counts().values()) >= 1


def test_class_too_small_to_split_is_a_data_error():
    images = _many({"cat": 10, "dog": 1})
    with pytest.raises(DataError, match="'dog' has 1 image.*at least 2.*--val-data"):
        data.stratified_split(images, 0.2, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, 1.0, -0.1, 1.5, math.nan, "0.2", True])
def test_split_fraction_must_be_between_0_and_1(fraction):
    with pytest.raises(ConfigError, match=r"0 < fraction < 1.*fraction="):
        data.stratified_split(_many({"a": 5, "b": 5}), fraction, seed=0)


def test_validation_folder_is_relabelled_onto_training_classes():
    train = _many({"ant": 3, "bee": 3, "cow": 3})
    val = ImageSet(("/v/bee/1.jpg", "/v/cow/1.jpg"), np.array([0, 1]), ("bee", "cow"))
    relabelled = data.check_validation_classes(train, val)
    assert relabelled.class_names == ("ant", "bee", "cow")
    assert relabelled.labels.tolist() == [1, 2]
    assert relabelled.paths == val.paths


def test_validation_classes_the_training_set_lacks_are_a_data_error():
    train = _many({"cat": 3, "dog": 3})
    val = _many({"bird": 1, "cat": 1, "fish": 1})
    with pytest.raises(DataError, match="lacks: 'bird', 'fish'.*training classes: 'cat', 'dog'"):
        data.check_validation_classes(train, val)


# --------------------------------------------------------------------------------------------------
# load_pixels


def test_load_pixels_shapes_order_and_progress(tmp_path):
    two_classes(tmp_path, per_class=3)
    images, _ = data.scan(tmp_path)
    done: list[int] = []
    kept, pixels, skipped = decode.load_pixels(images, 5, progress=done.append)
    assert kept == images and skipped == []
    assert pixels.dtype == np.uint8 and pixels.shape == (6, 5, 5, 3)
    assert done == [1, 2, 3, 4, 5, 6]
    assert pixels[0, 0, 0, 0] > 150 and pixels[-1, 0, 0, 2] > 150  # cats red, dogs blue


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_load_pixels_size_must_be_a_positive_integer(size):
    with pytest.raises(ConfigError, match="size="):
        decode.load_pixels(_many({"a": 1, "b": 1}), size)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8, 1) * 5
    rgba = np.concatenate([_rgb((10, 120, 240)), np.full((6, 8, 1), 7, np.uint8)], axis=-1)
    paths = [
        write(tmp_path / "gray.png", png_bytes(gray)),
        write(tmp_path / "gray.jpg", jpeg_bytes(gray)),
        write(tmp_path / "rgba.png", png_bytes(rgba)),
    ]
    for path in paths:
        pixels = decode.read_image(path)
        assert pixels.shape == (6, 8, 3) and pixels.dtype == np.uint8
    assert (decode.read_image(paths[0]) == np.repeat(gray, 3, axis=-1)).all()
    assert (decode.read_image(paths[2]) == rgba[..., :3]).all()  # alpha dropped, colours kept


def test_16_bit_png_becomes_8_bit(tmp_path):
    wide = (np.arange(48, dtype=np.uint16).reshape(4, 4, 3) * 5) * 257
    path = write(tmp_path / "deep.png", tf.io.encode_png(tf.constant(wide)).numpy())
    pixels = decode.read_image(path)
    assert pixels.dtype == np.uint8
    assert (pixels == wide // 257).all()


def test_animated_gif_gives_its_first_frame(tmp_path):
    first = np.zeros((5, 7), np.int64)
    first[2:, 3:] = 1
    second = np.full((5, 7), 2, np.int64)
    palette = [[250, 0, 0], [0, 250, 0], [0, 0, 250]]
    path = write(tmp_path / "anim.gif", gif_bytes([first, second], palette))
    assert tf.io.decode_gif(path.read_bytes()).shape[0] == 2  # really two frames
    assert (decode.read_image(path) == np.array(palette, np.uint8)[first]).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rgb = _rgb((30, 160, 220), (16, 16))
    buffer = io.BytesIO()
    pil.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=95)
    path = write(tmp_path / "cmyk.jpg", buffer.getvalue())
    pixels = decode.read_image(path)
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels.astype(int) - rgb).mean() < 12


def test_hostile_files_are_skipped_with_reasons(tmp_path):
    good = jpeg_bytes(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    files = {
        "good.jpg": good,
        "truncated.jpg": good[: len(good) // 2],
        "zero.jpg": b"",
        "text.jpg": b"This is not a picture, it is a text file.\n",
        "garbage.png": bytes(range(256)) * 4,
        "badpng.png": png_bytes(_rgb((1, 2, 3)))[:40],
        "badgif.gif": solid_gif((1, 2, 3))[:30],
        "good.png": png_bytes(_rgb((1, 2, 3))),
    }
    for name, content in files.items():
        write(tmp_path / name, content)
    images = ImageSet(tuple(str(tmp_path / n) for n in files), [0, 1] * 4, ("a", "b"))
    kept, pixels, skipped = decode.load_pixels(images, 8)
    assert names(kept) == ["good.jpg", "good.png"]
    assert pixels.shape == (2, 8, 8, 3)
    found = reasons(skipped)
    assert found["truncated.jpg"] == "not a decodable image (truncated JPEG)"
    assert found["zero.jpg"] == "zero-byte file"
    assert found["text.jpg"] == "not an image (a text file)"
    assert found["garbage.png"].startswith("not an image (contents are not")
    assert found["badpng.png"].startswith("not a decodable image (PNG")
    assert found["badgif.gif"] == "not a decodable image (truncated GIF)"
    assert all("\n" not in r for r in found.values())


def test_read_image_raises_a_data_error_with_the_reason(tmp_path):
    path = write(tmp_path / "zero.jpg", b"")
    with pytest.raises(DataError, match=r"zero\.jpg.*zero-byte file"):
        decode.read_image(path)


def _huge_png(width: int, height: int) -> bytes:
    """A real, valid grayscale PNG of zeros: a few hundred KB that would decode to gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then zeros
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _huge_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims `width` x `height`."""
    small = bytearray(jpeg_bytes(_rgb((5, 5, 5), (8, 8))))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(small)


def _huge_gif(width: int, height: int) -> bytes:
    gif = bytearray(solid_gif((5, 5, 5)))
    gif[6:10] = struct.pack("<HH", width, height)
    return bytes(gif)


def _huge_bmp(width: int, height: int) -> bytes:
    bmp = bytearray(bmp_bytes(_rgb((5, 5, 5), (2, 2))))
    bmp[18:26] = struct.pack("<ii", width, -height)  # a top-down BMP: negative height
    return bytes(bmp)


def test_huge_images_are_skipped_from_their_header_without_decoding(tmp_path, monkeypatch):
    files = {
        "huge.png": _huge_png(12000, 12000),
        "huge.jpg": _huge_jpeg(12000, 12000),
        "huge.gif": _huge_gif(12000, 12000),
        "huge.bmp": _huge_bmp(12000, 12000),
        "fine.png": png_bytes(_rgb((9, 9, 9))),
    }
    for name, content in files.items():
        write(tmp_path / name, content)
    assert tf.io.extract_jpeg_shape(files["huge.jpg"]).numpy().tolist() == [12000, 12000, 3]

    decoded: list[int] = []
    real_decode = tf.io.decode_image

    def spy(contents, *args, **kwargs):
        decoded.append(len(contents))
        return real_decode(contents, *args, **kwargs)

    monkeypatch.setattr(tf.io, "decode_image", spy)
    images = ImageSet(tuple(str(tmp_path / n) for n in files), [0, 1, 0, 1, 0], ("a", "b"))
    kept, pixels, skipped = decode.load_pixels(images, 4)
    assert names(kept) == ["fine.png"] and pixels.shape == (1, 4, 4, 3)
    assert len(decoded) == 1  # only fine.png reached the decoder
    for name in ("huge.png", "huge.jpg", "huge.gif", "huge.bmp"):
        assert reasons(skipped)[name] == "too large (12000x12000 > 50 megapixels)"


def test_pixel_limit_is_the_module_constant(tmp_path, monkeypatch):
    path = write(tmp_path / "a.png", png_bytes(_rgb((9, 9, 9), (10, 10))))
    monkeypatch.setattr(decode, "MAX_PIXELS", 99)
    with pytest.raises(DataError, match=r"too large \(10x10 > 9.9e-05 megapixels\)"):
        decode.read_image(path)


def test_resize_equals_keras_resizing_layer(tmp_path):
    import keras

    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = write(tmp_path / "x.png", png_bytes(source))
    images = ImageSet((str(path),), [0], ("a", "b"))
    for size in (16, 24, 96):  # down and up
        _, pixels, _ = decode.load_pixels(images, size)
        layer = keras.layers.Resizing(size, size, interpolation="bilinear")
        expected = keras.ops.convert_to_numpy(layer(source[None].astype("float32")))[0]
        assert np.abs(pixels[0].astype(np.float32) - expected).max() <= 0.5 + 1e-4
        assert (pixels[0] == np.clip(np.round(expected), 0, 255)).all()
        # The exported model resizes again to the same size: an exact identity on these pixels.
        again = keras.ops.convert_to_numpy(layer(pixels[:1].astype("float32")))[0]
        assert (again == pixels[0]).all()


def test_an_image_already_at_the_size_is_loaded_as_the_resize_would_give_it(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    for side in (1, 2, 7, 37, 128):
        source = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        path = write(tmp_path / f"s{side}.png", png_bytes(source))
        _, pixels, _ = decode.load_pixels(ImageSet((str(path),), [0], ("a", "b")), side)
        # What the resize would have given (it is skipped at the same size): the same pixels.
        resized = tf.image.resize(
            tf.cast(source, tf.float32), (side, side), method="bilinear", antialias=False
        )
        expected = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
        assert (expected == source).all()
        assert pixels.dtype == np.uint8 and (pixels[0] == expected).all()
        assert (decode.resize_like_training(tf.constant(source), side) == expected).all()


# --------------------------------------------------------------------------------------------------
# Reporting and cache keys


def test_summarize_skipped():
    assert data.summarize_skipped([]) == ""
    one = [Skipped("/d/cat/a.jpg", "zero-byte file")]
    assert data.summarize_skipped(one) == (
        "skipped 1 file that could not be used (e.g. cat/a.jpg: zero-byte file)"
    )
    many = [Skipped(f"/d/dog/{i}.png", f"reason {i}") for i in range(5)]
    line = data.summarize_skipped(many, limit=2)
    assert line == (
        "skipped 5 files that could not be used (e.g. dog/0.png: reason 0; dog/1.png: reason 1)"
    )
    assert data.summarize_skipped(many, limit=0) == "skipped 5 files that could not be used"


def test_write_skipped_one_line_per_file(tmp_path):
    skipped = [
        Skipped("/d/cat/a.jpg", "zero-byte file"),
        Skipped("/d/cat/odd\tname\n.jpg", "symlink loop"),
        Skipped("/d/café/ü.png", "permission denied"),
    ]
    target = tmp_path / "project" / "skipped.txt"
    data.write_skipped(skipped, target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines == [
        "/d/cat/a.jpg\tzero-byte file",
        "/d/cat/odd\\tname\\n.jpg\tsymlink loop",
        "/d/café/ü.png\tpermission denied",
    ]
    data.write_skipped([], target)
    assert target.read_text() == ""


def test_fingerprint_files(tmp_path):
    two_classes(tmp_path, per_class=1)
    images, _ = data.scan(tmp_path)
    prints = data.fingerprint_files(images)
    first = Path(images.paths[0])
    assert prints[0] == (str(first), first.stat().st_size, first.stat().st_mtime_ns)
    first.write_bytes(first.read_bytes() + b"\x00")
    assert data.fingerprint_files(images)[0][1] == prints[0][1] + 1
    first.unlink()
    assert data.fingerprint_files(images)[0] == (str(first), -1, -1)
