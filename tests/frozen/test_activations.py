"""The cached path: fingerprints, corruption, augmentation views and export parity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tuner.engine.runner import _search


def test_entries_are_reused_and_invalidated_by_files_and_size(search_config, prepared):
    config = search_config()
    bench = prepared(config)
    session = bench.features.session("tiny")
    key = session.cache_key("train", session.last)
    name = f"tiny-32-train-cut{session.last}"
    assert bench.features.cache.lookup(name, key) is None
    built = session.features("train", session.last)
    entry = bench.features.cache.lookup(name, key)
    assert entry is not None
    np.testing.assert_array_equal(entry.array, built)

    # The same data in a new process-like workbench: same key, reused.
    again = prepared(config).features.session("tiny")
    assert again.cache_key("train", again.last) == key

    # Touching one image changes the fingerprint, so the entry is rebuilt, never reused.
    path = Path(bench.data.train.paths[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = prepared(config).features.session("tiny")
    assert touched.cache_key("train", touched.last) != key

    # So does another input size.
    resized = prepared(config.replace(image_size=40)).features.session("tiny")
    assert resized.cache_key("train", resized.last) != key


def test_a_corrupt_entry_is_rebuilt_not_used(search_config, prepared):
    config = search_config()
    bench = prepared(config)
    session = bench.features.session("tiny")
    good = np.array(session.features("val", session.last))
    (npy,) = config.resolved_cache_dir.glob(f"tiny-32-val-cut{session.last}-*.npy")
    data = bytearray(npy.read_bytes())
    data[-8:] = b"\xff" * 8  # flip the last values
    npy.write_bytes(bytes(data))
    fresh = prepared(config).features.session("tiny")
    rebuilt = fresh.features("val", fresh.last)
    np.testing.assert_array_equal(np.asarray(rebuilt), good)


def test_augmentation_caches_views_and_is_reported(search_config, tmp_path, fixed_space, prepared):
    from tuner.ui.board import build_table, load

    config = search_config(augment=True, augment_views=3, max_trials=1, space=fixed_space(1))
    bench = prepared(config)
    tuner = _search(bench)
    session = bench.features.session("tiny")
    train = session.features("train", session.last)
    assert train.shape[0] == 3 * len(bench.data.train)
    views = np.asarray(train, dtype="float32").reshape(3, len(bench.data.train), -1)
    assert not np.allclose(views[0], views[1]), "the views should differ"
    assert session.features("val", session.last).shape[0] == len(bench.data.val)
    run = json.loads((config.project_dir / "run.json").read_text())
    assert run["augment"] is True and run["augment_views"] == 3
    (summary_path,) = config.trials_dir.glob("trial_*/summary.json")
    assert json.loads(summary_path.read_text())["augment"] is True
    from io import StringIO

    from rich.console import Console

    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(build_table(load(config.project_dir)))
    assert "augmentation on" in console.file.getvalue()
    from tuner.engine.transfer import completed_trials
    from tuner.serve.bundle import export_trial

    export_trial(tuner, completed_trials(tuner)[0], tmp_path / "export")
    assert json.loads((tmp_path / "export" / "metadata.json").read_text())["augment"] is True


def test_the_first_view_is_the_clean_image(search_config, prepared):
    from tuner.frozen.features import describe_training

    config = search_config(augment=True, augment_views=3, cache_dtype="float32")
    bench = prepared(config)
    session = bench.features.session("tiny")
    n = len(bench.data.train)
    views = np.asarray(session.features("train", session.last)).reshape(3, n, -1)
    plain = prepared(config.replace(augment=False)).features.session("tiny")
    clean = np.asarray(plain.features("train", plain.last)).reshape(n, -1)
    np.testing.assert_allclose(views[0], clean, rtol=1e-5, atol=1e-6 * np.abs(clean).max())
    for view in views[1:]:
        assert not np.allclose(view, clean), "the other views should be augmented"
    (line,) = describe_training(bench.config, bench.features)
    assert "3 views per image, the clean one and 2 augmented (rotate, zoom)" in line
    (off,) = describe_training(config.replace(cache=False), bench.features)
    assert off.endswith("every training image augmented (rotate, zoom)")


def test_an_entry_augmented_with_other_operations_is_never_reused(search_config, prepared):
    flipped = search_config(augment=True, augment_views=2, augmentations=("flip", "rotate"))
    session = prepared(flipped).features.session("tiny")
    session.features("train", session.last)
    key = session.cache_key("train", session.last)
    assert key["augment"]["operations"] == ["flip", "rotate"]
    default = prepared(flipped.replace(augmentations=("rotate", "zoom"))).features.session("tiny")
    other = default.cache_key("train", default.last)
    assert other["augment"]["operations"] == ["rotate", "zoom"] and other != key
    name = f"tiny-32-train-cut{default.last}"
    assert default.cache.lookup(name, other) is None
    assert default.cache.lookup(name, key) is not None


def test_export_predicts_what_the_cached_path_predicts(
    search_config, tmp_path, fixed_space, prepared
):
    import keras

    from tuner.engine.transfer import completed_trials
    from tuner.models.network import Pieces, build_head
    from tuner.serve.bundle import export_trial

    config = search_config(max_trials=1, space=fixed_space(2), cache_dtype="float32")
    bench = prepared(config)
    tuner = _search(bench)
    best = completed_trials(tuner)[0]
    pieces = Pieces.load(Path(tuner.get_trial_dir(best.trial_id)) / "checkpoint.npz")
    session = bench.features.session("tiny")
    head = build_head(session.n_features, units=16, dropout=0.0, n_classes=bench.data.n_classes)
    if pieces.cut is None:
        pieces.apply(head, None)
        cached = head(np.asarray(session.features("val", session.last)))
    else:
        session.restore_pretrained(pieces.cut)
        pieces.apply(head, session.model)
        top = session.split(pieces.cut)[1]
        cached = head(top(np.asarray(session.features("val", pieces.cut))))
    path = export_trial(tuner, best, tmp_path / "export")["keras"]
    exported = keras.saving.load_model(path, safe_mode=True)
    served = exported.predict(np.asarray(bench.data.pixels("val", 32)), verbose=0)
    np.testing.assert_allclose(served, np.asarray(cached), rtol=1e-4, atol=1e-5)


def test_a_rerun_decodes_nothing_until_a_file_changes(search_config, monkeypatch, prepared):
    from tuner.data import decode

    config = search_config()
    first = prepared(config)
    expected = np.array(first.data.pixels("train", 32))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "load_pixels", refuse)
    again = prepared(config)
    np.testing.assert_array_equal(again.data.pixels("train", 32), expected)
    assert again.data.train == first.data.train and again.data.val == first.data.val

    path = Path(first.data.train.paths[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        prepared(config)


def test_a_dataset_that_fails_validation_leaves_no_cache(tmp_path, search_config, prepared):
    from tests.images import make_folder
    from tuner.errors import DataError

    data = make_folder(tmp_path / "small", per_class=1)  # one image a class: too small to split
    config = search_config(data=data, project_dir=tmp_path / "never")
    with pytest.raises(DataError):
        prepared(config)
    assert not (tmp_path / "never").exists()


def test_every_trial_trains_on_activations_of_the_pretrained_weights(
    search_config, tmp_path, fixed_space, prepared
):
    """Trial 1 fine-tunes 3 blocks in place; trial 2 (1 block) derives its activations from the
    deepest cut through layers trial 1 changed. They must equal a fresh build's."""
    import keras

    from tuner.models.cuts import split
    from tuner.models.preprocessing import preprocessing_layers
    from tuner.models.registry import get_backbone

    # Two trials: the defaults (k = 3) first, then the other choice (k = 1).
    space = fixed_space(3)
    space.write_text(
        space.read_text()
        .replace('type = "fixed"\nvalue = 3', 'type = "choice"\nvalues = [3, 1]\ndefault = 3')
        .replace("value = 0.001", "value = 0.01")
    )
    config = search_config(space=space, max_trials=2, epochs_finetune=2, cache_dtype="float32")
    bench = prepared(config)
    tuner = _search(bench)
    ks = [
        t.hyperparameters.values["finetune/unfreeze_blocks"] for t in tuner.oracle.trials.values()
    ]
    assert ks == [3, 1], "the defaults (k = 3) run first, then the other choice"
    session = bench.features.session("tiny")
    cut = session.cut(1)
    used = np.asarray(session.features("train", cut))

    fresh = bench.features.build_backbone("tiny")  # the same init file, untouched
    bottom, _ = split(fresh, cut)
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for layer in preprocessing_layers(get_backbone("tiny").preprocessing):
        x = layer(x)
    expected = keras.Model(inputs, bottom(x)).predict(
        np.asarray(bench.data.pixels("train", 32), "float32"), verbose=0
    )
    np.testing.assert_allclose(used, expected, rtol=1e-4, atol=1e-5)
    # Trial 1 really moved the layers in between (the shared model still holds them), so the
    # check above would fail if they were used.
    moved = [
        index
        for index in range(session.cut(3) + 1, cut + 1)
        if any(
            not np.array_equal(a, b)
            for a, b in zip(
                session.model.layers[index].get_weights(),
                fresh.layers[index].get_weights(),
                strict=True,
            )
        )
    ]
    assert moved, "trial 1 changed no layer between the two cuts"


