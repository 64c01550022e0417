"""The leaderboard's words: how its numbers read, its learning curves, and its caption.

`tuner.leaderboard` lays out the table; this module says what goes around and inside it: metric
and time formats, the sparkline of a trial's learning curve, and the caption's facts (weights,
augmentation, backbones, trial counts, the best trial, why trials failed or skipped phase 2).
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text

from tuner.project.layout import integer
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
    return Text("\n").join(lines)


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
