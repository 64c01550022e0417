"""The quality benchmark's report: one table per case, its target, and the notes a reader needs.
Building the text is separate from running the rows (`quality.run_case`)."""

from __future__ import annotations

from typing import Any

from scripts._quality_cases import TARGET_POINTS, Row
from scripts._report import percent


def describe(row: Row) -> str:
    """One progress line for a finished row."""
    if row.error:
        return f"{row.name}: ERROR {row.error}"
    return (
        f"{row.name}: test {percent(row.test_accuracy)}, val {percent(row.val_accuracy)}, "
        f"{row.wall_s:.1f}s"
    )


def render_case(result: dict[str, Any], console) -> None:
    """Prints one case: its table, its target and its notes."""

    from rich.table import Table

    images = result["images"]
    title = (
        f"{result['case']}: {result['backbone']} @{result['image_size']}px, "
        f"weights {result.get('weights', result.get('skipped'))}, "
        f"{len(result['classes'])} classes, {images['train']}/{images['val']}/{images['test']} "
        f"train/val/test images"
    )
    if "skipped" in result:
        console.print(f"{title}\n  SKIPPED: {result['skipped']}", highlight=False)
        return
    table = Table(title=title, title_justify="left")
    table.add_column("row")
    table.add_column("TEST acc", justify="right")
    table.add_column("val acc", justify="right")
    table.add_column("wall", justify="right")
    table.add_column("notes")
    for row in result["rows"]:
        d = row["details"]
        if row["error"]:
            notes = f"ERROR {row['error']}"[:160]
        elif row["name"].startswith("recipe"):
            notes = (
                f"{d['epochs'][0]}+{d['epochs'][1]} epochs, last {d['unfrozen_layers']}/"
                f"{d['backbone_layers']} layers unfrozen (BN frozen); val: last epoch, display"
            )
        elif row["name"] == "linear probe":
            notes = (
                f"{d['features']} features, train acc {percent(d['train_accuracy'])}; val: display"
            )
        else:
            budget = d.get("time_budget_s")
            trials = d.get("trials_completed")
            notes = (
                f"budget {budget}s, {trials if trials is not None else '?'} trials done, "
                f"search {d['search_s']:.0f}s + TEST eval {d['test_eval_s']:.0f}s; "
                f"val: best {d.get('objective')} (selection)"
            )
        wall = "-" if row["wall_s"] is None else f"{row['wall_s']:.1f}s"
        table.add_row(
            row["name"], percent(row["test_accuracy"]), percent(row["val_accuracy"]), wall, notes
        )
    console.print(table)
    search = result["rows"][-1]
    best = result["anchor_best_test_accuracy"]
    verdict = "PASS" if result["target_pass"] else "FAIL"
    console.print(
        f"target: search >= max(recipe, probe) - {TARGET_POINTS:g} point: {verdict} "
        f"(search {percent(search['test_accuracy'])} vs {percent(best)})",
        highlight=False,
    )
    for line in case_notes(result):
        console.print(f"  note: {line}", highlight=False)


def case_notes(result: dict[str, Any]) -> list[str]:
    """The caveats a reader needs beside a case's table."""
    out = []
    search = result["rows"][-1]
    reference = result["recipe_min_wall_s"]
    if result.get("time_budget_floor_used"):
        out.append(
            f"the recipe's wall time minus the margin was below the floor, so the search got "
            f"{result['time_budget_s']:.0f}s"
        )
    search_s = (search.get("details") or {}).get("train_s")
    if search_s is not None and reference is not None:
        relation = "within" if result["search_within_recipe_time"] else "OVER"
        out.append(
            f"search {search_s:.1f}s vs fastest recipe row {reference:.1f}s (TEST scoring "
            f"excluded from both): {relation}"
        )
    if result["same_init_as_search"] is False:
        out.append("the search's random init differs from the one (a) and (b) started from")
    chance = result["chance"]
    scores = [r["test_accuracy"] for r in result["rows"] if r["test_accuracy"] is not None]
    if scores and max(scores) <= chance + 0.05:
        out.append(
            f"every row is within 5 points of chance ({percent(chance)}): this case measures "
            "nothing"
        )
    low = [
        r["name"]
        for r in result["rows"]
        if r["test_accuracy"] is not None and r["test_accuracy"] <= chance + 0.05
    ]
    if low and scores and max(scores) > chance + 0.05:
        out.append(f"at chance ({percent(chance)}): {', '.join(low)}")
    for row in result["rows"]:
        counts = row["details"].get("predicted_counts")
        if counts and sum(1 for c in counts if c) == 1:
            out.append(f"{row['name']} predicts one class for every TEST image ({counts})")
    return out
