"""Model quality of the search against two anchors, on held-out TEST images.

Usage:
    python -m scripts.quality              # every case (29 min measured on 2 idle cores)
    python -m scripts.quality --quick      # fewer images and epochs: a smoke run (about 5 min)
    python -m scripts.quality --cases binary-flat,random-vgg16 --json out.json

Every number goes to `--json FILE` (default: scripts/results/quality[-quick].json).

Each case generates its data once (`_datasets.held_out`: real image files of varied, non-square
sizes under ~/.cache/tuner/quality/, split into train/, val/ and test/), then measures:

(a) the seed's fixed recipe, plain Keras, full model every epoch: the backbone frozen, a new head
    Dense(512, relu) + the output layer trained with Adam 1e-3, then the last 25% of the backbone's
    layers unfrozen (33 for Xception; BatchNormalization layers stay frozen and the backbone runs
    in inference mode) and trained on with Adam 5e-5. Two rows: inputs scaled by 1/255 as the seed
    did, and the backbone's own preprocessing (`tuner.models.preprocessing`).
(b) a linear probe: pooled backbone features (own preprocessing) -> StandardScaler ->
    LogisticRegression(C=1), fit on TRAIN.
(c) the search: the real CLI in a subprocess (`python -m tuner.search --data TRAIN --val-data VAL
    ... --time-budget T`, T = the faster (a) row's time minus a margin), then its exported
    `model.keras` loaded with `keras.saving.load_model(safe_mode=True)` and called, as a user
    would, on each TEST file decoded at its own size.

(a) and (b) train on TRAIN only (the recipe shows VAL accuracy for display; nothing selects on it);
the search selects on VAL. All rows score on TEST, which nothing trains or selects on. Every row
starts from the same backbone weights: the weights file, or for `--weights none` the random init
the search itself draws (`keras.utils.set_random_seed(SEED)` then `build_backbone`; checked against
the search's init file after it ran). Wall time per row counts that row's own decoding, model
building, training and TEST evaluation (not dataset generation or a weights-file conversion). The
time budget and the "within the recipe's time" check compare the rows without TEST decoding and
scoring (`train_s`): the test split is large, and the export is scored file by file as a user
calls it, where the recipe predicts in batches.

The cases and settings are in `_quality_cases`, the rows (a) and (b) in `_quality_anchors`, (c) in
`_quality_search` and the tables in `_quality_report`.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scripts import _datasets, _harness, _report
from scripts._quality_anchors import run_probe, run_recipe
from scripts._quality_cases import (
    BUDGET_MARGIN_S,
    CASES,
    MIN_BUDGET_S,
    QUICK_MARGIN_S,
    QUICK_MIN_BUDGET_S,
    QUICK_RECIPE_FINETUNE_EPOCHS,
    QUICK_RECIPE_HEAD_EPOCHS,
    QUICK_SEARCH_EPOCHS,
    RECIPE_FINETUNE_EPOCHS,
    RECIPE_HEAD_EPOCHS,
    TARGET_POINTS,
    Case,
    Row,
    Settings,
    initial_backbone,
    resolve_weights,
    say,
)
from scripts._quality_report import describe, render_case
from scripts._quality_search import check_init, run_search


def run_case(case: Case, s: Settings) -> dict[str, Any]:
    """The rows of one case on its held-out set, and whether the search met its target."""
    spec = _datasets.held_out(case.dataset, s.quick)
    started = time.perf_counter()
    folder, built = _datasets.ensure_dataset(spec, s.data_root)
    generate_s = time.perf_counter() - started
    say(f"{case.name}: data {folder} ({'built' if built else 'cached'}, {generate_s:.1f}s)")
    dirs = {split: folder / split for split in _datasets.SPLITS}
    result: dict[str, Any] = {
        "case": case.name,
        "backbone": case.backbone,
        "image_size": case.image_size,
        "data": str(folder),
        "images": dict(zip(_datasets.SPLITS, spec.counts, strict=True)),
        "classes": [name for name, _ in spec.classes],
        "note": case.note,
        "data_generation_s": generate_s,
        "rows": [],
    }
    try:
        t = time.perf_counter()
        weights, description = resolve_weights(case)
        result["weights_setup_s"] = time.perf_counter() - t
    except Exception as error:  # noqa: BLE001 - a missing weights helper skips this case only
        result["skipped"] = f"weights {case.weights!r} unavailable: {error!r}"
        say(f"{case.name}: skipped ({result['skipped']})")
        return result
    result["weights"] = description

    rows, recipe_init = anchor_rows(case, weights, dirs, s)
    # The time a row takes to give a model: its wall time without decoding and scoring TEST,
    # whose size is the benchmark's choice (the recipe predicts in batches, the export is called
    # file by file, as a user calls it).
    recipe_walls = [
        r.details["train_s"] for r in rows[:2] if r.wall_s is not None and r.error is None
    ]
    reference = min(recipe_walls) if recipe_walls else None
    budget = max((reference or 0.0) - s.margin_s, s.min_budget_s)
    say(
        f"{case.name}: search (time budget {budget:.0f}s = fastest recipe, TEST scoring "
        f"excluded, - {s.margin_s:g}s)"
    )
    project = s.work_dir / case.name
    search_row = guarded("search", lambda: run_search(case, weights, dirs, budget, s)[0])
    rows.append(search_row)
    say(f"  {describe(search_row)}")
    same_init = guarded_value(lambda: check_init(case, project, recipe_init))
    recipe_init = None  # the weights can be large: let them go before the next case
    gc.collect()

    result["rows"] = [asdict(r) for r in rows]
    result["recipe_min_wall_s"] = reference
    result["time_budget_s"] = budget
    result["time_budget_floor_used"] = (reference or 0.0) - s.margin_s < s.min_budget_s
    result["same_init_as_search"] = same_init
    anchors = [r.test_accuracy for r in rows[:3] if r.test_accuracy is not None]
    best = max(anchors) if anchors else None
    searched = search_row.test_accuracy
    result["anchor_best_test_accuracy"] = best
    result["target_pass"] = (
        searched is not None
        and best is not None
        and 100 * searched >= 100 * best - TARGET_POINTS - 1e-9
    )
    search_s = search_row.details.get("train_s")
    result["search_within_recipe_time"] = (
        search_s is not None and reference is not None and search_s <= reference
    )
    result["chance"] = 1 / len(spec.classes)
    return result


def anchor_rows(
    case: Case, weights: str, dirs: dict[str, Path], s: Settings
) -> tuple[list[Row], list | None]:
    """The two recipe rows and the probe; and, for a random init, the weights they started from
    (for `check_init`)."""
    rows: list[Row] = []
    recipe_init = None
    for kind in ("/255", "own-preproc"):
        say(f"{case.name}: recipe {kind}")
        row = guarded(f"recipe {kind}", lambda k=kind: run_recipe(case, weights, k, dirs, s))
        rows.append(row)
        say(f"  {describe(row)}")
    if case.weights == "none":
        import keras

        keras.backend.clear_session()
        recipe_init = initial_backbone(case, weights).get_weights()
    say(f"{case.name}: linear probe")
    rows.append(guarded("linear probe", lambda: run_probe(case, weights, dirs, s)))
    say(f"  {describe(rows[-1])}")
    return rows, recipe_init


def guarded(name: str, work: Callable[[], Row]) -> Row:
    """Runs one row; an exception becomes that row's error, and the other rows still run."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - report it in the table
        import traceback

        traceback.print_exc()
        text = str(error).strip().splitlines()
        return Row(name, error=f"{type(error).__name__}: {text[0] if text else ''}")


