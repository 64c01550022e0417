"""How long a run of the quality benchmark will take, said before it starts.

Per case, one seed costs about the same every time (the search's budget is the recipe's time), so
the estimate is seeds x the seconds of one seed, plus the recipe /255 row when it runs. The
seconds of one seed come from the last result of the same mode on disk
(`scripts/results/quality[-quick].json`: each case's `seed_wall_s`) when it holds the case, else
from `PER_SEED_S` below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scripts._quality_cases import Case, Settings

# Seconds of one seed on 2 idle cores, (seed, recipe /255 row), for cases no result on disk
# covers. Full: from the per-row times of the last full run before issue 25 (docs/quality.md,
# code of 2026-12-02: recipe own-preproc 187 / 34 / 135 / 135 s, probe 28 / 8 / 29 / 24 s, search
# 166 / 17 / 135 / 115 s). The recipe on train+val without validation passes: x 1.05 (phase 1
# forwards the same images as before, train plus val; phase 2 back-propagates through a quarter of
# the backbone for the val images too). The search at the recipe's time minus 20 s, plus scoring
# 600 test files twice (the package's and ours, about 25 s). The probes' pooling once for a
# pretrained backbone. The imbalanced case as pretrained-vgg16 at its 372 fitting images, with a
# second search. Quick: `--quick` of this version (one seed, 326 s on 2 cores, load average
# under 3), the imbalanced case with 25 s more for its search, which failed on that code.
PER_SEED_S: dict[str, tuple[float, float]] = {
    "binary-flat": (407.0, 187.0),
    "five-class-folders": (77.0, 35.0),
    "pretrained-vgg16": (275.0, 134.0),
    "random-vgg16": (287.0, 134.0),
    "imbalanced-vgg16": (453.0, 150.0),
}
QUICK_PER_SEED_S: dict[str, tuple[float, float]] = {
    "binary-flat": (84.0, 25.0),
    "five-class-folders": (74.0, 20.0),
    "pretrained-vgg16": (59.0, 9.0),
    "random-vgg16": (51.0, 9.0),
    "imbalanced-vgg16": (75.0, 9.0),
}
DATA_S = 20.0  # generating one case's images the first time (cached after)


def _last(path: Path) -> dict[str, dict[str, Any]]:
    """The cases of the result at `path` that carry per-seed times, by name."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    cases = (report.get("result") or {}).get("cases") or []
    return {c["case"]: c for c in cases if c.get("seed_wall_s")}


def estimate(cases: list[Case], s: Settings, results: Path) -> tuple[float, list[str]]:
    """(seconds, one line per case) for running `cases` with `s`; `results` is the last result
    file of the same mode."""
    last = _last(results)
    table = QUICK_PER_SEED_S if s.quick else PER_SEED_S
    total, lines = 0.0, []
    for case in cases:
        done = last.get(case.name)
        if done is not None:
            seed_s = sum(done["seed_wall_s"]) / len(done["seed_wall_s"])
            rows = {r["name"]: r for r in done.get("rows", [])}
            had_255 = "recipe /255" in rows
            slash_s = (rows.get("recipe /255") or {}).get("wall_s") or table[case.name][1]
            if had_255 and s.recipe_rows != "both":
                seed_s -= slash_s
            elif not had_255 and s.recipe_rows == "both":
                seed_s += slash_s
            source = f"last run ({results.name})"
        else:
            seed_s, slash_s = table[case.name]
            if s.recipe_rows == "both":
                seed_s += slash_s
            source = "built-in figures"
        case_s = len(s.seeds) * seed_s + (0.0 if done else DATA_S)
        total += case_s
        lines.append(
            f"{case.name}: {len(s.seeds)} x {seed_s:.0f}s = {case_s / 60:.1f} min ({source})"
        )
    return total, lines
