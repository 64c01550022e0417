"""The command line, `python -m tuner.search --backbone xception --data ./my_images`, and the same
search from Python, `tuner.run("./my_images", backbone="xception")` (this module's `run`).

Parses and validates every flag into one frozen `SearchConfig` before TensorFlow is imported (so
`--help` and usage errors answer at once, and a bad command line creates no files), then hands it
to `tuner.engine.runner.execute` (prepare, search, export), which returns the leaderboard: the
command line prints it, `run` returns it. Both go through `_search`. On the command line a
`TunerError` becomes one line on stderr and exit code 2 (`tuner._cli`; `--debug` shows the
traceback); `run` raises it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tuner._cli import Command
from tuner.config import (
    AUGMENTATIONS,
    CALIBRATIONS,
    CLASS_WEIGHTS,
    DEFAULT_AUGMENTATIONS,
    OBJECTIVES,
    ORACLES,
    SELECTIONS,
    SearchConfig,
    default_project_dir,
    parse_augmentations,
    parse_size,
)
from tuner.data.demo import DEMO_FALLBACK_SETTINGS, DEMO_WEIGHTS, demo_settings
from tuner.engine.runner import SearchResult, execute
from tuner.engine.spaces import space_for
from tuner.errors import ConfigError, TunerError
from tuner.runtime import heap


class _Search(Command):
    name = "search"
    description = (
        "Search two-phase transfer learning (a new head on a frozen pretrained backbone, then "
        "fine-tuning of its top blocks) for the best image classifier, print a leaderboard and "
        "export the best model."
    )
    interrupted = "interrupted: finished trials are kept; rerun the same command to resume."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_data_flags(parser.add_argument_group("data"))
        _add_model_flags(parser.add_argument_group("model"))
        _add_search_flags(parser.add_argument_group("search"))
        _add_output_flags(parser.add_argument_group("output"))
        _add_cache_flags(parser.add_argument_group("cache"))
        _add_cluster_flags(
            parser.add_argument_group(
                "several machines (KerasTuner's chief and workers; all share --project-dir)"
            )
        )

    def run(self, args: argparse.Namespace) -> int:
        # Before anything loads TensorFlow (the registry does) and starts its threads: glibc
        # fixes its arena limit early (tuner.runtime.heap).
        heap.limit_arenas()
        if args.list_backbones:
            from tuner.models.registry import get_backbone, list_backbones

            for name in list_backbones():
                spec = get_backbone(name)
                print(f"{name:<20} default {spec.default_size:>3}px  min {spec.min_size:>3}px")
            return 0
        from rich.console import Console

        console = Console()
        config, result = _search(args, console)
        if config.role == "worker":
            return 0  # the chief prints the leaderboard and exports, once every trial ended
        from tuner.ui.board import render

        # With --test-data, the leaderboard's footer gives the export's test figures.
        render(result.leaderboard, console=console)
        if result.export is None:
            raise TunerError(
                "No trial completed, so nothing was exported; the leaderboard above "
                "says why each failed."
            )
        if config.verbose:
            board = result.leaderboard
            best = next((row for row in board.rows if row.exported), board.rows[0])
            chosen = "best" if best.rank == 1 else f"{config.select} pick"
            console.print(
                f"{chosen} trial {best.trial_id}: {board.objective}={best.score:.4f}; exported to "
                f"{result.export} ({result.seconds:.0f}s); SavedModel and TFLite: "
                f"python -m tuner.export {config.project_dir}",
                soft_wrap=True,
                highlight=False,
            )
        return 0


_COMMAND = _Search()
build_parser = _COMMAND.build_parser  # the parser; its defaults are `run`'s too
main = _COMMAND.main  # main(argv) runs the command line, returns the exit status


def _add_data_flags(group: Any) -> None:
    group.add_argument(
        "--data",
        type=Path,
        help="training images: one subfolder per class, or a "
        "flat folder of files named LABEL.N.jpg",
    )
    group.add_argument(
        "--val-data",
        type=Path,
        help="validation images, same layouts; default: a stratified --val-split of --data",
    )
    group.add_argument(
        "--val-split",
        type=float,
        default=0.2,
        help="fraction of each class held out for validation (default: 0.2)",
    )
    group.add_argument(
        "--test-data",
        type=Path,
        help="held-out test images, same layouts and classes: never trained, selected or "
        "calibrated on; the exported model is scored on them once, at the end, file by file",
    )
    group.add_argument(
        "--demo",
        action="store_true",
        help="run an offline demo on a small generated dataset (no downloads)",
    )


def _add_model_flags(group: Any) -> None:
    group.add_argument(
        "--backbone",
        default=None,
        help="a backbone name, or a comma-separated list to search over "
        "(default: xception; see --list-backbones)",
    )
    group.add_argument(
        "--list-backbones", action="store_true", help="list the backbone names and exit"
    )
    group.add_argument(
        "--image-size", type=int, help="square input size in pixels (default: the backbone's own)"
    )
    group.add_argument(
        "--weights",
        help="imagenet (downloaded and cached by Keras; the default), none (random "
        "init; the default with --demo) or a path to a weights file for the "
        "backbone without its top",
    )


def _add_search_flags(group: Any) -> None:
    group.add_argument("--space", type=Path, help="a search-space TOML laid over the defaults")
    group.add_argument("--oracle", default="random", help=f"one of {', '.join(ORACLES)}")
    group.add_argument(
        "--max-trials",
        type=int,
        help="trials to run (default: 10); hyperband sizes its brackets from the epochs instead",
    )
    group.add_argument("--epochs-head", type=int, help="phase-1 epochs (default: 4)")
    group.add_argument("--epochs-finetune", type=int, help="phase-2 epochs (default: 4)")
    group.add_argument(
        "--patience",
        type=int,
        help="early-stopping patience inside each phase; 0 turns it off (default: 2)",
    )
    group.add_argument(
        "--finetune-contenders",
        type=int,
        metavar="N",
        help="phase-aware effort: fine-tune a trial only when its head-only score is among the N "
        "best so far; the others keep their head-only result (default: 0, every trial)",
    )
    group.add_argument("--batch-size", type=int, help="default: 32")
    group.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="start no new trial once SECONDS have passed since the command started; a running "
        "trial finishes (default: no limit)",
    )
    group.add_argument(
        "--objective",
        default="auto",
        help=f"auto or one of {', '.join(OBJECTIVES)}; auto: val_balanced_accuracy when the "
        "largest training class has 3x the images of the smallest, else val_accuracy (default)",
    )
    group.add_argument(
        "--class-weight",
        default="auto",
        choices=CLASS_WEIGHTS,
        help="weigh each class's loss by the inverse of its share of the training images "
        "(balanced) in every fit; auto: balanced when the largest class has 3x the images of "
        "the smallest, else none (default: auto)",
    )
    group.add_argument(
        "--select",
        default="best",
        choices=SELECTIONS,
        help="the trial exported: the best score, or one-se: the cheapest trial whose score's "
        "95%% interval holds the best (default: best)",
    )
    group.add_argument(
        "--calibrate",
        default="temperature",
        choices=CALIBRATIONS,
        help="fit a temperature on the best trial's validation predictions and fold it into the "
        "export, so its probabilities match its accuracy (default: temperature)",
    )
    group.add_argument("--seed", type=int, default=1)


def _add_output_flags(group: Any) -> None:
    group.add_argument(
        "--project-dir",
        type=Path,
        help="where trials, caches and the export go (default: runs/<backbone>); "
        "rerunning the same command resumes",
    )
    group.add_argument("--overwrite", action="store_true", help="start the search over")
    group.add_argument("--export", type=Path, help="export folder (default: PROJECT_DIR/export)")


def _add_cache_flags(group: Any) -> None:
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="train the full model every epoch instead of cached frozen activations",
    )
    group.add_argument("--cache-dir", type=Path, help="default: PROJECT_DIR/cache")
    group.add_argument(
        "--cache-memory",
        default="256M",
        help="cache entries up to this size are held in memory; larger ones are read from disk "
        "a batch at a time (default: 256M)",
    )
    group.add_argument(
        "--augment",
        nargs="?",
        const=",".join(DEFAULT_AUGMENTATIONS),
        metavar="OPS",
        help="augment the training images with a comma-separated list of "
        f"{', '.join(AUGMENTATIONS)} (alone: {','.join(DEFAULT_AUGMENTATIONS)}: no flip, which "
        "would change a class defined by its orientation); the cache then holds several views",
    )
    group.add_argument(
        "--augment-views",
        type=int,
        default=4,
        help="views cached per training image with --augment, the first one clean (default: 4)",
    )


def _add_cluster_flags(group: Any) -> None:
    group.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="serve the search's oracle on HOST:PORT (that address only, no authentication: a "
        "trusted network or a tunnel) to workers; runs no trial itself, and exports the best "
        "model once every trial has ended",
    )
    group.add_argument(
        "--worker",
        metavar="HOST:PORT",
        help="run trials for the chief at HOST:PORT, with the chief's command's other flags",
    )
    group.add_argument("--worker-id", metavar="NAME", help="this worker's name, unique")
    group.add_argument(
        "--worker-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="the chief takes a trial back from a worker silent this long (default: 600)",
    )
    group.add_argument(
        "--strategy",
        choices=["mirrored"],
        help="train each trial on all local GPUs with tf.distribute.MirroredStrategy",
    )


def _config_from_args(args: argparse.Namespace) -> SearchConfig:
    """Validate the flags into a `SearchConfig`. Creates no files; loads Keras (the registry)."""
    settings = _settings_from_args(args)
    backbones = settings["backbones"]
    augment = _augment_from_args(args.augment)
    role, address = _role_from_args(args)
    project_dir = args.project_dir or (
        Path("runs") / "demo" if args.demo else default_project_dir(backbones)
    )
    return SearchConfig(
        data=Path("<demo>") if args.demo else Path(args.data),  # run() makes the demo's data
        val_data=args.val_data,
        val_split=args.val_split,
        project_dir=project_dir,
        space=args.space,
        oracle=args.oracle.lower(),
        objective=args.objective,
        class_weight=args.class_weight,
        select=args.select,
        calibrate=args.calibrate,
        test_data=args.test_data,
        seed=args.seed,
        overwrite=args.overwrite,
        export_dir=args.export,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        cache_memory=parse_size(args.cache_memory),
        augment=augment is not None,
        augmentations=augment or DEFAULT_AUGMENTATIONS,
        augment_views=args.augment_views,
        time_budget=args.time_budget,
        demo=args.demo,
        verbose=0 if args.quiet else 1,
        role=role,
        oracle_address=address,
        worker_id=args.worker_id,
        worker_timeout=args.worker_timeout,
        strategy=args.strategy,
        **settings,
    )


def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The data, model and schedule settings: the demo's, then the flags the user gave over them;
    `backbones` and `weights` checked against the registry."""
    from tuner.models.registry import get_backbone

    settings: dict[str, Any] = {}
    if args.demo:
        demo, _ = demo_settings()
        if args.backbone is not None or args.weights is not None:
            # The user picks the model: keep the demo's data and schedule, not its weights.
            demo = {**DEMO_FALLBACK_SETTINGS, **{k: demo[k] for k in ("max_trials",)}}
            demo["weights"] = "none"
        settings.update(demo)
        if args.data is not None:
            raise ConfigError("--demo makes its own data; drop --data, or drop --demo.")
    elif args.data is None:
        raise ConfigError("Missing --data DIR (a folder of images), or pass --demo.")
    # Flags the user gave win over the demo's settings; the rest keep SearchConfig's defaults.
    explicit = {
        "image_size": args.image_size,
        "max_trials": args.max_trials,
        "epochs_head": args.epochs_head,
        "epochs_finetune": args.epochs_finetune,
        "batch_size": args.batch_size,
        "finetune_contenders": args.finetune_contenders,
        "patience": args.patience,
    }
    settings.update({k: v for k, v in explicit.items() if v is not None})
    if args.backbone is not None:
        names = tuple(n.strip().lower() for n in args.backbone.split(",") if n.strip())
        if not names:
            raise ConfigError(f"--backbone needs at least one name. Received: {args.backbone!r}")
        settings["backbones"] = names
    settings.setdefault("backbones", ("xception",))
    if args.weights is not None:
        settings["weights"] = args.weights
    weights = settings.setdefault("weights", "imagenet")
    if weights.lower() in ("none", "imagenet"):
        settings["weights"] = weights.lower()
    elif args.demo and weights == DEMO_WEIGHTS:
        pass  # converted by run() before the search
    elif not Path(weights).is_file():
        raise ConfigError(
            f"--weights must be imagenet, none or an existing weights file. "
            f"Received: weights={weights!r} (no such file)"
        )
    backbones = tuple(dict.fromkeys(get_backbone(n).name for n in settings["backbones"]))
    settings["backbones"] = backbones
    if len(backbones) > 1 and settings["weights"] not in ("imagenet", "none"):
        raise ConfigError(
            "A weights file fits one backbone; pass one --backbone with it, or "
            "--weights imagenet|none."
        )
    size = settings.get("image_size")
    for name in backbones:
        spec = get_backbone(name)
        if size is not None and size < spec.min_size:
            raise ConfigError(
                f"--image-size must be at least {spec.min_size} for {name}. Received: "
                f"image_size={size}"
            )
    return settings


