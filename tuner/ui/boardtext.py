"""The leaderboard's words: how its numbers read, its learning curves, and its caption.

`tuner.leaderboard` lays out the table; this module says what goes around and inside it: metric,
interval and time formats, the sparkline of a trial's learning curve, the "vs best" mark, and the
caption's facts (weights, augmentation, backbones, trial counts, the best trial, the trials tied
with it and the one-se pick, the exported trial, why trials failed or skipped phase 2, and the
test set's figures).
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text

from tuner.project.layout import integer, number
from tuner.project.trials import COMPLETED, FAILED, RUNNING, Ranking, Row

MISSING = "-"


SPARK = "▁▂▃▄▅▆▇█"
PHASE_MARK = "|"  # between a trial's last head epoch and its first fine-tuning epoch


def sparkline(
    head: tuple[float | None, ...],
    finetune: tuple[float | None, ...] = (),
    *,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """A learning curve in block characters, one per epoch, "|" where phase 2 starts.

    Heights run from `low` to `high` (default: the curve's own range), so curves drawn with the
    same bounds compare by height; a missing value is a space.
    """
    values = [v for v in (*head, *finetune) if v is not None]
    if not values:
        return ""
    low = min(values) if low is None else low
    high = max(values) if high is None else high

    def char(value: float | None) -> str:
        if value is None:
            return " "
        if high <= low:
            return SPARK[len(SPARK) // 2]
        share = (min(max(value, low), high) - low) / (high - low)
        return SPARK[round(share * (len(SPARK) - 1))]

    text = "".join(map(char, head))
    if finetune:
        text += (PHASE_MARK if head else "") + "".join(map(char, finetune))
    return text


def format_metric(value: float | None) -> str:
    if value is None:
        return MISSING
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def format_interval(interval: tuple[float, float] | None) -> str:
    """A 95 % interval as "low-high", three decimals (its ends are a point apart or more)."""
    if interval is None or not all(math.isfinite(end) for end in interval):
        return MISSING
    return f"{interval[0]:.3f}-{interval[1]:.3f}"


def versus_best(row: Row) -> str:
    """How a trial stands against the best: "best"; "one-se" (the cheapest tied trial); "tied"
    (its 95 % interval holds the best score); blank (it does not); "-" (no interval, or not
    ranked)."""
    if row.rank is None:
        return MISSING
    if row.rank == 1:
        return "best"
    if row.one_se:
        return "one-se"
    if row.tied is None:
        return MISSING
    return "tied" if row.tied else ""


EXPORT_MARK = "*"  # after the trial id of the trial the export takes


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def caption(board: Ranking, *, hidden: list[str]) -> Text:
    if len(board.runs) > 1:
        lines = [
            Text(
                f"{name}: "
                + " · ".join(_run_facts(run, [r for r in board.rows if r.project == name]))
            )
            for name, run in board.runs.items()
        ]
    else:
        lines = [Text(" · ".join(_run_facts(board.run, list(board.rows))))]
    best = next((row for row in board.rows if row.rank == 1), None)
    if best is not None:
        where = f" of {best.project}" if len(board.runs) > 1 else ""
        lines.append(
            Text(
                f"best: trial {best.trial_id}{where} ({board.objective} "
                f"{format_metric(best.score)})"
            )
        )
    lines += [Text(line) for line in selection_lines(board)]
    skipped = sum(1 for row in board.rows if row.finetune_skipped)
    if skipped:
        keeps = {integer(run.get("finetune_contenders")) for run in board.runs.values()}
        keep = keeps.pop() if len(keeps) == 1 else None
        lines.append(
            Text(
                f"phase 2 skipped in {skipped} trial{'s' if skipped > 1 else ''}: head-only score "
                f"not among the {keep or 'N'} best so far (--finetune-contenders)"
            )
        )
    if any(row.curve for row in board.rows):
        lines.append(
            Text(
                f"curve: {board.objective} per epoch, one scale for the table; "
                f"{PHASE_MARK} where fine-tuning starts"
            )
        )
    if hidden:
        lines.append(Text(f"not shown, for width: {', '.join(hidden)} (--json has every column)"))
    # Rich tables cannot span a cell across columns, so reasons go below the table, where a full
    # line is available, instead of into a column squeezed to a few characters.
    for row in board.rows:
        if row.reason and row.rank is None and row.status != COMPLETED:
            where = f" ({row.project})" if len(board.runs) > 1 else ""
            lines.append(Text(f"trial {row.trial_id}{where} {row.status.lower()}: {row.reason}"))
    lines += [Text(line) for line in test_lines(board)]
    return Text("\n").join(lines)


# The order `tuner.project.trials.cost` compares trials in, for the caption.
COST_RULE = "fewest blocks fine-tuned, then fewest head units, epochs, seconds"


def selection_lines(board: Ranking) -> list[str]:
    """What the "vs best" column means here, which trial the one-standard-error rule picks, and
    which trial the export takes and why."""
    best = board.best
    ranked = [row for row in board.rows if row.rank is not None]
    if best is None or len(ranked) < 2:
        return []
    lines = []
    tied = board.tied
    if not any(row.interval is not None for row in ranked):
        lines.append("vs best: no 95 % interval recorded (an older project), so no tie is marked")
    elif len(tied) == 1:
        lines.append("vs best: no other trial's 95 % interval holds the best score")
    else:
        pick = board.one_se
        lines.append(
            f"vs best: tied = the trial's 95 % interval holds the best score "
            f"({len(tied) - 1} besides the best)"
        )
        if pick is not None:
            where = f" of {pick.project}" if len(board.runs) > 1 else ""
            lines.append(
                f"one-se: trial {pick.trial_id}{where}, the cheapest of {len(tied)} tied "
                f"({COST_RULE})"
            )
    exported = board.exported
    if exported is not None:
        select = board.run.get("select")
        if select == "one-se" and exported.rank != 1:
            why = (
                f"--select one-se: the cheapest of {len(tied)} tied; the best is trial "
                f"{best.trial_id}"
            )
        elif select == "one-se":
            why = "--select one-se: the best is also the cheapest tied"
        else:
            why = "--select best: the best score"
        lines.append(f"{EXPORT_MARK} export: trial {exported.trial_id} ({why})")
    return lines


def test_lines(board: Ranking) -> list[str]:
    """The test set's figures of each project's exported model (test.json): a line of scores,
    and one of recall per class."""
    lines = []
    for name, test in board.tests.items():
        where = f"{name} " if len(board.runs) > 1 else ""
        images = integer(test.get("images"))
        counted = f"{images} images" if images is not None else "images"
        export = "refit export" if test.get("refit") else "export"
        # Three decimals: a test set of a few hundred images does not measure a fourth.
        scores = [
            f"{label} {number(test.get(key)):.3f}"
            for key, label in _TEST_SCORES
            if number(test.get(key)) is not None
        ]
        lines.append(
            f"{where}test ({counted}, scored once on the {export} of trial "
            f"{test.get('trial_id', '?')}): " + (", ".join(scores) or "no scores")
        )
        details = []
        recall = test.get("recall")
        names = test.get("class_names")
        if isinstance(recall, list) and recall:
            if not isinstance(names, list) or len(names) != len(recall):
                names = [str(index) for index in range(len(recall))]
            details.append(
                "recall: "
                + ", ".join(
                    f"{label} {value:.3f}" if value is not None else f"{label} -"
                    for label, value in zip(names, map(number, recall), strict=True)
                )
            )
        skipped = test.get("skipped")
        skipped = len(skipped) if isinstance(skipped, list) else integer(skipped) or 0
        if skipped:
            details.append(f"{skipped} file{'s' if skipped > 1 else ''} skipped")
        if details:
            lines.append(f"{where}test " + " · ".join(details))
    return lines


# test.json's scores in the footer, in order; the AUC only where it was measured (two classes).
# Macro F1 and the confusion matrix are in --json.
_TEST_SCORES = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("auc", "AUC"),
    ("ece", "ECE"),
    ("loss", "log-loss"),
)


def _run_facts(run: dict[str, Any], rows: list[Row]) -> list[str]:
    facts = [_weights_fact(run.get("weights"))]
    if "augment" in run:
        views = integer(run.get("augment_views")) or 0
        augment = "on" if run["augment"] else "off"
        if run["augment"] and views:
            augment += f" ({views} cached views)"
        facts.append(f"augmentation {augment}")
    backbones = run.get("backbones")
    if isinstance(backbones, list) and backbones:
        size = run.get("image_size")
        facts.append(", ".join(map(str, backbones)) + (f" at {size}px" if size else ""))
    facts.append(_counts(tuple(rows)))
    return facts


def _weights_fact(weights: Any) -> str:
    if not isinstance(weights, str) or not weights:
        return "weights unknown"
    if weights == "none":
        return "weights none (random init)"
    if weights.startswith("file:"):
        return f"weights from file {weights[len('file:') :]}"
    return f"weights {weights}"


def _counts(rows: tuple[Row, ...]) -> str:
    completed = sum(row.status == COMPLETED for row in rows)
    failed = sum(row.status in FAILED for row in rows)
    running = sum(row.status in RUNNING for row in rows)
    other = len(rows) - completed - failed - running
    parts = [f"{completed} completed", f"{failed} failed"]
    if running:
        parts.append(f"{running} running")
    if other:
        parts.append(f"{other} other")
    return ", ".join(parts)
