"""The command line: a whole search through `main`, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_python
from tests.images import make_folder
from tuner import search as cli


def base_args(data: Path, project: Path, trials: int = 2) -> list[str]:
    return [
        "--backbone",
        "tiny",
        "--data",
        str(data),
        "--weights",
        "none",
        "--image-size",
        "32",
        "--max-trials",
        str(trials),
        "--epochs-head",
        "2",
        "--epochs-finetune",
        "1",
        "--batch-size",
        "8",
        "--project-dir",
        str(project),
        "--quiet",
    ]


def test_flat_folder_search_exports_a_model(tmp_path, capsys):
    data = make_folder(tmp_path / "flat", classes=("cat", "dog"), layout="flat")
    project = tmp_path / "project"
    assert cli.main(base_args(data, project, trials=1)) == 0
    out = capsys.readouterr().out
    assert "Trials by val_accuracy" in out and "completed" in out
    metadata = json.loads((project / "export" / "metadata.json").read_text())
    assert metadata["class_names"] == ["cat", "dog"]
    assert metadata["weights"] == "none"
    assert metadata["input"]["image_size"] == 32
    assert set(metadata["hyperparameters"]) >= {"head/units", "finetune/unfreeze_blocks"}
    assert (project / "export" / "model.keras").exists()
    run = json.loads((project / "run.json").read_text())
    assert run["class_names"] == ["cat", "dog"]


BAD = [
    (["--max-trials", "0"], "max-trials"),
    (["--max-trials", "-3"], "max-trials"),
    (["--backbone", "resnet9000"], "resnet9000"),
    (["--oracle", "grid"], "oracle"),
    (["--objective", "val_precision"], "objective"),
    (["--val-split", "0"], "val-split"),
    (["--val-split", "1"], "val-split"),
    (["--image-size", "8"], "image-size"),
    (["--weights", "/no/such/file.h5"], "weights"),
    (["--batch-size", "0"], "batch-size"),
    (["--cache-memory", "lots"], "cache_memory"),
    (["--finetune-contenders", "-1"], "finetune-contenders"),
]


@pytest.mark.parametrize(("extra", "word"), BAD)
def test_bad_flags_give_one_line_and_exit_2_and_create_nothing(
    tmp_path, capsys, image_folder, extra, word
):
    project = tmp_path / "never"
    assert cli.main(base_args(image_folder, project) + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert word in err
    assert "Traceback" not in err
    assert not project.exists()


def test_bad_space_file_is_rejected_before_anything_trains(tmp_path, capsys, image_folder):
    space = tmp_path / "space.toml"
    space.write_text('[head.unit]\ntype = "fixed"\nvalue = 8\n')
    project = tmp_path / "never"
    assert cli.main(base_args(image_folder, project) + ["--space", str(space)]) == 2
    err = capsys.readouterr().err
    assert "head.unit" in err and len(err.strip().splitlines()) == 1
    assert not project.exists()


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda root: root / "missing", "missing"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no images"),
        (lambda root: make_folder(root / "one", classes=("bright",)), "class"),
    ],
)
def test_bad_data_gives_one_line_and_exit_2(tmp_path, capsys, make, word):
    data = make(tmp_path)
    assert cli.main(base_args(data, tmp_path / "p")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert word.lower() in err.lower()


def test_validation_classes_must_exist_in_training(tmp_path, capsys, image_folder):
    val = make_folder(tmp_path / "val", classes=("bright", "stripes"), per_class=3)
    assert cli.main(base_args(image_folder, tmp_path / "p") + ["--val-data", str(val)]) == 2
    assert "stripes" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys, image_folder):
    assert cli.main(base_args(image_folder, tmp_path / "p") + ["--max-trials", "0", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from tuner import search; "
        "search.build_parser().format_help(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    run_python("-c", code, check=True, capture_output=False)
    out = run_python("-m", "tuner.search", "--help", check=True).stdout
    assert "--backbone" in out and "--demo" in out


def test_resuming_with_other_settings_is_refused_and_names_the_difference(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    project = tmp_path / "project"
    # One trial a search.
    assert cli.main(base_args(data, project, trials=1)) == 0
    capsys.readouterr()
    changed = base_args(data, project, trials=1)
    changed[changed.index("--epochs-head") + 1] = "3"
    assert cli.main(changed) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--epochs-head 3 (this project: 2)" in err and "--overwrite" in err
    space = tmp_path / "space.toml"
    space.write_text('[head.dropout]\ntype = "fixed"\nvalue = 0.3\n')
    assert cli.main(base_args(data, project, trials=1) + ["--space", str(space)]) == 2
    assert "--space (differs in head/dropout)" in capsys.readouterr().err
    # More trials is the same search, continued; --overwrite starts another.
    more = base_args(data, project, trials=1)
    more[more.index("--max-trials") + 1] = "2"
    assert cli.main(more) == 0
    assert cli.main(changed + ["--overwrite"]) == 0
    run = json.loads((project / "run.json").read_text())
    assert run["epochs_head"] == 3 and run["image_sizes"] == {"tiny": 32}


def test_a_time_budget_stops_starting_trials_and_a_rerun_continues(search_config, prepared):
    from tuner.engine.runner import _search as run_search
    from tuner.engine.spaces import load_space

    config = search_config(max_trials=2, time_budget=1e-6)
    bench = prepared(config, load_space(family="tiny"))
    tuner = run_search(bench)
    assert tuner.out_of_time and not tuner.oracle.trials
    tuner = run_search(prepared(config.replace(time_budget=None), load_space(family="tiny")))
    assert not tuner.out_of_time
    assert len([t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]) == 2


def test_a_budget_spent_before_the_first_trial_says_so(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    assert cli.main(base_args(data, tmp_path / "project") + ["--time-budget", "0.001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "spent before the first trial" in err
    assert "--time-budget" in err
