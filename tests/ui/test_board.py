"""Tests for tuner.leaderboard: reading a project directory, the table, the JSON and the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.helpers import REPO, run_python
from tests.project.folders import (
    RUN,
    TEST_JSON,
    TRACEBACK,
    make_project,
    make_scored_project,
    summary,
    trial_state,
    write_scored_trial,
    write_trial,
)
from tests.project.folders import hp_values as _values
from tuner.errors import TunerError
from tuner.leaderboard import main
from tuner.project.trials import (
    Ranking,
    Row,
    read_csv,
    read_ranking,
    rows_from_json,
    to_csv,
    to_json,
)
from tuner.ui import board as leaderboard
from tuner.ui.board import build_table, load, render
from tuner.ui.boardtext import sparkline


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A search with two completed trials with phase 2, one without, a failure and a running one."""
    return make_project(tmp_path / "search")


def _text(board: Ranking, width: int = 120, **kwargs: Any) -> str:
    # A terminal: the table fits its width (a file or a pipe gets every column, see below).
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=True)
    render(board, console=console, **kwargs)
    return console.file.getvalue()


def _table_line(text: str, trial_id: str) -> str:
    # Rows start with the rank (or "-"), then the trial id ("*" after the exported one's).
    return next(
        line
        for line in text.splitlines()
        if [c.rstrip("*") for c in line.split()[1:2]] == [trial_id]
    )


# --------------------------------------------------------------------------------------------
# Reading


def test_rows_are_ranked_by_score_then_running_then_failed(project: Path) -> None:
    board = read_ranking(project)

    assert board.objective == "val_accuracy"
    assert board.direction == "max"
    assert board.run == RUN
    assert [(r.rank, r.trial_id, r.status) for r in board.rows] == [
        (1, "02", "COMPLETED"),
        (2, "00", "COMPLETED"),
        (3, "01", "COMPLETED"),
        (None, "04", "RUNNING"),
        (None, "03", "FAILED"),
    ]


def test_row_fields_come_from_trial_and_summary(project: Path) -> None:
    rows = {row.trial_id: row for row in read_ranking(project).rows}

    assert rows["00"] == Row(
        rank=2,
        trial_id="00",
        status="COMPLETED",
        score=0.9125,
        val_accuracy_head=0.9,
        val_accuracy_finetune=0.9125,
        hyperparameters=_values(64, 0.25, 1e-3, 1, 1e-5),
        epochs=6,
        seconds_head=12.34,
        seconds_finetune=125.0,
        reason=None,
        tuner_values={"tuner/epochs": 6},
        project="search",
        metrics_head={"val_accuracy": 0.9, "val_loss": 0.25},
        metrics_finetune={"val_accuracy": 0.9125, "val_loss": 0.25},
        epochs_head=4,
        epochs_finetune=2,
    )
    # No phase 2 when no block is unfrozen.
    assert rows["01"].val_accuracy_finetune is None
    assert rows["01"].seconds_finetune is None
    assert rows["01"].epochs == 4
    # A running trial has no summary.json yet.
    assert rows["04"].epochs is None
    assert rows["04"].val_accuracy_head is None
    assert rows["04"].reason is None
    # The reason is the traceback's last non-empty line, without the exception's module path.
    assert rows["03"].reason == "TrialError: out of memory while building xception at 96px"


def test_summary_reason_wins_over_traceback_and_is_truncated(project: Path) -> None:
    long_reason = "diverged: loss became NaN at epoch 3 (phase 2) " + "x" * 200
    write_trial(
        project,
        trial_state(
            "05", status="FAILED", values=_values(64, 0.0, 1e-2, 1, 1e-3), message=TRACEBACK
        ),
        summary("05", head=(3, 5.0, 0.5), finetune=None, reason=long_reason),
    )
    row = next(r for r in read_ranking(project).rows if r.trial_id == "05")

    assert row.reason.startswith("diverged: loss became NaN at epoch 3 (phase 2) xxx")
    assert len(row.reason) <= 100
    assert row.reason.endswith("…")


