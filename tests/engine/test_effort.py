"""Phase-aware effort (`--finetune-contenders`): only trials whose head-only score is among the
best so far fine-tune; the others keep their head-only result and the leaderboard says so."""

from __future__ import annotations

import json
from pathlib import Path

from tuner.engine.effort import skip_reason

# The default (tried first) learns in two epochs; at the tiny rates a head barely moves, so a trial
# can fall behind it and skip phase 2 (this seed makes one do so).
LEARNING_RATES = 'type = "choice"\nvalues = [0.03, 0.000001, 0.0000001, 0.01]'


def test_a_trial_is_a_contender_among_the_best_so_far():
    judge = {"objective": "val_accuracy", "direction": "max"}
    earlier = [0.8, 0.7, 0.6]
    assert skip_reason({"val_accuracy": 0.9}, earlier, keep=1, **judge) is None
    assert skip_reason({"val_accuracy": 0.8}, earlier, keep=1, **judge) is None  # a tie counts
    reason = skip_reason({"val_accuracy": 0.75}, earlier, keep=1, **judge)
    assert reason is not None and "0.7500" in reason and "0.8000" in reason
    assert skip_reason({"val_accuracy": 0.75}, earlier, keep=2, **judge) is None
    assert skip_reason({"val_accuracy": 0.1}, [], keep=1, **judge) is None  # the first trial
    assert skip_reason({"val_accuracy": 0.1}, earlier, keep=0, **judge) is None
    loss = {"objective": "val_loss", "direction": "min"}
    assert skip_reason({"val_loss": 0.5}, [0.4], keep=1, **loss) is not None
    assert skip_reason({"val_loss": 0.3}, [0.4], keep=1, **loss) is None


def test_only_contenders_fine_tune(search_config, searched, fixed_space):
    from tuner.ui.board import build_table, load

    space = fixed_space(1)
    space.write_text(space.read_text().replace('type = "fixed"\nvalue = 0.01', LEARNING_RATES))
    config = search_config(space=space, max_trials=4, finetune_contenders=1)
    bench, tuner = searched(config)
    best_head = None
    skipped = 0
    for trial_id in sorted(tuner.oracle.trials, key=int):
        summary = json.loads((Path(tuner.get_trial_dir(trial_id)) / "summary.json").read_text())
        head = summary["phase1"]["best"]["val_accuracy"]
        contender = best_head is None or head >= best_head
        assert (summary["phase2"] is not None) == contender, (trial_id, head, best_head)
        assert (summary["finetune_skipped"] is None) == contender
        skipped += not contender
        best_head = head if best_head is None else max(best_head, head)
    board = load(config.project_dir)
    assert skipped >= 1
    assert sum(row.finetune_skipped is not None for row in board.rows) == skipped
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(build_table(board))
    text = " ".join(console.export_text().split())
    assert "skipped" in text
    assert "phase 2 skipped in" in text and "not among the 1 best so far" in text


def test_head_only_scores_are_read_for_every_objective(tmp_path):
    """`--finetune-contenders` judges by the search's objective, whichever it is."""
    from tuner.config import OBJECTIVES
    from tuner.engine.effort import head_scores, skip_reason
    from tuner.project.layout import PhaseSummary, TrialSummary

    for index, value in enumerate((0.6, 0.8)):
        logs = {name: value for name in OBJECTIVES}
        summary = TrialSummary(str(index), phase1=PhaseSummary(epochs=1, best=logs))
        (tmp_path / f"trial_{index}").mkdir()
        summary.write(tmp_path / f"trial_{index}")
    for objective, direction in OBJECTIVES.items():
        earlier = head_scores(sorted(tmp_path.glob("trial_*")), objective)
        assert earlier == [0.6, 0.8]
        worse = 0.7 if direction == "max" else 0.9
        reason = skip_reason(
            {objective: worse}, earlier, keep=1, objective=objective, direction=direction
        )
        assert reason is not None and objective in reason