@pytest.mark.parametrize(
    ("scale", "expected"),
    [(1.0, "float16"), (1e-3, "float16"), (1e-5, "float32"), (2e-12, "float32"), (1e5, "float32")],
)
def test_float16_is_kept_only_where_it_holds_the_values(scale, expected):
    from tuner.frozen.activations import storage_dtype

    rng = np.random.default_rng(0)
    sample = (0.5 + rng.random((8, 16))).astype("float32") * scale
    sample[:, :4] = 0.0  # exact zeros (ReLU) do not count against float16
    assert storage_dtype(sample, "float16") == expected
    assert storage_dtype(sample, "float32") == "float32"


def test_an_entry_of_zeros_or_nan_is_never_published(tmp_path):
    from tuner.cache.store import ArrayCache
    from tuner.errors import TunerError
    from tuner.frozen.activations import checked

    cache = ArrayCache(tmp_path / "cache")
    for bad, message in (
        (np.zeros((4, 3)), "zero for every image"),
        (np.full((4, 3), np.nan), "NaN"),
    ):
        with pytest.raises(TunerError, match=message):
            cache.get_or_build(
                "bad",
                {"k": message},
                shape=(8, 3),
                dtype="float32",
                produce=lambda bad=bad: checked(iter([np.zeros((4, 3)), bad]), "test"),
            )
        assert cache.lookup("bad", {"k": message}) is None
    assert not list((tmp_path / "cache").glob("*.npy"))


