"""The export stands alone: it loads in a process that never imports tuner, and predicts what
the trained model predicted in-process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from tuner import search as cli
from tuner.engine import completed_trials, export_best
from tuner.spaces import load_space


def test_export_loads_in_a_fresh_process_and_predicts_the_same(search_config, tmp_path):
    config = search_config(max_trials=1)
    bench = cli.prepare(config, load_space(family="tiny"))
    tuner = cli.search(bench)
    best = completed_trials(tuner)[0]
    path = export_best(tuner, best, tmp_path / "export")
    images = bench.pixels("val", 32)
    expected = tuner.load_model(best).predict(images.astype("float32"), verbose=0)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.saving.load_model({str(path)!r}, safe_mode=True)
        out = model.predict(np.load({str(tmp_path / "images.npy")!r}), verbose=0)
        np.save({str(tmp_path / "out.npy")!r}, out)
        assert not any(m == 'tuner' or m.startswith('tuner.') for m in sys.modules), 'tuner imported'
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    got = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert metadata["class_names"] == list(bench.class_names)
    assert metadata["trial_id"] == best.trial_id


def test_export_resizes_raw_images_of_any_size(search_config, tmp_path):
    import keras

    config = search_config(max_trials=1)
    bench = cli.prepare(config, load_space(family="tiny"))
    tuner = cli.search(bench)
    path = export_best(tuner, completed_trials(tuner)[0], tmp_path / "export")
    model = keras.saving.load_model(path, safe_mode=True)
    out = model.predict(np.zeros((2, 50, 70, 3), dtype="uint8"), verbose=0)
    assert out.shape == (2, 1)
    assert np.all((out >= 0) & (out <= 1))