def guarded_value(work: Callable[[], Any]) -> Any:
    """`work()`, or None (said on standard error) when it raises."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001
        say(f"  init check failed: {error!r}")
        return None


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m scripts.quality`."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.quality",
        description="Held-out TEST accuracy of the search against the fixed recipe and a "
        "linear probe, at matched wall time.",
    )
    parser.add_argument(
        "--cases",
        help=f"comma-separated, from: {', '.join(c.name for c in CASES)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs: a smoke run")
    _report.add_json_flag(parser, "quality")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where generated datasets live (default: $TUNER_QUALITY_DIR or "
        "~/.cache/tuner/quality)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="search project folders and logs (default: DATA_DIR/runs[-quick])",
    )
    parser.add_argument(
        "--margin",
        type=float,
        help=f"seconds taken off the recipe's wall time for --time-budget (default: "
        f"{BUDGET_MARGIN_S:g}; {QUICK_MARGIN_S:g} with --quick)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the recipe's epochs")
    return parser


def select_cases(text: str | None) -> list[Case]:
    """The cases `--cases` names, in its order; all of them by default."""
    if not text:
        return list(CASES)
    by_name = {c.name: c for c in CASES}
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(
            f"error: unknown case(s) {', '.join(unknown)}; expected some of {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The run's `Settings`: the full or the quick ones, then the flags."""
    data_root = (args.data_dir or _datasets.default_root()).expanduser().absolute()
    return Settings(
        quick=args.quick,
        head_epochs=QUICK_RECIPE_HEAD_EPOCHS if args.quick else RECIPE_HEAD_EPOCHS,
        finetune_epochs=QUICK_RECIPE_FINETUNE_EPOCHS if args.quick else RECIPE_FINETUNE_EPOCHS,
        search_extra=QUICK_SEARCH_EPOCHS if args.quick else (),
        margin_s=args.margin
        if args.margin is not None
        else (QUICK_MARGIN_S if args.quick else BUDGET_MARGIN_S),
        min_budget_s=QUICK_MIN_BUDGET_S if args.quick else MIN_BUDGET_S,
        data_root=data_root,
        work_dir=(args.work_dir or data_root / ("runs-quick" if args.quick else "runs"))
        .expanduser()
        .absolute(),
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the cases, prints them and writes their JSON; returns the exit status."""
    args = build_parser().parse_args(argv)
    cases = select_cases(args.cases)
    settings = settings_from_args(args)
    started = time.perf_counter()
    _harness.start_tensorflow()
    console = _report.make_console(120)
    results = []
    for case in cases:
        t = time.perf_counter()
        result = run_case(case, settings)
        result["case_wall_s"] = time.perf_counter() - t
        results.append(result)
        render_case(result, console)
        say(f"{case.name}: case total {result['case_wall_s']:.0f}s")
    total = time.perf_counter() - started
    console.print()
    console.print("summary:", highlight=False)
    for result in results:
        if "skipped" in result:
            console.print(f"  {result['case']}: SKIPPED", highlight=False)
            continue
        verdict = "PASS" if result["target_pass"] else "FAIL"
        console.print(
            f"  {result['case']}: {verdict} (search "
            f"{_report.percent(result['rows'][-1]['test_accuracy'])} vs "
            f"{_report.percent(result['anchor_best_test_accuracy'])}), case wall "
            f"{result['case_wall_s']:.0f}s",
            highlight=False,
        )
    console.print(f"total wall {total:.0f}s{' (quick)' if args.quick else ''}", highlight=False)
    report = {"settings": settings.record(), "cases": results, "total_wall_s": total}
    _report.write_result(_report.result_file(args, "quality"), "scripts.quality", report, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
