"""The two-phase search engine: phases, epoch numbering, oracles, BatchNorm, cache equivalence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tuner.engine.runner import _search
from tuner.engine.spaces import load_space


def summaries(config) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted(config.trials_dir.glob("trial_*/summary.json"))
    }


@pytest.mark.parametrize("cache", [True, False])
def test_phases_run_in_order_with_epochs_numbered_on(
    search_config, tmp_path, cache, fixed_space, prepared
):
    config = search_config(
        space=fixed_space(1), max_trials=1, epochs_head=2, epochs_finetune=2, cache=cache
    )
    seen = []
    bench = prepared(config, load_space(family="tiny", path=config.space))
    bench.display.verbose = 1
    bench.display.epoch = lambda phase, epoch, last, logs, seconds: seen.append((phase, epoch))
    _search(bench)
    assert seen == [(1, 1), (1, 2), (2, 3), (2, 4)]
    (summary,) = summaries(config).values()
    assert summary["phase1"]["epochs"] == 2
    assert summary["phase2"]["epochs"] == 2
    assert summary["epochs_run"] == 4
    assert summary["reason"] is None
    assert 0.0 <= summary["phase2"]["val_accuracy"] <= 1.0


def test_zero_unfreeze_blocks_means_head_only(search_config, tmp_path, fixed_space, searched):
    config = search_config(space=fixed_space(0), max_trials=1)
    searched(config)
    (summary,) = summaries(config).values()
    assert summary["phase1"]["epochs"] == 2
    assert summary["phase2"] is None


def _scored_and_saved(tuner, done) -> None:
    for trial in done:
        assert trial.score is not None
        assert (Path(tuner.get_trial_dir(trial.trial_id)) / "checkpoint.npz").exists()


def test_every_oracle_completes_trials(finished, searched):
    # The random oracle here; the Bayesian and Hyperband oracles complete theirs in the tests of
    # their own behaviour below (`_scored_and_saved`).
    # The session's search with these settings; `searched` reloads its trials.
    config = finished(oracle="random", max_trials=2, epochs_head=2, epochs_finetune=1)
    bench, tuner = searched(config)
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(done) >= 2
    _scored_and_saved(tuner, done)


def test_hyperband_shares_out_finetune_epochs_and_picks_survivors_on_them(
    search_config, tmp_path, fixed_space, searched
):
    # Hyperband's budget is phase-2 epochs: max_epochs = 3 with factor 3 gives a bracket that
    # fine-tunes 3 candidates for 1 epoch, then continues the best to 3. Phase 1 (2 epochs) runs
    # whole in every candidate's first round, so survivors are chosen on fine-tuned scores.
    space = fixed_space(1)
    # Hyperband needs distinct candidates: search the width, keep the rest fixed.
    space.write_text(
        space.read_text().replace(
            'type = "fixed"\nvalue = 16', 'type = "choice"\nvalues = [4, 8, 16, 32, 64]'
        )
    )
    config = search_config(
        oracle="hyperband", max_trials=30, epochs_head=2, epochs_finetune=3, space=space
    )
    bench, tuner = searched(config)
    trials = {t.trial_id: t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"}
    assert len(trials) >= 2
    _scored_and_saved(tuner, trials.values())
    assert all("tuner/epochs" in t.hyperparameters.values for t in trials.values())
    continued = [t for t in trials.values() if t.hyperparameters.values.get("tuner/trial_id")]
    assert continued, "Hyperband ran no continuation"
    all_summaries = summaries(config)
    for trial in trials.values():
        values = trial.hyperparameters.values
        summary = all_summaries[f"trial_{trial.trial_id}"]
        epochs, initial = values["tuner/epochs"], values["tuner/initial_epoch"]
        assert (summary["phase2"] or {"epochs": 0})["epochs"] == epochs - initial
        if values.get("tuner/trial_id"):
            assert summary["phase1"] is None, "a continuation must not rerun phase 1"
            predecessor = all_summaries[f"trial_{values['tuner/trial_id']}"]
            assert predecessor["phase2"]["epochs"] == initial >= 1, "survivor not fine-tuned"
        else:
            assert initial == 0 and summary["phase1"]["epochs"] == 2


def test_get_best_models_returns_the_trained_model(finished, searched):
    config = finished(max_trials=2)
    bench, tuner = searched(config)
    (model,) = tuner.get_best_models(1)
    best = [t for t in tuner.oracle.get_best_trials(5) if t.status == "COMPLETED"][0]
    logs = model.evaluate(
        np.asarray(bench.data.pixels("val", 32), "float32"),
        bench.data.labels("val"),
        verbose=0,
        return_dict=True,
    )
    # The checkpoint is the best epoch, whose val accuracy the trial records (its score is the
    # oracles' ranking score: the objective with its tiebreak folded in).
    recorded = best.metrics.get_last_value("val_accuracy")
    assert logs["accuracy"] == pytest.approx(recorded, abs=0.06)
    assert 0 <= best.score - recorded <= 0.25 / len(bench.data.val)


def test_completed_trials_put_the_trial_select_picks_first(tmp_path):
    # A fake tuner: completed_trials reads the oracle's trials and the project on disk only.
    from types import SimpleNamespace

    from tests.project.folders import make_scored_project
    from tuner.engine.transfer import completed_trials

    project = make_scored_project(tmp_path / "p")  # best 00; one-se pick 03
    trials = [SimpleNamespace(trial_id=i, status="COMPLETED") for i in ("04", "00", "01", "02")]
    trials += [SimpleNamespace(trial_id="03", status="COMPLETED")]
    trials += [SimpleNamespace(trial_id="05", status="RUNNING")]
    oracle = SimpleNamespace(
        trials={t.trial_id: t for t in trials}, get_best_trials=lambda n: trials
    )

    def order(select: str) -> list[str]:
        config = SimpleNamespace(project_dir=project, select=select)
        tuner = SimpleNamespace(oracle=oracle, context=SimpleNamespace(config=config))
        return [t.trial_id for t in completed_trials(tuner)]

    assert order("best") == ["00", "01", "02", "03", "04"]
    assert order("one-se") == ["03", "00", "01", "02", "04"]


def test_batchnorm_stays_in_inference_mode_while_fine_tuning(
    search_config, tmp_path, fixed_space, searched
):
    import keras

    from tuner.train.trial import Recorder, _FullPlan

    config = search_config(space=fixed_space(2), cache=False, max_trials=1)
    bench, tuner = searched(config)
    trial = next(iter(tuner.oracle.trials.values()))
    values = tuner.hypermodel.values(trial.hyperparameters)
    assert values.unfreeze_blocks == 2
    plan = _FullPlan(values, bench.build_model(values, 0), bench)
    backbone = plan.backbone
    before = [[np.array(w) for w in layer.get_weights()] for layer in backbone.layers]
    recorder = Recorder("val_accuracy", "max", plan.capture)
    recorder.phase = 2
    plan.fit(2, 0, 1, recorder, seed=0)
    assert plan.cut is not None
    learned = 0
    for index, layer in enumerate(backbone.layers):
        after = layer.get_weights()
        changed = any(not np.array_equal(a, b) for a, b in zip(after, before[index], strict=True))
        if isinstance(layer, keras.layers.BatchNormalization):
            # Neither the moving statistics nor gamma/beta move: inference mode, frozen.
            assert not layer.trainable and not changed, layer.name
        elif index <= plan.cut:
            assert not changed, f"{layer.name} is below the cut but changed"
        elif after:
            learned += changed
    assert learned > 0, "no layer above the cut learned"


def test_cached_and_full_paths_train_the_same_weights(
    search_config, tmp_path, fixed_space, searched
):
    """Same batches, same hyperparameters: the cached path's phase-2 weights equal the
    full-model path's to float tolerance (float32 cache; dropout 0)."""
    from tuner.models.network import Pieces

    pieces = {}
    # A barely trained head and a strong fine-tuning rate, scored on val_loss, so that the best
    # epoch (the checkpoint) is a phase-2 one and the comparison covers the unfrozen blocks.
    space = fixed_space(2)
    space.write_text(space.read_text().replace("value = 0.01", "value = 1e-5"))
    space.write_text(space.read_text().replace("value = 0.001", "value = 0.01"))
    for cache in (True, False):
        config = search_config(
            space=space,
            max_trials=1,
            epochs_head=1,
            epochs_finetune=2,
            objective="val_loss",
            cache=cache,
            cache_dtype="float32",
            project_dir=tmp_path / f"p{cache}",
            patience=0,
        )
        # Both paths must start from the same random init.
        if not cache:
            (config.project_dir / "init").mkdir(parents=True)
            for f in (tmp_path / "pTrue" / "init").glob("*.h5"):
                (config.project_dir / "init" / f.name).write_bytes(f.read_bytes())
        bench, tuner = searched(config)
        trial = next(iter(tuner.oracle.trials.values()))
        pieces[cache] = Pieces.load(Path(tuner.get_trial_dir(trial.trial_id)) / "checkpoint.npz")
    cached, full = pieces[True], pieces[False]
    # The comparison must reach phase 2: a checkpoint with a cut and unfrozen backbone weights.
    assert cached.cut is not None and cached.backbone, "the best epoch was a phase-1 epoch"
    assert cached.cut == full.cut and cached.backbone.keys() == full.backbone.keys()
    for a, b in zip(cached.head, full.head, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    for index in cached.backbone:
        for a, b in zip(cached.backbone[index], full.backbone[index], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_rerun_resumes_and_keeps_finished_trials(finished, searched):
    config = finished(max_trials=2)  # a copy of a finished two-trial search
    _, tuner = searched(config)
    first = {t.trial_id: t.score for t in tuner.oracle.trials.values()}
    _, tuner = searched(config.replace(max_trials=3))
    again = {t.trial_id: t.score for t in tuner.oracle.trials.values()}
    assert len(again) == 3
    for trial_id, score in first.items():
        assert again[trial_id] == score


def test_overwrite_starts_over(finished, searched):
    config = finished(max_trials=2)
    searched(config)
    _, tuner = searched(config.replace(max_trials=1, overwrite=True))
    assert len(tuner.oracle.trials) == 1


def test_same_seed_repeats_the_search(finished, searched):
    results = []
    # The session's search (seed 1 by default), then the same settings searched again here.
    first = finished(max_trials=2)
    for config in (first, first.replace(project_dir=first.project_dir.parent / "again")):
        _, tuner = searched(config)
        trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
        results.append([(t.hyperparameters.values, t.score) for t in trials])
    (values_a, scores_a), (values_b, scores_b) = (list(zip(*r, strict=True)) for r in results)
    assert values_a == values_b
    assert scores_a == pytest.approx(scores_b, abs=1e-6)


def test_several_backbones_make_backbone_a_hyperparameter(search_config, searched):
    config = search_config(
        backbones=("tiny", "mobilenetv3small"), max_trials=3, epochs_head=1, epochs_finetune=1
    )
    _, tuner = searched(config)
    names = {p.name for p in tuner.oracle.get_space().space}
    assert "backbone" in names
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(done) == 3
    assert {t.hyperparameters.values["backbone"] for t in done} <= {"tiny", "mobilenetv3small"}


def test_the_training_path_is_said_plainly(search_config, prepared):
    import keras

    from tuner.frozen.features import describe_training, stochastic_layers

    config = search_config()
    bench = prepared(config, load_space(family="tiny"))
    (line,) = describe_training(bench.config, bench.features)
    assert line.startswith("cache on")
    off = prepared(config.replace(cache=False), load_space(family="tiny"))
    assert describe_training(off.config, off.features) == [
        "cache off (--no-cache): every epoch runs the whole backbone"
    ]
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dropout(0.2, name="drop")(inputs))
    assert stochastic_layers(model) == ["drop"]


def test_the_bayesian_oracle_runs_past_its_random_initial_points(
    search_config, tmp_path, fixed_space, prepared
):
    # KerasTuner 1.4.8 draws max(3 * dimensions, 3) random points before it fits its Gaussian
    # process; every declared hyperparameter counts (fixed ones too): 5 here, so 15.
    from tuner.engine.spaces import load_space as load

    space = fixed_space(0)
    space.write_text(
        space.read_text().replace(
            'type = "fixed"\nvalue = 0.01',
            'type = "float"\nmin = 0.001\nmax = 0.1\nsampling = "log"',
        )
    )
    config = search_config(
        oracle="bayesian", max_trials=17, epochs_head=1, epochs_finetune=0, space=space
    )
    bench = prepared(config, load(family="tiny", path=space))
    from tuner.engine.oracles import make_oracle
    from tuner.engine.transfer import TransferTuner

    oracle = make_oracle(bench.config)
    fits = []
    original = oracle.gpr.fit
    oracle.gpr.fit = lambda x, y: fits.append(len(x)) or original(x, y)
    tuner = TransferTuner(oracle, bench)
    tuner.search(verbose=0)
    initial = max(3 * len(oracle.get_space().space), 3)
    assert initial == 15
    done = [t for t in oracle.trials.values() if t.status == "COMPLETED"]
    assert len(done) == 17
    _scored_and_saved(tuner, done)
    assert fits and fits[0] == initial, "the Gaussian process never proposed a trial"


def test_the_first_trial_is_the_space_defaults_and_a_linear_head_starts_from_the_probe(
    finished, searched
):
    from tuner.engine.spaces import load_space as load

    config = finished(max_trials=2, epochs_finetune=1)
    space = load(family="tiny")
    bench, tuner = searched(config)
    first = tuner.oracle.trials[min(tuner.oracle.trials)]
    defaults = {p.name: p.default for p in space.params}
    assert defaults["head/units"] == 0
    # A linear head's phase 1 reads neither of these: they are not searched, so not in its values.
    inactive = ("head/dropout", "head/learning_rate")
    assert first.hyperparameters.values == {
        name: value for name, value in defaults.items() if name not in inactive
    }
    values = tuner.hypermodel.values(first.hyperparameters)
    assert (values.dropout, values.head_lr) == (defaults[inactive[0]], defaults[inactive[1]])
    summary = summaries(config)[f"trial_{first.trial_id}"]
    # Phase 1 of a linear head is one closed-form fit, scored as one epoch.
    assert summary["phase1"]["epochs"] == 1
    linear = bench.features.linear_head("tiny")
    val = bench.features.feature_stats("tiny").standardize(bench.features.pooled("tiny", "val"))
    logits = val.astype("float64") @ linear.kernel + linear.bias
    predicted = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    accuracy = np.mean(predicted == bench.data.labels("val"))
    assert summary["phase1"]["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_a_tie_on_the_objective_goes_to_the_epoch_with_the_lower_val_loss():
    from tuner.train.trial import Recorder

    captured = iter(range(10))
    recorder = Recorder("val_accuracy", "max", lambda: next(captured))
    for epoch, (accuracy, loss) in enumerate([(0.9, 0.5), (1.0, 0.4), (1.0, 0.2), (1.0, 0.3)]):
        recorder.on_epoch_end(epoch, {"loss": 0.1, "val_accuracy": accuracy, "val_loss": loss})
    assert recorder.best_logs["val_loss"] == 0.2 and recorder.best_pieces == 2


def test_an_older_project_whose_trials_hold_every_value_resumes_and_exports(
    search_config, searched, monkeypatch, tmp_path
):
    """A project searched before conditional hyperparameters: its trials hold every value, and a
    resumed search goes on the same way; the leaderboard and the export read them."""
    from tuner.engine import spaces
    from tuner.engine.transfer import completed_trials
    from tuner.serve.bundle import export_trial
    from tuner.ui.board import load

    config = search_config(max_trials=2, epochs_finetune=1)
    with monkeypatch.context() as old_code:
        old_code.setattr(spaces, "ACTS_WHEN_POSITIVE", {})  # every hyperparameter unconditional
        searched(config)
    _, tuner = searched(config.replace(max_trials=3))
    trials = tuner.oracle.trials.values()
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    names = set(load_space(family="tiny").names)
    assert all(set(t.hyperparameters.values) >= names for t in trials)
    board = load(config.project_dir)
    assert [row.rank for row in board.rows] == [1, 2, 3]
    assert all(set(row.hyperparameters) == names for row in board.rows)
    files = export_trial(tuner, completed_trials(tuner)[0], tmp_path / "export")
    assert Path(files["keras"]).is_file()
