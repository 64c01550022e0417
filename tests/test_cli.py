"""The command-line harness (`tuner._cli`): how every command ends, in-process through its `main`.

Each command's own work is replaced where a test needs it to raise (`monkeypatch`), so that the
harness is checked on the real parsers and the real path up to that point, in milliseconds. One
real search shows that a Ctrl-C keeps the finished trials and that rerunning resumes.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import search_flags
from tests.images import make_folder
from tuner._cli import DEBUG_HELP, QUIET_HELP
from tuner.errors import ConfigError

COMMANDS = ("search", "leaderboard", "export", "predict", "weights")


def _main(name: str):
    return importlib.import_module(f"tuner.{name}").main


def _work(name: str, tmp_path: Path) -> tuple[list[str], str]:
    """A command line of `name` that parses, and the function its run calls to do the work (the
    one a test makes raise)."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    return {
        "search": (
            ["--data", str(tmp_path), "--backbone", "tiny", "--weights", "none"],
            "tuner.search.execute",
        ),
        "leaderboard": ([str(tmp_path)], "tuner.ui.board.load"),
        "export": ([str(tmp_path)], "tuner.export.load_project_config"),
        "predict": ([str(model), str(tmp_path)], "tuner.predict.Predictor"),
        "weights": (["hed-vgg16", str(tmp_path / "out.weights.h5")], "tuner.weights.convert"),
    }[name]


def _raising(error: BaseException):
    def raise_(*args: Any, **kwargs: Any) -> Any:
        raise error

    return raise_


