"""Model quality of the search against its anchors, on held-out TEST images, over seeds.

Usage:
    python -m scripts.quality              # every case, 3 seeds (the estimate is printed first)
    python -m scripts.quality --quick      # fewer images and epochs, 1 seed: a smoke run
    python -m scripts.quality --cases binary-flat,imbalanced-vgg16 --seeds 1 --json out.json

Every number goes to `--json FILE` (default: scripts/results/quality[-quick].json).

Each case generates its data once (`_datasets.held_out`: real image files of varied, non-square
sizes under ~/.cache/tuner/quality/, split into train/, val/ and test/) and decodes it once; then,
for each seed (`--seeds N`: seeds 1..N; the data stay the same, the model seeds and the search's
`--seed` vary), it measures:

(a) the seed's fixed recipe, plain Keras, full model every epoch: the backbone frozen, a new head
    Dense(512, relu) + the output layer trained with Adam 1e-3, then the last 25% of the backbone's
    layers unfrozen (33 for Xception; BatchNormalization layers stay frozen and the backbone runs
    in inference mode) and trained on with Adam 5e-5, with the backbone's own preprocessing
    (`tuner.models.preprocessing`); `--recipe-rows both` adds the row with inputs /255 as the seed
    did.
(b) two linear probes: pooled backbone features (own preprocessing) -> StandardScaler ->
    LogisticRegression, with C = 1 and with C chosen by stratified k-fold log-loss over the
    package's grid; balanced class weights in the imbalanced case.
(c) the search: the real CLI in a subprocess (`python -m tuner.search --data TRAIN --val-data VAL
    --test-data TEST --seed S ... --time-budget T`, T = the recipe's train time minus a margin),
    then its exported `model.keras` loaded with `keras.saving.load_model(safe_mode=True)` and
    called, as a user would, on each TEST file decoded at its own size; beside it, the test
    figures the search reports itself (PROJECT/test.json) when it wrote them. The imbalanced case
    runs it a second time with `--class-weight none --objective val_accuracy`.

(a) and (b) fit on TRAIN+VAL, every labelled image, as their users would; the search fits on TRAIN
and selects on VAL. Nothing runs on VAL for display. All rows score on TEST, which nothing trains
or selects on. Every row of a seed starts from the same backbone weights: the weights file, or for
`--weights none` the random init the search draws with that seed (`keras.utils.set_random_seed`
then `build_backbone`; checked against the search's init file after it ran). The recipe's
`train_s` counts decoding TRAIN and VAL, building and training; the search's counts its whole
command but the package's own TEST scoring. The search's budget and the "within the recipe's
time" note compare those two.

Each row reports accuracy, balanced accuracy and ECE on TEST (`tuner.metrics.scores`), means over
seeds; the search against every other row gets a paired bootstrap 95 % interval of the difference
in the case's metric (`_quality_stats`). Then the verdicts of issue 25's "Done when", per case.

The cases and settings are in `_quality_cases`, the rows (a) and (b) in `_quality_anchors`, (c) in
`_quality_search`, the figures over seeds and the verdicts in `_quality_stats`, the tables in
`_quality_report`, the time estimate in `_quality_estimate`.
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
from scripts._quality_anchors import probe_features, probe_rows, recipe_row
from scripts._quality_cases import (
    BUDGET_MARGIN_S,
    CASES,
    MIN_BUDGET_S,
    QUICK_MARGIN_S,
    QUICK_MIN_BUDGET_S,
    QUICK_RECIPE_FINETUNE_EPOCHS,
    QUICK_RECIPE_HEAD_EPOCHS,
    QUICK_SEARCH_EPOCHS,
    QUICK_SEEDS,
    RECIPE_FINETUNE_EPOCHS,
    RECIPE_HEAD_EPOCHS,
    RECIPE_OWN,
    RECIPE_ROWS,
    SEEDS,
    Case,
    CaseData,
    Row,
    Settings,
    initial_backbone,
    load_case_data,
    resolve_weights,
    say,
)
from scripts._quality_estimate import estimate
from scripts._quality_report import VERDICT_WORD, describe, render_case
from scripts._quality_search import check_init, run_search
from scripts._quality_stats import judge


def run_case(case: Case, s: Settings) -> dict[str, Any]:
    """Every seed of one case on its held-out set, and its verdicts."""
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
        "images_per_class": {
            split: spec.class_counts(i) for i, split in enumerate(_datasets.SPLITS)
        },
        "classes": [name for name, _ in spec.classes],
        "note": case.note,
        "metric": case.metric,
        "seeds": list(s.seeds),
        "data_generation_s": generate_s,
        "runs": [],
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
    data = load_case_data(dirs, case.image_size)
    say(
        f"{case.name}: decoded {len(data.train.labels)}/{len(data.val.labels)}/"
        f"{len(data.test.labels)} images in {data.fit_decode_s + data.test.seconds:.1f}s"
    )
    pooled: dict[str, Any] = {}  # a pretrained backbone's probe features, pooled once
    seed_walls = []
    for seed in s.seeds:
        t = time.perf_counter()
        run = run_seed(case, weights, dirs, data, s, seed, pooled)
        run["wall_s"] = time.perf_counter() - t
        seed_walls.append(run["wall_s"])
        result["runs"].append(run)
        say(f"{case.name}: seed {seed} done in {run['wall_s']:.0f}s")
    pooled.clear()
    result["seed_wall_s"] = seed_walls
    result["test_labels"] = [int(v) for v in data.test.labels]
    result["chance"] = 1 / data.n_classes
    # The figure before issue 25 was measured on the full-size images only.
    before = None if s.quick else case.before
    result.update(judge(case, result["runs"], data.test.labels, data.n_classes, before=before))
    result["verdicts_pass"] = [v["pass"] for v in result["verdicts"]]
    return result


def run_seed(
    case: Case,
    weights: str,
    dirs: dict[str, Path],
    data: CaseData,
    s: Settings,
    seed: int,
    pooled: dict[str, Any],
) -> dict[str, Any]:
    """The rows of one seed: the recipe, the probes, the search (and its variants)."""
    rows: list[Row] = []
    kinds = ("/255", "own-preproc") if s.recipe_rows == "both" else ("own-preproc",)
    for kind in kinds:
        say(f"{case.name} seed {seed}: recipe {kind}")
        row = guarded(
            f"recipe {kind}", seed, lambda k=kind: recipe_row(case, weights, k, data, s, seed)
        )
        rows.append(row)
        say(f"  {describe(row)}")
    recipe_init = None
    if case.weights == "none":
        import keras

        keras.backend.clear_session()
        recipe_init = initial_backbone(case, weights, seed).get_weights()
    say(f"{case.name} seed {seed}: linear probes")
    rows.extend(probes(case, weights, data, seed, pooled))
    for row in rows[-2:]:
        say(f"  {describe(row)}")

    recipe = next((r for r in rows if r.name == RECIPE_OWN and r.error is None), None)
    reference = recipe.details["train_s"] if recipe is not None else None
    budget = max((reference or 0.0) - s.margin_s, s.min_budget_s)
    say(
        f"{case.name} seed {seed}: search (time budget {budget:.0f}s = the recipe's train time "
        f"- {s.margin_s:g}s)"
    )
    searches = (("search", ()), *case.variants)
    project = None
    for name, flags in searches:
        row, path = guarded_search(case, weights, dirs, data, budget, s, seed, name, flags)
        project = project or path
        rows.append(row)
        say(f"  {describe(row)}")
    same_init = guarded_value(lambda: check_init(case, project, recipe_init)) if project else None
    recipe_init = None  # the weights can be large: let them go before the next seed
    gc.collect()
    return {
        "seed": seed,
        "rows": [asdict(r) for r in rows],
        "recipe_train_s": reference,
        "time_budget_s": budget,
        "time_budget_floor_used": (reference or 0.0) - s.margin_s < s.min_budget_s,
        "same_init_as_search": same_init,
    }


def probes(
    case: Case, weights: str, data: CaseData, seed: int, pooled: dict[str, Any]
) -> list[Row]:
    """The two probe rows of one seed; a pretrained backbone's features are pooled once per case
    (they do not depend on the seed), a random init's for each seed."""
    names = [
        f"linear probe C=1{', balanced' if case.class_weight else ''}",
        f"linear probe CV{', balanced' if case.class_weight else ''}",
    ]
    try:
        reused = case.weights != "none" and "features" in pooled
        if reused:
            extracted = pooled["features"]
        else:
            extracted = probe_features(case, weights, data, seed)
            if case.weights != "none":
                pooled["features"] = extracted
        return probe_rows(case, data, extracted, seed, reused)
    except Exception as error:  # noqa: BLE001 - report it in the table
        import traceback

        traceback.print_exc()
        text = str(error).strip().splitlines()
        message = f"{type(error).__name__}: {text[0] if text else ''}"
        return [Row(name, error=message, seed=seed) for name in names]


