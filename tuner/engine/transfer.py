"""The search's KerasTuner classes: a HyperModel and a Tuner whose trials run both
transfer-learning phases.

`prepare` makes what the search shares (a `Workbench`: the `tuner.train.context.TrialContext`
every trial reads, with the search space); `TransferHyperModel` declares the space and builds the
full model; `TransferTuner.run_trial` trains one trial (`tuner.train.trial.train_trial`) and
records it; `completed_trials` ranks them as the leaderboard does. The search runs from
`tuner.engine.runner.execute`, and `tuner.serve.bundle.export_trial` exports a trial.

Error semantics live here: a `TrialError` (or any unexpected error inside a trial) fails that trial
with a one-line reason and the search goes on; a `TunerError` inside a trial is a configuration
problem that every trial would hit, so it stops the search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from tuner.config import SearchConfig, resolve_for_data
from tuner.data.pixels import prepare_data
from tuner.engine.effort import contender
from tuner.engine.oracles import RANKING, ranking_score
from tuner.engine.spaces import Space, validate_unfreeze
from tuner.errors import TrialError, TunerError
from tuner.frozen.context import Overhead, SearchContext
from tuner.frozen.features import Features, describe_training, image_sizes
from tuner.hp import BACKBONE, TrialValues
from tuner.models.network import BACKBONE_NAME, HEAD_NAME, Pieces
from tuner.project.layout import CHECKPOINT_FILE, TrialSummary, first_line, last_failure
from tuner.project.tblogs import LOGS_DIR, TrialLog
from tuner.project.trials import read_ranking
from tuner.runtime import heap
from tuner.train.context import TrialContext
from tuner.train.reuse import TrainingModels
from tuner.train.trial import train_trial, trial_seed
from tuner.ui.display import SearchDisplay


@dataclass(frozen=True)
class Workbench(TrialContext):
    """What one search shares, made once per process by `prepare`: the `TrialContext` every
    trial reads, and the search space the hypermodel declares."""

    space: Space


def prepare(config: SearchConfig, space: Space, display: SearchDisplay | None = None) -> Workbench:
    """Scans, decodes and splits the data, and sets up the `Workbench` the search shares.

    Everything the user can get wrong in the data or the space is found before any file is
    written.
    """
    heap.limit_arenas()  # resident memory stays flat over many trials (tuner.runtime.heap)
    display = display or SearchDisplay(verbose=config.verbose)
    overhead = Overhead()
    sizes = image_sizes(config)  # resolved once; everything below reads these
    data = prepare_data(config, sizes[config.backbones[0]], display)
    # `--class-weight auto` and `--objective auto` are decided by the training classes' counts.
    config, notes = resolve_for_data(
        config,
        list(data.train.counts().values()),
        list(data.class_names),
        list(data.val.counts().values()),
    )
    for note in notes:
        display.message(note)
    display.set_objective(config.objective, config.direction)
    features = Features(
        SearchContext(config, data, display, overhead),
        image_sizes=sizes,
        max_unfreeze_blocks=space.max_unfreeze_blocks(),
    )
    for name in config.backbones:
        validate_unfreeze(space, features.count_blocks(name), name)
    for line in describe_training(config, features):
        display.message(line)
    return Workbench(config, data, display, overhead, features, TrainingModels(), space)


class TransferHyperModel(kt.HyperModel):
    """Backbone + head, with the hyperparameters of both phases.

    Hyperparameters: `head/units`, `head/dropout`, `head/learning_rate`,
    `finetune/unfreeze_blocks`, `finetune/learning_rate`, and `backbone` when several are searched.

    Args:
        context: what every trial shares; it builds the models (`TrialContext.build_model`).
        space: the search space.
    """

    def __init__(self, context: TrialContext, space: Space) -> None:
        super().__init__(name="transfer")
        self.context = context
        self.space = space

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the space (and `backbone` when several are searched) on `hp`: a
        hyperparameter that acts only when its parent is above 0 under that condition
        (`Space.declare`), so a trial in which it does nothing neither holds nor searches it."""
        backbones = self.context.config.backbones
        if len(backbones) > 1:
            hp.Choice(BACKBONE, list(backbones))
        self.space.declare(hp)

    def values(self, hp: kt.HyperParameters) -> TrialValues:
        """The typed view of a trial's hyperparameters (an inactive one reads as its default)."""
        return self.context.values(hp)

    def build(
        self, hp: kt.HyperParameters, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `hp`, compiled for phase 1 (`TrialContext.build_model`)."""
        self.declare_hyperparameters(hp)
        return self.build_for(self.values(hp), seed, augment=augment)

    def build_for(
        self, values: TrialValues, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `values` (`TrialContext.build_model`)."""
        return self.context.build_model(values, seed, augment=augment)


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
        bench: what the search shares (`prepare`).
        deadline: `time.monotonic()` after which no trial starts; None: no limit.
        on_trial_end: called with each trial's id once it has ended: after KerasTuner's own
            end-of-trial work (the oracle has saved it) and after the memory it freed went back to
            the system (`tuner.runtime.heap.trim`). Defaults to none.
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
        self.context: TrialContext = bench
        self.deadline = deadline
        self._on_trial_end = on_trial_end
        self._trial_seconds: list[float] = []  # wall time of each trial this process ran
        self._trial_started = 0.0
        self.out_of_time = False
        self.trial_number = 0
        self.consecutive_failures = 0
        config = bench.config
        super().__init__(
            oracle=oracle,
            hypermodel=TransferHyperModel(bench, bench.space),
            directory=str(config.project_dir),
            project_name=config.trials_dir.name,
            overwrite=config.overwrite,
            **kwargs,
        )
        self.chief_stats: Any = None
        if config.role == "worker":
            from tuner.cluster.client import WorkerOracle

            # KerasTuner has swapped the oracle for its gRPC client (docs/design.md §7).
            self.oracle = WorkerOracle(
                self.oracle,
                str(config.worker_id),
                heartbeat=max(1.0, config.worker_timeout / 4),
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
        instead (`tuner.cluster.chief.serve`), until every trial has ended.
        """
        config = self.context.config
        if config.role == "chief":
            from tuner.cluster.address import parse_address
            from tuner.cluster.chief import serve

            host, port = parse_address(str(config.oracle_address), "--chief")
            self.save()
            self.chief_stats = serve(
                self.oracle,
                host,
                port,
                worker_timeout=config.worker_timeout,
                say=self.context.display.message,
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
        """Records the trial's time, hands the memory it freed back to the system, calls the
        end-of-trial hook, and stops the search after too many failures in a row."""
        super().on_trial_end(trial)
        heap.trim()  # what the trial freed leaves the resident set (tuner.runtime.heap)
        self._trial_seconds.append(time.monotonic() - self._trial_started)
        if self._on_trial_end is not None:
            self._on_trial_end(trial.trial_id)
        if trial.status == kt.engine.trial.TrialStatus.FAILED:
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        limit = self.context.config.max_consecutive_failures
        if self.consecutive_failures >= limit:
            raise TunerError(
                f"The search stopped after {limit} consecutive failed trials; the last one said: "
                f"{last_failure(self, trial)}. Finished trials are kept; fix the cause and rerun "
                "the same command to resume."
            )

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict:
        """Trains one trial and writes its summary; maps errors to KerasTuner's.

        Returns the best epoch's metrics, the objective's own value among them, and `RANKING`,
        the oracle's objective: the search objective with its tiebreak folded in
        (`tuner.engine.oracles.ranking_score`).
        """
        config, display = self.context.config, self.context.display
        summary = TrialSummary(trial.trial_id, augment=config.augment, cache=config.cache)
        started = time.perf_counter()
        # Hyperband sizes its brackets from the epoch budget, not from max_trials; a worker does
        # not know how many trials the others ran.
        worker = config.role == "worker"
        total = None if config.oracle == "hyperband" or worker else config.max_trials
        display.trial_begin(
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
            metrics = self._ranked(self._run(trial, summary, log))
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
                display.warning(f"could not write the trial summary: {error}")
            display.trial_end(
                trial.trial_id,
                "failed" if summary.reason else "done",
                (summary.best or {}).get(config.objective),
                config.objective,
                summary.reason,
            )
        return metrics

    def _ranked(self, metrics: dict[str, float]) -> dict[str, float]:
        """`metrics` with `RANKING` added, from the class counts of the set the objective is
        measured on."""
        objective, data = self.context.config.objective, self.context.data
        if objective not in metrics:
            return metrics  # KerasTuner reports the missing objective
        counts = list((data.val if objective.startswith("val_") else data.train).counts().values())
        return {**metrics, RANKING: ranking_score(metrics, objective, counts)}

    def _run(
        self, trial: kt.engine.trial.Trial, summary: TrialSummary, log: TrialLog
    ) -> dict[str, float]:
        config = self.context.config
        values = self.hypermodel.values(trial.hyperparameters)
        return train_trial(
            self.context,
            values,
            summary,
            seed=trial_seed(config.seed, trial.trial_id),
            checkpoint=self.checkpoint_path(trial.trial_id),
            predecessor_checkpoint=self.checkpoint_path(values.predecessor)
            if values.predecessor
            else None,
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


def completed_trials(tuner: TransferTuner) -> list[kt.engine.trial.Trial]:
    """Completed trials in the leaderboard's order (ties on the objective broken as the
    leaderboard breaks them), with the trial `--select` picks first: the best with
    `--select best`, the cheapest trial tied with it with `--select one-se`
    (`tuner.project.rows.Ranking.pick`). The export takes the first, so it is the trial the
    leaderboard marks as exported.

    `get_best_trials` pads with unfinished trials (docs/design.md §3): only completed ones count.
    """
    trials = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
    done = {t.trial_id: t for t in trials if t.status == kt.engine.trial.TrialStatus.COMPLETED}
    config = tuner.context.config
    board = read_ranking(config.project_dir)
    ranked = [done[row.trial_id] for row in board.rows if row.trial_id in done]
    pick = board.pick(config.select)
    if pick is not None and pick.trial_id in done:
        ranked.remove(done[pick.trial_id])
        ranked.insert(0, done[pick.trial_id])
    return ranked + [t for t in done.values() if t not in ranked]
