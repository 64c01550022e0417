"""Tests for tuner.train.refit: the epochs a refit trains come from the best epoch, split into
phases, with Hyperband predecessors counted; the refit applies the class weights and skips phase 2
when the search rejected fine-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tuner.project.layout import PhaseSummary, TrialSummary
from tuner.train.refit import Link, read_chain, refit_epochs

EPOCHS_HEAD = 4


def _history(first: int, scores: list[float]) -> list[dict[str, float]]:
    """A phase's history: one epoch per score, numbered from `first`."""
    return [
        {"epoch": first + i, "val_accuracy": s, "val_loss": 1.0 - s} for i, s in enumerate(scores)
    ]


def _summary(
    trial_id: str,
    best_epoch: int | None,
    head: list[float] | None = None,
    finetune: list[float] | None = None,
    *,
    finetune_from: int = EPOCHS_HEAD + 1,
) -> TrialSummary:
    """A summary as a trial writes it: each phase's history and the logs of its best epoch."""
    phases = []
    for scores, first in ((head, 1), (finetune, finetune_from)):
        if scores is None:
            phases.append(None)
            continue
        history = _history(first, scores)
        best = max(history, key=lambda logs: logs["val_accuracy"])  # the first of equal ones
        phases.append(
            PhaseSummary(
                epochs=len(scores),
                best={k: v for k, v in best.items() if k != "epoch"},
                history=history,
            )
        )
    return TrialSummary(trial_id, phase1=phases[0], phase2=phases[1], best_epoch=best_epoch)


def _epochs(*chain: Link, linear: bool = False, finetunes: bool = True):
    return refit_epochs(chain, EPOCHS_HEAD, linear=linear, finetunes=finetunes)


def test_a_best_epoch_in_phase_1_skips_fine_tuning():
    # Phase 1 peaked at epoch 2 and phase 2 ran 3 epochs that never beat it.
    summary = _summary("00", 2, head=[0.6, 0.9, 0.8, 0.7], finetune=[0.7, 0.8, 0.85])
    epochs = _epochs(Link("00", summary))
    assert (epochs.head, epochs.finetune) == (2, 0)
    assert epochs.best_epoch == 2 and "phase 1" in epochs.source
    assert epochs.record()["predecessors"] == []


def test_a_best_epoch_in_phase_2_counts_to_it_not_to_the_epochs_run():
    # Phase 1 peaked at epoch 3 (fine-tuning starts from that head); phase 2 peaked at its 2nd
    # epoch (6 overall) and ran 3 more until patience ran out.
    summary = _summary("00", 6, head=[0.6, 0.7, 0.9, 0.8], finetune=[0.91, 0.95, 0.94, 0.93, 0.92])
    epochs = _epochs(Link("00", summary))
    assert (epochs.head, epochs.finetune) == (3, 2)
    assert "phase 2" in epochs.source


def test_phase_1_stopped_early_still_numbers_phase_2_after_epochs_head():
    summary = _summary("00", 6, head=[0.6, 0.9], finetune=[0.91, 0.95])
    epochs = _epochs(Link("00", summary))
    assert (epochs.head, epochs.finetune) == (2, 2)


def test_a_linear_head_is_one_closed_form_fit():
    # The closed form is phase 1's last epoch.
    in_phase1 = _summary("00", EPOCHS_HEAD, head=[0.9], finetune=[0.8, 0.85])
    epochs = _epochs(Link("00", in_phase1), linear=True)
    assert (epochs.head, epochs.finetune) == (1, 0)
    in_phase2 = _summary("00", EPOCHS_HEAD + 2, head=[0.9], finetune=[0.91, 0.95, 0.9])
    epochs = _epochs(Link("00", in_phase2), linear=True)
    assert (epochs.head, epochs.finetune) == (1, 2)


def test_a_trial_that_unfreezes_nothing_never_fine_tunes():
    summary = _summary("00", 3, head=[0.6, 0.7, 0.9, 0.8])
    epochs = _epochs(Link("00", summary), finetunes=False)
    assert (epochs.head, epochs.finetune) == (3, 0)