def guarded_search(
    case: Case,
    weights: str,
    dirs: dict[str, Path],
    data: CaseData,
    budget: float,
    s: Settings,
    seed: int,
    name: str,
    flags: tuple[str, ...],
) -> tuple[Row, Path | None]:
    """`run_search`, its exception becoming the row's error."""
    out: dict[str, Any] = {}

    def work() -> Row:
        row, out["project"] = run_search(
            case, weights, dirs, data, budget, s, seed=seed, name=name, flags=flags
        )
        return row

    return guarded(name, seed, work), out.get("project")


def guarded(name: str, seed: int, work: Callable[[], Row]) -> Row:
    """Runs one row; an exception becomes that row's error, and the other rows still run."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - report it in the table
        import traceback

        traceback.print_exc()
        text = str(error).strip().splitlines()
        return Row(name, error=f"{type(error).__name__}: {text[0] if text else ''}", seed=seed)


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
        description="Held-out TEST figures of the search against the fixed recipe and two "
        "linear probes, at matched wall time, over seeds; issue 25's verdicts per case.",
    )
    parser.add_argument(
        "--cases",
        help=f"comma-separated, from: {', '.join(c.name for c in CASES)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs: a smoke run")
    parser.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help=f"model seeds 1..N per case; the data stay the same (default: {SEEDS}; "
        f"{QUICK_SEEDS} with --quick)",
    )
    parser.add_argument(
        "--recipe-rows",
        choices=RECIPE_ROWS,
        default="own",
        help="own: the recipe with the backbone's own preprocessing; both: also with inputs "
        "/255 as the seed did (default: own)",
    )
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
        help=f"seconds taken off the recipe's train time for --time-budget (default: "
        f"{BUDGET_MARGIN_S:g}; {QUICK_MARGIN_S:g} with --quick)",
    )
    parser.add_argument(
        "--search-refit",
        action="store_true",
        help="after every search, `python -m tuner.export PROJECT --refit`: the export then "
        "retrains on train+val, as the recipe and the probes do (its time counts as the "
        "search's)",
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
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else SEEDS)
    if seeds < 1:
        raise SystemExit(f"error: --seeds must be at least 1, got {seeds}")
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
        seeds=tuple(range(1, seeds + 1)),
        recipe_rows=args.recipe_rows,
        search_refit=args.search_refit,
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the cases, prints them and writes their JSON; returns the exit status."""
    args = build_parser().parse_args(argv)
    cases = select_cases(args.cases)
    settings = settings_from_args(args)
    output = _report.result_file(args, "quality")
    console = _report.make_console(150)
    expected, lines = estimate(
        cases,
        settings,
        _report.result_file(argparse.Namespace(json=None, quick=args.quick), "quality"),
    )
    console.print(
        f"estimate: {expected / 60:.0f} min for {len(cases)} case(s) x {len(settings.seeds)} "
        "seed(s) (a case's seconds per seed from the last run of this mode, else the built-in "
        "figures for 2 idle cores)",
        highlight=False,
    )
    for line in lines:
        console.print(f"  {line}", highlight=False)
    started = time.perf_counter()
    _harness.start_tensorflow()
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
        console.print(
            f"  {result['case']} ({len(result['seeds'])} seed(s), {result['case_wall_s']:.0f}s):",
            highlight=False,
        )
        for verdict in result["verdicts"]:
            console.print(
                f"    {VERDICT_WORD[verdict['pass']]:7s} {verdict['name']}", highlight=False
            )
    console.print(
        f"total wall {total:.0f}s (estimated {expected:.0f}s){' (quick)' if args.quick else ''}",
        highlight=False,
    )
    report = {
        "settings": settings.record(),
        "cases": results,
        "total_wall_s": total,
        "estimated_s": expected,
    }
    _report.write_result(output, "scripts.quality", report, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
