"""The cached path: fingerprints, corruption, augmentation views and export parity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.test_engine import fixed_space
from tuner import search as cli
from tuner.spaces import load_space


def bench_for(config):
    return cli.prepare(config, load_space(family="tiny", path=config.space))


def test_entries_are_reused_and_invalidated_by_files_and_size(search_config):
    config = search_config()
    bench = bench_for(config)
    session = bench.session("tiny")
    key = session.cache_key("train", session.last)
    name = f"tiny-32-train-cut{session.last}"
    assert bench.cache.lookup(name, key) is None
    built = session.features("train", session.last)
    entry = bench.cache.lookup(name, key)
    assert entry is not None
    np.testing.assert_array_equal(entry.array, built)

    # The same data in a new process-like workbench: same key, reused.
    again = bench_for(config).session("tiny")
    assert again.cache_key("train", again.last) == key

    # Touching one image changes the fingerprint, so the entry is rebuilt, never reused.
    path = Path(bench.train.paths[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = bench_for(config).session("tiny")
    assert touched.cache_key("train", touched.last) != key

    # So does another input size.
    resized = bench_for(config.replace(image_size=40)).session("tiny")
    assert resized.cache_key("train", resized.last) != key


def test_a_corrupt_entry_is_rebuilt_not_used(search_config):
    config = search_config()
    bench = bench_for(config)
    session = bench.session("tiny")
    good = np.array(session.features("val", session.last))
    (npy,) = config.resolved_cache_dir.glob(f"tiny-32-val-cut{session.last}-*.npy")
    data = bytearray(npy.read_bytes())
    data[-8:] = b"\xff" * 8  # flip the last values
    npy.write_bytes(bytes(data))
    fresh = bench_for(config).session("tiny")
    rebuilt = fresh.features("val", fresh.last)
    np.testing.assert_array_equal(np.asarray(rebuilt), good)


def test_augmentation_caches_views_and_is_reported(search_config, tmp_path):
    from tuner.leaderboard import build_table, load_leaderboard

    config = search_config(
        augment=True, augment_views=3, max_trials=1, space=fixed_space(tmp_path, 1)
    )
    bench = bench_for(config)
    tuner = cli.search(bench)
    session = bench.session("tiny")
    train = session.features("train", session.last)
    assert train.shape[0] == 3 * len(bench.train)
    views = np.asarray(train, dtype="float32").reshape(3, len(bench.train), -1)
    assert not np.allclose(views[0], views[1]), "the views should differ"
    assert session.features("val", session.last).shape[0] == len(bench.val)
    run = json.loads((config.project_dir / "run.json").read_text())
    assert run["augment"] is True and run["augment_views"] == 3
    (summary_path,) = config.trials_dir.glob("trial_*/summary.json")
    assert json.loads(summary_path.read_text())["augment"] is True
    from io import StringIO

    from rich.console import Console

    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(build_table(load_leaderboard(config.project_dir)))
    assert "augmentation on" in console.file.getvalue()
    from tuner.engine import completed_trials, export_best

    export_best(tuner, completed_trials(tuner)[0], tmp_path / "export")
    assert json.loads((tmp_path / "export" / "metadata.json").read_text())["augment"] is True


def test_export_predicts_what_the_cached_path_predicts(search_config, tmp_path):
    import keras

    from tuner.engine import Pieces, completed_trials, export_best
    from tuner.model import build_head

    config = search_config(max_trials=1, space=fixed_space(tmp_path, 2), cache_dtype="float32")
    bench = bench_for(config)
    tuner = cli.search(bench)
    best = completed_trials(tuner)[0]
    pieces = Pieces.load(Path(tuner.get_trial_dir(best.trial_id)) / "checkpoint.npz")
    session = bench.session("tiny")
    head = build_head(session.n_features, units=16, dropout=0.0, n_classes=bench.n_classes)
    if pieces.cut is None:
        pieces.apply(head, None)
        cached = head(np.asarray(session.features("val", session.last)))
    else:
        session.restore_pretrained(pieces.cut)
        pieces.apply(head, session.model)
        top = session.split(pieces.cut)[1]
        cached = head(top(np.asarray(session.features("val", pieces.cut))))
    path = export_best(tuner, best, tmp_path / "export")
    exported = keras.saving.load_model(path, safe_mode=True)
    served = exported.predict(bench.pixels("val", 32), verbose=0)
    np.testing.assert_allclose(served, np.asarray(cached), rtol=1e-4, atol=1e-5)


def test_a_rerun_decodes_nothing_until_a_file_changes(search_config, monkeypatch):
    from tuner import data as data_module

    config = search_config()
    first = bench_for(config)
    expected = np.array(first.pixels("train", 32))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data_module, "load_pixels", refuse)
    again = bench_for(config)
    np.testing.assert_array_equal(again.pixels("train", 32), expected)
    assert again.train == first.train and again.val == first.val

    path = Path(first.train.paths[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        bench_for(config)


def test_a_dataset_that_fails_validation_leaves_no_cache(tmp_path, search_config):
    from tests.conftest import make_folder
    from tuner.errors import DataError

    data = make_folder(tmp_path / "small", per_class=1)  # one image a class: too small to split
    config = search_config(data=data, project_dir=tmp_path / "never")
    with pytest.raises(DataError):
        bench_for(config)
    assert not (tmp_path / "never").exists()
