"""Serving: `python -m tuner.export` writes every format from a real search, each format is used by
its real consumer in a process that never imports tuner, and `python -m tuner.predict` reads all
three. The search and its exports are calibrated and scored on a test folder: the temperature is
in every format, and the test figures are what a plain Keras script measures.

One search (the tiny backbone, three classes of JPEGs of varied sizes, one validation image drawn
as another class so that the temperature has an error to fit) and four exports (float32 in all
three formats, then TFLite with dynamic, float16 and int8 quantization) are shared by the
module's tests.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_python

# Tolerances on class probabilities, against the Keras model on the same uint8 pixels.
FLOAT32_TOLERANCE = 1e-5  # the float32 formats: the same graph, other runtimes
FLOAT16_TOLERANCE = 1e-2  # float16 weights
DYNAMIC_TOLERANCE = 5e-2  # int8 weights, float activations
INT8_TOLERANCE = 0.15  # int8 weights and activations, calibrated on training images
CLASSES = ("blob", "bright", "stripes")
# stripes/1.jpg falls in the validation split (seed 1): drawn as a blob, it is an error the
# temperature is fitted on, so the calibrated export differs from the trained model.
MISLABELLED = ("stripes", 1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished search (tiny backbone, 3 classes, a test folder) run through the CLI, what it
    printed and its test.json, and its exports."""
    from tests.images import draw, write_jpeg
    from tuner import export, search

    root = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(3)
    data, test = root / "images", root / "test"
    for label in ("bright", "stripes", "blob"):
        for i in range(10):
            height, width = rng.integers(36, 80, 2)
            kind = "blob" if (label, i) == MISLABELLED else label
            write_jpeg(data / label / f"{i}.jpg", draw(kind, rng, 80)[:height, :width])
        for i in range(4):
            height, width = rng.integers(36, 80, 2)
            write_jpeg(test / label / f"{i}.jpg", draw(label, rng, 80)[:height, :width])
    (test / "blob" / "broken.jpg").write_text("not an image")  # skipped and counted
    project = root / "project"
    common = ["--quiet"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = search.main(
            [
                "--data", str(data), "--backbone", "tiny", "--weights", "none",
                "--image-size", "32", "--max-trials", "2", "--epochs-head", "2",
                "--epochs-finetune", "1", "--batch-size", "8", "--project-dir", str(project),
                "--test-data", str(test), *common,
            ]
        )  # fmt: skip
    assert status == 0
    searched_test = json.loads((project / "test.json").read_text())
    exports = {"float32": project / "export"}
    assert export.main([str(project), *common]) == 0  # scored on the search's test folder again
    for quantize in ("dynamic", "float16", "int8"):
        out = root / f"export-{quantize}"
        argv = [str(project), "--format", "tflite", "--quantize", quantize, "--out", str(out)]
        assert export.main([*argv, *common]) == 0
        exports[quantize] = out
    return {
        "root": root,
        "data": data,
        "test": test,
        "project": project,
        "exports": exports,
        "printed": printed.getvalue(),
        "searched_test": searched_test,
    }


def _val_files(project: Path):
    """The search's validation files, the pixels it trained on for them, and its data."""
    from tuner.config import CONFIG_FILE, config_from_json
    from tuner.data.pixels import prepare_data
    from tuner.ui.display import SearchDisplay

    config = config_from_json((project / CONFIG_FILE).read_text()).replace(verbose=0)
    data = prepare_data(config, 32, SearchDisplay(verbose=0))
    return list(data.val.paths), np.asarray(data.pixels("val", 32)), data


CONSUMER = """
import json, sys
import numpy as np, keras, tensorflow as tf

root = sys.argv[1]
pixels = np.load(root + "/pixels.npy")
files = json.load(open(root + "/files.json"))
exports = json.load(open(root + "/exports.json"))
out = {}
model = keras.saving.load_model(exports["float32"] + "/model.keras", safe_mode=True)
out["keras"] = np.asarray(model.predict(pixels.astype("float32"), verbose=0))
saved = tf.saved_model.load(exports["float32"] + "/saved_model")
default = saved.signatures["serving_default"](images=tf.constant(pixels))
out["savedmodel"] = default["probabilities"].numpy()
out["savedmodel_index"] = default["class_index"].numpy()
out["savedmodel_name"] = np.array([n.decode() for n in default["class_name"].numpy()])
encoded = tf.constant([open(f, "rb").read() for f in files])
out["savedmodel_bytes"] = saved.signatures["serving_bytes"](images=encoded)["probabilities"].numpy()
for name, folder in exports.items():
    interpreter = tf.lite.Interpreter(model_path=folder + "/model.tflite")
    inp = interpreter.get_input_details()[0]
    outp = interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8, inp["dtype"]
    rows = []
    for row in pixels:
        interpreter.resize_tensor_input(inp["index"], [1, *row.shape])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(outp["index"])[0])
    out["tflite_" + name] = np.stack(rows)
# The test folder as a user scores it: each file loaded by Keras at its own size, one at a time.
labels = open(exports["float32"] + "/labels.txt").read().splitlines()
true, predicted = [], []
for path in json.load(open(root + "/test_files.json")):
    try:
        image = keras.utils.img_to_array(keras.utils.load_img(path))
    except Exception:
        continue
    true.append(labels.index(path.split("/")[-2]))
    predicted.append(int(np.argmax(model.predict(image[None], verbose=0)[0])))
out["test_true"], out["test_predicted"] = np.array(true), np.array(predicted)
np.savez(root + "/out.npz", **out)
assert not any(m == "tuner" or m.startswith("tuner.") for m in sys.modules), "tuner imported"
"""


@pytest.fixture(scope="module")
def consumed(searched):
    """Every format's output on the validation images, computed by its real consumer in a
    process that never imports tuner."""
    files, pixels, data = _val_files(searched["project"])
    root = searched["root"]
    np.save(root / "pixels.npy", pixels)
    (root / "files.json").write_text(json.dumps(files))
    (root / "exports.json").write_text(
        json.dumps({k: str(v) for k, v in searched["exports"].items()})
    )
    test_files = sorted(str(p) for p in searched["test"].rglob("*.jpg"))
    (root / "test_files.json").write_text(json.dumps(test_files))
    run_python("-c", CONSUMER, str(root), check=True, cwd=root, capture_output=False)
    with np.load(root / "out.npz") as saved:
        return {k: saved[k] for k in saved.files}, pixels, data


def test_export_writes_every_format_with_labels_metadata_and_a_model_card(searched):
    export = searched["exports"]["float32"]
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "labels.txt"):
        assert (export / name).exists(), name
    assert (export / "labels.txt").read_text().splitlines() == ["blob", "bright", "stripes"]
    metadata = json.loads((export / "metadata.json").read_text())
    assert metadata["formats"] == {
        "keras": "model.keras",
        "savedmodel": "saved_model",
        "tflite": "model.tflite",
    }
    assert metadata["quantize"] == "none" and metadata["refit"] is None
    assert (
        metadata["data"]["counts"]["train"]["blob"] + metadata["data"]["counts"]["val"]["blob"]
        == 10
    )
    card = (export / "README.md").read_text()
    for needle in (
        "tiny",
        "Starting weights: none",
        "| blob |",
        "head/units",
        "Phase 1",
        "Phase 2",
        "## Leaderboard (top 5)",
        "keras.saving.load_model",
        "tf.saved_model.load",
        "serving_bytes",
        "tf.lite.Interpreter",
    ):
        assert needle in card, needle
    ranked = [line for line in card.splitlines() if line.startswith("| 1 |")]
    assert ranked, "the leaderboard's first row is in the card"
    # The test figures first, then validation labelled as optimistic, then the calibration.
    assert card.index("## Test") < card.index("## Validation (selected on: optimistic)")
    assert card.index("## Validation") < card.index("## Calibration") < card.index("## Model")
    headline = card.splitlines()[2]
    assert "held-out test images" in headline and "val_accuracy" not in headline
    assert "| true \\ predicted | blob | bright | stripes | recall |" in card
    assert f"T = {metadata['calibration']['temperature']:.4g}" in card
    assert "| test (calibrated) |" in card
    assert "- Class weights: none." in card and "- Augmentation: none." in card
    assert metadata["augment"] is False and metadata["augmentations"] == []
    assert metadata["class_weight"] == "none" and metadata["class_weights"] is None
    int8 = json.loads((searched["exports"]["int8"] / "metadata.json").read_text())
    assert int8["quantize"] == "int8" and list(int8["formats"]) == ["tflite"]
    assert "int8 weights and activations" in (searched["exports"]["int8"] / "README.md").read_text()


