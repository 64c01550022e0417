"""Compiled models are reused across trials (`tuner.train.reuse`): the same results as fresh builds,
one trace per graph and batch shape, and nothing kept per trial."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections import Counter

import numpy as np
import pytest

from tests.helpers import space_path


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_trial_dropout_draws_what_keras_dropout_draws(rate):
    """Bit for bit, in a traced function, after its rate and seed were set on a used layer."""
    import keras
    import tensorflow as tf

    from tuner.train.reuse import TrialDropout

    x = np.random.default_rng(0).random((16, 40)).astype("float32")
    reference = keras.layers.Dropout(rate, seed=7)
    reused = TrialDropout(0.4, seed=1)
    step = tf.function(lambda inputs: reused(inputs, training=True))
    step(x)  # traced at another rate and seed
    fresh = TrialDropout(rate, seed=7)
    reused.set_state(fresh.rate, fresh.seed_generator.state.numpy())
    for _ in range(3):
        np.testing.assert_array_equal(step(x), reference(x, training=True))
    np.testing.assert_array_equal(reused(x, training=False), x)


def _count_traces(monkeypatch) -> list[Counter[int]]:
    """Counts the traces of every model's train step into the last counter of the list returned."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    counters: list[Counter[int]] = [Counter()]
    real_step = TensorFlowTrainer.train_step

    def train_step(self, data):
        counters[-1][id(self)] += 1  # the Python body runs once per trace
        return real_step(self, data)

    monkeypatch.setattr(TensorFlowTrainer, "train_step", train_step)
    return counters


def _run(config, prepared, reuse):
    """Runs the search; returns (per-trial best scores, per-trial checkpoint arrays, models)."""
    from tuner.engine.runner import _search
    from tuner.train.reuse import TrainingModels

    bench = dataclasses.replace(prepared(config), models=TrainingModels(reuse=reuse))
    tuner = _search(bench)
    logs, weights = {}, {}
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        assert trial.status == "COMPLETED"
        logs[trial_id] = trial.metrics.get_best_value("val_accuracy")
        with np.load(tuner.checkpoint_path(trial_id)) as saved:
            weights[trial_id] = {k: saved[k] for k in saved.files}
    return logs, weights, bench.models


def test_reused_models_train_what_fresh_ones_train(search_config, prepared, tmp_path, monkeypatch):
    """Four trials that differ in dropout, learning rates and head width (linear included), with
    models reused and with new ones every trial: the same scores and the same trained weights,
    from fewer compiled models, each traced once per batch shape."""
    space = space_path("varied")

    def config(name):
        return search_config(
            space=space, max_trials=4, project_dir=tmp_path / name, cache_dir=tmp_path / "cache"
        )

    counters = _count_traces(monkeypatch)
    logs, weights, models = _run(config("reused"), prepared, True)
    counters.append(Counter())
    fresh_logs, fresh_weights, fresh_models = _run(config("fresh"), prepared, False)
    traces, fresh_traces = counters
    assert logs == fresh_logs
    assert weights.keys() == fresh_weights.keys()
    for trial_id, arrays in weights.items():
        assert arrays.keys() == fresh_weights[trial_id].keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, fresh_weights[trial_id][name], err_msg=name)
    # Heads of two widths, each with its fine-tuning model: at most 4 graphs for 4 trials.
    assert models.compiled <= 4 < fresh_models.compiled == 8
    assert len(models) == models.compiled
    # One trace per compiled model: the datasets' batch dimension is unknown, so a shorter last
    # batch needs none of its own, and the variables exist before the first trace
    # (`build_variables`), so tf.function does not trace the step again without them.
    assert traces and max(traces.values()) == 1
    assert max(fresh_traces.values()) == 1
    assert sum(traces.values()) < sum(fresh_traces.values())


def test_no_earlier_trial_s_head_stays_reachable(search_config, fixed_space, prepared, monkeypatch):
    """Each trial's new head (with its compiled functions and optimizer slots) is freed once the
    trial ends; with reuse, only the one compiled head per graph stays. The shared backbone must
    not keep a head alive, or memory grows with every trial."""
    from tuner.engine.runner import _search
    from tuner.train import trial as training
    from tuner.train.reuse import TrainingModels

    heads = []
    real_build_head = training.build_head

    def build_head(*args, **kwargs):
        head = real_build_head(*args, **kwargs)
        heads.append(weakref.ref(head))
        return head

    monkeypatch.setattr(training, "build_head", build_head)
    space = fixed_space(1)
    space.write_text(
        space.read_text().replace(
            'type = "fixed"\nvalue = 0.01', 'type = "choice"\nvalues = [0.01, 0.02]'
        )
    )
    for reuse, kept in ((False, 0), (True, 1)):
        heads.clear()
        config = search_config(
            space=space,
            max_trials=2,
            epochs_head=1,
            epochs_finetune=1,
            project_dir=search_config().project_dir.parent / f"reuse{reuse}",
        )
        bench = dataclasses.replace(prepared(config), models=TrainingModels(reuse=reuse))
        tuner = _search(bench)
        assert len([t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]) == 2
        assert len(heads) == 2
        gc.collect()
        alive = [i for i, ref in enumerate(heads) if ref() is not None]
        assert len(alive) == kept, f"the heads of trials {alive} are still reachable"
        assert len(bench.models) == 2 * kept  # the head and its fine-tuning model
        del bench, tuner