def test_a_hyperband_continuation_counts_its_predecessors_epochs():
    # Round 1: trial 00 had 2 phase-2 epochs and peaked at its 1st (epoch 5) after phase 1 peaked
    # at epoch 4. Round 2: trial 07 loaded that checkpoint, numbered its epochs 7..10 (after the
    # 2 it was told 00 had run) and peaked at epoch 8, its 2nd.
    first = _summary("00", 5, head=[0.6, 0.7, 0.8, 0.9], finetune=[0.92, 0.91])
    second = _summary("07", 8, finetune=[0.93, 0.95, 0.94, 0.94], finetune_from=7)
    chain = (Link("07", second, initial_epoch=2, predecessor="00"), Link("00", first))
    epochs = _epochs(*chain)
    assert (epochs.head, epochs.finetune) == (4, 1 + 2)
    assert epochs.best_epoch == 8
    assert epochs.predecessors == [{"trial_id": "00", "best_epoch": 5, "finetune_epochs": 1}]


def test_a_continuation_of_a_head_kept_in_phase_1_fine_tunes_only_its_own_epochs():
    first = _summary("00", 3, head=[0.6, 0.7, 0.9, 0.8], finetune=[0.85, 0.88])
    second = _summary("07", 9, finetune=[0.91, 0.92, 0.95, 0.9], finetune_from=7)
    third = _summary("12", 12, finetune=[0.96, 0.97], finetune_from=11)
    chain = (
        Link("12", third, initial_epoch=6, predecessor="07"),
        Link("07", second, initial_epoch=2, predecessor="00"),
        Link("00", first),
    )
    epochs = _epochs(*chain)
    # 12's 2 own epochs (11, 12) + 07's 3 (7, 8, 9) + 00's 0 (its best was in phase 1, at 3).
    assert (epochs.head, epochs.finetune) == (3, 2 + 3)
    assert [p["finetune_epochs"] for p in epochs.predecessors] == [3, 0]


def test_a_continuation_that_trained_nothing_exports_its_predecessors_epochs():
    first = _summary("00", 6, head=[0.6, 0.9, 0.8, 0.7], finetune=[0.91, 0.95])
    kept = TrialSummary("07", best_epoch=None)  # nothing left to train: scored what it inherited
    chain = (Link("07", kept, initial_epoch=2, predecessor="00"), Link("00", first))
    epochs = _epochs(*chain)
    assert (epochs.head, epochs.finetune) == (2, 2)


def test_summaries_from_before_best_epochs_give_the_epochs_run():
    old = _summary("00", None, head=[0.6, 0.9, 0.8], finetune=[0.91, 0.95])
    epochs = _epochs(Link("00", old))
    assert (epochs.head, epochs.finetune) == (3, 2)
    assert "epochs run" in epochs.source


def test_a_missing_predecessor_is_said():
    second = _summary("07", 8, finetune=[0.93, 0.95], finetune_from=7)
    epochs = _epochs(Link("07", second, initial_epoch=2, predecessor="00"))
    assert (epochs.head, epochs.finetune) == (EPOCHS_HEAD, 2)
    assert "trial 00" in epochs.source and "not found" in epochs.source


def test_the_chain_is_read_from_each_trial_s_files(tmp_path):
    from tuner.hp import INITIAL_EPOCH, PREDECESSOR
    from tuner.project.layout import TRIAL_FILE, trial_dir

    def write(trial_id: str, summary: TrialSummary, values: dict) -> dict:
        folder = trial_dir(tmp_path, trial_id)
        folder.mkdir(parents=True)
        summary.write(folder)
        trial = {"trial_id": trial_id, "hyperparameters": {"space": [], "values": values}}
        (folder / TRIAL_FILE).write_text(json.dumps(trial))
        return values

    write("00", _summary("00", 5, head=[0.6, 0.7, 0.8, 0.9], finetune=[0.92, 0.91]), {})
    values = write(
        "07",
        _summary("07", 8, finetune=[0.93, 0.95], finetune_from=7),
        {PREDECESSOR: "00", INITIAL_EPOCH: 2, "tuner/epochs": 4},
    )
    chain = read_chain(tmp_path, "07", values)
    assert [(link.trial_id, link.initial_epoch, link.predecessor) for link in chain] == [
        ("07", 2, "00"),
        ("00", 0, None),
    ]
    assert chain[1].summary is not None and chain[1].summary.best_epoch == 5
    assert _epochs(*chain).finetune == 3