@pytest.fixture(scope="module")
def trained(searched):
    """The searched project's best trial rebuilt in-process: (workbench, tuner, trial, model)."""
    from tuner.engine import transfer as engine
    from tuner.engine.oracles import make_oracle
    from tuner.engine.spaces import space_for
    from tuner.export import load_project_config
    from tuner.ui.display import SearchDisplay

    config = load_project_config(searched["project"], verbose=0)
    bench = engine.prepare(config, space_for(config), SearchDisplay(verbose=0))
    tuner = engine.TransferTuner(make_oracle(bench.config), bench)
    best = engine.completed_trials(tuner)[0]
    return bench, tuner, best, tuner.load_model(best)


def test_float32_formats_agree_with_each_other_and_with_the_search(searched, consumed, trained):
    """On the validation images: the .keras file, both SavedModel signatures and the float32
    TFLite model give the same top-1 and probabilities within FLOAT32_TOLERANCE; and they are
    what the search's own model computes for those images, at the export's temperature: the same
    argmax, and the tempered probabilities."""
    from tuner import metrics
    from tuner.serve.calibration import predict_logits

    out, pixels, data = consumed
    reference = out["keras"]
    assert reference.shape == (len(pixels), 3)
    for name in ("savedmodel", "savedmodel_bytes", "tflite_float32"):
        np.testing.assert_allclose(out[name], reference, atol=FLOAT32_TOLERANCE, err_msg=name)
        assert np.array_equal(out[name].argmax(1), reference.argmax(1)), name
    assert np.array_equal(out["savedmodel_index"], reference.argmax(1))
    labels = np.array(CLASSES)
    assert np.array_equal(out["savedmodel_name"], labels[reference.argmax(1)])
    # The bytes signature decodes and resizes in the graph what tuner.data.decode did on the host.
    np.testing.assert_array_equal(out["savedmodel_bytes"], out["savedmodel"])
    # The leaderboard's model: the trial's checkpoint, rebuilt in-process, and the temperature
    # the export folded in.
    _, _, _, model = trained
    metadata = json.loads((searched["exports"]["float32"] / "metadata.json").read_text())
    calibration = metadata["calibration"]
    temperature = calibration["temperature"]
    assert calibration["method"] == "temperature" and temperature != 1.0, calibration
    logits = predict_logits(model, pixels)
    as_trained = metrics.tempered(logits, 1.0)
    for name in ("keras", "savedmodel", "savedmodel_bytes", "tflite_float32"):
        assert np.array_equal(out[name].argmax(1), as_trained.argmax(1)), name
        np.testing.assert_allclose(
            out[name], metrics.tempered(logits, temperature), atol=FLOAT32_TOLERANCE, err_msg=name
        )
    # Fitted on these very images: ECE and log-loss fall, accuracy stays.
    before, after = calibration["validation"]["before"], calibration["validation"]["after"]
    assert after["ece"] <= before["ece"] and after["loss"] <= before["loss"]
    assert after["accuracy"] == before["accuracy"]
    served = metrics.scores(reference, data.val.labels, 3)
    assert served["ece"] == pytest.approx(after["ece"], abs=1e-4)
    assert served["loss"] == pytest.approx(after["loss"], abs=1e-4)
    assert served["accuracy"] == before["accuracy"]
    # Every quantized export carries the same temperature.
    for name in ("dynamic", "float16", "int8"):
        other = json.loads((searched["exports"][name] / "metadata.json").read_text())
        assert other["calibration"]["temperature"] == temperature, name


