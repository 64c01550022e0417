"""The quality benchmark's report: one table per case over its seeds, its verdicts, and the notes a
reader needs. Building the text is separate from running the rows (`quality.run_case`) and from
judging them (`_quality_stats.judge`)."""

from __future__ import annotations

from typing import Any

from scripts._quality_cases import Row
from scripts._quality_stats import METRIC_LABEL, SEARCH, time_notes
from scripts._report import percent

VERDICT_WORD = {True: "PASS", False: "FAIL", None: "UNKNOWN"}


def describe(row: Row) -> str:
    """One progress line for a finished row of one seed."""
    if row.error:
        return f"{row.name} (seed {row.seed}): ERROR {row.error}"
    test = row.test or {}
    return (
        f"{row.name} (seed {row.seed}): test acc {percent(test.get('accuracy'))}, balanced "
        f"{percent(test.get('balanced_accuracy'))}, ECE {_ece(test.get('ece'))}, "
        f"{row.wall_s:.1f}s"
    )


def _ece(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _row_notes(name: str, runs: list[dict[str, Any]]) -> str:
    """What a reader needs to know about one row, from its first seed that ran."""
    rows = [r for run in runs for r in run["rows"] if r["name"] == name]
    failed = [r for r in rows if r.get("error")]
    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return f"ERROR {failed[0]['error']}"[:160] if failed else ""
    d = ok[0]["details"]
    if name.startswith("recipe"):
        text = (
            f"{d['epochs'][0]}+{d['epochs'][1]} epochs, last {d['unfrozen_layers']}/"
            f"{d['backbone_layers']} layers"
        )
    elif "probe" in name:
        chosen = "/".join(f"{r['details']['C']:g}" for r in ok)
        text = f"{d['features']} features, C {chosen}"
        if d.get("folds"):
            text += f" ({d['folds']}-fold)"
    else:
        trials = [r["details"].get("trials_completed") for r in ok]
        budgets = [r["details"].get("time_budget_s") for r in ok]
        settings = d.get("settings") or {}
        text = (
            f"budget {'/'.join(str(b) for b in budgets)}s, trials "
            f"{'/'.join('?' if t is None else str(t) for t in trials)}, "
            f"weights {settings.get('class_weight', '?')}, {d.get('objective')}"
        )
    if failed:
        text += f"; {len(failed)} seed(s) failed: {failed[0]['error']}"[:80]
    return text


def render_case(result: dict[str, Any], console) -> None:
    """Prints one case: its table over the seeds, its verdicts and its notes."""

    from rich.table import Table

    images = result["images"]
    title = (
        f"{result['case']}: {result['backbone']} @{result['image_size']}px, "
        f"weights {result.get('weights', result.get('skipped'))}, "
        f"{len(result['classes'])} classes, {images['train']}/{images['val']}/{images['test']} "
        f"train/val/test images, seeds {'/'.join(str(s) for s in result.get('seeds', []))}"
    )
    if "skipped" in result:
        console.print(f"{title}\n  SKIPPED: {result['skipped']}", highlight=False)
        return
    metric = result["metric"]
    table = Table(
        title=title,
        title_justify="left",
        caption=(
            f"means over seeds; judged by TEST {METRIC_LABEL[metric]} (per seed: each seed's); "
            "search - row: paired bootstrap 95 % interval over test images, pooled over seeds; "
            "anchors fit on train+val; val: the search's selection score"
        ),
        caption_justify="left",
    )
    for column in ("row", "TEST acc", "bal acc", "ECE", "per seed", "val", "wall"):
        table.add_column(column, justify="left" if column == "row" else "right")
    table.add_column("search - row", justify="right")
    table.add_column("notes")
    comparisons = {c["against"]: c for c in result["comparisons"]}
    for summary in result["rows"]:
        name = summary["name"]
        test = summary["test"]
        per_seed = "/".join(f"{100 * v:.1f}" for v in test[f"{metric}_per_seed"].values())
        c = comparisons.get(name)
        difference = (
            f"{c['points']:+.1f} [{c['interval'][0]:+.1f}, {c['interval'][1]:+.1f}]"
            if c
            else ("" if name == SEARCH else "-")
        )
        table.add_row(
            name,
            percent(test["accuracy"]),
            percent(test["balanced_accuracy"]),
            _ece(test["ece"]),
            per_seed or "-",
            percent(summary["val"]),
            _seconds(summary["wall_s"]),
            difference,
            _row_notes(name, result["runs"]),
        )
    console.print(table)
    for verdict in result["verdicts"]:
        console.print(
            f"verdict: {verdict['name']}: {VERDICT_WORD[verdict['pass']]} ({verdict['detail']})",
            highlight=False,
        )
    for line in case_notes(result):
        console.print(f"  note: {line}", highlight=False)


def case_notes(result: dict[str, Any]) -> list[str]:
    """The caveats a reader needs beside a case's table."""
    out = []
    runs = result["runs"]
    floors = [run["seed"] for run in runs if run.get("time_budget_floor_used")]
    if floors:
        out.append(
            f"seed(s) {', '.join(map(str, floors))}: the recipe's train time minus the margin "
            "was below the floor, so the search got the floor"
        )
    times = time_notes(runs)
    if times:
        out.append(
            "search command (the package's TEST scoring taken out) vs the recipe's train time: "
            + "; ".join(times)
        )
    if any(run.get("same_init_as_search") is False for run in runs):
        out.append("the search's random init differs from the one the anchors started from")
    chance = result["chance"]
    metric = result["metric"]
    means = {s["name"]: s["test"][metric] for s in result["rows"] if s["test"][metric] is not None}
    if means and max(means.values()) <= chance + 0.05:
        out.append(
            f"every row is within 5 points of chance ({percent(chance)}): this case measures "
            "nothing"
        )
    low = [n for n, v in means.items() if v <= chance + 0.05]
    if low and means and max(means.values()) > chance + 0.05:
        out.append(f"at chance ({percent(chance)}): {', '.join(low)}")
    for run in runs:
        for row in run["rows"]:
            counts = (row.get("details") or {}).get("predicted_counts")
            if counts and sum(1 for c in counts if c) == 1:
                out.append(
                    f"{row['name']} (seed {run['seed']}) predicts one class for every TEST "
                    f"image ({counts})"
                )
    return out