def _augment_from_args(value: Any) -> tuple[str, ...] | None:
    """`--augment`'s operations; None when it is off. `run(augment=True)` means the default
    operations, `run(augment="flip,zoom")` those."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_AUGMENTATIONS
    return parse_augmentations(str(value))


def _role_from_args(args: argparse.Namespace) -> tuple[str, str | None]:
    """This process's part in the search (single, chief or worker) and the chief's address."""
    if args.chief and args.worker:
        raise ConfigError("A process is the chief or a worker, not both: drop --chief or --worker.")
    if not (args.chief or args.worker):
        return "single", None
    from tuner.cluster.address import check_worker_id, parse_address

    role = "chief" if args.chief else "worker"
    host, port = parse_address(args.chief or args.worker, f"--{role}")
    if args.worker_id is not None:
        args.worker_id = check_worker_id(args.worker_id)
    return role, f"{host}:{port}"


def _search(args: argparse.Namespace, console: Any) -> tuple[SearchConfig, SearchResult]:
    """One search from parsed flags, the command line's and `run`'s alike: validated into a
    `SearchConfig`, then `tuner.engine.runner.execute`d. Returns the config with the result.
    The caller has limited malloc's arenas (`tuner.runtime.heap`) first."""
    config = _config_from_args(args)
    return config, execute(config, space_for(config), console=console, debug=args.debug)