def test_min_direction_and_ties_by_trial_id(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    (tmp_path / "run.json").write_text(
        json.dumps({**RUN, "objective": "val_loss", "direction": "min"})
    )
    values = _values(64, 0.0, 1e-3, 0, 1e-5)
    for trial_id, score in [("10", 0.3), ("9", 0.2), ("2", 0.3), ("7", 0.5)]:
        write_trial(tmp_path, trial_state(trial_id, status="COMPLETED", values=values, score=score))

    board = read_ranking(tmp_path)

    assert [(r.rank, r.trial_id) for r in board.rows] == [(1, "9"), (2, "2"), (3, "10"), (4, "7")]


def test_torn_trial_json_becomes_an_unranked_row(project: Path) -> None:
    torn = project / "trials" / "trial_05"
    torn.mkdir()
    (torn / "trial.json").write_text('{"trial_id": "05", "hyperpa')
    (project / "trials" / "trial_06").mkdir()  # created, trial.json not written yet: skipped

    rows = read_ranking(project).rows

    assert [r.trial_id for r in rows][-1] == "05"
    assert rows[-1].status == "UNREADABLE"
    assert rows[-1].rank is None
    assert rows[-1].reason.startswith("trial.json unreadable:")
    assert "06" not in [r.trial_id for r in rows]


def test_without_run_json_objective_and_direction_come_from_trial_metrics(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    values = _values(64, 0.0, 1e-3, 0, 1e-5)
    for trial_id, loss in [("0", 0.5), ("1", 0.2), ("2", 0.9)]:
        state = trial_state(trial_id, status="COMPLETED", values=values, score=loss, best_step=2)
        state["metrics"]["metrics"] = {
            "val_loss": {"direction": "min", "observations": [{"value": [loss], "step": 2}]},
            "val_accuracy": {"direction": "max", "observations": [{"value": [0.8], "step": 2}]},
        }
        write_trial(tmp_path, state)

    board = read_ranking(tmp_path)

    assert (board.objective, board.direction, board.run) == ("val_loss", "min", {})
    assert [row.trial_id for row in board.rows] == ["1", "0", "2"]


def test_missing_folder_and_folder_without_search(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match=r"no search found in .*missing: expected .*trials"):
        read_ranking(tmp_path / "missing")
    with pytest.raises(TunerError, match=r"run python -m tuner\.search first"):
        read_ranking(tmp_path)


def test_bad_run_json_is_one_line_tuner_error(project: Path) -> None:
    (project / "run.json").write_text("{not json")
    with pytest.raises(TunerError, match=r"cannot read .*run\.json") as info:
        read_ranking(project)
    assert "\n" not in str(info.value)

    (project / "run.json").write_text(json.dumps({**RUN, "direction": "up"}))
    with pytest.raises(TunerError, match=r"`direction` must be 'max' or 'min', but got 'up'"):
        read_ranking(project)


# --------------------------------------------------------------------------------------------
# The table


def test_table_shows_ranks_order_and_headers(project: Path) -> None:
    text = _text(read_ranking(project))
    lines = text.splitlines()

    assert all(len(line) <= 120 for line in lines)
    header = "\n".join(lines[:4])
    assert header.splitlines()[-1].split()[:3] == ["#", "trial", "status"]
    # Long headers wrap above narrow numbers: "val_" / "accuracy", "val acc" / "fine-" / "tune".
    for name in ("val_", "accuracy", "val acc", "fine-", "tune", "units", "dropout", "head lr"):
        assert name in header
    for name in ("unfreeze", "ft lr", "epochs", "head", "time", "ft"):
        assert name in header
    assert "tuner/epochs" not in text
    order = [text.index(_table_line(text, trial_id)) for trial_id in ("02", "00", "01", "04", "03")]
    assert order == sorted(order)
    assert _table_line(text, "02").split()[:3] == ["1", "02*", "completed"]  # * exported
    assert _table_line(text, "03").split()[:3] == ["-", "03", "failed"]
    assert _table_line(text, "04").split()[:3] == ["-", "04", "running"]


def test_table_formats_numbers(project: Path) -> None:
    text = _text(read_ranking(project))

    best = _table_line(text, "02").split()
    # objective, its interval (none recorded in this older project), vs best, head, fine-tune
    assert best[3:8] == ["0.9431", "-", "best", "0.9012", "0.9431"]
    assert best[8:13] == ["256", "0.5", "1e-02", "2", "2.5e-05"]  # hyperparameters
    assert best[13:] == ["6", "11.0s", "1h02m", "-"]  # epochs, times, curve (none logged)
    assert _table_line(text, "00").split()[13:] == ["6", "12.3s", "2m05s", "-"]
    head_only = _table_line(text, "01").split()
    assert head_only[3:8] == ["0.8750", "-", "-", "0.8750", "-"]
    assert head_only[10] == "3.2e-04"
    assert head_only[-3:] == ["9.5s", "-", "-"]
    assert _table_line(text, "04").split()[3:8] == ["-", "-", "-", "-", "-"]


def test_caption_gives_run_counts_best_and_failure_reason(project: Path) -> None:
    text = _text(read_ranking(project))

    assert "weights imagenet" in text
    assert "augmentation off" in text
    assert "3 completed, 1 failed, 1 running" in text
    assert "best: trial 02 (val_accuracy 0.9431)" in text
    assert "trial 03 failed: TrialError: out of memory while building xception at 96px" in text
    assert "Traceback" not in text


def test_caption_names_weights_file_and_augmentation_views(project: Path) -> None:
    board = read_ranking(project)
    run = {**board.run, "weights": "file:ab12cd34ef56", "augment": True, "augment_views": 4}
    text = _text(Ranking(board.objective, board.direction, board.rows, run))

    assert "weights from file ab12cd34ef56" in text
    assert "augmentation on (4 cached views)" in text


def test_build_table_is_a_renderable_with_title(project: Path) -> None:
    board = read_ranking(project)

    table = build_table(board, title="cats vs dogs")

    assert table.title == "cats vs dogs"
    assert table.row_count == 5
    assert build_table(board).title == "Trials by val_accuracy (higher is better)"


def _with_backbones(board: Ranking, names: list[str]) -> Ranking:
    rows = tuple(
        dataclasses.replace(row, hyperparameters={"backbone": name, **row.hyperparameters})
        for row, name in zip(board.rows, names, strict=True)
    )
    return dataclasses.replace(board, rows=rows)


def test_a_table_too_wide_leaves_out_epochs_and_times_first(project: Path) -> None:
    backbones = ["mobilenet_v2", "xception", "efficientnet_b0", "resnet50", "xception"]
    board = _with_backbones(read_ranking(project), backbones)

    text = _text(board, width=100)

    assert all(len(line) <= 100 for line in text.splitlines())
    # Columns with nothing in them (no interval, no curve in this older project) go first.
    hidden = "95% interval, curve, epochs, ft time, head time, val acc head"
    assert f"not shown, for width: {hidden} (--json has" in " ".join(text.split())
    best = _table_line(text, "02").split()
    assert best[:7] == ["1", "02*", "completed", "0.9431", "best", "0.9431", "mobilenet_v2"]
    assert best[7:] == ["256", "0.5", "1e-02", "2", "2.5e-05"]
    assert "efficientnet_b0" in text
    # Without a width, build_table keeps every column.
    assert [c.header for c in build_table(board).columns][-4:] == [
        "epochs",
        "head\ntime",
        "ft\ntime",
        "curve",
    ]


def test_narrow_console_keeps_rank_objective_and_hyperparameters(project: Path) -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=True)

    render(read_ranking(project), console=console)

    text = console.file.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert _table_line(text, "02").split()[:4] == ["1", "02*", "completed", "0.9431"]
    assert "2.5e-05" in _table_line(text, "02")


def test_unknown_hyperparameters_get_derived_headers() -> None:
    headers = leaderboard._hp_headers(["head/units", "neck/units", "phase2/learning_rate", "seed"])
    assert headers == {
        "head/units": "head/units",
        "neck/units": "neck/units",
        "phase2/learning_rate": "ft lr",
        "seed": "seed",
    }


def test_empty_search_renders(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    (tmp_path / "run.json").write_text(json.dumps(RUN))

    text = _text(read_ranking(tmp_path))

    assert "0 completed, 0 failed" in text


# --------------------------------------------------------------------------------------------
# JSON and the command line


def test_json_holds_the_same_rows(project: Path) -> None:
    board = read_ranking(project)

    data = json.loads(to_json(board))

    assert data["objective"] == "val_accuracy"
    assert data["direction"] == "max"
    assert data["run"] == RUN
    assert [Row.from_dict(row) for row in data["rows"]] == list(board.rows)


def test_json_writes_non_finite_scores_as_null(project: Path) -> None:
    board = read_ranking(project)
    nan_row = Row(**{**board.rows[0].__dict__, "score": float("nan")})

    data = json.loads(to_json(Ranking("val_accuracy", "max", (nan_row,), {})))

    assert data["rows"][0]["score"] is None


def test_main_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(project), "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert [row["trial_id"] for row in data["rows"]] == ["02", "00", "01", "04", "03"]
    assert [row["rank"] for row in data["rows"]] == [1, 2, 3, None, None]


def test_main_table(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(project)]) == 0

    assert "best: trial 02" in capsys.readouterr().out


def test_main_missing_folder_is_one_line_and_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing")]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: no search found in ")


