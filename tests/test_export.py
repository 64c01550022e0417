"""The export stands alone: it loads in a process that never imports tuner, and predicts what
the trained model predicted in-process."""

from __future__ import annotations

import json
import textwrap

import numpy as np

from tests.helpers import run_python
from tuner.engine.runner import _search as run_search
from tuner.engine.spaces import load_space
from tuner.engine.transfer import completed_trials
from tuner.serve.bundle import export_trial


def test_export_loads_in_a_fresh_process_and_predicts_the_same(finished, tmp_path, prepared):
    config = finished(max_trials=1)  # the session's one-trial search, reloaded below
    bench = prepared(config, load_space(family="tiny"))
    tuner = run_search(bench)
    best = completed_trials(tuner)[0]
    # As trained (no temperature), so the fresh process must give the in-process predictions.
    path = export_trial(tuner, best, tmp_path / "export", calibrate="none")["keras"]
    images = np.asarray(bench.data.pixels("val", 32))
    expected = tuner.load_model(best).predict(images.astype("float32"), verbose=0)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.saving.load_model({str(path)!r}, safe_mode=True)
        out = model.predict(np.load({str(tmp_path / "images.npy")!r}), verbose=0)
        np.save({str(tmp_path / "out.npy")!r}, out)
        assert not any(m == 'tuner' or m.startswith('tuner.') for m in sys.modules), 'tuner imported'
    """)
    run_python("-c", script, check=True, cwd=tmp_path, capture_output=False)
    got = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert metadata["class_names"] == list(bench.data.class_names)
    assert metadata["trial_id"] == best.trial_id


def test_export_resizes_raw_images_of_any_size(finished, tmp_path, prepared):
    import keras

    config = finished(max_trials=1)
    bench = prepared(config, load_space(family="tiny"))
    tuner = run_search(bench)
    path = export_trial(tuner, completed_trials(tuner)[0], tmp_path / "export")["keras"]
    model = keras.saving.load_model(path, safe_mode=True)
    out = model.predict(np.zeros((2, 50, 70, 3), dtype="uint8"), verbose=0)
    assert out.shape == (2, 1)
    assert np.all((out >= 0) & (out <= 1))


def test_scored_is_served_on_files_fed_as_a_user_feeds_them(tmp_path, search_config, prepared):
    """The export, given each validation file decoded at its own size (it resizes inside),
    reproduces the best trial's validation accuracy to within one image."""
    import keras
    import tensorflow as tf

    from tests.images import draw, write_jpeg

    rng = np.random.default_rng(5)
    data = tmp_path / "varied"
    for label in ("bright", "stripes", "blob"):
        for i in range(14):
            height, width = rng.integers(36, 80, 2)
            image = draw(label, rng, 80)[:height, :width]
            write_jpeg(data / label / f"{i}.jpg", image)
    config = search_config(data=data, max_trials=3, epochs_finetune=2)  # float16 cache
    bench = prepared(config, load_space(family="tiny"))
    tuner = run_search(bench)
    best = completed_trials(tuner)[0]
    model = keras.saving.load_model(
        export_trial(tuner, best, tmp_path / "export")["keras"], safe_mode=True
    )
    correct = 0
    for path, label in zip(bench.data.val.paths, bench.data.val.labels, strict=True):
        image = tf.io.decode_image(open(path, "rb").read(), channels=3).numpy()
        assert image.shape[:2] != (32, 32)
        probabilities = model.predict(image[None], verbose=0)[0]
        correct += int(np.argmax(probabilities) == label)
    served = correct / len(bench.data.val)
    assert abs(served - best.score) <= 1 / len(bench.data.val) + 1e-9, (served, best.score)


def test_an_augmented_search_exports_no_augmentation(search_config, tmp_path, prepared):
    import keras

    config = search_config(max_trials=1, augment=True, augment_views=2)
    bench = prepared(config, load_space(family="tiny"))
    tuner = run_search(bench)
    path = export_trial(tuner, completed_trials(tuner)[0], tmp_path / "export")["keras"]
    model = keras.saving.load_model(path, safe_mode=True)
    images = np.asarray(bench.data.pixels("val", 32), "float32")
    direct = np.asarray(model(images))
    np.testing.assert_allclose(direct, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    names = [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)]
    assert not any(name.startswith("augment") for name in names)


def test_a_project_searched_before_calibration_is_exported_as_it_was(finished, tmp_path):
    """config.json without `calibrate` (an older search): the export keeps the trained
    probabilities, unless --calibrate asks."""
    from tuner import export
    from tuner.config import CONFIG_FILE

    config = finished(max_trials=1)
    path = config.project_dir / CONFIG_FILE
    settings = json.loads(path.read_text())
    del settings["calibrate"], settings["test_data"]
    path.write_text(json.dumps(settings))
    out = tmp_path / "old"
    argv = [str(config.project_dir), "--format", "keras", "--out", str(out), "--quiet"]
    assert export.main(argv) == 0
    assert json.loads((out / "metadata.json").read_text())["calibration"]["method"] == "none"
    assert export.main([*argv, "--calibrate", "temperature"]) == 0
    assert json.loads((out / "metadata.json").read_text())["calibration"]["method"] == "temperature"
