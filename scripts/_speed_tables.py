"""The speed case's report: the comparison table, the step-bounds table, one summary line, the
caveats, and the JSON-able result. Building a table is separate from printing it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from scripts._report import accuracy, percent, seconds, times
from scripts._speed_numbers import ACCURACY_TARGET, SPEED_TARGET, ratio


def bounds_table(numbers: dict[str, Any]) -> Any:
    """Per phase (and cut): the per-epoch ratio the searches measured beside the step bound."""
    from rich.table import Table

    table = Table(
        title="what the cache can win per step (bound) and what each phase got",
        title_justify="left",
        caption="on the trials both runs trained (phase 1: dense heads only); heads: their widths "
        "(0: linear); steps: the medians of each trial's own models, epoch-weighted; bound: "
        "full over cached step; measured/epoch: no-cache over cached seconds per epoch",
        caption_justify="left",
    )
    columns = (
        "phase",
        "unfreeze",
        "heads",
        "trials",
        "full step",
        "cached step",
        "bound",
        "measured/epoch",
        "share",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in numbers["per_phase"]:
        table.add_row(
            str(row["phase"]),
            str(row["unfreeze_blocks"] or "-"),
            ",".join(str(u) for u in row["units"]),
            f"{row['trials']} ({row['epochs']} ep)",
            f"{1000 * row['full_step_s']:.0f} ms",
            f"{1000 * row['cached_step_s']:.1f} ms",
            times(row["bound"]),
            times(row["measured"]),
            percent(row["share_of_bound"]),
        )
    return table


def build_table(numbers: dict[str, Any], title: str) -> Any:
    """The comparison as a rich `Table` (not printed)."""
    from rich.table import Table

    c, n = numbers["cached"], numbers["nocache"]
    table = Table(
        title=title,
        title_justify="left",
        caption="ratios: no-cache / cached (above 1: cached is faster); Δ: cached - no-cache",
        caption_justify="left",
    )
    table.add_column("measure")
    table.add_column("cached", justify="right")
    table.add_column("no-cache", justify="right")
    table.add_column("no-cache/cached", justify="right")
    extra = numbers["nocache_extrapolated_trials"]
    table.add_row(
        "wall, end to end",
        seconds(c["wall_s"]),
        seconds(numbers["nocache_wall_s"]) + (" *" if extra else ""),
        times(numbers["speedup_wall"]),
    )
    if extra:
        table.add_row(
            f"  * no-cache ran {n['trials']} trials: {extra} more extrapolated",
            "",
            f"{seconds(n['wall_s'])} + {seconds(numbers['nocache_extrapolated_s'])}",
            "",
        )
    table.add_row(
        "  ideal: step bounds x epoch mix",
        "",
        "",
        f"{times(numbers['ideal_ratio'])} (measured {percent(numbers['share_of_ideal'])})",
    )

    def both(label: str, key: str, show: Any, last: str = "") -> None:
        """A row of one measure of both runs."""
        table.add_row(label, show(c[key]), show(n[key]), last)

    def two_digits(value: float | None) -> str:
        return seconds(value, 2)

    both(
        "  prepare: decode, build, init",
        "prepare_s",
        seconds,
        times(ratio(n["prepare_s"], c["prepare_s"])),
    )
    both("  search", "search_s", seconds, times(numbers["speedup_search"]))
    both("    between trials", "between_trials_s", seconds)
    both(
        "training: fit() of both phases",
        "training_s",
        seconds,
        times(ratio(n["training_s"], c["training_s"])),
    )
    both("outside training / wall", "outside_training_share", percent)
    both("  Workbench.overhead.seconds", "overhead_seconds", seconds)
    table.add_row(
        "  of which cache builds",
        f"{seconds(c['cache_build_s'])} ({percent(c['cache_build_share'])})",
        "-",
        "",
    )
    both("  outside, cache builds excluded", "outside_without_cache_build_share", percent)
    both(
        "phase 1 per epoch (mean)",
        "phase1_s_per_epoch",
        two_digits,
        times(numbers["speedup_phase1_epoch"]),
    )
    both(
        "phase 2 per epoch (mean)",
        "phase2_s_per_epoch",
        two_digits,
        times(numbers["speedup_phase2_epoch"]),
    )
    table.add_row(
        "epochs run (phase 1 + phase 2)",
        f"{c['phase1_epochs']} + {c['phase2_epochs']}",
        f"{n['phase1_epochs']} + {n['phase2_epochs']}",
        "",
    )
    table.add_row(
        "trials completed",
        f"{c['trials_completed']}/{c['trials']}",
        f"{n['trials_completed']}/{n['trials']}",
        "",
    )
    delta = numbers["accuracy_delta_points"]
    table.add_row(
        "best val_accuracy",
        accuracy(c["best_val_accuracy"]),
        accuracy(n["best_val_accuracy"]),
        "-" if delta is None else f"Δ {delta:+.1f} pt",
    )
    reach = numbers["cached_time_to_nocache_best_s"]
    table.add_row(
        "time to reach no-cache best",
        "not reached"
        if reach is None
        else f"{reach:.1f}s (trial {numbers['cached_trial_reaching_nocache_best']})",
        seconds(numbers["nocache_time_to_own_best_s"])
        + (
            f" (trial {numbers['nocache_trial_of_own_best']})"
            if numbers["nocache_trial_of_own_best"] is not None
            else ""
        ),
        times(ratio(numbers["nocache_time_to_own_best_s"], reach)),
    )
    return table


def summary_line(numbers: dict[str, Any]) -> str:
    """The comparison in one plain line, with both targets."""
    c, n = numbers["cached"], numbers["nocache"]
    delta = numbers["accuracy_delta_points"]
    reach = numbers["cached_time_to_nocache_best_s"]
    met = {True: "met", False: "NOT met"}
    return (
        f"bench: cached {c['wall_s']:.1f}s vs no-cache {numbers['nocache_wall_s']:.1f}s"
        + (" (extrapolated)" if numbers["nocache_extrapolated_trials"] else "")
        + " end to end = "
        f"{times(numbers['speedup_wall'])} (target >= {SPEED_TARGET:g}x: "
        f"{met[numbers['speed_target_met']]}); best val_accuracy "
        f"{accuracy(c['best_val_accuracy'])} "
        f"vs {accuracy(n['best_val_accuracy'])} = "
        f"{'-' if delta is None else f'{delta:+.1f}'} pt (target within {ACCURACY_TARGET:g} pt: "
        f"{met[numbers['accuracy_target_met']]}; chance {numbers['chance_accuracy']:.3f}); "
        f"cached reached the no-cache best after "
        f"{'never' if reach is None else f'{reach:.1f}s'}; phase-2 epoch "
        f"{times(numbers['speedup_phase2_epoch'])} faster; outside training "
        f"{percent(c['outside_training_share'])} cached, "
        f"{percent(n['outside_training_share'])} no-cache"
    )


def notes(result: dict[str, Any], numbers: dict[str, Any]) -> list[str]:
    """Caveats a reader needs next to the numbers."""
    out = []
    checks = result["checks"]
    for name, text in (
        ("same_init", "the random init files differ"),
        ("same_trials", "the two runs tried different hyperparameters"),
        ("same_epochs", "the two runs trained different numbers of epochs"),
    ):
        if not checks[name]:
            out.append(f"warning: {text}; the comparison is not like for like")
    gap = checks["max_trial_accuracy_gap"]
    if gap is not None:
        out.append(
            f"per-trial best val_accuracy, cached vs no-cache: largest gap {100 * gap:.1f} pt"
        )
    build = result.get("build_vs_predict") or {}
    if build.get("build_images_per_s") and build.get("predict_images_per_s"):
        out.append(
            f"cache builds: {build['build_images']} images (train + val) in "
            f"{build['build_s']:.1f}s, {build['build_images_per_s']:.1f} img/s for every entry "
            f"(one pass of the backbone, the derived cuts, the writes), against model.predict "
            f"of the backbone at {build['predict_images_per_s']:.1f} img/s: "
            f"{100 * build['build_images_per_s'] / build['predict_images_per_s']:.0f} %"
        )
    chance = numbers["chance_accuracy"]
    bests = [numbers[k]["best_val_accuracy"] for k in ("cached", "nocache")]
    if all(b is not None and b <= chance + 0.05 for b in bests):
        out.append(
            f"note: both best accuracies sit within 5 points of chance ({chance:.3f}): "
            "the accuracy comparison says little"
        )
    return out


def jsonable(result: dict[str, Any], numbers: dict[str, Any]) -> dict[str, Any]:
    """The case's result as plain data for the JSON file."""
    runs = {}
    for key, run in result["runs"].items():
        runs[key] = asdict(run) | {"wall_s": run.wall_s}
    return {
        "settings": result["settings"],
        "checks": result["checks"],
        "numbers": numbers,
        "bounds": result.get("bounds", []),
        "build_vs_predict": result.get("build_vs_predict"),
        "runs": runs,
    }