def test_main_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing"), "--debug"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("Traceback")
    assert "TunerError: no search found in" in err


def test_main_usage_error_is_one_line_and_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PROJECT_DIR" in err
    assert err.endswith("(see python -m tuner.leaderboard --help)\n")


def _run_python(*args: str):
    return run_python(*args, cwd=REPO, timeout=60)


@pytest.mark.slow
def test_cli_help() -> None:
    result = _run_python("-m", "tuner.leaderboard", "--help")

    assert result.returncode == 0, result.stderr
    assert "PROJECT_DIR" in result.stdout
    assert "--json" in result.stdout


@pytest.mark.slow
def test_import_loads_no_tensorflow_keras_or_keras_tuner() -> None:
    code = (
        "import sys, tuner.leaderboard; "
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = _run_python("-c", code)

    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_fixture_matches_keras_tuners_trial_format(project: Path) -> None:
    # Slow (imports TensorFlow), but it proves the hand-written trial.json files are exactly what
    # KerasTuner 1.4.8 writes: Trial.from_state() reads them and get_state() gives them back.
    trial_module = pytest.importorskip("keras_tuner.engine.trial")
    for trial_json in sorted((project / "trials").glob("trial_*/trial.json")):
        state = json.loads(trial_json.read_text())
        assert trial_module.Trial.from_state(state).get_state() == state


def test_ties_on_the_objective_go_to_the_lower_val_loss(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    (tmp_path / "run.json").write_text(json.dumps(RUN))
    values = _values(64, 0.0, 1e-3, 0, 1e-5)
    for trial_id, loss in [("1", 0.4), ("2", 0.1), ("3", None)]:
        data = summary(trial_id, head=(2, 1.0, 1.0), finetune=None)
        if loss is None:
            del data["phase1"]["best"]["val_loss"]
        else:
            data["best"] = {"val_accuracy": 1.0, "val_loss": loss}
        state = trial_state(trial_id, status="COMPLETED", values=values, score=1.0)
        write_trial(tmp_path, state, data)
    write_trial(tmp_path, trial_state("4", status="COMPLETED", values=values, score=0.9))

    board = read_ranking(tmp_path)

    assert [(r.rank, r.trial_id) for r in board.rows] == [(1, "2"), (2, "1"), (3, "3"), (4, "4")]


# --------------------------------------------------------------------------------------------
# Records, CSV, merged projects, learning curves


def with_history(project: Path, trial_id: str, head: list[float], finetune: list[float]) -> None:
    """Adds per-epoch histories (val_accuracy) to a trial's summary.json."""
    path = project / "trials" / f"trial_{trial_id}" / "summary.json"
    data = json.loads(path.read_text())
    epoch = 0
    for name, curve in (("phase1", head), ("phase2", finetune)):
        history = []
        for value in curve:
            epoch += 1
            history.append({"epoch": epoch, "loss": 1.0 - value, "val_accuracy": value})
        if data.get(name):
            data[name]["history"] = history
    path.write_text(json.dumps(data))


def test_records_hold_every_field_of_every_trial(project: Path) -> None:
    with_history(project, "00", [0.5, 0.6, 0.7, 0.9], [0.9, 0.9125])
    board = load(project)
    records = {r["trial_id"]: r for r in board.records()}

    first = records["00"]
    assert first["project"] == "search" and first["rank"] == 2 and first["status"] == "COMPLETED"
    assert first["score"] == 0.9125
    assert first["head/units"] == 64 and first["finetune/learning_rate"] == 1e-5
    assert first["tuner/epochs"] == 6
    assert first["val_accuracy_head"] == 0.9 and first["val_loss_head"] == 0.25
    assert first["val_accuracy_finetune"] == 0.9125
    assert (first["epochs"], first["epochs_head"], first["epochs_finetune"]) == (6, 4, 2)
    assert (first["seconds_head"], first["seconds_finetune"]) == (12.34, 125.0)
    assert first["curve_head"] == [0.5, 0.6, 0.7, 0.9] and first["curve_finetune"] == [0.9, 0.9125]
    assert records["01"]["val_accuracy_finetune"] is None and records["01"]["epochs_finetune"] == 0
    assert records["03"]["status"] == "FAILED" and records["03"]["reason"].startswith("TrialError")
    assert records["04"]["epochs"] is None  # running: no summary yet
    assert len({tuple(r) for r in board.records()}) == 1  # every record has the same keys


def test_csv_round_trips_every_field(project: Path) -> None:
    import dataclasses

    with_history(project, "00", [0.5, 0.6, 0.7, 0.9], [0.9, 0.9125])
    board = load(project)
    # Text that reads like a number, or like nothing, must come back as text.
    odd = dataclasses.replace(
        board.rows[0], hyperparameters={**board.rows[0].hyperparameters, "head/units": "064"}
    )
    blank = dataclasses.replace(board.rows[1], reason="")
    board = dataclasses.replace(board, rows=(odd, blank, *board.rows[2:]))

    text = to_csv(board)

    assert read_csv(text) == board.records()
    header = text.splitlines()[0].split(",")
    assert header[:5] == ["project", "rank", "trial_id", "status", "score"]
    assert "head/units" in header and "val_accuracy_finetune" in header


def test_json_round_trips_every_field(project: Path) -> None:
    with_history(project, "02", [0.6, 0.9012], [0.93, 0.9431])
    board = load(project)
    assert rows_from_json(board.to_json()) == list(board.rows)
    assert board.rows[0].curve == (0.6, 0.9012, 0.93, 0.9431)


def test_main_csv(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(project), "--csv"]) == 0
    records = read_csv(capsys.readouterr().out)
    assert [r["trial_id"] for r in records] == ["02", "00", "01", "04", "03"]


def test_main_refuses_csv_and_json_together(project: Path) -> None:
    assert main([str(project), "--csv", "--json"]) == 2


def test_sparkline_draws_both_phases_on_one_scale() -> None:
    assert sparkline((0.5, 0.6, 0.75), (0.8, 0.9)) == "▁▃▅|▆█"
    assert sparkline((0.5, None), (), low=0.0, high=1.0) == "▅ "
    assert sparkline((), ()) == ""
    assert sparkline((0.7, 0.7)) == "▅▅"


def test_the_table_shows_each_trials_curve(project: Path) -> None:
    with_history(project, "00", [0.5, 0.6, 0.7, 0.9], [0.9, 0.9125])
    text = _text(load(project))
    assert "curve" in text
    assert "▁▃▄█|██" in _table_line(text, "00")
    assert "curve: val_accuracy per epoch" in text


def test_a_file_or_pipe_gets_every_column_unwrapped(project: Path) -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)  # not a terminal
    render(load(project), console=console)
    text = console.file.getvalue()
    assert "not shown" not in text
    for header in ("epochs", "time", "curve", "fine-"):
        assert header in text
    for trial_id in ("00", "01", "02", "03", "04"):
        assert _table_line(text, trial_id)  # each row is one line
    assert max(len(line) for line in text.splitlines()) > 80


