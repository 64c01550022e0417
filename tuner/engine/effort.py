"""Phase-aware effort: fine-tune only the trials whose head-only score makes them contenders.

On the cached path phase 1 costs next to nothing and phase 2 is where the time goes (docs/design.md
§1). With `--finetune-contenders N`, a trial goes on to phase 2 only when its head-only score
(the best phase-1 epoch, by the search's objective) is among the N best head-only scores of the
search so far, its own included; ties count for the trial. The first N trials always fine-tune.
Every other trial keeps its head-only result, and the leaderboard marks its phase 2 as skipped.
Earlier scores are read from the trials' summaries, so a resumed search judges as the first run
would have.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

from tuner.config import SearchConfig
from tuner.project.layout import TrialSummary


def contender(
    trial_dirs: Iterable[Path], config: SearchConfig
) -> Callable[[dict[str, float]], str | None] | None:
    """The judge of one trial under `--finetune-contenders`, against the head-only scores recorded
    in the other trials' `trial_dirs`; None when every trial fine-tunes."""
    if not config.finetune_contenders:
        return None
    return functools.partial(
        skip_reason,
        earlier=head_scores(trial_dirs, config.objective),
        keep=config.finetune_contenders,
        objective=config.objective,
        direction=config.direction,
    )


def head_scores(trial_dirs: Iterable[Path], objective: str) -> list[float]:
    """The head-only scores (`objective` at the best phase-1 epoch) recorded in `trial_dirs`."""
    scores = []
    for directory in trial_dirs:
        summary, _ = TrialSummary.read(Path(directory))
        best = summary.phase1.best if summary is not None and summary.phase1 else None
        value = (best or {}).get(objective)
        if value is not None:
            scores.append(float(value))
    return scores


def skip_reason(
    head_logs: dict[str, float],
    earlier: list[float],
    *,
    keep: int,
    objective: str,
    direction: str,
) -> str | None:
    """None when a trial whose best phase-1 epoch logged `head_logs` is a contender among
    `earlier` head-only scores (the `keep` best, its own included); else why it is not."""
    score = head_logs.get(objective)
    if keep <= 0 or score is None:
        return None
    better = [s for s in earlier if (s > score if direction == "max" else s < score)]
    if len(better) < keep:
        return None
    best = sorted(better, reverse=direction == "max")[:keep]
    return (
        f"head-only {objective} {score:.4f} is not among the {keep} best so far "
        f"({', '.join(f'{s:.4f}' for s in best)}); --finetune-contenders {keep}"
    )