def test_random_init_features_do_not_underflow_the_cache(search_config, prepared):
    """MobileNetV2 at 48 px, random init: pooled features about 1e-12, which float16 flushes to
    zero. The entry is stored as float32, non-zero, and the head sees them standardized."""
    config = search_config(backbones=("mobilenetv2",), image_size=48)
    bench = prepared(config)
    session = bench.features.session("mobilenetv2")
    pooled = session.features("train", session.last)
    assert pooled.dtype == np.float32
    assert np.any(pooled != 0) and np.abs(pooled).max() < 1e-3
    stats = bench.features.feature_stats("mobilenetv2")
    z = stats.standardize(pooled)
    assert 0.5 < float(np.abs(z).mean()) < 2.0


def test_cache_keys_cover_what_the_bytes_depend_on(search_config, prepared):
    import tensorflow as tf

    from tuner.frozen.activations import build_batch

    config = search_config(augment=True)
    session = prepared(config).features.session("tiny")
    key = session.cache_key("train", session.last)
    assert key["tensorflow"] == tf.__version__
    assert key["augment"]["batch"] == build_batch(config)
    assert key["seed"] == config.seed  # a random init is drawn from the seed
    for changed in (config.replace(seed=2), config.replace(batch_size=64)):
        other = prepared(changed).features.session("tiny")
        assert other.cache_key("train", other.last) != key


def _one_at_a_time(session, which: str, cut: int) -> np.ndarray:
    """The entry at `cut` as each derived entry was built before: its own model from the deepest
    cut, run over the deepest entry in the build's batches."""
    import keras

    from tuner.frozen.activations import build_batch, run_frozen

    source = np.asarray(session.features(which, session._deepest), dtype="float32")
    alone = keras.Model(
        session.model.layers[session._deepest].output, session.model.layers[cut].output
    )
    batch = build_batch(session.context.config)
    batches = (source[i : i + batch] for i in range(0, len(source), batch))
    return np.concatenate(list(run_frozen(alone, batches, source.shape[1:])))


def test_derived_entries_are_built_in_one_pass_with_the_same_values(
    search_config, prepared, monkeypatch
):
    from tuner.frozen.activations import BackboneSession

    config = search_config(cache_dtype="float32")
    bench = prepared(config)
    session = bench.features.session("tiny")
    derived = session.derived_cuts()
    assert len(derived) >= 3 and derived[-1] == session.last
    passes = []
    derive = BackboneSession._derive

    def counted(self, source, targets, which):
        passes.append((which, list(targets)))
        yield from derive(self, source, targets, which)

    monkeypatch.setattr(BackboneSession, "_derive", counted)
    pooled = session.features("train", session.last)
    # Asking for the pooled entry ran the layers above the deepest cut once, for every derived cut.
    assert passes == [("train", [session.last, *derived[:-1]])]
    cache = bench.features.cache
    for cut in derived:
        entry = cache.lookup(f"tiny-32-train-cut{cut}", session.cache_key("train", cut))
        assert entry is not None, f"cut {cut} was not published"
        got = pooled if cut == session.last else session.features("train", cut)
        np.testing.assert_array_equal(np.asarray(entry.array), np.asarray(got))
        np.testing.assert_array_equal(np.asarray(got), _one_at_a_time(session, "train", cut))
    assert len(passes) == 1, "the other cuts came from the cache"


