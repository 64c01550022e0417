"""`python -m tuner.export PROJECT_DIR`: export a finished search's best trial (or any trial) as
Keras, SavedModel and TFLite files, with labels, metadata and a model card.

The search records its configuration in PROJECT_DIR/config.json; this command rebuilds the same
data and models from it (the decoded pixels come from the search's cache), reloads the trials, and
exports without training, unless `--refit` asks to retrain the chosen hyperparameters on the
training and validation images together. The export is calibrated as the search was
(`--calibrate`), and scored on the search's test folder, or `--test-data DIR`
(`tuner.serve.bundle`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from tuner._cli import Command
from tuner.config import CALIBRATIONS, CONFIG_FILE, SearchConfig, config_from_json
from tuner.errors import ConfigError
from tuner.project.layout import read_run
from tuner.runtime import heap


class _Export(Command):
    name = "export"
    description = (
        "Export a search's best model (or --trial ID) for serving: a .keras file, a SavedModel "
        "with uint8 and encoded-bytes signatures, and a TFLite model, each with labels.txt, "
        "metadata.json and a model card (README.md)."
    )
    # The export is staged beside its folder and moved in only when complete
    # (`tuner.serve.formats`), so an interrupted one leaves the folder as it was.
    interrupted = "interrupted: nothing was exported; the search's trials are kept."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "project_dir", type=Path, metavar="PROJECT_DIR", help="the folder the search wrote"
        )
        parser.add_argument(
            "--trial", help="export this trial id (default: the leaderboard's first)"
        )
        parser.add_argument(
            "--format",
            default="keras,savedmodel,tflite",
            help="comma-separated formats: keras, savedmodel, tflite (default: all three)",
        )
        parser.add_argument(
            "--quantize",
            default="none",
            help="the TFLite model's quantization: none (float32), dynamic (int8 weights), "
            "float16 or int8 (weights and activations, calibrated on training images). "
            "Default: none",
        )
        parser.add_argument(
            "--out", type=Path, help="the export folder (default: PROJECT_DIR/export)"
        )
        parser.add_argument(
            "--refit",
            action="store_true",
            help="retrain the trial's hyperparameters on the training and validation images "
            "together, up to the trial's best epoch (phase 2 skipped when that was in phase 1), "
            "then export",
        )
        parser.add_argument(
            "--test-data",
            type=Path,
            help="held-out test images (the same layouts and classes as the training images) to "
            "score the exported model on, file by file; default: the search's --test-data, if "
            "it had one",
        )
        parser.add_argument(
            "--calibrate",
            choices=CALIBRATIONS,
            help="temperature: fit a temperature on the trial's validation predictions and fold "
            "it into the model; none: export the probabilities as trained. Default: the "
            "search's --calibrate",
        )
        parser.add_argument(
            "--data", type=Path, help="the training images, if they moved since the search"
        )
        parser.add_argument(
            "--val-data", type=Path, help="the validation images, if they moved since the search"
        )

    def run(self, args: argparse.Namespace) -> int:
        # --quiet: the exported paths only (no progress, no KerasTuner "Reloading" line).
        heap.limit_arenas()  # before TensorFlow starts its threads (tuner.runtime.heap)
        from tuner.serve.formats import parse_formats, parse_quantize

        formats = parse_formats(args.format)
        quantize = parse_quantize(args.quantize)
        if quantize != "none" and "tflite" not in formats:
            raise ConfigError(
                f"--quantize {quantize} applies to the TFLite model; add tflite to --format."
            )
        config = load_project_config(
            args.project_dir,
            out=args.out,
            data=args.data,
            val_data=args.val_data,
            test_data=args.test_data,
            calibrate=args.calibrate,
            verbose=0 if args.quiet else 1,
        )
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


main = _Export().main  # main(argv) runs the command line, returns the exit status


def load_project_config(
    project_dir: Path,
    *,
    out: Path | None = None,
    data: Path | None = None,
    val_data: Path | None = None,
    test_data: Path | None = None,
    calibrate: str | None = None,
    verbose: int = 1,
) -> SearchConfig:
    """The configuration a search recorded in `project_dir`, pointed at that folder, for exporting
    from it: never overwriting it, one process, no time budget.

    Args:
        project_dir: The folder the search wrote.
        out: The export folder. Defaults to `PROJECT_DIR/export`.
        data: Where the training images are now, when they moved. Defaults to the search's.
        val_data: Where the validation images are now. Defaults to the search's.
        test_data: The test images to score the export on. Defaults to the search's
            `--test-data`, if it had one.
        calibrate: `tuner.config.CALIBRATIONS`. Defaults to the search's (`none` for a search
            recorded before calibration existed).
        verbose: `SearchConfig.verbose`. Defaults to 1.

    Raises:
        ConfigError: No search in `project_dir`, or its images or space file are not where it
            says.
    """
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
        "verbose": verbose,
        "export_dir": out or project_dir / "export",
        # A distributed search's chief wrote config.json; exporting is one process.
        "role": "single",
        "oracle_address": None,
        "worker_id": None,
        "strategy": None,
    }
    if config.cache_dir is not None and not config.cache_dir.exists():
        changes["cache_dir"] = None
    if data is not None:
        changes["data"] = data
    if val_data is not None:
        changes["val_data"] = val_data
    if test_data is not None:
        changes["test_data"] = test_data
    if calibrate is not None:
        changes["calibrate"] = calibrate
    elif "calibrate" not in json.loads(text):
        changes["calibrate"] = "none"  # searched before calibration existed: exported as then
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
    if test_data is not None and not test_data.is_dir():
        raise ConfigError(f"No test images at {test_data}: pass --test-data DIR, a folder.")
    if config.space is not None and not config.space.is_file():
        raise ConfigError(
            f"The search's space file {config.space} is gone; put it back (the trials' values "
            "are read from the project, but the space declares them)."
        )
    return config


def _export(
    args: argparse.Namespace,
    config: SearchConfig,
    formats: tuple[str, ...],
    quantize: str,
    console: Any,
    display: Any,
) -> int:
    """Rebuilds the search from its project, picks the trial (refitting it with `--refit`) and
    exports it through `tuner.serve.bundle.export_trial`, the search's own way out."""
    from tuner.engine import transfer as engine
    from tuner.engine.oracles import make_oracle
    from tuner.engine.spaces import space_for
    from tuner.serve.bundle import export_trial

    started = time.perf_counter()
    bench = engine.prepare(config, space_for(config), display)
    searched_classes = (read_run(config.project_dir) or {}).get("class_names")
    if searched_classes is not None and list(bench.data.class_names) != searched_classes:
        raise ConfigError(
            f"The images at {config.data} now hold the classes "
            f"{', '.join(bench.data.class_names)}, but the search learned "
            f"{', '.join(searched_classes)}; pass --data DIR with the search's images."
        )
    if config.test_data is not None and not config.test_data.is_dir():
        display.warning(
            f"the search's test images are not at {config.test_data} any more, so this export "
            "is not scored on a test set; pass --test-data DIR where they are now"
        )
        config = config.replace(test_data=None)
    if config.test_data is not None:  # a wrong folder is found before anything is trained
        from tuner.serve.evaluate import load_test_set

        load_test_set(config.test_data, bench.data.class_names, (bench.data.train, bench.data.val))
    # KerasTuner prints "Reloading Tuner from ..." unconditionally.
    with contextlib.redirect_stdout(io.StringIO()) if args.quiet else contextlib.nullcontext():
        tuner = engine.TransferTuner(make_oracle(bench.config), bench)
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
    paths = export_trial(
        tuner,
        trial,
        config.resolved_export_dir,
        formats=formats,
        quantize=quantize,
        model=model,
        refit=refit,
        test_data=config.test_data,
        calibrate=config.calibrate,
    )
    for fmt, path in paths.items():
        console.print(f"{fmt}: {path}")
    if config.test_data is not None:
        from tuner.project.layout import TEST_FILE
        from tuner.serve.evaluate import summary_line

        test = json.loads((config.project_dir / TEST_FILE).read_text())
        console.print(summary_line(test), soft_wrap=True, highlight=False)
    display.message(
        f"trial {trial.trial_id} exported to {config.resolved_export_dir} "
        f"({time.perf_counter() - started:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
