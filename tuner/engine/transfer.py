"""The search: a KerasTuner HyperModel and Tuner whose trials run both transfer-learning phases.

`prepare` makes what every trial shares (a `Workbench`: the data, the frozen features, the
display); `TransferHyperModel` declares the search space and builds the full model;
`TransferTuner.run_trial` trains one trial (`tuner.train.trial.train_trial`) and records it;
`run_search` checks a resume against `run.json` and runs the oracle `make_oracle` gives, whose first
trial is the space's defaults; `tuner.serve.bundle.export_best` exports a trial.

Error semantics live here: a `TrialError` (or any unexpected error inside a trial) fails that trial
with a one-line reason and the search goes on; a `TunerError` inside a trial is a configuration
problem that every trial would hit, so it stops the search.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from tuner.config import CONFIG_FILE, SearchConfig, config_to_json
from tuner.data.pixels import SearchData, prepare_data
from tuner.engine.effort import contender
from tuner.engine.oracles import make_oracle
from tuner.engine.spaces import Space, validate_unfreeze
from tuner.errors import ConfigError, TrialError, TunerError
from tuner.frozen.activations import Overhead
from tuner.frozen.features import Features, describe_training, image_sizes
from tuner.frozen.features import stochastic_layers as stochastic_layers  # re-exported
from tuner.hp import BACKBONE, TrialValues
from tuner.models.network import (
    BACKBONE_NAME,
    HEAD_NAME,
    Pieces,
    build_classifier,
    build_head,
    compile_model,
)
from tuner.models.registry import get_backbone
from tuner.project.layout import (
    CHECKPOINT_FILE,
    RUN_FILE,
    TrialSummary,
    atomic_write_text,
    changed_settings,
    first_line,
    last_failure,
    read_run,
    run_settings,
)
from tuner.project.tblogs import LOGS_DIR, TrialLog, write_experiment
from tuner.project.trials import load_leaderboard
from tuner.runtime import heap
from tuner.train.reuse import TrainingModels
from tuner.train.trial import train_trial, trial_seed
from tuner.ui.display import SearchDisplay


@dataclass
class Workbench:
    """What every trial of one search shares, made once per process by `prepare`."""

    config: SearchConfig
    space: Space
    data: SearchData  # the images, decoded
    features: Features  # the frozen backbones, their cached activations and the linear head
    display: SearchDisplay
    overhead: Overhead  # seconds outside training, for benchmarks
    # Compiled training models, one per graph, reused by every trial (docs/design.md §2).
    models: TrainingModels = field(default_factory=TrainingModels)


def prepare(config: SearchConfig, space: Space, display: SearchDisplay | None = None) -> Workbench:
    """Scans, decodes and splits the data, and sets up the `Workbench` every trial shares.

    Everything the user can get wrong in the data or the space is found before any file is
    written.
    """
    heap.limit_arenas()  # resident memory stays flat over many trials (tuner.runtime.heap)
    display = display or SearchDisplay(verbose=config.verbose)
    display.set_objective(config.objective, config.direction)
    overhead = Overhead()
    sizes = image_sizes(config)  # resolved once; everything below reads these
    data = prepare_data(config, sizes[config.backbones[0]], display)
    features = Features(
        config,
        data,
        image_sizes=sizes,
        max_unfreeze_blocks=space.max_unfreeze_blocks(),
        display=display,
        overhead=overhead,
    )
    for name in config.backbones:
        validate_unfreeze(space, features.count_blocks(name), name)
    for line in describe_training(config, features):
        display.message(line)
    return Workbench(config, space, data, features, display, overhead)


class TransferHyperModel(kt.HyperModel):
    """Backbone + head, with the hyperparameters of both phases.

    Hyperparameters: `head/units`, `head/dropout`, `head/learning_rate`,
    `finetune/unfreeze_blocks`, `finetune/learning_rate`, and `backbone` when several are searched.

    Args:
        config: the search configuration.
        space: the search space.
        features: builds backbones and gives the feature statistics heads standardize with.
        n_classes: how many classes the model predicts.
    """

    def __init__(
        self, config: SearchConfig, space: Space, features: Features, n_classes: int
    ) -> None:
        super().__init__(name="transfer")
        self.config = config
        self.space = space
        self.features = features
        self.n_classes = n_classes

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the space (and `backbone` when several are searched) on `hp`."""
        if len(self.config.backbones) > 1:
            hp.Choice(BACKBONE, list(self.config.backbones))
        self.space.declare(hp)

    def values(self, hp: kt.HyperParameters) -> TrialValues:
        """The typed view of a trial's hyperparameters."""
        return TrialValues.of(hp.values, self.config.backbones[0])

    def build(
        self, hp: kt.HyperParameters, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `hp`, compiled for phase 1 (see `build_for`)."""
        self.declare_hyperparameters(hp)
        return self.build_for(self.values(hp), seed, augment=augment)

    def build_for(
        self, values: TrialValues, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `values`: pretrained backbone, untrained head (initialised from
        `seed`, standardizing with the training set's feature statistics), compiled for phase 1.

        Args:
            values: the trial's hyperparameters.
            seed: the head's initialisation seed. Defaults to `--seed`.
            augment: put the augmentation layers in front (they act only in training). Defaults
                to `--augment`; models that are served or evaluated are built without them,
                since a direct call `model(x)` would run them.
        """
        name = values.backbone
        spec = get_backbone(name)
        backbone = self.features.build_backbone(name)
        backbone.trainable = False
        head = build_head(
            int(backbone.output.shape[-1]),
            units=values.units,
            dropout=values.dropout,
            n_classes=self.n_classes,
            seed=self.config.seed if seed is None else seed,
            stats=self.features.feature_stats(name),
        )
        augment = self.config.augment if augment is None else augment
        model = build_classifier(
            backbone,
            head,
            image_size=self.features.image_sizes[name],
            preprocessing=spec.preprocessing,
            augment_seed=self.config.seed if augment else None,
        )
        compile_model(model, values.head_lr, self.n_classes)
        return model


class _OutOfTime(Exception):
    """Raised between trials when `--time-budget` is spent; ends the search loop."""


class TransferTuner(kt.Tuner):
    """A KerasTuner `Tuner` whose trials run both transfer-learning phases.

    Works with any oracle. With Hyperband (whose plain-Tuner trials carry `tuner/epochs`,
    `tuner/initial_epoch` and `tuner/trial_id`), the budget runs over phase-2 epochs with the
    phase boundary at absolute epoch `epochs_head`, and a continuation starts from its
    predecessor's checkpoint.

    Args:
        oracle: the KerasTuner oracle (`make_oracle`).
        bench: what every trial shares (`prepare`).
        deadline: `time.monotonic()` after which no trial starts; None: no limit.
    """

    def __init__(
        self,
        oracle: kt.Oracle,
        bench: Workbench,
        *,
        deadline: float | None = None,
        on_trial_end: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.config = bench.config
        self.data = bench.data
        self.features = bench.features
        self.display = bench.display
        self.overhead = bench.overhead
        self.models = bench.models
        self.deadline = deadline
        self._on_trial_end = on_trial_end
        self._trial_seconds: list[float] = []  # wall time of each trial this process ran
        self._trial_started = 0.0
        self.out_of_time = False
        self.trial_number = 0
        self.consecutive_failures = 0
        super().__init__(
            oracle=oracle,
            hypermodel=TransferHyperModel(
                bench.config, bench.space, bench.features, bench.data.n_classes
            ),
            directory=str(bench.config.project_dir),
            project_name=bench.config.trials_dir.name,
            overwrite=bench.config.overwrite,
            **kwargs,
        )
        self.chief_stats: Any = None
        if bench.config.role == "worker":
            from tuner.cluster import service as cluster

            # KerasTuner has swapped the oracle for its gRPC client (docs/design.md §7).
            self.oracle = cluster.WorkerOracle(
                self.oracle,
                str(bench.config.worker_id),
                heartbeat=max(1.0, bench.config.worker_timeout / 4),
            )

    # KerasTuner would build the whole model (several times for conditional spaces) just to learn
    # the space; ours is declared from data, so building is skipped (docs/design.md §3).
    def _populate_initial_space(self) -> None:
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def pre_create_trial(self) -> None:
        # A trial that starts is allowed to finish, so one is started only when a trial of the
        # mean length so far still fits before the deadline.
        """Stops the search before a new trial once the time budget is spent."""
        if self.deadline is not None:
            if time.monotonic() + self._mean_trial_seconds() >= self.deadline:
                raise _OutOfTime

    def _mean_trial_seconds(self) -> float:
        seconds = self._trial_seconds
        return sum(seconds) / len(seconds) if seconds else 0.0

    def search(self, *args: Any, **kwargs: Any) -> None:
        """KerasTuner's search, stopped before a new trial once the time budget is spent.

        The check runs before the oracle creates a trial, so no trial is left RUNNING and a rerun
        resumes the search where it stopped. The chief of a distributed search serves its oracle
        instead (`tuner.cluster.service.serve`), until every trial has ended.
        """
        if self.config.role == "chief":
            from tuner.cluster import service as cluster

            host, port = cluster.parse_address(str(self.config.oracle_address), "--chief")
            self.save()
            self.chief_stats = cluster.serve(
                self.oracle,
                host,
                port,
                worker_timeout=self.config.worker_timeout,
                say=self.display.message,
            )
            return
        try:
            super().search(*args, **kwargs)
        except _OutOfTime:
            self.out_of_time = True
            self.on_search_end()
        finally:
            close = getattr(self.oracle, "close", None)
            if callable(close):  # a worker's heartbeat
                close()

    def checkpoint_path(self, trial_id: str) -> Path:
        """Where a trial's checkpoint is."""
        return Path(self.get_trial_dir(trial_id)) / CHECKPOINT_FILE

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        """Starts the trial's clock and counts it over the whole project."""
        self._trial_started = time.monotonic()
        super().on_trial_begin(trial)
        # Counted over the whole project, so a resumed search goes on from where it stopped.
        trials = getattr(self.oracle, "trials", None)
        self.trial_number = len(trials) if trials else self.trial_number + 1

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        # The oracle saves the trial and its own state first, so a search stopped here stays
        # resumable. KerasTuner's own limit raises before saving (docs/design.md §3) and counts
        # failures of earlier runs too, so a resumed search would stop again at once: the limit
        # is counted here instead, over this process's trials.
        """Records the trial's time, hands the memory it freed back to the system, and stops the
        search after too many failures in a row."""
        super().on_trial_end(trial)
        heap.trim()  # what the trial freed leaves the resident set (tuner.runtime.heap)
        self._trial_seconds.append(time.monotonic() - self._trial_started)
        if self._on_trial_end is not None:
            self._on_trial_end(trial.trial_id)
        if trial.status == kt.engine.trial.TrialStatus.FAILED:
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        limit = self.config.max_consecutive_failures
        if self.consecutive_failures >= limit:
            raise TunerError(
                f"The search stopped after {limit} consecutive failed trials; the last one said: "
                f"{last_failure(self, trial)}. Finished trials are kept; fix the cause and rerun "
                "the same command to resume."
            )

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict:
        """Trains one trial and writes its summary; maps errors to KerasTuner's."""
        config = self.config
        summary = TrialSummary(trial.trial_id, augment=config.augment, cache=config.cache)
        started = time.perf_counter()
        # Hyperband sizes its brackets from the epoch budget, not from max_trials; a worker does
        # not know how many trials the others ran.
        worker = config.role == "worker"
        total = None if config.oracle == "hyperband" or worker else config.max_trials
        self.display.trial_begin(
            trial.trial_id,
            None if worker else self.trial_number,
            total,
            trial.hyperparameters.values,
        )
        log: TrialLog | None = None
        try:
            log = TrialLog(
                config.project_dir / LOGS_DIR,
                trial.trial_id,
                trial.hyperparameters.values,
                config.objective,
            )
            metrics = self._run(trial, summary, log)
        except TrialError as error:
            summary.reason = str(error)
            raise kt.errors.FailedTrialError(summary.reason) from error
        except TunerError as error:
            summary.reason = str(error)
            raise kt.errors.FatalError(str(error)) from error
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            summary.reason = f"out of memory: {first_line(error)}; a smaller --batch-size may help"
            raise kt.errors.FailedTrialError(summary.reason) from error
        except (kt.errors.FatalError, kt.errors.FailedTrialError):
            raise
        except Exception as error:
            summary.reason = f"{type(error).__name__}: {first_line(error)}"
            raise kt.errors.FailedTrialError(summary.reason) from error
        finally:
            if log is not None:
                log.close(summary.best, summary.best_epoch)
            summary.seconds = round(time.perf_counter() - started, 3)
            try:
                summary.write(Path(self.get_trial_dir(trial.trial_id)))
            except OSError as error:  # a full disk must not hide the trial's own outcome
                self.display.warning(f"could not write the trial summary: {error}")
            self.display.trial_end(
                trial.trial_id,
                "failed" if summary.reason else "done",
                (summary.best or {}).get(config.objective),
                config.objective,
                summary.reason,
            )
        return metrics

    def _run(
        self, trial: kt.engine.trial.Trial, summary: TrialSummary, log: TrialLog
    ) -> dict[str, float]:
        config = self.config
        values = self.hypermodel.values(trial.hyperparameters)
        return train_trial(
            values,
            summary,
            seed=trial_seed(self.config.seed, trial.trial_id),
            checkpoint=self.checkpoint_path(trial.trial_id),
            predecessor_checkpoint=self.checkpoint_path(values.predecessor)
            if values.predecessor
            else None,
            config=self.config,
            features=self.features,
            data=self.data,
            display=self.display,
            overhead=self.overhead,
            models=self.models,
            build_model=self.hypermodel.build_for,
            # The trials on disk, not the oracle's: a worker's oracle is a client without them.
            contender=contender(
                [
                    path
                    for path in sorted(config.trials_dir.glob("trial_*"))
                    if path.name != f"trial_{trial.trial_id}"
                ],
                config,
            ),
            epoch_log=log.epoch,
        )

    def load_model(self, trial: kt.engine.trial.Trial) -> keras.Model:
        """The trial's full model, without augmentation layers: rebuilt, then its trained pieces
        loaded from the checkpoint."""
        model = self.hypermodel.build(trial.hyperparameters, augment=False)
        pieces = Pieces.load(self.checkpoint_path(trial.trial_id))
        pieces.apply(model.get_layer(HEAD_NAME), model.get_layer(BACKBONE_NAME))
        return model

    def save_model(self, trial_id: str, model: keras.Model, step: int = 0) -> None:
        # Checkpoints are written by train_trial from the best epoch (see recorder.Recorder).
        """Does nothing: checkpoints are written from the best epoch by `train_trial`."""
        return None


def run_search(
    bench: Workbench,
    *,
    debug: bool = False,
    started: float | None = None,
    on_trial_end: Callable[[str], None] | None = None,
) -> TransferTuner:
    """Runs the search on a prepared `Workbench`; returns the `TransferTuner`.

    A project that holds a search with other settings (`tuner.project.layout.RESUME_SETTINGS`) is refused
    with a message naming the difference, before anything is written.

    Args:
        bench: what every trial shares (`prepare`).
        debug: let KerasTuner print the traceback of every failed trial. Defaults to `False`: a
            failed trial shows its one-line reason, and its traceback stays in its trial.json.
        started: `time.monotonic()` when the command started, from which `--time-budget` counts.
            Defaults to now.
        on_trial_end: called with each trial's id once the trial has ended (after KerasTuner's
            own end-of-trial work and `heap.trim()`). Defaults to `None`.

    Raises:
        TunerError: the search cannot go on; finished trials are kept.
    """
    from keras_tuner.src import config as kt_config

    # KerasTuner 1.4.8 ships with DEBUG = True, which prints a full traceback on stderr for every
    # failed trial; there is no public switch.
    kt_config.DEBUG = debug
    config = bench.config
    settings = run_settings(
        config,
        space=bench.space,
        class_names=bench.data.class_names,
        image_sizes=bench.features.image_sizes,
        weights={name: bench.features.weights(name).origin for name in config.backbones},
    )
    from tuner.cluster import service as cluster
    from tuner.cluster import sharing

    sharing.check_role(config, settings, bench.display.message)
    if config.role != "worker":  # the chief owns run.json: a worker only reads it
        if not config.overwrite and any(config.trials_dir.glob("trial_*")):
            previous = read_run(config.project_dir)
            changes = changed_settings(previous or {}, settings)
            if changes:
                raise ConfigError(
                    f"{config.project_dir} holds a search with other settings: "
                    f"{'; '.join(changes)}. Pass --overwrite to start over, or --project-dir "
                    "DIR to keep both searches."
                )
        atomic_write_text(config.project_dir / RUN_FILE, json.dumps(settings, indent=2))
        atomic_write_text(config.project_dir / CONFIG_FILE, config_to_json(config))
    if config.role == "single":
        cluster.clear_environment()
    else:
        sharing.check_locks(config.project_dir)
        host, port = cluster.parse_address(str(config.oracle_address), f"--{config.role}")
        cluster.set_environment(config.role, host, port, config.worker_id)
    with (
        sharing.worker_presence(config.project_dir, str(config.worker_id))
        if config.role == "worker"
        else contextlib.nullcontext()
    ):
        return _search(bench, config, started, on_trial_end)


def _search(
    bench: Workbench,
    config: SearchConfig,
    started: float | None,
    on_trial_end: Callable[[str], None] | None = None,
) -> TransferTuner:
    deadline = None
    if config.time_budget is not None:
        deadline = (time.monotonic() if started is None else started) + config.time_budget
    # KerasTuner prints "Reloading Tuner from ..." on a resume: shown through the display.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tuner = TransferTuner(
            make_oracle(config), bench, deadline=deadline, on_trial_end=on_trial_end
        )
    for line in printed.getvalue().splitlines():
        if line.strip():
            bench.display.message(line.strip())
    if config.role != "worker":
        write_experiment(
            config.project_dir / LOGS_DIR, tuner.oracle.get_space().space, config.objective
        )
        # KerasTuner's own printing (and its notebook display, which clears the cell) stays off:
        # the display shows the search.
        tuner.oracle.verbose = 0
    note = None
    if config.role == "chief":
        total, done = None, 0
        note = f"chief: waiting for workers to run {config.max_trials} trials"
    elif config.role == "worker":
        total, done = None, 0  # the chief shares the trials out
        note = f"worker {config.worker_id}: running trials for the chief at {config.oracle_address}"
    else:
        done = sum(1 for t in tuner.oracle.trials.values() if t.status != "RUNNING")
        total = None if config.oracle == "hyperband" else config.max_trials
    bench.display.search_begin(total, done, note=note)
    try:
        tuner.search(verbose=0)
    except kt.errors.FatalError as error:
        cause = error.__cause__
        if isinstance(cause, TunerError):
            raise cause from error
        raise TunerError(
            f"The search stopped: {first_line(error)}. Finished trials are "
            "kept; fix the cause and rerun the same command to resume."
        ) from error
    finally:
        bench.display.search_end()
    if tuner.out_of_time:
        bench.display.message(
            f"time budget of {config.time_budget:g}s spent: no further trial started; rerun the "
            "same command (with a larger --time-budget) to continue the search"
        )
    return tuner


def completed_trials(tuner: TransferTuner) -> list[kt.engine.trial.Trial]:
    """Completed trials, best first, in the leaderboard's order (ties on the objective broken as
    the leaderboard breaks them), so the exported model is the leaderboard's first row.

    `get_best_trials` pads with unfinished trials (docs/design.md §3): only completed ones count.
    """
    trials = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
    done = {t.trial_id: t for t in trials if t.status == kt.engine.trial.TrialStatus.COMPLETED}
    board = load_leaderboard(tuner.config.project_dir)
    ranked = [done[row.trial_id] for row in board.rows if row.trial_id in done]
    return ranked + [t for t in done.values() if t not in ranked]
