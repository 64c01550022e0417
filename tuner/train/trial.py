"""One trial's training: phase 1 (a new head on the frozen backbone), then phase 2 (the top blocks
unfrozen at a low learning rate), on cached activations or on the full model.

`train_trial` runs both phases and keeps the best epoch of either, by the objective with ties to
`tuner.config.TIEBREAK` (`Recorder`); its checkpoint is what the leaderboard scores and the export
serves. Every epoch is scored on the validation set by our own `Validation` pass
(`tuner.metrics.scores`), early stopping follows the same rule as the best epoch (`EarlyStop`),
and every fit weighs each training image's loss by its class weight (`--class-weight`). The
cached path (the default) trains phase 1 on pooled features and phase 2 on the
activations cached at the block boundary, so nothing frozen is recomputed (docs/design.md §1);
`--no-cache` trains the whole model every epoch (`_FullPlan`). Both draw the same batches from the
same seeds, which makes them comparable step by step.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tuner.config import SearchConfig
from tuner.errors import TunerError
from tuner.frozen.activations import BackboneSession
from tuner.hp import TrialValues
from tuner.metrics import score_interval
from tuner.metrics import scores as score_predictions
from tuner.models import cuts
from tuner.models.network import BACKBONE_NAME, HEAD_NAME, Pieces, build_head, compile_model
from tuner.models.registry import get_backbone
from tuner.project.layout import PhaseSummary, TrialSummary
from tuner.train.context import TrialContext
from tuner.train.recorder import BatchProgress, EarlyStop, EpochReport, Recorder, Validation
from tuner.train.reuse import TrialDropout, build_variables


def trial_seed(seed: int, trial_id: str) -> int:
    """The seed of one trial, drawn from `--seed` and the trial's id."""
    digest = hashlib.sha256(f"{seed}/{trial_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def labels_for(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices as the loss wants them: a float column for two classes, else int32."""
    labels = np.asarray(labels)
    if n_classes == 2:
        return labels.astype("float32").reshape(-1, 1)
    return labels.astype("int32")


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    views: int = 1,
    view_seed: int = 0,
    sample_weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of `x` and `y`, gathered by index so `x` may be a memory map or on disk.

    Batches keep `x`'s dtype (float16 activations, uint8 pixels): the model widens them to
    float32 inside its traced step, on the device, instead of the host doing it per batch.

    With `views > 1`, `x` holds `views` blocks of `len(y)` rows (view-major) and every sample draws
    one view each time it is served. The same seeds give the same batches on the cached and the
    full-model path, which is what makes the two comparable (and testable) step by step.

    With `sample_weights` (one per label), batches are (x, y, weight): Keras weighs each row's
    loss by it. Class weights travel this way rather than through `fit(class_weight=...)`, which
    some dataset paths drop silently.
    """
    n = len(y)
    if len(x) != n * views:
        raise ValueError(
            f"Expected {n * views} rows of x for {n} labels and {views} views; received {len(x)}."
        )
    rng = np.random.default_rng(view_seed)
    sample_shape = tuple(x.shape[1:])
    dtype = np.dtype(x.dtype)
    y_shape = tuple(y.shape[1:])

    weights = None if sample_weights is None else np.asarray(sample_weights, "float32")
    if weights is not None and len(weights) != n:
        raise ValueError(f"Expected {n} sample weights for {n} labels; received {len(weights)}.")

    def gather(index: np.ndarray) -> tuple[np.ndarray, ...]:
        rows = index if views == 1 else rng.integers(0, views, len(index)) * n + index
        # Memory maps read fastest in file order; restore the batch order afterwards.
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(rows),) + sample_shape, dtype=dtype)
        batch[order] = x[rows[order]]
        if weights is None:
            return batch, y[index]
        return batch, y[index], weights[index]

    indices = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        indices = indices.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(index: tf.Tensor) -> tuple[tf.Tensor, ...]:
        types = [tf.as_dtype(dtype), tf.as_dtype(y.dtype)]
        if weights is not None:
            types.append(tf.float32)
        out = tf.numpy_function(gather, [index], types, stateful=True)
        out[0].set_shape((None,) + sample_shape)
        out[1].set_shape((None,) + y_shape)
        if weights is None:
            return out[0], out[1]
        out[2].set_shape((None,))
        return out[0], out[1], out[2]

    return indices.batch(batch_size).map(load).prefetch(2)


class _Plan:
    """How one trial trains: on cached activations, or on the full model.

    A subclass says which model each phase trains and on which data (`_phase`); fitting, the
    linear head and evaluation are shared.
    """

    head: keras.Model  # set by each subclass

    def __init__(self, values: TrialValues, context: TrialContext) -> None:
        self.values = values
        self.context = context

    def _phase(self, phase: int, seed: int) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
        """The compiled model that `phase` trains, and its train and val batches."""
        raise NotImplementedError

    def capture(self) -> Pieces:
        """The trained pieces as they stand."""
        raise NotImplementedError

    def restore(self, pieces: Pieces) -> None:
        """Puts `pieces` back on the models."""
        raise NotImplementedError

    def load(self, pieces: Pieces) -> None:
        """Continues from a predecessor's checkpoint (Hyperband)."""
        raise NotImplementedError

    def fit(
        self, phase: int, initial: int, epochs: int, recorder: Recorder, seed: int
    ) -> PhaseSummary:
        """Train `phase` from epoch `initial` up to `epochs` (absolute epoch numbers)."""
        if epochs <= initial:
            return PhaseSummary()
        model, train, val = self._phase(phase, seed)
        validation = self._validation(val, recorder)
        if phase == 1 and self.values.units == 0:
            return self._fit_linear(model, train, validation, epochs - 1, recorder)
        start = time.perf_counter()
        build_variables(model, train.element_spec)  # one trace of the step, not two
        history = model.fit(
            train,
            # No validation_data: `Validation` scores every epoch itself, in one pass.
            initial_epoch=initial,
            epochs=epochs,
            callbacks=self._callbacks(validation, recorder),
            shuffle=False,  # the dataset shuffles itself, seeded (see make_dataset)
            verbose=0 if self.context.config.verbose < 2 else 2,
        )
        return PhaseSummary(epochs=len(history.epoch), seconds=time.perf_counter() - start)

    def _fit_linear(
        self,
        model: keras.Model,
        train: tf.data.Dataset,
        validation: Validation,
        epoch: int,
        recorder: Recorder,
    ) -> PhaseSummary:
        """Phase 1 of a linear head (`head/units = 0`): set it to the logistic regression fitted
        on the standardized features (LP-FT's first step), then score it as one epoch: the
        training loss and accuracy as Keras evaluates them (class-weighted, as `fit` reports
        them), the validation metrics from one `Validation` pass."""
        start = time.perf_counter()
        recorder.on_epoch_begin(epoch)
        linear = self.context.features.linear_head(self.values.backbone)
        self.head.get_layer("head_output").set_weights([linear.kernel, linear.bias])
        logs = _evaluate(model, train)
        logs.update(validation.measure(model))
        recorder.on_epoch_end(epoch, logs)
        return PhaseSummary(epochs=1, seconds=time.perf_counter() - start)

    def evaluate(self, recorder: Recorder) -> dict[str, float]:
        """Score the model as it stands on the validation set (a Hyperband continuation that
        has nothing left to train); its predictions go to `recorder.predictions`."""
        model, _, val = self._phase(0, 0)
        return self._validation(val, recorder).measure(model)

    def _validation(self, val: tf.data.Dataset, recorder: Recorder) -> Validation:
        data = self.context.data
        labels = data.labels("val")
        weights = self.context.sample_weights(labels)  # None unless the classes are weighed
        return Validation(val, labels, data.n_classes, recorder, weights)

    def _callbacks(
        self, validation: Validation, recorder: Recorder
    ) -> list[keras.callbacks.Callback]:
        # In this order: Keras hands one logs dict to each callback in turn (docs/design.md §2),
        # so early stopping and the recorder see the validation metrics `validation` writes.
        callbacks: list[keras.callbacks.Callback] = [validation]
        config = self.context.config
        if config.patience:
            # A fresh one per phase: its state must not leak from phase 1 into phase 2.
            callbacks.append(EarlyStop(config.objective, config.direction, config.patience))
        callbacks.append(recorder)
        if recorder.on_batch is not None:
            callbacks.append(BatchProgress(recorder.on_batch))
        return callbacks

    def _dataset(self, x: np.ndarray, which: str, seed: int, phase: int, views: int = 1):
        """Batches of split `which`; the training split's rows carry their class weights
        (`SearchContext.sample_weights`, None without --class-weight), one per image whatever
        the views, so every fit of the trial weighs the classes alike."""
        config, data = self.context.config, self.context.data
        labels = data.labels(which)
        y = labels_for(labels, data.n_classes)
        train = which == "train"
        shuffle = seed + phase if (train and config.shuffle) else None
        return make_dataset(
            x,
            y,
            config.batch_size,
            shuffle_seed=shuffle,
            views=views,
            view_seed=seed + 7 * phase,
            sample_weights=self.context.sample_weights(labels) if train else None,
        )


def _evaluate(model: keras.Model, batches: tf.data.Dataset) -> dict[str, float]:
    return {k: float(v) for k, v in model.evaluate(batches, verbose=0, return_dict=True).items()}


class _CachedPlan(_Plan):
    """Phase 1 on pooled features, phase 2 on activations cached at the block boundary.

    Its models come compiled from the context's `models`, one per graph, with this trial's starting
    state (`tuner.train.reuse`): steady state neither rebuilds nor retraces.
    """

    def __init__(self, values: TrialValues, seed: int, context: TrialContext) -> None:
        super().__init__(values, context)
        features, data, models = context.features, context.data, context.models
        self.session: BackboneSession = features.session(values.backbone)
        k = values.unfreeze_blocks
        self.cut = self.session.cut(k) if k > 0 else None
        fresh = build_head(
            self.session.n_features,
            units=values.units,
            dropout=values.dropout,
            n_classes=data.n_classes,
            seed=seed,
            stats=features.feature_stats(values.backbone),
            dropout_layer=TrialDropout,
        )
        self._key = (values.backbone, values.units, data.n_classes)
        self.head = models.head(
            self._key, fresh, learning_rate=values.head_lr, n_classes=data.n_classes
        )
        self._model2: keras.Model | None = None
        if self.cut is not None:
            self.session.restore_pretrained(self.cut)

    def capture(self) -> Pieces:
        if self._model2 is None:
            return Pieces.capture(self.head, None, None)
        return Pieces.capture(self.head, self.session.model, self.cut)

    def restore(self, pieces: Pieces) -> None:
        pieces.apply(self.head, self.session.model)

    def load(self, pieces: Pieces) -> None:
        """Continue from a predecessor's checkpoint (Hyperband): it trained the same cut."""
        self.restore(pieces)
        if pieces.cut is not None:
            self._model2 = self._finetune_model()

    def _views(self) -> int:
        return self.context.config.augment_views if self.context.config.augment else 1

    def _finetune_model(self) -> keras.Model:
        cut = self.cut
        assert cut is not None
        cuts.freeze_for_finetune(self.session.model, cut)
        return self.context.models.compiled_model(
            self._key + (cut,),
            lambda: _TopAndHead(self.session.split(cut)[1], self.head),
            learning_rate=self.values.finetune_lr,
            n_classes=self.context.data.n_classes,
        )

    def _phase(self, phase: int, seed: int):
        session = self.session
        if phase == 1 or (phase == 0 and self._model2 is None):
            model, cut = self.head, session.last
        else:
            assert self.cut is not None
            cut = self.cut
            if self._model2 is None or phase == 2:
                self._model2 = self._finetune_model()
            model = self._model2
        views = self._views() if phase else 1
        train = self._dataset(session.features("train", cut), "train", seed, phase, views)
        val = self._dataset(session.features("val", cut), "val", seed, phase)
        return model, train, val


class _TopAndHead(keras.Model):
    """The backbone's top blocks, then the head: what phase 2 trains on cached activations.

    A subclassed model on purpose. A functional `keras.Model(inputs, head(top(inputs)))` calls the
    shared top symbolically, which records a node on it that points at the head: every trial's
    head, with its compiled functions and optimizer slots, would stay reachable from the backbone
    for the rest of the search (`tests/train/test_reuse.py::
    test_no_earlier_trial_s_head_stays_reachable`).
    """

    def __init__(self, top: keras.Model, head: keras.Model) -> None:
        super().__init__(name="finetune")
        self.top = top
        self.head = head

    def call(self, inputs, training=None):
        return self.head(self.top(inputs, training=training), training=training)


class _FullPlan(_Plan):
    """The no-cache path: every epoch runs the whole network, frozen parts included.

    Args:
        model: the trial's full classifier (`TrialContext.build_model`).
    """

    def __init__(self, values: TrialValues, model: keras.Model, context: TrialContext) -> None:
        super().__init__(values, context)
        self.model = model
        self.backbone = self.model.get_layer(BACKBONE_NAME)
        self.head = self.model.get_layer(HEAD_NAME)
        self.size = context.features.image_sizes[values.backbone]
        self.pattern = get_backbone(values.backbone).block_pattern
        self.cut: int | None = None

    def capture(self) -> Pieces:
        return Pieces.capture(self.head, self.backbone, self.cut)

    def restore(self, pieces: Pieces) -> None:
        pieces.apply(self.head, self.backbone)

    def load(self, pieces: Pieces) -> None:
        """Continue from a predecessor's checkpoint (Hyperband)."""
        self.restore(pieces)
        self.cut = pieces.cut

    def _phase(self, phase: int, seed: int):
        n_classes = self.context.data.n_classes
        if phase == 1:
            self.backbone.trainable = False
            compile_model(self.model, self.values.head_lr, n_classes)
        elif phase == 2:
            self.cut = cuts.unfreeze_cut(self.backbone, self.pattern, self.values.unfreeze_blocks)
            cuts.freeze_for_finetune(self.backbone, self.cut)
            compile_model(self.model, self.values.finetune_lr, n_classes)
        elif not self.model.compiled:
            compile_model(self.model, self.values.head_lr, n_classes)
        train = self._dataset(
            self.context.data.pixels("train", self.size), "train", seed, max(phase, 1)
        )
        val = self._dataset(self.context.data.pixels("val", self.size), "val", seed, max(phase, 1))
        return self.model, train, val


def train_trial(
    context: TrialContext,
    values: TrialValues,
    summary: TrialSummary,
    *,
    seed: int,
    checkpoint: Path,
    predecessor_checkpoint: Path | None = None,
    contender: Callable[[dict[str, float]], str | None] | None = None,
    epoch_log: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Trains one trial's phases, writes the checkpoint of its best epoch, fills in `summary`,
    and returns the logs of that epoch.

    Args:
        context: what every trial of the search shares.
        values: the trial's hyperparameters.
        summary: the trial's summary, filled in here.
        seed: the trial's seed (`trial_seed`).
        checkpoint: where the best epoch's pieces go.
        predecessor_checkpoint: a Hyperband round's predecessor's checkpoint, to continue from.
            Defaults to none: the trial starts afresh.
        contender: given the best phase-1 epoch's logs, why phase 2 is skipped, or None to run
            it (`tuner.engine.effort`). Defaults to none: phase 2 always runs.
        epoch_log: called after every epoch with (phase, epoch counted from 1 across both
            phases, logs): the TensorBoard logs (`tuner.project.tblogs`). Defaults to none.

    Raises:
        TrialError: the trial failed (diverged, for example); the search goes on.
        TunerError: a problem every trial would hit; the search stops.
    """
    config, display = context.config, context.display
    summary.backbone = values.backbone
    head_epochs, done, target = _epochs(config, values)
    keras.utils.set_random_seed(seed)
    plan = _make_plan(context, values, seed)
    continued = predecessor_checkpoint is not None
    if predecessor_checkpoint is not None:
        plan.load(Pieces.load(predecessor_checkpoint))
    # A trial whose phase 2 is skipped runs no phase-2 epoch, so the target it was planned with
    # is the last epoch every phase-2 epoch shows.
    report = EpochReport(display, epoch_log, {1: head_epochs, 2: target})
    recorder = Recorder(
        config.objective,
        config.direction,
        plan.capture,
        report,
        display.batch if display.wants_batches else None,
    )
    phase1 = PhaseSummary()
    phase2: PhaseSummary | None = None
    if not continued:
        recorder.phase = 1
        phase1 = plan.fit(1, 0, head_epochs, recorder, seed)
        if recorder.best_pieces is not None:
            # Fine-tuning starts from the best head, not the last one.
            plan.restore(recorder.best_pieces)
    if target > head_epochs + done and not continued and contender is not None:
        summary.skipped = contender(recorder.phase_best.get(1, {}))
        if summary.skipped:
            display.message(f"phase 2 skipped: {summary.skipped}")
            target = head_epochs
    if target > head_epochs + done:
        recorder.phase = 2
        phase2 = plan.fit(2, head_epochs + done, target, recorder, seed)
    if recorder.best_logs is None:
        # A Hyperband continuation with nothing left to train: score what it inherited.
        recorder.best_logs = plan.evaluate(recorder)
        recorder.best_pieces = plan.capture()
        recorder.best_predictions = recorder.predictions
    assert recorder.best_pieces is not None
    with context.overhead.timed():
        _save_checkpoint(recorder.best_pieces, checkpoint)
    _summarize(summary, recorder, phase1, phase2)
    if recorder.best_predictions is not None:
        summary.per_class, summary.interval = validation_figures(
            config.objective,
            recorder.best_predictions,
            context.data.labels("val"),
            context.data.n_classes,
            seed=seed,
        )
    return dict(recorder.best_logs)


def validation_figures(
    objective: str, probabilities: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int
) -> tuple[dict[str, Any], list[float] | None]:
    """The best epoch's per-class validation figures (`TrialSummary.per_class`: per-class
    recall, the confusion matrix, the image count) and the 95 % interval of `objective` on the
    same predictions (`tuner.metrics.score_interval`, bootstrap drawn from `seed`); no interval
    for a training metric or where it is undefined."""
    figures = score_predictions(probabilities, labels, n_classes)
    per_class = {k: figures[k] for k in ("recall", "confusion", "images")}
    interval = None
    if objective.startswith("val_"):
        bounds = score_interval(objective, probabilities, labels, n_classes, seed=seed)
        if bounds is not None and all(math.isfinite(b) for b in bounds):
            interval = [float(b) for b in bounds]
    return per_class, interval


def _epochs(config: SearchConfig, values: TrialValues) -> tuple[int, int, int]:
    """The last epoch of phase 1, the phase-2 epochs a Hyperband predecessor already ran, and the
    last epoch of phase 2 (epochs are numbered on across phases: phase 2 starts at the first)."""
    head_epochs = config.epochs_head
    finetune_epochs = config.epochs_finetune if values.unfreeze_blocks > 0 else 0
    # Hyperband shares out fine-tuning epochs (`tuner/epochs` counts phase-2 epochs, see
    # tuner.engine.oracles.make_oracle): phase 1 runs whole in a trial's first round, so survivors
    # are chosen on fine-tuned scores.
    budget = finetune_epochs if values.epochs is None else values.epochs
    return head_epochs, values.initial_epoch, head_epochs + min(budget, finetune_epochs)


def _make_plan(context: TrialContext, values: TrialValues, seed: int) -> _Plan:
    """The trial's plan: on cached activations, or (`--no-cache`) on a new full model."""
    if context.config.cache:
        with context.overhead.timed():
            return _CachedPlan(values, seed, context)
    with context.overhead.timed():
        model = context.build_model(values, seed)
    return _FullPlan(values, model, context)


def _save_checkpoint(pieces: Pieces, checkpoint: Path) -> None:
    try:
        pieces.save(checkpoint)
    except OSError as error:
        raise TunerError(
            f"Could not write the checkpoint {checkpoint}: {error.strerror or error}. Free "
            "disk space or pass --project-dir DIR on a writable disk; the search can be "
            "resumed by rerunning the same command."
        ) from error


def _summarize(
    summary: TrialSummary, recorder: Recorder, phase1: PhaseSummary, phase2: PhaseSummary | None
) -> None:
    """Fills in `summary` from what `recorder` kept of both phases."""
    phase1.best = recorder.phase_best.get(1, {})
    phase1.history = recorder.history.get(1, [])
    summary.phase1 = phase1 if phase1.epochs else None
    if phase2 is not None:
        phase2.best = recorder.phase_best.get(2, {})
        phase2.history = recorder.history.get(2, [])
        summary.phase2 = phase2
    summary.epochs_run = phase1.epochs + (phase2.epochs if phase2 else 0)
    summary.best = recorder.best_logs
    summary.best_epoch = recorder.best_epoch
