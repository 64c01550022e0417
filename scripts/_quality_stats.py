"""The quality benchmark's figures over seeds: each row's means, the paired bootstrap intervals
of the search's lead over every other row, and the verdicts of issue 25's "Done when".

Every function here reads the rows as the JSON result holds them (dicts), so a saved result can
be judged again without running anything. NumPy and `tuner.metrics` only.

The intervals resample the test images: one resample of image indices is applied to every seed
and to both rows (paired), the statistic is the mean over seeds of the difference of the case's
metric, and the 95 % interval is the percentile bootstrap's (`tuner.metrics.bootstrap`,
BOOTSTRAP_REPS resamples). The test folder is the same for every seed, so the interval measures
how much the verdict depends on which test images were drawn; how much it depends on the seed is
shown beside it, as the per-seed values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scripts._quality_cases import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    ECE_FLOOR,
    RECIPE_OWN,
    TARGET_POINTS,
    UNWEIGHTED_POINTS,
    Case,
)

SEARCH = "search"
METRIC_LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


def is_search(name: str) -> bool:
    """Whether a row is one of the search's (the search itself or a variant of it)."""
    return name == SEARCH or name.startswith(SEARCH + ",")


def metric_on(metric: str, labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """`metric` ("accuracy" or "balanced_accuracy") of `predicted` against `labels`."""
    from tuner import metrics

    if metric == "accuracy":
        return float(np.mean(predicted == labels)) if len(labels) else 0.0
    return metrics.balanced_accuracy(metrics.confusion(labels, predicted, n_classes))


def by_seed(runs: list[dict[str, Any]], name: str) -> dict[int, dict[str, Any]]:
    """Row `name` of every seed where it ran without error, keyed by seed."""
    out = {}
    for run in runs:
        for row in run["rows"]:
            if row["name"] == name and not row.get("error") and row.get("predicted") is not None:
                out[run["seed"]] = row
    return out


def row_names(runs: list[dict[str, Any]]) -> list[str]:
    """Every row name in the order the rows ran (anchors first, then the searches)."""
    names: list[str] = []
    for run in runs:
        for row in run["rows"]:
            if row["name"] not in names:
                names.append(row["name"])
    return sorted(names, key=lambda n: (is_search(n), n != SEARCH))


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def row_summary(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Row `name` over the seeds: the mean of each test figure and of its times, each seed's
    value, and the errors of the seeds where it failed."""
    rows = {run["seed"]: r for run in runs for r in run["rows"] if r["name"] == name}
    ok = {seed: r for seed, r in rows.items() if not r.get("error") and r.get("test")}
    figures = {}
    for key in ("accuracy", "balanced_accuracy", "ece", "loss"):
        figures[key] = _mean([r["test"][key] for r in ok.values()])
        figures[f"{key}_per_seed"] = {seed: r["test"][key] for seed, r in ok.items()}
    return {
        "name": name,
        "seeds": sorted(ok),
        "errors": {seed: r["error"] for seed, r in rows.items() if r.get("error")},
        "test": figures,
        "val": _mean([r.get("val_accuracy") for r in ok.values()]),
        "wall_s": _mean([r.get("wall_s") for r in ok.values()]),
        "train_s": _mean([(r.get("details") or {}).get("train_s") for r in ok.values()]),
    }


def paired_difference(
    labels: np.ndarray,
    a: dict[int, dict[str, Any]],
    b: dict[int, dict[str, Any]],
    metric: str,
    n_classes: int,
) -> dict[str, Any] | None:
    """Row a minus row b in `metric`, mean over the seeds both have, with its paired bootstrap
    95 % interval (test images resampled, the same resample for every seed and both rows), in
    points; None when they share no seed."""
    from tuner import metrics

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    pairs = [(np.asarray(a[s]["predicted"]), np.asarray(b[s]["predicted"]), s) for s in seeds]

    def statistic(rows: np.ndarray) -> float:
        y = labels[rows]
        return float(
            np.mean(
                [
                    metric_on(metric, y, pa[rows], n_classes)
                    - metric_on(metric, y, pb[rows], n_classes)
                    for pa, pb, _ in pairs
                ]
            )
        )

    every = np.arange(len(labels))
    low, high = metrics.bootstrap(statistic, len(labels), reps=BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
    per_seed = {
        s: 100
        * (metric_on(metric, labels, pa, n_classes) - metric_on(metric, labels, pb, n_classes))
        for pa, pb, s in pairs
    }
    return {
        "metric": metric,
        "seeds": seeds,
        "points": 100 * statistic(every),
        "interval": [100 * low, 100 * high],
        "per_seed": per_seed,
    }


def mean_interval(
    labels: np.ndarray, rows: dict[int, dict[str, Any]], metric: str, n_classes: int
) -> dict[str, Any] | None:
    """A row's `metric`, mean over its seeds, with the bootstrap 95 % interval over test images
    (one resample for every seed), in points."""
    from tuner import metrics

    if not rows:
        return None
    predicted = [np.asarray(r["predicted"]) for r in rows.values()]

    def statistic(index: np.ndarray) -> float:
        y = labels[index]
        return float(np.mean([metric_on(metric, y, p[index], n_classes) for p in predicted]))

    low, high = metrics.bootstrap(statistic, len(labels), reps=BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
    return {
        "points": 100 * statistic(np.arange(len(labels))),
        "interval": [100 * low, 100 * high],
        "seeds": sorted(rows),
    }


def _verdict(name: str, passed: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "pass": passed, "detail": detail}


def _ci(c: dict[str, Any]) -> str:
    low, high = c["interval"]
    return f"{c['points']:+.1f} pts [{low:+.1f}, {high:+.1f}]"


def judge(
    case: Case,
    runs: list[dict[str, Any]],
    labels: np.ndarray,
    n_classes: int,
    *,
    before: float | None = None,
) -> dict[str, Any]:
    """A case over its seeds: per-row means, the search against every other row, the verdicts.
    `before`: the search's figure before issue 25 on this case's full-size images (None for a
    quick run, whose images are others), judged against the search's interval now.

    Returns:
        `rows` (one `row_summary` per row), `comparisons` (the search minus each other row in the
        case's metric, `paired_difference`), `search_mean` (`mean_interval` of the search) and
        `verdicts` (each: name, pass True / False / None for unknown, detail).
    """
    metric = case.metric
    label = METRIC_LABEL[metric]
    names = row_names(runs)
    summaries = [row_summary(runs, n) for n in names]
    search = by_seed(runs, SEARCH)
    comparisons = []
    for name in names:
        if name == SEARCH:
            continue
        difference = paired_difference(labels, search, by_seed(runs, name), metric, n_classes)
        if difference is not None:
            comparisons.append({"search": SEARCH, "against": name, **difference})
    mean = {s["name"]: s["test"][metric] for s in summaries}
    verdicts = []
    searched = mean.get(SEARCH)
    anchors = [n for n in names if not is_search(n) and mean.get(n) is not None]

    def against(name: str) -> dict[str, Any] | None:
        return next((c for c in comparisons if c["against"] == name), None)

    if case.imbalanced:
        probes = [n for n in anchors if "probe" in n and "balanced" in n]
        best = max(probes, key=lambda n: mean[n]) if probes else None
        if searched is None or best is None:
            verdicts.append(
                _verdict(
                    f"search {label} >= balanced-weight probe - 1 point", None, "a row is missing"
                )
            )
        else:
            c = against(best)
            verdicts.append(
                _verdict(
                    f"search {label} >= balanced-weight probe - {TARGET_POINTS:g} point",
                    100 * searched >= 100 * mean[best] - TARGET_POINTS - 1e-9,
                    f"search {100 * searched:.1f} vs {best} {100 * mean[best]:.1f} (the better "
                    f"of the balanced probes); search - probe {_ci(c) if c else '-'}",
                )
            )
        unweighted = next((n for n in names if is_search(n) and "unweighted" in n), None)
        c = against(unweighted) if unweighted else None
        verdicts.append(
            _verdict(
                f"search {label} >= unweighted search + {UNWEIGHTED_POINTS:g} points",
                None if c is None else c["points"] >= UNWEIGHTED_POINTS - 1e-9,
                "a row is missing"
                if c is None
                else f"search - {unweighted} {_ci(c)}, per seed "
                + ", ".join(f"{v:+.1f}" for v in c["per_seed"].values()),
            )
        )
    else:
        best = max(anchors, key=lambda n: mean[n]) if anchors else None
        c = against(best) if best else None
        if searched is None or best is None or c is None:
            verdicts.append(
                _verdict(
                    f"search >= best anchor - {TARGET_POINTS:g} point", None, "a row is missing"
                )
            )
            verdicts.append(
                _verdict(
                    "search not below the best anchor beyond the 95 % interval",
                    None,
                    "a row is missing",
                )
            )
        else:
            verdicts.append(
                _verdict(
                    f"search >= best anchor - {TARGET_POINTS:g} point",
                    100 * searched >= 100 * mean[best] - TARGET_POINTS - 1e-9,
                    f"mean {label} over seeds: search {100 * searched:.1f} vs {best} "
                    f"{100 * mean[best]:.1f}",
                )
            )
            verdicts.append(
                _verdict(
                    "search not below the best anchor beyond the 95 % interval",
                    c["interval"][1] >= 0.0,
                    f"search - {best} {_ci(c)}: fails only when the whole paired bootstrap "
                    "interval is below 0",
                )
            )
        if before is not None:
            m = mean_interval(labels, search, metric, n_classes)
            verdicts.append(
                _verdict(
                    f"{label} no lower than before issue 25 ({100 * before:.1f} %), within "
                    "the interval",
                    None if m is None else m["interval"][1] >= 100 * before - 1e-9,
                    "no search row"
                    if m is None
                    else f"search {m['points']:.1f} [{m['interval'][0]:.1f}, "
                    f"{m['interval'][1]:.1f}] vs {100 * before:.1f} (one seed, on "
                    "1,000-1,200 test images drawn like these 600)",
                )
            )
    verdicts.append(ece_verdict(search))
    verdicts.append(package_test_verdict(search))
    return {
        "metric": metric,
        "rows": summaries,
        "comparisons": comparisons,
        "search_mean": mean_interval(labels, search, metric, n_classes),
        "verdicts": verdicts,
    }


def ece_verdict(search: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Exported ECE on test <= max(ECE_FLOOR, half the uncalibrated ECE), with the same accuracy,
    on every seed; unknown where the uncalibrated ECE is unknown and the ECE is above the floor."""
    name = f"exported ECE on test <= max({ECE_FLOOR:g}, half the uncalibrated), same accuracy"
    if not search:
        return _verdict(name, None, "no search row")
    outcomes, parts = [], []
    for seed, row in sorted(search.items()):
        ece = row["test"]["ece"]
        calibration = (row.get("details") or {}).get("calibration") or {}
        before = calibration.get("uncalibrated_ece")
        same = calibration.get("same_accuracy")
        if before is not None:
            limit = max(ECE_FLOOR, before / 2)
            ok: bool | None = ece <= limit + 1e-12 and same is not False
            parts.append(f"s{seed} {ece:.3f} (uncalibrated {before:.3f}, limit {limit:.3f})")
        else:
            ok = True if ece <= ECE_FLOOR else None
            parts.append(f"s{seed} {ece:.3f} (uncalibrated unknown)")
        if same is False:
            parts[-1] += " accuracy changed"
        outcomes.append(ok)
    passed = False if False in outcomes else (None if None in outcomes else True)
    return _verdict(name, passed, "; ".join(parts))


def package_test_verdict(search: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The search's own test figures (test.json) equal ours to within one image on every seed;
    unknown where it wrote none."""
    name = "the search's own test figures equal the export's, within one image"
    outcomes, parts = [], []
    for seed, row in sorted(search.items()):
        record = (row.get("details") or {}).get("package_test") or {}
        if not record.get("present") or "within_one_image" not in record:
            outcomes.append(None)
            parts.append(f"s{seed}: {record.get('note', 'no test figures')}")
            continue
        outcomes.append(bool(record["within_one_image"]))
        parts.append(
            f"s{seed}: accuracy {100 * record['accuracy']:.2f} vs ours, "
            f"{record['correct_images_difference']} image(s) apart"
        )
    if not outcomes:
        return _verdict(name, None, "no search row")
    passed = False if False in outcomes else (None if None in outcomes else True)
    return _verdict(name, passed, "; ".join(parts))


def time_notes(runs: list[dict[str, Any]]) -> list[str]:
    """Per seed: the search's command time against the recipe's train time."""
    out = []
    for run in runs:
        rows = {r["name"]: r for r in run["rows"]}
        recipe = (rows.get(RECIPE_OWN) or {}).get("details", {}).get("train_s")
        search = (rows.get(SEARCH) or {}).get("details", {}).get("train_s")
        if recipe is None or search is None:
            continue
        relation = "within" if search <= recipe else "OVER"
        out.append(f"s{run['seed']} {search:.0f}s vs {recipe:.0f}s: {relation}")
    return out