def test_a_derived_entry_built_elsewhere_meanwhile_still_gives_the_others(
    search_config, prepared, monkeypatch
):
    """Another process publishes the requested entry between our lookup and our build: its rows
    are not spilled (past the first batch, which decides the storage dtype), so the other derived
    entries are built from the deepest cut on their own."""
    config = search_config(cache_dtype="float32", batch_size=8)  # train holds more than one batch
    first = prepared(config).features.session("tiny")
    expected = {cut: np.asarray(first.features("train", cut)) for cut in first.derived_cuts()}
    for path in config.resolved_cache_dir.glob("tiny-32-train-cut*"):
        if f"cut{first.last}-" not in path.name:
            path.unlink()  # only the pooled entry is left
    from tuner.frozen.activations import BackboneSession

    passes = []
    derive = BackboneSession._derive

    def counted(self, source, targets, which):
        passes.append(list(targets))
        yield from derive(self, source, targets, which)

    monkeypatch.setattr(BackboneSession, "_derive", counted)
    bench = prepared(config)
    session = bench.features.session("tiny")
    cache = bench.features.cache
    lookup = type(cache).lookup
    name = f"tiny-32-train-cut{session.last}"
    monkeypatch.setattr(
        type(cache),
        "lookup",
        lambda self, n, key: None if n == name else lookup(self, n, key),
    )
    assert np.array_equal(
        np.asarray(session.features("train", session.last)), expected[session.last]
    )
    others = session.derived_cuts()[:-1]
    assert len(bench.data.train) > 8
    assert passes == [[session.last, *others]] + [[cut] for cut in others], "one pass for each"
    for cut in session.derived_cuts()[:-1]:
        np.testing.assert_array_equal(np.asarray(session.features("train", cut)), expected[cut])


def test_entries_are_the_same_whatever_the_forward_streams(search_config, prepared, monkeypatch):
    """The frozen passes run two batches at once by default (`FORWARD_STREAMS`): every entry, the
    deepest cut's and the derived ones, holds exactly what one batch at a time gives."""
    import concurrent.futures

    from tuner.frozen import activations

    pools = []
    pool_class = concurrent.futures.ThreadPoolExecutor

    def counted_pool(workers, **kwargs):
        pools.append(workers)
        return pool_class(workers, **kwargs)

    monkeypatch.setattr(activations.concurrent.futures, "ThreadPoolExecutor", counted_pool)
    base = search_config(cache_dtype="float32", batch_size=8)
    entries = {}
    for streams in (1, 2):
        monkeypatch.setattr(activations, "FORWARD_STREAMS", streams)
        config = base.replace(project_dir=base.project_dir.parent / f"streams{streams}")
        session = prepared(config).features.session("tiny")
        pools.clear()
        entries[streams] = {
            (which, cut): np.array(session.features(which, cut))
            for which in ("train", "val")
            for cut in [session._deepest, *session.derived_cuts()]
        }
        assert pools and set(pools) == {streams}, "every pass ran `streams` batches at once"
    assert len(entries[1]) >= 4 and len(prepared(base).data.train) > 2 * 8
    for key, value in entries[1].items():
        np.testing.assert_array_equal(entries[2][key], value, err_msg=str(key))


def test_the_drawn_random_init_is_the_session_s_model(search_config, prepared, monkeypatch):
    """The process that draws the random init keeps the model it drew instead of building and
    loading a second one; it holds exactly the saved weights. Later builds load the file."""
    from tuner.frozen import features

    builds = []
    build = features.build_backbone

    def counted(spec, size, weights):
        builds.append(weights)
        return build(spec, size, weights)

    monkeypatch.setattr(features, "build_backbone", counted)
    config = search_config()
    bench = prepared(config)
    session = bench.features.session("tiny")
    assert builds == [None], "one build: the random draw, kept as the session's model"
    fresh = bench.features.build_backbone("tiny")
    assert builds[1] == str(config.project_dir / "init" / "tiny-32.weights.h5")
    assert fresh is not session.model
    saved = [w for layer in fresh.layers for w in layer.get_weights()]
    held = [w for layer in session.model.layers for w in layer.get_weights()]
    assert len(saved) == len(held) > 0
    for a, b in zip(saved, held, strict=True):
        np.testing.assert_array_equal(a, b)
    builds.clear()
    prepared(config).features.session("tiny")  # the file exists: built from it
    assert builds == [str(config.project_dir / "init" / "tiny-32.weights.h5")]