def test_the_test_figures_are_what_a_plain_keras_script_measures(searched, consumed):
    """The search scored its export on the test folder once, after the export: the figures it
    printed and wrote (test.json, metadata.json) are what a process without tuner measures by
    feeding each file to model.keras, to within one image; the file that is not an image is
    skipped and counted."""
    out, _, _ = consumed
    block = searched["searched_test"]
    assert block["images"] == 12 and block["skipped"] == 1
    assert block["folder"] == str(searched["test"]) and block["refit"] is False
    assert block["export"] == str(searched["exports"]["float32"])
    assert block["class_names"] == list(CLASSES)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "loss", "recall", "confusion"):
        assert key in block, key
    true, predicted = out["test_true"], out["test_predicted"]
    assert len(true) == block["images"]
    plain = np.zeros((3, 3), int)
    np.add.at(plain, (true, predicted), 1)
    assert np.abs(plain - np.array(block["confusion"])).sum() <= 2  # one image moved at most
    assert abs(np.mean(true == predicted) - block["accuracy"]) <= 1 / len(true) + 1e-9
    recall = plain.diagonal() / plain.sum(axis=1)
    assert abs(recall.mean() - block["balanced_accuracy"]) <= 1 / 4 / 3 + 1e-9
    # The leaderboard's footer gives them, once.
    lines = [ln.strip() for ln in searched["printed"].splitlines()]
    lines = [ln for ln in lines if ln.startswith("test (")]
    assert len(lines) == 1
    assert lines[0].startswith("test (12 images, scored once on the export of trial ")
    for figure in (
        f"accuracy {block['accuracy']:.3f}",
        f"balanced accuracy {block['balanced_accuracy']:.3f}",
        f"ECE {block['ece']:.3f}",
        f"log-loss {block['loss']:.3f}",
    ):
        assert figure in lines[0], figure
    # The re-export of the same trial, scored on the search's recorded test folder, agrees.
    metadata = json.loads((searched["exports"]["float32"] / "metadata.json").read_text())
    test = metadata["test"]
    assert test["trial_id"] == block["trial_id"]
    assert test["confusion"] == block["confusion"] and test["loss"] == pytest.approx(block["loss"])


