"""The speed case's numbers: from the cached and the no-cache run to every figure and target.

`compare` turns two `_harness.TimedSearch` runs and the step bounds (`_speed_bounds`) into plain
data: the end-to-end ratio (with the no-cache trials it did not run extrapolated), the per-phase
ratios beside their bounds, the time to reach the no-cache best, and whether each target is met.
"""

from __future__ import annotations

from typing import Any

from scripts._harness import TimedSearch
from scripts._speed_bounds import (
    PHASES,
    bounds_by_key,
    epochs,
    linear,
    step_key,
    unfreeze_blocks,
    units,
)

SPEED_TARGET = 5.0  # cached at least this many times faster end to end
BOUND_SHARE_TARGET = 0.8  # each phase's per-epoch ratio at least this share of its step bound
OUTSIDE_TARGET = 0.10  # at most this share of cached wall time outside training
IDEAL_SHARE_TARGET = 0.8  # end to end at least this share of the ideal ratio
ACCURACY_TARGET = 1.0  # best val accuracy within this many points of the no-cache run


def ratio(slow: float | None, fast: float | None) -> float | None:
    """`slow / fast`, or None when either is missing."""
    return slow / fast if slow is not None and fast else None


def _per_epoch(trials: list[dict[str, Any]], phase: str, pick: Any = None) -> float | None:
    """Seconds per epoch of `phase` over the `trials` that `pick` selects."""
    parts = [t[phase] for t in trials if t.get(phase) and (pick is None or pick(t))]
    count = sum(p["epochs"] for p in parts)
    return sum(p["seconds"] for p in parts) / count if count else None


def time_to_reach(run: TimedSearch, target: float | None) -> tuple[float | None, str | None]:
    """Seconds from the start of `prepare()` until a finished trial scored >= `target`, counting
    `prepare()` and the trials' own seconds; and the id of that trial."""
    if target is None:
        return None, None
    elapsed = run.prepare_s
    for trial in run.trials:
        elapsed += trial.get("seconds") or 0.0
        score = (trial.get("best") or {}).get("val_accuracy")
        if score is not None and score >= target - 1e-9:
            return elapsed, trial["trial_id"]
    return None, None


def extrapolate(
    cached: TimedSearch, nocache: TimedSearch, bounds: list[dict[str, Any]]
) -> tuple[float, int]:
    """Seconds the no-cache run would have added for the cached run's trials it did not run, and
    how many those are.

    Each such trial costs its own epochs at the no-cache run's seconds per epoch: phase 1 by head
    kind (a linear head's phase 1 is one scoring pass, a dense head's is gradient epochs), phase 2
    by unfreeze depth. A depth the no-cache run never trained is scaled from the nearest one it did
    by the ratio of their full-model steps (`step_bounds`). Every trial also pays the no-cache
    run's mean seconds per trial outside `fit()` (cache-free set-up, scoring, checkpoint,
    KerasTuner's bookkeeping).
    """
    ran = {t["trial_id"] for t in nocache.trials}
    missing = [t for t in cached.trials if t["trial_id"] not in ran]
    if not missing or not nocache.trials:
        return 0.0, 0
    sub = nocache.trials
    any_p1 = _per_epoch(sub, "phase1")
    p1 = {
        kind: _per_epoch(sub, "phase1", lambda t, kind=kind: linear(t) == kind) for kind in (0, 1)
    }
    p2 = {
        k: v
        for k in {unfreeze_blocks(t) for t in sub}
        if (v := _per_epoch(sub, "phase2", lambda t, k=k: unfreeze_blocks(t) == k))
    }
    full: dict[int, list[float]] = {}
    for row in bounds:
        if row["phase"] == 2:
            full.setdefault(row["unfreeze_blocks"], []).append(row["full_step_s"])
    full_k = {k: sum(v) / len(v) for k, v in full.items()}  # mean over the head widths
    outside = (nocache.search_s - nocache.training_s) / len(sub)
    total = 0.0
    for trial in missing:
        k = unfreeze_blocks(trial)
        per_p2 = p2.get(k)
        if per_p2 is None and p2 and epochs(trial, "phase2"):
            near = min(p2, key=lambda m: abs(m - k))
            per_p2 = p2[near] * full_k[k] / full_k[near]
        per_p1 = p1.get(int(linear(trial))) or any_p1 or 0.0
        total += epochs(trial, "phase1") * per_p1 + epochs(trial, "phase2") * (per_p2 or 0.0)
        total += outside
    return total, len(missing)


