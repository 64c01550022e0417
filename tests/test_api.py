"""The Python API (`import tuner`: `tuner.run`, `tuner.load`, ...) and the TensorBoard logs, from
one real search.

The search runs once for the module: the tiny backbone, two trials that both fine-tune, three
epochs each (two of phase 1, one of phase 2).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers import TINY_SEARCH, run_python, search_flags, space_path
from tests.images import make_folder

OPTIONS = {**TINY_SEARCH, "max_trials": 2}
HEAVY = ("tensorflow", "keras", "keras_tuner")


def test_import_tuner_loads_no_tensorflow_keras_or_keras_tuner() -> None:
    code = (
        "import sys, tuner\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert tuner.__version__ and tuner.TunerError\n"  # the light names stay light
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr


def test_the_public_api_resolves_every_name_and_lists_it() -> None:
    import tuner
    from tuner import errors, search
    from tuner.engine.runner import SearchResult
    from tuner.ui.board import load

    assert sorted(tuner.__all__) == sorted(set(tuner.__all__))
    for name in tuner.__all__:
        assert getattr(tuner, name) is not None, name
    assert set(tuner.__all__) <= set(dir(tuner))
    assert tuner.run is search.run and tuner.load is load
    assert tuner.SearchResult is SearchResult
    error_classes = {name for name, value in vars(errors).items() if isinstance(value, type)}
    assert error_classes <= set(tuner.__all__)
    assert issubclass(tuner.SpaceError, tuner.ConfigError)
    assert "tiny" in tuner.list_backbones()
    assert tuner.__version__.count(".") == 2
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tuner.nothing  # noqa: B018


def test_setup_cfg_reads_the_one_version() -> None:
    import configparser

    import tuner

    setup = configparser.ConfigParser()
    setup.read(Path(tuner.__file__).parent.parent / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: tuner._version.__version__"


def cli_flags(data: Path, space: Path, project: Path) -> list[str]:
    return [*search_flags(data, project, **OPTIONS), "--space", str(space)]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory):
    import tuner

    root = tmp_path_factory.mktemp("api")
    data = make_folder(root / "images")
    space = space_path("two_dropouts")  # two trials, both fine-tuned
    out = io.StringIO()
    result = tuner.run(
        data,
        space=space,
        project_dir=root / "project",
        console=Console(file=out, width=100, color_system=None),
        **OPTIONS,
    )
    return result, root, data, space, out.getvalue()


def test_run_returns_the_leaderboard_the_command_line_prints(searched) -> None:
    import tuner
    from tuner.ui.board import Board, render

    result, root, data, space, _ = searched
    assert isinstance(result.leaderboard, Board)
    assert tuner.load(root / "project") == result.leaderboard  # the same board, read again
    assert [row.status for row in result.leaderboard.rows] == ["COMPLETED", "COMPLETED"]
    assert result.best is result.leaderboard.rows[0] and result.export.is_file()
    assert [r["trial_id"] for r in result.records()] == [
        r.trial_id for r in result.leaderboard.rows
    ]

    # The command line on the same project: nothing is left to run, so it prints the leaderboard
    # of the very same trials, and with --quiet nothing else.
    done = run_python(
        "-m", "tuner.search", *cli_flags(data, space, root / "project"), "--quiet", timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = Console(file=io.StringIO(), width=80, color_system=None)  # a pipe, like the CLI's
    render(result.leaderboard, console=console)
    table = console.file.getvalue()
    assert done.stdout == table
    assert "curve" in table
    # TensorFlow's start-up noise stays out of the command's output.
    assert done.stderr == ""


@pytest.mark.slow
def test_the_readme_s_other_commands_run_as_processes_on_the_search(searched) -> None:
    # `python -m tuner.leaderboard`, `tuner.export` and `tuner.predict` as the README runs them,
    # each a real process (its `__main__` entry, exit status and output), on the finished project
    # and the model its search exported; tests/test_cli.py and tests/serve run the same commands
    # in-process through every option.
    _, root, _, _, _ = searched
    project = root / "project"
    board = run_python("-m", "tuner.leaderboard", str(project), "--json", timeout=120)
    assert board.returncode == 0, board.stderr
    assert [row["status"] for row in json.loads(board.stdout)["rows"]] == ["COMPLETED"] * 2
    usage = run_python("-m", "tuner.export", "--help", timeout=120)
    assert usage.returncode == 0 and "PROJECT_DIR" in usage.stdout, usage.stderr
    model = project / "export" / "model.keras"
    image = next(p for p in sorted((root / "images").rglob("*")) if p.suffix in (".png", ".jpg"))
    predicted = run_python("-m", "tuner.predict", str(model), str(image), "--json", timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    [prediction] = json.loads(predicted.stdout)["predictions"]
    assert prediction["file"] == str(image)
    labels = (project / "export" / "labels.txt").read_text().split("\n")
    assert prediction["class"] in labels


def test_the_search_showed_itself_as_plain_lines_on_a_non_terminal(searched) -> None:
    *_, shown = searched
    lines = shown.splitlines()
    assert sum("phase 2 (fine-tune) epoch 3/3" in line for line in lines) == 2
    assert sum(" done in " in line for line in lines) == 2
    assert "Trials by" not in shown  # the API returns the leaderboard instead of printing it


def test_run_refuses_an_unknown_option() -> None:
    import tuner

    with pytest.raises(TypeError, match="unknown options: max_trail"):
        tuner.run("images", max_trail=3)


def test_run_raises_a_tuner_error_for_bad_input(tmp_path: Path) -> None:
    import tuner

    with pytest.raises(tuner.TunerError, match="Missing --data"):
        tuner.run(project_dir=tmp_path)


def events(folder: Path) -> list[tuple[str, int, object]]:
    """(tag, step, value or plugin content) of every summary in `folder`'s event files."""
    import tensorflow as tf

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    found.append((value.tag, event.step, plugin.content))
                else:
                    found.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
    return found


