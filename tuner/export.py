"""`python -m tuner.export PROJECT_DIR`: export a finished search's best trial (or any trial) as
Keras, SavedModel and TFLite files, with labels, metadata and a model card.

The search records its configuration in PROJECT_DIR/config.json; this command rebuilds the same
data and models from it (the decoded pixels come from the search's cache), reloads the trials, and
exports without training, unless `--refit` asks to retrain the chosen hyperparameters on the
training and validation images together.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuner.config import CONFIG_FILE, SearchConfig, config_from_json
from tuner.errors import ConfigError, TunerError, report
from tuner.project.layout import read_run
from tuner.runtime import heap


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.export",
        description="Export a search's best model (or --trial ID) for serving: a .keras file, a "
        "SavedModel with uint8 and encoded-bytes signatures, and a TFLite model, each with "
        "labels.txt, metadata.json and a model card (README.md).",
    )
    parser.add_argument("project_dir", type=Path, help="the folder the search wrote")
    parser.add_argument("--trial", help="export this trial id (default: the leaderboard's first)")
    parser.add_argument(
        "--format",
        default="keras,savedmodel,tflite",
        help="comma-separated formats: keras, savedmodel, tflite (default: all three)",
    )
    parser.add_argument(
        "--quantize",
        default="none",
        help="the TFLite model's quantization: none (float32), dynamic (int8 weights), float16 or "
        "int8 (weights and activations, calibrated on training images). Default: none",
    )
    parser.add_argument("--out", type=Path, help="the export folder (default: PROJECT_DIR/export)")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="retrain the trial's hyperparameters on the training and validation images "
        "together, for the trial's own number of epochs per phase, then export",
    )
    parser.add_argument(
        "--data", type=Path, help="the training images, if they moved since the search"
    )
    parser.add_argument(
        "--val-data", type=Path, help="the validation images, if they moved since the search"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the exported paths")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def load_project_config(project_dir: Path, args: argparse.Namespace):
    """The search's configuration, pointed at this project folder and never overwriting it."""
    path = project_dir / CONFIG_FILE
    if not (project_dir / "trials").is_dir():
        raise ConfigError(
            f"No search found in {project_dir}: run python -m tuner.search first, or pass the "
            "folder it wrote (its --project-dir)."
        )
    try:
        text = path.read_text()
    except OSError:
        raise ConfigError(
            f"{path} is missing: this search was run before tuner recorded its settings. Rerun "
            "the search's own command once (it resumes, and records them), then export."
        ) from None
    config = config_from_json(text)
    changes = {
        "project_dir": project_dir,
        "overwrite": False,  # exporting must never start the search over
        "time_budget": None,
        "verbose": 0 if args.quiet else 1,
        "export_dir": args.out or project_dir / "export",
        # A distributed search's chief wrote config.json; exporting is one process.
        "role": "single",
        "oracle_address": None,
        "worker_id": None,
        "strategy": None,
    }
    if config.cache_dir is not None and not config.cache_dir.exists():
        changes["cache_dir"] = None
    if args.data is not None:
        changes["data"] = args.data
    if args.val_data is not None:
        changes["val_data"] = args.val_data
    config = config.replace(**changes)
    if not config.data.is_dir():
        raise ConfigError(
            f"The search's images are not at {config.data} any more; pass --data DIR (and "
            "--val-data DIR if it had one) where they are now."
        )
    if config.val_data is not None and not config.val_data.is_dir():
        raise ConfigError(
            f"The search's validation images are not at {config.val_data} any more; pass "
            "--val-data DIR where they are now."
        )
    if config.space is not None and not config.space.is_file():
        raise ConfigError(
            f"The search's space file {config.space} is gone; put it back (the trials' values "
            "are read from the project, but the space declares them)."
        )
    return config


def run(args: argparse.Namespace) -> int:
    from tuner.serve.formats import parse_formats, parse_quantize

    formats = parse_formats(args.format)
    quantize = parse_quantize(args.quantize)
    if quantize != "none" and "tflite" not in formats:
        raise ConfigError(
            f"--quantize {quantize} applies to the TFLite model; add tflite to --format."
        )
    config = load_project_config(args.project_dir, args)
    from tuner.runtime import startup as runtime

    runtime.start(debug=args.debug)
    from rich.console import Console

    from tuner.ui.live import make_display

    console = Console()
    display = make_display(console, verbose=config.verbose)
    try:
        return _export(args, config, formats, quantize, console, display)
    finally:
        display.close()


def _export(
    args: argparse.Namespace,
    config: SearchConfig,
    formats: tuple[str, ...],
    quantize: str,
    console: Any,
    display: Any,
) -> int:
    from tuner.engine import transfer as engine
    from tuner.engine.oracles import make_oracle
    from tuner.engine.spaces import load_space
    from tuner.models.registry import get_backbone
    from tuner.serve import bundle as artifact

    started = time.perf_counter()
    family = get_backbone(config.backbones[0]).family if len(config.backbones) == 1 else None
    space = load_space(family=family, path=config.space)
    bench = engine.prepare(config, space, display)
    searched_classes = (read_run(config.project_dir) or {}).get("class_names")
    if searched_classes is not None and list(bench.data.class_names) != searched_classes:
        raise ConfigError(
            f"The images at {config.data} now hold the classes "
            f"{', '.join(bench.data.class_names)}, but the search learned "
            f"{', '.join(searched_classes)}; pass --data DIR with the search's images."
        )
    # KerasTuner prints "Reloading Tuner from ..." unconditionally.
    with contextlib.redirect_stdout(io.StringIO()) if args.quiet else contextlib.nullcontext():
        tuner = engine.TransferTuner(make_oracle(config), bench)
    trials = engine.completed_trials(tuner)
    if not trials:
        raise ConfigError(f"No completed trial in {config.project_dir}: nothing to export.")
    if args.trial is None:
        trial = trials[0]
    else:
        chosen = [t for t in trials if t.trial_id == args.trial]
        if not chosen:
            raise ConfigError(
                f"No completed trial {args.trial!r} in {config.project_dir}; completed trials: "
                f"{', '.join(sorted(t.trial_id for t in trials))}."
            )
        trial = chosen[0]
    model = refit = None
    if args.refit:
        from tuner.train.refit import refit_trial

        model, refit = refit_trial(bench, trial)
    paths = artifact.export_best(
        tuner,
        trial,
        config.resolved_export_dir,
        formats=formats,
        quantize=quantize,
        model=model,
        refit=refit,
    )
    for fmt, path in paths.items():
        console.print(f"{fmt}: {path}")
    display.message(
        f"trial {trial.trial_id} exported to {config.resolved_export_dir} "
        f"({time.perf_counter() - started:.0f}s)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for bad input)."""
    heap.limit_arenas()
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except TunerError as error:
        return report(error, debug=args.debug)
    except KeyboardInterrupt:
        print("interrupted: nothing was exported; the search's trials are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
