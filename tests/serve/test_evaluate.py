"""The held-out test set (`--test-data`): checked against the training classes before any trial,
scored once on the written export file by file, and kept out of everything else: the trials,
their checkpoints and the calibration are the same with and without it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import search_flags
from tests.images import make_folder, write_png
from tuner.data.folders import ImageSet, check_test_classes
from tuner.errors import DataError
from tuner.serve.evaluate import make_block, summary_line


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory):
    """Test images of the session's classes (bright, dark): 4 + 4 at 32 px, two of other sizes,
    and one file that is not an image."""
    folder = make_folder(tmp_path_factory.mktemp("held-out") / "test", per_class=4, seed=9)
    rng = np.random.default_rng(9)
    for name, shape in (("big.png", (48, 40, 3)), ("wide.png", (30, 70, 3))):
        write_png(folder / "bright" / name, rng.integers(150, 255, shape).astype(np.uint8))
    (folder / "dark" / "broken.png").write_text("not an image")
    return folder


def _export(searched, config):
    """The finished search's result as the search ends it: the best trial exported (calibrated,
    and scored on the config's test folder)."""
    from tuner.engine.runner import _result
    from tuner.ui.display import SearchDisplay

    _, tuner = searched(config)
    return tuner, _result(tuner, config, SearchDisplay(verbose=0), time.perf_counter())


def test_the_test_set_changes_no_trial_no_checkpoint_and_no_temperature(
    finished, searched, test_folder
):
    plain_config = finished(max_trials=1)
    tested_config = finished(max_trials=1, test_data=test_folder)
    plain_tuner, plain = _export(searched, plain_config)
    tested_tuner, tested = _export(searched, tested_config)
    # The same trials, scores and checkpoints.
    plain_trials = {t.trial_id: t.score for t in plain_tuner.oracle.trials.values()}
    tested_trials = {t.trial_id: t.score for t in tested_tuner.oracle.trials.values()}
    assert plain_trials == tested_trials
    for trial_id in plain_trials:
        with (
            np.load(plain_config.trials_dir / f"trial_{trial_id}" / "checkpoint.npz") as a,
            np.load(tested_config.trials_dir / f"trial_{trial_id}" / "checkpoint.npz") as b,
        ):
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # The same calibration, fitted on the same validation predictions.
    plain_meta = json.loads((plain.export.parent / "metadata.json").read_text())
    tested_meta = json.loads((tested.export.parent / "metadata.json").read_text())
    assert plain_meta["calibration"] == tested_meta["calibration"]
    # Only the tested export was scored, once, and says so everywhere.
    assert plain.test is None and "test" not in plain_meta
    assert not (plain_config.project_dir / "test.json").exists()
    block = json.loads((tested_config.project_dir / "test.json").read_text())
    assert tested.test == block == tested_meta["test"]
    assert block["images"] == 10 and block["skipped"] == 1
    assert (
        block["class_names"] == ["bright", "dark"] and block["trial_id"] == plain_meta["trial_id"]
    )
    assert block["folder"] == str(test_folder) and block["refit"] is False
    assert block["temperature"] == plain_meta["calibration"]["temperature"]
    assert sum(map(sum, block["confusion"])) == 10 and "auc" in block
    assert "## Test" in (tested.export.parent / "README.md").read_text()


