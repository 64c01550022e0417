"""Compiled training models kept across trials: steady state never rebuilds or retraces.

On the cached path a trial trains a head (phase 1) and the backbone's top blocks with that head
(phase 2). Their graphs depend only on the backbone, the head's width, the number of classes and,
for phase 2, the cut. Everything else a trial sets is state: the initial weights, the dropout rate
and its seed, the learning rate and the optimizer's slots. `TrainingModels` keeps one compiled
model per graph and, for each trial, resets that state to exactly what a fresh build would hold,
so a trial trains the same weights whether its models are new or reused
(`tests/train/test_reuse.py`). Keras traces a compiled model's train and test functions once per
distinct batch shape (docs/design.md §2), so across a whole search each shape is traced once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import keras
import numpy as np
import tensorflow as tf

from tuner.models.network import compile_model


class _Rate:
    """A dropout rate and its scale, in variables kept out of Keras's sight: a layer tracks the
    variables set on it as attributes, and these must not be weights (checkpoints hold weights
    only)."""

    def __init__(self, rate: float) -> None:
        self.rate = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.scale = tf.Variable(1.0, dtype=tf.float32, trainable=False)
        self.set(rate)

    def set(self, rate: float) -> None:
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"A dropout rate must be in [0, 1). Received: rate={rate}")
        self.rate.assign(rate)
        # 1 / (1 - rate) in double, then float32: what TensorFlow computes for a Python rate.
        self.scale.assign(1.0 / (1.0 - rate))


class TrialDropout(keras.layers.Layer):
    """`keras.layers.Dropout` with its rate in a variable, so one traced graph serves every rate.

    It computes what `keras.layers.Dropout(rate, seed=seed)` computes, bit for bit: the same seed
    generator and seed cast, and the arithmetic of `tf.nn.experimental.stateless_dropout` for a
    Python rate (scale first, then a uniform draw compared with the rate). A rate of 0 keeps every
    value and scales by 1, so it returns its input unchanged, as `Dropout` does.
    """

    def __init__(self, rate: float, seed: int, name: str | None = None) -> None:
        super().__init__(name=name)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._rate = _Rate(rate)

    @property
    def rate(self) -> float:
        return float(self._rate.rate.numpy())

    def set_state(self, rate: float, seed_state: np.ndarray) -> None:
        """Sets the rate and the seed generator's state (a fresh layer's, to start a trial)."""
        self._rate.set(rate)
        self.seed_generator.state.assign(seed_state)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        seed = self.seed_generator.next()
        if seed.dtype != tf.int32:
            # What Keras does for every stateless op: int64 state, int32 seeds (XLA).
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        scaled = inputs * tf.cast(self._rate.scale, inputs.dtype)
        draw = tf.random.stateless_uniform(tf.shape(inputs), seed=seed, dtype=inputs.dtype)
        keep = draw >= tf.cast(self._rate.rate, inputs.dtype)
        return tf.where(keep, scaled, tf.zeros((), inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape


def reset_optimizer(model: keras.Model, learning_rate: float) -> None:
    """Puts `model`'s optimizer back where a fresh `compile_model` leaves it: no steps taken, zero
    slots, the given learning rate."""
    optimizer = model.optimizer
    for variable in optimizer.variables:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    optimizer.learning_rate = learning_rate  # assigns the learning-rate variable


class TrainingModels:
    """One compiled model per graph, reused by every trial whose graph it is.

    Args:
        reuse: False builds and compiles fresh models for every trial (what the reuse is
            tested against).
    """

    def __init__(self, reuse: bool = True) -> None:
        self.reuse = reuse
        self._models: dict[Hashable, keras.Model] = {}
        self.compiled = 0  # how many models were compiled (each one traces once per shape)

    def __len__(self) -> int:
        return len(self._models)

    def head(
        self,
        key: Hashable,
        fresh: keras.Model,
        *,
        learning_rate: float,
        n_classes: int,
    ) -> keras.Model:
        """A compiled head for `key` that starts where `fresh` (an uncompiled new head of the same
        graph) starts: its weights, dropout rate and dropout seed."""
        pooled = self._models.get(("head", key)) if self.reuse else None
        if pooled is None:
            compile_model(fresh, learning_rate, n_classes)
            self.compiled += 1
            if self.reuse:
                self._models[("head", key)] = fresh
            return fresh
        pooled.set_weights(fresh.get_weights())
        for mine, theirs in zip(_dropouts(pooled), _dropouts(fresh), strict=True):
            mine.set_state(theirs.rate, theirs.seed_generator.state.numpy())
        reset_optimizer(pooled, learning_rate)
        return pooled

    def compiled_model(
        self,
        key: Hashable,
        build: Callable[[], keras.Model],
        *,
        learning_rate: float,
        n_classes: int,
    ) -> keras.Model:
        """The compiled model for `key` (built by `build` the first time), its optimizer reset to
        a fresh one at `learning_rate`. Its weights are the caller's to set."""
        model = self._models.get(("model", key)) if self.reuse else None
        if model is None:
            model = build()
            compile_model(model, learning_rate, n_classes)
            self.compiled += 1
            if self.reuse:
                self._models[("model", key)] = model
            return model
        reset_optimizer(model, learning_rate)
        return model


def build_variables(model: keras.Model, element_spec: object) -> None:
    """Creates a compiled model's optimizer and metric variables before `fit` traces its step.

    Without a distribution strategy, Keras's TensorFlow trainer defers building them to the first
    trace of the train function (`_maybe_symbolic_build` returns early), so that trace creates
    variables, and `tf.function` then traces the whole step a second time without them
    (`polymorphic_function.py`, `_call`; docs/design.md §2). Building them first, as Keras does
    under a strategy, leaves one trace: measured on a 2,048-feature head, the first epoch's
    overhead over a steady epoch drops by about 0.6 s. The variables start at the same zeros.
    """
    optimizer = getattr(model, "optimizer", None)
    build = getattr(model, "_symbolic_build", None)
    if optimizer is None or optimizer.built or build is None:
        return  # built already (a reused model), or a Keras without it: fit builds them itself
    build(data_batch=element_spec)


def _dropouts(model: keras.Model) -> list[TrialDropout]:
    return [layer for layer in model.layers if isinstance(layer, TrialDropout)]