@pytest.fixture(scope="module")
def one_trial(tmp_path_factory):
    """A finished one-trial search (a 16-unit head, fine-tuning 1 block) with balanced class
    weights, shared by the module: (the workbench, the trial, its trial folder). Each test sets
    the best epoch it needs in the trial's summary.json."""
    from tests.helpers import fixed, tiny_config, write_space
    from tests.images import make_folder
    from tuner.engine.runner import _search
    from tuner.engine.spaces import load_space
    from tuner.engine.transfer import completed_trials, prepare
    from tuner.project.layout import trial_dir

    root = tmp_path_factory.mktemp("refit")
    space = write_space(root / "fixed.toml", "fixed", {"finetune.unfreeze_blocks": fixed(1)})
    config = tiny_config(
        make_folder(root / "images"),
        root / "project",
        max_trials=1,
        space=space,
        class_weight="balanced",
    )
    bench = prepare(config, load_space(family="tiny", path=space), None)
    (trial,) = completed_trials(_search(bench))
    return bench, trial, trial_dir(config.project_dir, trial.trial_id)


def _with_best_epoch(folder, best_epoch: int) -> None:
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "best_epoch": best_epoch}))


def test_a_refit_trains_to_the_best_epoch_with_the_class_weights(one_trial, monkeypatch):
    from tuner.models.network import BACKBONE_NAME
    from tuner.train import refit

    bench, trial, folder = one_trial
    fits = []
    make_dataset = refit.make_dataset

    def recorded(x, y, batch_size, **kwargs):
        fits.append(kwargs.get("sample_weights"))
        return make_dataset(x, y, batch_size, **kwargs)

    monkeypatch.setattr(refit, "make_dataset", recorded)
    start = [np.array(w) for w in bench.features.build_backbone("tiny").get_weights()]
    labels = np.concatenate([bench.data.labels("train"), bench.data.labels("val")])
    expected = bench.sample_weights(labels)
    assert expected is not None

    # The search kept its head at epoch 1: the refit trains 1 head epoch and no fine-tuning.
    _with_best_epoch(folder, 1)
    model, record = refit.refit_trial(bench, trial)
    assert (record["epochs_head"], record["epochs_finetune"]) == (1, 0)
    assert record["epochs"]["best_epoch"] == 1 and "phase 1" in record["epochs"]["source"]
    assert record["class_weight"] == "balanced" and record["augment"] is None
    assert len(fits) == 1
    np.testing.assert_array_equal(fits[0], expected)
    backbone = model.get_layer(BACKBONE_NAME).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(backbone, start, strict=True))

    # Its best epoch was the fine-tuning one (epochs_head 2, then 1): both phases, weighted.
    _with_best_epoch(folder, 3)
    fits.clear()
    model, record = refit.refit_trial(bench, trial)
    assert record["epochs_head"] in (1, 2) and record["epochs_finetune"] == 1
    assert "phase 2" in record["epochs"]["source"]
    assert len(fits) == 2 and all(np.array_equal(w, expected) for w in fits)
    backbone = model.get_layer(BACKBONE_NAME).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(backbone, start, strict=True))


def test_a_refit_augments_as_the_search_did(one_trial, monkeypatch):
    import dataclasses

    from tuner.train import refit
    from tuner.train.context import TrialContext

    bench, trial, folder = one_trial
    _with_best_epoch(folder, 1)
    built = []
    build_model = TrialContext.build_model

    def recorded(self, *args, **kwargs):
        built.append(build_model(self, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(TrialContext, "build_model", recorded)
    flipping = dataclasses.replace(
        bench, config=bench.config.replace(augment=True, augmentations=("flip",))
    )
    served, record = refit.refit_trial(flipping, trial)
    assert record["augment"] == ["flip"]
    trained, exported = built
    assert [layer.name for layer in trained.layers if "augment" in layer.name] == ["augment_flip"]
    assert not [layer.name for layer in exported.layers if "augment" in layer.name]
    assert served is exported


def test_the_best_head_epoch_is_found_on_the_metrics_its_history_holds():
    summary = _summary("00", 6, head=[0.6, 0.9, 0.8, 0.7], finetune=[0.91, 0.95])
    assert summary.phase1 is not None
    summary.phase1.best["val_macro_f1"] = 0.5  # a metric the history does not log
    assert _epochs(Link("00", summary)).head == 2
    summary.phase1.history.clear()  # no history: the epochs phase 1 ran
    assert _epochs(Link("00", summary)).head == 4
