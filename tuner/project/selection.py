"""Which trial is picked: the trials tied with the best, and the one-standard-error pick.

One small validation set cannot tell close trials apart, so the leaderboard says which of them it
cannot separate from the best, and which of those is cheapest:

1. A trial is tied with the best when its 95 % interval (`Row.interval`) holds the best score.
   The best is tied with itself; a trial without an interval is neither tied nor untied.
2. The one-standard-error pick is the cheapest tied trial (`cost`): fewest backbone blocks
   fine-tuned in the checkpoint, then the smaller head (linear before dense, fewer units), then
   fewer epochs trained, then less time, then rank.
3. The export takes the best with `--select best`, the one-se pick with `--select one-se`
   (`tuner.project.rows.Ranking.pick`, which `tuner.engine.transfer.completed_trials` follows).

Works on `tuner.project.rows.Row`s; standard library only.
"""

from __future__ import annotations

import dataclasses
import math

from tuner import hp
from tuner.project.layout import integer
from tuner.project.rows import Row

__all__ = ["cost", "mark"]

# A score equal to an interval's end is inside it, whatever the last bit of a float says.
_EDGE = 1e-9


def cost(row: Row) -> tuple[float, float, float, float, float]:
    """What a trial's model costs, for the one-standard-error pick (lower is cheaper).

    In order: the backbone blocks fine-tuned in the checkpoint (0 when its best epoch was in
    phase 1, whatever `finetune/unfreeze_blocks` says: those weights were never changed), the
    head's hidden units (0: the linear head, so linear comes before any dense head), the epochs
    the checkpoint was trained for (its best epoch, counted across both phases), the seconds
    both phases took, and last the rank. Unknown parts count as the most expensive.
    """
    blocks = integer(row.hyperparameters.get(hp.UNFREEZE_BLOCKS)) or 0
    if row.best_phase == 1:
        blocks = 0
    units = integer(row.hyperparameters.get(hp.UNITS)) or 0
    epochs = row.best_epoch if row.best_epoch is not None else row.epochs
    seconds = [row.seconds_head, row.seconds_finetune]
    known = [value for value in seconds if value is not None]
    return (
        float(blocks),
        float(units),
        float(epochs) if epochs is not None else math.inf,
        sum(known) if known else math.inf,
        float(row.rank) if row.rank is not None else math.inf,
    )


def mark(rows: tuple[Row, ...], select: str | None) -> tuple[Row, ...]:
    """`rows` with `tied`, `one_se` and `exported` set: which trials' intervals hold the best
    score, the cheapest of those, and (`select`, None for merged projects) the export's trial."""
    first = next((index for index, row in enumerate(rows) if row.rank == 1), None)
    target = rows[first].score if first is not None else None
    if first is None or target is None:
        return tuple(
            dataclasses.replace(row, tied=None, one_se=False, exported=False) for row in rows
        )
    best = rows[first]

    def tied(row: Row) -> bool | None:
        if row.rank is None:
            return None
        if row is best:
            return True
        if row.interval is None:
            return None
        low, high = row.interval
        return low - _EDGE <= target <= high + _EDGE

    marked = [dataclasses.replace(row, tied=tied(row)) for row in rows]
    cheapest = min((row for row in marked if row.rank is not None and row.tied), key=cost)
    picked = cheapest if select == "one-se" else marked[first] if select else None
    return tuple(
        dataclasses.replace(row, one_se=row is cheapest, exported=row is picked) for row in marked
    )