def test_tensorboard_logs_hold_both_phases_on_one_axis_and_the_hparams(searched) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    result, *_ = searched
    logs = result.project_dir / "logs"
    experiment = [
        plugin_data_pb2.HParamsPluginData.FromString(content).experiment
        for _, _, content in events(logs)
    ]
    assert experiment, "no HParams experiment under logs/"
    names = {info.name for info in experiment[-1].hparam_infos}
    assert names == {
        "head/units",
        "head/dropout",
        "head/learning_rate",
        "finetune/unfreeze_blocks",
        "finetune/learning_rate",
    }
    metrics = {(m.name.group, m.name.tag) for m in experiment[-1].metric_infos}
    assert ("", "best_val_accuracy") in metrics and ("validation", "epoch_accuracy") in metrics

    for row in result.leaderboard.rows:
        trial = logs / f"trial_{row.trial_id}"
        train = events(trial / "train")
        steps = sorted(step for tag, step, _ in train if tag == "epoch_loss")
        assert steps == [1, 2, 3]  # phase 1's two epochs, then phase 2's, on one axis
        phases = [v for tag, step, v in sorted(train, key=lambda e: e[1]) if tag == "epoch_phase"]
        assert phases == [1.0, 1.0, 2.0]
        val = events(trial / "validation")
        accuracy = {step: v for tag, step, v in val if tag == "epoch_accuracy"}
        assert sorted(accuracy) == [1, 2, 3]
        assert accuracy == pytest.approx(dict(enumerate(row.curve, 1)))

        root = events(trial)
        best = [v for tag, _, v in root if tag == "best_val_accuracy"]
        assert best == [pytest.approx(row.score)]
        session = [
            plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
            for tag, _, c in root
            if isinstance(c, bytes)
        ]
        assert session and session[0].hparams["head/dropout"].number_value == pytest.approx(
            row.hyperparameters["head/dropout"]
        )