def per_phase(
    cached: TimedSearch, nocache: TimedSearch, bounds: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per phase (and unfreeze depth), on the trials both runs trained: the per-epoch ratio the
    two searches measured, beside the bound of the same trials.

    Both are ratios of sums over those trials' epochs. The measured one divides the no-cache
    seconds by the cached seconds; the bound divides the full steps by the cached steps, each
    trial's own models (its head width, its cut) weighted by its epochs. Phase 1 counts dense-head
    trials only: a linear head's phase 1 is a closed-form fit and one scoring pass, not steps.
    """
    steps = bounds_by_key(bounds)
    ran = {t["trial_id"] for t in nocache.trials}
    mine = [t for t in cached.trials if t["trial_id"] in ran]
    # (phase, unfreeze depth) -> the trials of that group, each with its epochs and its bound row
    groups: dict[tuple[int, int], list[tuple[dict[str, Any], int, dict[str, Any]]]] = {}
    for trial in mine:
        for phase in PHASES:
            key = step_key(trial, phase)
            if key is not None and key in steps:
                groups.setdefault(key[:2], []).append((trial, epochs(trial, phase), steps[key]))
    rows = []
    for (number, k), members in sorted(groups.items()):
        phase = f"phase{number}"
        trials = [trial for trial, _, _ in members]
        count = sum(e for _, e, _ in members)
        full = sum(e * row["full_step_s"] for _, e, row in members)
        fast = sum(e * row["cached_step_s"] for _, e, row in members)
        picked = {t["trial_id"] for t in trials}
        pick = lambda t, picked=picked: t["trial_id"] in picked  # noqa: E731
        measured = ratio(_per_epoch(nocache.trials, phase, pick), _per_epoch(mine, phase, pick))
        bound = ratio(full, fast)
        rows.append(
            {
                "phase": number,
                "unfreeze_blocks": k,
                "units": sorted({units(t) for t in trials}),
                "trials": len(trials),
                "epochs": int(count),
                "full_step_s": full / count,
                "cached_step_s": fast / count,
                "bound": bound,
                "measured": measured,
                "share_of_bound": measured / bound if measured is not None and bound else None,
            }
        )
    return rows


def ideal_ratio(trials: list[dict[str, Any]], bounds: list[dict[str, Any]]) -> float | None:
    """The end-to-end ratio if every epoch cost its step time on both paths and nothing else did:
    each trial's epochs per phase weighted by the full and the cached step of its own models."""
    steps = bounds_by_key(bounds)
    full = cached = 0.0
    for trial in trials:
        for phase in PHASES:
            key = step_key(trial, phase)
            if key is not None and key in steps:
                full += epochs(trial, phase) * steps[key]["full_step_s"]
                cached += epochs(trial, phase) * steps[key]["cached_step_s"]
    return ratio(full, cached)


def _side(run: TimedSearch) -> dict[str, Any]:
    """One run's column of the table."""
    return {
        "wall_s": run.wall_s,
        "prepare_s": run.prepare_s,
        "search_s": run.search_s,
        "trials_s": run.trial_s,
        "between_trials_s": run.search_s - run.trial_s,
        "training_s": run.training_s,
        "outside_training_s": run.wall_s - run.training_s,
        "outside_training_share": (run.wall_s - run.training_s) / run.wall_s,
        "overhead_seconds": run.overhead_s,
        "cache_build_s": run.cache_build_s,
        "cache_build_share": run.cache_build_s / run.wall_s,
        "outside_without_cache_build_share": (run.wall_s - run.training_s - run.cache_build_s)
        / run.wall_s,
        "best_val_accuracy": run.best,
        "phase1_s_per_epoch": run.per_epoch("phase1"),
        "phase2_s_per_epoch": run.per_epoch("phase2"),
        "phase1_epochs": run.phase_totals("phase1")[1],
        "phase2_epochs": run.phase_totals("phase2")[1],
        "trials_completed": sum(t["status"] == "COMPLETED" for t in run.trials),
        "trials": len(run.trials),
    }


def compare(
    cached: TimedSearch, nocache: TimedSearch, bounds: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every number the report shows, as plain data."""
    bounds = bounds or []
    reach_s, reach_trial = time_to_reach(cached, nocache.best)
    own_s, own_trial = time_to_reach(nocache, nocache.best)
    delta = (
        100 * (cached.best - nocache.best)
        if cached.best is not None and nocache.best is not None
        else None
    )
    ran = {t["trial_id"] for t in nocache.trials}
    matched = [t for t in cached.trials if t["trial_id"] in ran]
    extra_s, extra_trials = extrapolate(cached, nocache, bounds)
    nocache_wall = nocache.wall_s + extra_s
    speedup = ratio(nocache_wall, cached.wall_s)
    ideal = ideal_ratio(cached.trials, bounds)
    phases = per_phase(cached, nocache, bounds)
    outside = (cached.wall_s - cached.training_s) / cached.wall_s
    return {
        "nocache_extrapolated_trials": extra_trials,
        "nocache_extrapolated_s": extra_s,
        "nocache_wall_s": nocache_wall,
        "ideal_ratio": ideal,
        "share_of_ideal": speedup / ideal if speedup is not None and ideal else None,
        "per_phase": phases,
        "targets": {
            "each phase >= 80% of its bound": bool(phases)
            and all((r["share_of_bound"] or 0) >= BOUND_SHARE_TARGET for r in phases),
            "<= 10% of cached wall outside training": outside <= OUTSIDE_TARGET,
            "end to end >= 80% of the ideal ratio": speedup is not None
            and ideal is not None
            and speedup >= IDEAL_SHARE_TARGET * ideal,
        },
        "cached": _side(cached),
        "nocache": _side(nocache),
        "speedup_wall": speedup,
        "speedup_search": ratio(nocache_wall - nocache.prepare_s, cached.search_s),
        # On the trials both runs trained (all of them unless --nocache-trials).
        "speedup_phase1_epoch": ratio(nocache.per_epoch("phase1"), _per_epoch(matched, "phase1")),
        "speedup_phase2_epoch": ratio(nocache.per_epoch("phase2"), _per_epoch(matched, "phase2")),
        "accuracy_delta_points": delta,
        "chance_accuracy": 1 / cached.n_classes,
        "cached_time_to_nocache_best_s": reach_s,
        "cached_trial_reaching_nocache_best": reach_trial,
        "nocache_time_to_own_best_s": own_s,
        "nocache_trial_of_own_best": own_trial,
        "speed_target_met": speedup is not None and speedup >= SPEED_TARGET,
        "accuracy_target_met": delta is not None and abs(delta) <= ACCURACY_TARGET,
    }