def test_calibrate_none_exports_the_weights_as_trained(searched, trained, tmp_path):
    import keras

    from tuner import export

    _, _, best, model = trained
    out = tmp_path / "uncalibrated"
    argv = [str(searched["project"]), "--format", "keras", "--calibrate", "none"]
    assert export.main([*argv, "--out", str(out), "--quiet"]) == 0
    exported = keras.saving.load_model(out / "model.keras", safe_mode=True)
    for got, want in zip(exported.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["calibration"]["method"] == "none"
    assert metadata["calibration"]["temperature"] == 1.0
    assert "Not calibrated (`--calibrate none`)" in (out / "README.md").read_text()
    # Scored on the search's test folder as well; test.json now describes this export.
    test = json.loads((searched["project"] / "test.json").read_text())
    assert test["export"] == str(out) and test["temperature"] == 1.0
    assert metadata["test"] == test


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [("dynamic", DYNAMIC_TOLERANCE), ("float16", FLOAT16_TOLERANCE), ("int8", INT8_TOLERANCE)],
)
def test_quantized_tflite_stays_within_its_tolerance(consumed, name, tolerance):
    out, _, _ = consumed
    reference = out["keras"]
    got = out["tflite_" + name]
    assert got.shape == reference.shape
    np.testing.assert_allclose(got, reference, atol=tolerance, err_msg=name)


def _predict(capsys, argv):
    from tuner import predict

    status = predict.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_reads_every_format_and_names_files_that_are_not_images(
    searched, consumed, tmp_path, capsys
):
    out, pixels, data = consumed
    folder = tmp_path / "inbox"
    folder.mkdir()
    files = list(data.val.paths)
    for i, path in enumerate(files):
        (folder / f"{i:02d}.jpg").write_bytes(Path(path).read_bytes())
    (folder / "notes.txt").write_text("not an image")  # not an image name: left out of a folder
    fake = folder / "fake.jpg"
    fake.write_text("this is text, named like an image")
    export = searched["exports"]["float32"]
    expected = ["blob", "bright", "stripes"]
    for model in (export / "model.keras", export / "saved_model", export / "model.tflite"):
        status, stdout, _ = _predict(capsys, [str(model), str(folder), "--json"])
        assert status == 0, model
        results = json.loads(stdout)["predictions"]
        assert [Path(r["file"]).name for r in results] == [
            *(f"{i:02d}.jpg" for i in range(len(files))),
            "fake.jpg",
        ]
        *images, bad = results
        assert bad["error"] == "not an image (a text file)"
        for result, row in zip(images, out["keras"], strict=True):
            assert result["class"] == expected[int(row.argmax())], model
            assert abs(result["probability"] - float(row.max())) < 1e-4
            assert len(result["top"]) == 3
            assert result["top"][0]["class"] == result["class"]
    status, stdout, _ = _predict(capsys, [str(export / "model.keras"), str(fake), files[0]])
    assert status == 0
    assert "not an image" in stdout and "predictions" in stdout
    assert Path(files[0]).name in stdout