USAGE_ERRORS = {
    "search": (["--max-trials", "x"], "argument --max-trials: invalid int value: 'x'"),
    "leaderboard": ([], "the following arguments are required: PROJECT_DIR"),
    "export": (["project", "--format"], "argument --format: expected one argument"),
    "predict": (["model.keras"], "the following arguments are required: images"),
    "weights": (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_usage_error_is_one_line_and_exit_2(name, capsys) -> None:
    argv, message = USAGE_ERRORS[name]
    assert _main(name)(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {message} (see python -m tuner.{name} --help)\n"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_declares_the_common_flags_once(name, capsys) -> None:
    assert _main(name)(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m tuner.{name} ")
    # argparse wraps the help at any width, and after a hyphen: compare without the spaces.
    flat = "".join(out.split())
    assert flat.count("".join(f"--quiet {QUIET_HELP}".split())) == 1
    assert flat.count("".join(f"--debug {DEBUG_HELP}".split())) == 1


@pytest.mark.parametrize("name", COMMANDS)
def test_a_tuner_error_is_one_line_and_debug_adds_the_traceback(
    name, tmp_path, monkeypatch, capsys
) -> None:
    argv, target = _work(name, tmp_path)
    monkeypatch.setattr(target, _raising(ConfigError("Pass --thing. Received: thing=None")))
    assert _main(name)(argv) == 2
    assert capsys.readouterr().err == "error: Pass --thing. Received: thing=None\n"
    assert _main(name)([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "tuner.errors.ConfigError: Pass --thing." in err
    assert err.endswith("\nerror: Pass --thing. Received: thing=None\n")


INTERRUPTED = {
    "search": "interrupted: finished trials are kept; rerun the same command to resume.",
    "leaderboard": "interrupted: nothing was changed.",
    "export": "interrupted: nothing was exported; the search's trials are kept.",
    "predict": "interrupted: no predictions were printed (this command writes no files).",
    "weights": "interrupted: no weights file was written; rerun the same command to convert.",
}


@pytest.mark.parametrize("name", COMMANDS)
def test_ctrl_c_is_one_line_and_exit_130(name, tmp_path, monkeypatch, capsys) -> None:
    argv, target = _work(name, tmp_path)
    monkeypatch.setattr(target, _raising(KeyboardInterrupt()))
    assert _main(name)(argv) == 130
    assert capsys.readouterr().err == INTERRUPTED[name] + "\n"


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unexpected_error_is_one_line_that_points_to_debug(
    name, tmp_path, monkeypatch, capsys
) -> None:
    argv, target = _work(name, tmp_path)
    monkeypatch.setattr(target, _raising(ValueError("a bug\nits second line")))
    line = "error: unexpected ValueError: a bug; rerun with --debug for the traceback\n"
    assert _main(name)(argv) == 1
    assert capsys.readouterr().err == line
    assert _main(name)([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("\n" + line)
    assert "ValueError: a bug\nits second line" in err


# --------------------------------------------------------------------------------------------
# --quiet: only the result and errors


def test_quiet_search_shows_no_live_view(tmp_path, monkeypatch) -> None:
    from tuner import search

    seen = []

    def record(config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr("tuner.search.execute", record)
    argv, _ = _work("search", tmp_path)
    assert search.main(argv) == 130
    assert search.main([*argv, "--quiet"]) == 130
    assert [config.verbose for config in seen] == [1, 0]  # SearchConfig.verbose: the view


def test_quiet_export_prints_only_the_paths(tmp_path, monkeypatch) -> None:
    from tuner import export

    seen = []

    def record(project_dir: Path, **changes: Any) -> Any:
        seen.append(changes["verbose"])
        raise KeyboardInterrupt

    monkeypatch.setattr("tuner.export.load_project_config", record)
    assert export.main([str(tmp_path)]) == 130
    assert export.main([str(tmp_path), "--quiet"]) == 130
    assert seen == [1, 0]


def _project(root: Path) -> Path:
    """A project folder with one completed trial, as KerasTuner and the engine write it."""
    trial = root / "trials" / "trial_00"
    trial.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"objective": "val_accuracy", "direction": "max"}))
    state = {
        "trial_id": "00",
        "status": "COMPLETED",
        "score": 0.75,
        "hyperparameters": {"values": {"head/units": 16}},
    }
    (trial / "trial.json").write_text(json.dumps(state))
    return root


@pytest.mark.parametrize("extra", [[], ["--json"], ["--csv"]])
def test_quiet_leaderboard_prints_the_same_result(tmp_path, capsys, extra) -> None:
    from tuner import leaderboard

    project = _project(tmp_path / "project")
    assert leaderboard.main([str(project), *extra]) == 0
    loud = capsys.readouterr()
    assert leaderboard.main([str(project), *extra, "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == loud.out and "00" in quiet.out
    assert quiet.err == loud.err == ""


class _FakePredictor:
    size = 32
    class_names = ["bright", "stripes"]

    def __init__(self, path: Path, *, debug: bool = False) -> None:
        pass

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.tile([0.25, 0.75], (len(pixels), 1))


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_quiet_predict_prints_the_same_predictions(tmp_path, monkeypatch, capsys, extra) -> None:
    from tuner import predict

    images = make_folder(tmp_path / "images", classes=("bright",), per_class=2)
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    monkeypatch.setattr("tuner.predict.Predictor", _FakePredictor)
    assert predict.main([str(model), str(images), *extra]) == 0
    loud = capsys.readouterr()
    assert predict.main([str(model), str(images), *extra, "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == loud.out and "stripes" in quiet.out
    assert quiet.err == loud.err == ""


def test_quiet_weights_prints_only_the_path(tmp_path, monkeypatch, capsys) -> None:
    from tuner import weights

    out = tmp_path / "out.weights.h5"
    monkeypatch.setattr("tuner.weights.convert", lambda name, path, *, force: Path(path))
    assert weights.main(["hed-vgg16", str(out), "--quiet"]) == 0
    assert capsys.readouterr() == (f"{out}\n", "")
    assert weights.main(["--list", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("hed-vgg16 ")


# --------------------------------------------------------------------------------------------
# Ctrl-C in a real search


def test_ctrl_c_in_a_search_keeps_the_finished_trials_and_a_rerun_resumes(
    tmp_path, monkeypatch, capsys
) -> None:
    from tuner import search
    from tuner.engine import transfer
    from tuner.project.trials import read_ranking

    data = make_folder(tmp_path / "images")
    project = tmp_path / "project"
    argv = [*search_flags(data, project, max_trials=2), "--quiet"]
    train = transfer.train_trial
    calls = []

    def second_is_interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(transfer, "train_trial", second_is_interrupted)
    assert search.main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == INTERRUPTED["search"]
    done = [row.trial_id for row in read_ranking(project).rows if row.status == "COMPLETED"]
    assert len(done) == 1

    monkeypatch.setattr(transfer, "train_trial", train)
    assert search.main(argv) == 0
    rows = read_ranking(project).rows
    assert [row.status for row in rows] == ["COMPLETED", "COMPLETED"]
    assert done[0] in [row.trial_id for row in rows]
    assert (project / "export" / "model.keras").is_file()