def test_files_are_fed_at_their_own_size_and_batched_only_where_that_changes_nothing(
    finished, searched, test_folder
):
    """Scoring a folder calls the model once per size among a window of files, and gives what
    one call per file gives; an unreadable file is skipped with its reason."""
    import keras

    from tuner.serve.evaluate import load_test_set, score_files

    config = finished(max_trials=1, test_data=test_folder)
    _, result = _export(searched, config)
    model = keras.saving.load_model(result.export, safe_mode=True)
    images, scan_skipped = load_test_set(test_folder, ("bright", "dark"))
    assert scan_skipped == []
    shapes = []

    def recording(model, batch):
        shapes.append(batch.shape)
        return np.asarray(model(batch.astype("float32"), training=False))

    scores, skipped = score_files(model, images, predict=recording)
    assert [s.reason for s in skipped] == ["not an image (a text file)"]
    assert sorted({s[1:3] for s in shapes}) == [(30, 70), (32, 32), (48, 40)]
    assert sum(s[0] for s in shapes) == 10
    single = []
    for path in images.paths:
        if not path.endswith("broken.png"):
            pixels = keras.utils.img_to_array(keras.utils.load_img(path))
            single.append(np.asarray(model(pixels[None], training=False))[0])
    from tuner import metrics

    pairs = zip(images.paths, images.labels, strict=True)
    labels = [label for path, label in pairs if "broken" not in path]
    one_by_one = metrics.scores(np.stack(single), labels, 2)
    for key in ("accuracy", "balanced_accuracy", "confusion"):
        assert scores[key] == one_by_one[key], key
    assert scores["loss"] == pytest.approx(one_by_one["loss"], abs=1e-6)
    for key, value in scores.items():  # what the search reported
        assert result.test[key] == value, key


def test_a_test_folder_with_other_classes_stops_the_search_before_any_trial(
    image_folder, tmp_path, capsys
):
    from tuner import search

    other = make_folder(tmp_path / "other", classes=("bright", "dark", "zebra"), per_class=2)
    project = tmp_path / "project"
    argv = [*search_flags(image_folder, project, max_trials=1), "--test-data", str(other)]
    assert search.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "test data's classes differ" in err and "it has 'zebra', which training lacks" in err
    assert not list((project / "trials").glob("trial_*"))
    # The training images are not a test set.
    argv = [*search_flags(image_folder, project, max_trials=1), "--test-data", str(image_folder)]
    assert search.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "are also training or validation images" in err and len(err.splitlines()) == 1
    missing = tmp_path / "missing"
    argv = [*search_flags(image_folder, project, max_trials=1), "--test-data", str(missing)]
    assert search.main([*argv, "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --test-data: Data folder not found")


def _images(names, labels):
    return ImageSet(
        paths=[f"/t/{n}/{i}.png" for i, n in enumerate(labels)],
        labels=[names.index(n) for n in labels],
        class_names=names,
    )


def test_the_test_classes_must_be_the_training_classes():
    test = _images(("bright", "dark"), ["dark", "bright"])
    relabelled = check_test_classes(("bright", "dark"), test)
    assert relabelled.class_names == ("bright", "dark") and list(relabelled.labels) == [1, 0]
    with pytest.raises(DataError, match=r"it lacks 'zebra' \(training classes"):
        check_test_classes(("bright", "dark", "zebra"), test)
    extra = _images(("bright", "dark", "owl"), ["owl", "dark"])
    with pytest.raises(DataError, match="it lacks 'cat' and has 'owl', which training lacks"):
        check_test_classes(("bright", "cat", "dark"), extra)


def test_the_test_block_and_its_line():
    from tuner import metrics

    scores = metrics.scores(np.array([[0.9], [0.2], [0.7]]), [1, 0, 0], 2)
    block = make_block(
        scores,
        trial_id="03",
        export=Path("/p/export"),
        refit=True,
        folder=Path("/data/test"),
        class_names=("a", "b"),
        skipped=2,
        temperature=1.5,
    )
    assert json.loads(json.dumps(block)) == block
    assert block["refit"] is True and block["export"] == "/p/export" and block["skipped"] == 2
    assert block["accuracy"] == pytest.approx(2 / 3) and block["confusion"] == [[1, 1], [0, 1]]
    line = summary_line(block)
    assert line.startswith("test (3 images, 2 skipped): accuracy 0.6667, balanced accuracy 0.7500")
    assert "AUC" in line and "ECE" in line and "log-loss" in line
    assert "skipped" not in summary_line({**block, "skipped": 0})
