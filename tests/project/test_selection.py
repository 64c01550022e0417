"""Ties with the best, the one-se pick and its cost, and the exported trial
(tuner.project.selection), on project folders written by hand (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.project.folders import (
    RUN,
    TEST_JSON,
    make_project,
    make_scored_project,
    write_scored_trial,
)
from tuner.errors import TunerError
from tuner.project.selection import cost
from tuner.project.trials import merge, read_ranking


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    return make_scored_project(tmp_path / "scored")


def test_trials_whose_interval_holds_the_best_score_are_tied_with_it(scored: Path) -> None:
    board = read_ranking(scored)

    assert {r.trial_id: r.tied for r in board.rows} == {
        "00": True,  # the best
        "01": True,
        "02": True,
        "03": True,  # 0.95 is the end of its interval: inside
        "04": False,
    }
    assert [r.trial_id for r in board.tied] == ["00", "01", "02", "03"]
    assert board.rows[0].interval == (0.88, 0.98)


def test_the_one_se_pick_is_the_cheapest_tied_trial_and_select_one_se_exports_it(
    scored: Path,
) -> None:
    board = read_ranking(scored)

    assert board.best.trial_id == "00"
    assert board.one_se.trial_id == "03"
    assert board.exported.trial_id == "03"  # run.json: "select": "one-se"
    assert board.pick("best").trial_id == "00"
    assert board.pick("one-se").trial_id == "03"
    assert [r.trial_id for r in board.rows if r.one_se or r.exported] == ["03"]
    with pytest.raises(TunerError, match="unknown --select 'cheapest'"):
        board.pick("cheapest")


def test_select_best_exports_the_best_and_older_projects_default_to_it(tmp_path: Path) -> None:
    board = read_ranking(make_scored_project(tmp_path / "best", select="best"))
    assert board.exported.trial_id == "00"
    assert board.one_se.trial_id == "03"  # still said, not exported

    old = read_ranking(make_project(tmp_path / "old"))  # run.json without "select"
    assert old.exported.trial_id == "02"


def test_cost_counts_fine_tuned_blocks_then_head_units_then_epochs_then_time(scored: Path) -> None:
    rows = {r.trial_id: r for r in read_ranking(scored).rows}

    # 02 unfroze a block, but its checkpoint is from phase 1: no block was fine-tuned.
    assert rows["02"].best_phase == 1 and cost(rows["02"])[:2] == (0.0, 128.0)
    assert rows["01"].best_phase == 2 and cost(rows["01"])[:2] == (2.0, 0.0)
    assert sorted(rows, key=lambda trial_id: cost(rows[trial_id])) == [
        "03",  # nothing fine-tuned, linear head
        "04",
        "02",  # nothing fine-tuned, a dense head
        "01",  # two blocks fine-tuned, linear head
        "00",
    ]
    # Same blocks and head: fewer epochs, then less time, is cheaper.
    short = dataclasses.replace(rows["03"], best_epoch=2)
    quick = dataclasses.replace(rows["03"], seconds_head=1.0)
    assert cost(short) < cost(rows["03"]) and cost(quick) < cost(rows["03"])


def test_without_intervals_only_the_best_is_tied(tmp_path: Path) -> None:
    board = read_ranking(make_project(tmp_path / "old"))

    assert [(r.trial_id, r.tied) for r in board.rows] == [
        ("02", True),
        ("00", None),
        ("01", None),
        ("04", None),  # running: not ranked
        ("03", None),
    ]
    assert board.one_se.trial_id == "02"


def test_merged_projects_tie_against_the_best_of_all_and_export_none(
    scored: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    (other / "trials").mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({**RUN, "select": "best"}))
    write_scored_trial(other, "00", accuracy=0.97, interval=(0.94, 0.99))
    (other / "test.json").write_text(json.dumps({**TEST_JSON, "trial_id": "00"}))

    board = merge([read_ranking(scored), read_ranking(other)])

    assert (board.best.project, board.best.trial_id) == ("other", "00")
    # 0.97 lies in 00's and 01's intervals of the first project, not in 02's or 03's.
    tied = [(r.project, r.trial_id) for r in board.tied]
    assert tied == [("other", "00"), ("scored", "00"), ("scored", "01")]
    assert board.exported is None
    assert board.test is None and set(board.tests) == {"other"}