def copy_project(project: Path, name: str, shift: float) -> Path:
    """A second project like `project`, its scores moved by `shift`."""
    import shutil

    other = project.parent / name
    shutil.copytree(project, other)
    for trial_json in other.glob("trials/trial_*/trial.json"):
        state = json.loads(trial_json.read_text())
        if state["score"] is not None:
            state["score"] = round(state["score"] + shift, 4)
        trial_json.write_text(json.dumps(state))
    run = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**run, "backbones": ["mobilenetv2"]}))
    return other


def test_several_projects_merge_into_one_ranking(project: Path) -> None:
    other = copy_project(project, "mobilenet", 0.02)
    board = load(project, other)

    assert board.projects == ("search", "mobilenet")
    ranked = [(r.project, r.trial_id) for r in board.rows if r.rank is not None]
    assert ranked[:3] == [("mobilenet", "02"), ("search", "02"), ("mobilenet", "00")]
    assert [r.rank for r in board.rows[:6]] == [1, 2, 3, 4, 5, 6]
    text = _text(board)
    assert "project" in text
    assert _table_line(text, "mobilenet").split()[2] == "02"
    assert "search: weights imagenet" in text and "mobilenetv2 at 96px" in text
    assert "best: trial 02 of mobilenet (val_accuracy 0.9631)" in text
    csv_projects = {r["project"] for r in read_csv(board.to_csv())}
    assert csv_projects == {"search", "mobilenet"}