def run(data: str | os.PathLike[str] | None = None, **options: Any) -> SearchResult:
    """Runs a search from Python (a notebook, a script), exactly as the command line does.

    Every flag of `python -m tuner.search` is a keyword argument with the flag's name in
    snake_case: `run("./my_images", backbone="xception", max_trials=10, epochs_head=4)`,
    `run(demo=True)`. `backbone` also takes a list. The search shows itself live (in place in a
    notebook), then the leaderboard is returned instead of printed.

    Args:
        data: the training images (the `--data` folder); not needed with `demo=True`.
        **options: the other flags: `val_data`, `val_split`, `demo`, `backbone`, `image_size`,
            `weights`, `space`, `oracle`, `max_trials`, `epochs_head`, `epochs_finetune`,
            `patience`, `finetune_contenders`, `batch_size`, `time_budget`, `objective`,
            `class_weight`, `select`, `calibrate`, `test_data`, `seed`, `project_dir`,
            `overwrite`, `export`, `no_cache`, `cache_dir`, `cache_memory`, `augment` (True, or
            "flip,rotate,zoom"), `augment_views`, `quiet`, `debug`; and `console`, a rich `Console` to
            show the search on (default: standard output, or the notebook).

    Returns:
        The `SearchResult`: its `leaderboard` is the one the command line prints.

    Raises:
        TypeError: an option that is not a flag of the command line.
        TunerError: what the command line reports as one line with exit code 2 (bad data, a bad
            option, a search that cannot go on); finished trials are kept.
    """
    args = build_parser().parse_args([])
    console = options.pop("console", None)
    known = set(vars(args)) - {"list_backbones", "data"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"run() got unknown options: {', '.join(unknown)}. Expected the flags of "
            f"python -m tuner.search in snake_case: {', '.join(sorted(known))}"
        )
    args.data = None if data is None else Path(data)
    for name, value in options.items():
        if name == "backbone" and isinstance(value, (list, tuple)):
            value = ",".join(value)
        if name in _PATH_OPTIONS and value is not None:
            value = Path(value)
        setattr(args, name, value)
    if args.cache_memory is not None and not isinstance(args.cache_memory, str):
        args.cache_memory = str(args.cache_memory)
    heap.limit_arenas()  # before TensorFlow starts its threads, as the command line does
    return _search(args, console)[1]


_PATH_OPTIONS = {"val_data", "space", "project_dir", "export", "cache_dir", "test_data"}


if __name__ == "__main__":
    sys.exit(main())