def test_predict_and_export_refuse_bad_input_with_one_line_and_exit_2(searched, tmp_path, capsys):
    from tuner import export

    project = str(searched["project"])
    cases = [
        ([str(tmp_path / "nowhere")], "No search found"),
        ([project, "--trial", "99"], "No completed trial '99'"),
        ([project, "--format", "keras", "--quantize", "int8"], "add tflite to --format"),
        ([project, "--format", "onnx"], "--format takes"),
        ([project, "--quantize", "int4"], "--quantize must be one of"),
    ]
    import shutil

    other = tmp_path / "other"
    shutil.copytree(searched["data"], other)
    shutil.copytree(other / "blob", other / "zebra")  # a class the search never saw
    cases.append(([project, "--data", str(other)], "now hold the classes"))
    cases.append(([project, "--data", str(tmp_path / "gone")], "pass --data DIR"))
    # A test folder must hold exactly the training classes; the error names the difference.
    cases.append(([project, "--test-data", str(other)], "it has 'zebra', which training lacks"))
    short = tmp_path / "short"
    shutil.copytree(searched["test"], short)
    shutil.rmtree(short / "stripes")
    cases.append(([project, "--test-data", str(short)], "it lacks 'stripes'"))
    cases.append(([project, "--test-data", str(tmp_path / "gone")], "No test images at"))
    for argv, message in cases:
        assert export.main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    text = tmp_path / "model.txt"
    text.write_text("x")
    status, _, err = _predict(capsys, [str(text), str(tmp_path)])
    assert status == 2 and "is not a model" in err
    status, _, err = _predict(capsys, [str(tmp_path / "none.keras"), str(tmp_path)])
    assert status == 2 and "No model at" in err
    fake = tmp_path / "fake.png"
    fake.write_text("no")
    model = searched["exports"]["float32"] / "model.keras"
    status, stdout, _ = _predict(capsys, [str(model), str(fake)])
    assert status == 2 and "not an image" in stdout


def test_refit_trains_to_the_best_epoch_on_train_and_val_and_says_so(searched, tmp_path):
    import keras

    from tuner import export
    from tuner.project.trials import read_ranking

    project = searched["project"]
    best = read_ranking(project).rows[0]
    summary = json.loads(
        (project / "trials" / f"trial_{best.trial_id}" / "summary.json").read_text()
    )
    out = tmp_path / "refit"
    argv = [str(project), "--refit", "--format", "keras", "--out", str(out), "--quiet"]
    assert export.main(argv) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    refit = metadata["refit"]
    assert refit["from_trial"] == best.trial_id
    assert refit["images"] == refit["train_images"] + refit["val_images"] == 30
    # The epochs up to the best epoch (--epochs-head 2, then phase 2), not the epochs run.
    best_epoch = summary["best_epoch"]
    assert refit["epochs"]["best_epoch"] == best_epoch
    assert 1 <= refit["epochs_head"] <= min(best_epoch, 2)
    finetuned = best.hyperparameters["finetune/unfreeze_blocks"] > 0
    assert refit["epochs_finetune"] == (max(best_epoch - 2, 0) if finetuned else 0)
    assert (
        "Refit: retrained on the training and validation images" in (out / "README.md").read_text()
    )
    refitted = keras.saving.load_model(out / "model.keras", safe_mode=True)
    searched_model = keras.saving.load_model(
        searched["exports"]["float32"] / "model.keras", safe_mode=True
    )
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(refitted.get_weights(), searched_model.get_weights(), strict=True)
    ]
    assert any(changed), "the refit trained nothing"
    # Calibrated with the searched trial's temperature, which the card says; scored on test,
    # with no validation headline.
    searched_metadata = json.loads((searched["exports"]["float32"] / "metadata.json").read_text())
    calibration = metadata["calibration"]
    assert calibration["refit"] is True and calibration["trial_id"] == best.trial_id
    assert calibration["temperature"] == searched_metadata["calibration"]["temperature"]
    card = (out / "README.md").read_text()
    assert "the refit model trained on them, so its temperature is the searched model's" in card
    assert metadata["test"]["refit"] is True
    headline = card.splitlines()[2]
    assert "--refit" in headline and "held-out test images" in headline
    assert "validation" not in headline.split("(`--refit`)")[1]
    assert "## Validation (selected on: optimistic)" not in card


def test_a_later_export_leaves_no_format_of_an_earlier_model(searched, tmp_path):
    import shutil

    from tuner import export

    folder = tmp_path / "export"
    shutil.copytree(searched["exports"]["float32"], folder)
    argv = [str(searched["project"]), "--format", "keras", "--out", str(folder), "--quiet"]
    assert export.main(argv) == 0
    assert (folder / "model.keras").is_file()
    assert not (folder / "saved_model").exists() and not (folder / "model.tflite").exists()
    assert json.loads((folder / "metadata.json").read_text())["formats"] == {"keras": "model.keras"}