def test_projects_with_one_name_stay_apart(project: Path, tmp_path: Path) -> None:
    import shutil

    twin = tmp_path / "elsewhere" / "search"
    shutil.copytree(project, twin)
    board = load(project, twin)
    assert board.projects == ("search", "search-2")


def test_merging_refuses_different_objectives(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = copy_project(project, "by-loss", 0.0)
    run = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(
        json.dumps({**run, "objective": "val_loss", "direction": "min"})
    )
    assert main([str(project), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different objectives (val_accuracy, val_loss)" in err


def test_a_board_renders_itself_in_a_notebook(project: Path) -> None:
    board = load(project)
    bundle = board._repr_mimebundle_()
    assert "Trials by val_accuracy" in bundle["text/plain"]
    assert "<pre" in bundle["text/html"] and "0.9431" in bundle["text/html"]
    assert repr(board) == "<Board search: 5 trials by val_accuracy, best trial 02 (0.9431)>"


# --------------------------------------------------------------------------------------------
# Intervals, ties, the one-se pick, balanced accuracy and the test set


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    return make_scored_project(tmp_path / "scored")


def _headers(board: Ranking) -> list[str]:
    return [column.header for column in leaderboard._columns(board)]


def test_the_table_shows_intervals_and_marks_ties_the_one_se_pick_and_the_export(
    scored: Path,
) -> None:
    text = _text(read_ranking(scored))

    # rank, trial (* exported), status, objective, 95 % interval, vs best
    assert _table_line(text, "00").split()[:6] == [
        "1",
        "00",
        "completed",
        "0.9500",
        "0.880-0.980",
        "best",
    ]
    assert _table_line(text, "01").split()[4:6] == ["0.860-0.970", "tied"]
    assert _table_line(text, "03").split()[1] == "03*"
    assert _table_line(text, "03").split()[4:6] == ["0.820-0.950", "one-se"]
    assert _table_line(text, "04").split()[4:6] == ["0.710-0.870", "0.8000"]  # not tied: blank
    flat = " ".join(text.split())
    assert "best: trial 00 (val_accuracy 0.9500)" in flat
    assert "vs best: tied = the trial's 95 % interval holds the best score (3 besides" in flat
    assert "one-se: trial 03, the cheapest of 4 tied (fewest blocks fine-tuned" in flat
    assert "* export: trial 03 (--select one-se: the cheapest of 4 tied; the best is trial 00)" in (
        flat
    )


def test_with_select_best_the_best_is_exported_and_the_one_se_pick_still_named(
    tmp_path: Path,
) -> None:
    text = _text(read_ranking(make_scored_project(tmp_path / "p", select="best")))

    assert _table_line(text, "00").split()[1] == "00*"
    assert _table_line(text, "03").split()[1] == "03"
    assert "one-se: trial 03, the cheapest of 4 tied" in text
    assert "* export: trial 00 (--select best: the best score)" in text


def test_an_older_project_renders_dashes_and_says_no_tie_is_marked(project: Path) -> None:
    text = _text(read_ranking(project))

    assert _table_line(text, "00").split()[4:6] == ["-", "-"]  # no interval, so no verdict
    assert "vs best: no 95 % interval recorded (an older project), so no tie is marked" in text
    assert "test (" not in text


def test_when_no_other_interval_holds_the_best_the_caption_says_so(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "trials").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps(RUN))
    write_scored_trial(root, "0", accuracy=0.99, interval=(0.95, 1.0))
    write_scored_trial(root, "1", accuracy=0.7, interval=(0.6, 0.8))

    text = _text(read_ranking(root))

    assert "vs best: no other trial's 95 % interval holds the best score" in text
    assert "one-se:" not in text


def test_balanced_accuracy_appears_when_it_differs_from_accuracy_by_more_than_a_point(
    tmp_path: Path,
) -> None:
    root = tmp_path / "p"
    (root / "trials").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps(RUN))
    write_scored_trial(root, "0", accuracy=0.9, balanced=0.895, interval=(0.8, 0.95))
    write_scored_trial(root, "1", accuracy=0.85, balanced=0.855, interval=(0.75, 0.9))
    assert "val bal acc" not in _headers(read_ranking(root))  # within a point everywhere

    write_scored_trial(root, "2", accuracy=0.88, balanced=0.6, interval=(0.8, 0.93))
    board = read_ranking(root)

    headers = _headers(board)
    assert headers.index("val bal acc") == headers.index("vs best") + 1
    text = _text(board)
    assert _table_line(text, "2").split()[6] == "0.6000"
    assert _table_line(text, "0").split()[6] == "0.8950"


def test_ranked_by_balanced_accuracy_the_accuracy_column_stands_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "trials").mkdir(parents=True)
    run = {**RUN, "objective": "val_balanced_accuracy"}
    (root / "run.json").write_text(json.dumps(run))
    write_scored_trial(root, "0", accuracy=0.95, balanced=0.7, interval=(0.6, 0.8))
    write_scored_trial(root, "1", accuracy=0.8, balanced=0.75, interval=(0.65, 0.85))

    board = read_ranking(root)

    assert [r.trial_id for r in board.rows] == ["1", "0"]  # by balanced accuracy
    headers = _headers(board)
    assert "val bal acc" not in headers
    assert headers[headers.index("vs best") + 1] == "val acc"
    assert _table_line(_text(board), "0").split()[3] == "0.7000"


def test_the_footer_shows_the_test_figures(scored: Path) -> None:
    (scored / "test.json").write_text(json.dumps(TEST_JSON))

    text = " ".join(_text(read_ranking(scored)).split())

    assert (
        "test (200 images, scored once on the export of trial 03): accuracy 0.930, balanced "
        "accuracy 0.915, ECE 0.031, log-loss 0.210" in text
    )
    assert "test recall: cat 0.980, dog 0.850 · 1 file skipped" in text

    refit = {**TEST_JSON, "refit": {"epochs": 5}, "auc": 0.97, "skipped": 0}
    (scored / "test.json").write_text(json.dumps(refit))
    text = " ".join(_text(read_ranking(scored)).split())
    assert "scored once on the refit export of trial 03): accuracy 0.930, balanced" in text
    assert "AUC 0.970" in text and "skipped" not in text


def test_a_merged_footer_names_each_projects_test(scored: Path, project: Path) -> None:
    (scored / "test.json").write_text(json.dumps(TEST_JSON))

    text = " ".join(_text(load(scored, project)).split())

    assert "scored test (200 images, scored once on the export of trial 03)" in text
    assert "* export" not in text  # each project exported its own


def test_main_json_carries_the_test_block(scored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (scored / "test.json").write_text(json.dumps(TEST_JSON))
    assert main([str(scored), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["test"]["balanced_accuracy"] == 0.915
    assert data["rows"][0]["recall"] == {"cat": 1.0, "dog": 0.9}


def test_main_csv_has_recall_per_class(scored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(scored), "--csv"]) == 0
    records = read_csv(capsys.readouterr().out)
    assert [(r["trial_id"], r["recall_dog"], r["exported"]) for r in records][3] == (
        "03",
        0.9,
        True,
    )


def test_narrow_tables_hide_the_interval_before_accuracy_and_keep_vs_best(tmp_path: Path) -> None:
    root = make_scored_project(tmp_path / "p")
    write_scored_trial(root, "05", accuracy=0.94, balanced=0.9, interval=(0.9, 0.97))

    text = _text(read_ranking(root), width=84)

    assert all(len(line) <= 84 for line in text.splitlines())
    flat = " ".join(text.split())
    assert "not shown, for width: curve, epochs, ft time, head time, val acc head, val acc" in flat
    assert "fine-tune, 95% interval (--json" in flat
    assert _table_line(text, "05").split()[1:6] == [
        "05*",
        "completed",
        "0.9400",
        "one-se",
        "0.9000",
    ]
