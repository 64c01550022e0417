"""What the cache can win per training step, measured in-process: the speed case's step bounds.

For the very models a search's trials trained, `step_bounds` times the full model's train step
against its cached counterpart's on the same batch: the ratio bounds the per-epoch speed-up of that
phase. `predict_throughput` gives the backbone's `model.predict` speed, which the cache builds are
measured against. The helpers at the top read a trial row (`_harness.TimedSearch.trials`).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

STEP_REPEATS = 9  # timed rounds (one full step, one cached step) per bound, after 2 warm-ups each
PHASES = ("phase1", "phase2")


def units(trial: dict[str, Any]) -> int:
    """The trial's head width (0: a linear head)."""
    return int(trial.get("hyperparameters", {}).get("head/units", 0))


def unfreeze_blocks(trial: dict[str, Any]) -> int:
    """The blocks the trial unfreezes in phase 2."""
    return int(trial.get("hyperparameters", {}).get("finetune/unfreeze_blocks", 0))


def linear(trial: dict[str, Any]) -> bool:
    """Whether the trial's head is linear (a closed-form phase 1)."""
    return int(trial.get("hyperparameters", {}).get("head/units", 1)) == 0


def epochs(trial: dict[str, Any], phase: str) -> int:
    """The epochs the trial ran in `phase`."""
    return int((trial.get(phase) or {}).get("epochs") or 0)


def step_key(trial: dict[str, Any], phase: str) -> tuple[int, int, int] | None:
    """(phase, unfreeze blocks, head units): the models a trial trained in `phase`, as
    `step_bounds` times them; None where the phase ran no gradient epochs (a linear head's phase
    1 is a closed-form fit and one scoring pass)."""
    if not epochs(trial, phase):
        return None
    if phase == "phase1":
        return None if linear(trial) else (1, 0, units(trial))
    return (2, unfreeze_blocks(trial), units(trial))


def bounds_by_key(bounds: list[dict[str, Any]]) -> dict[tuple[int, int, int], dict[str, Any]]:
    """`step_bounds` rows by their `step_key`."""
    return {(r["phase"], r["unfreeze_blocks"], r["units"]): r for r in bounds}


def _alternating_steps(
    full: Any, full_batch: tuple[Any, Any], cached: Any, cached_batch: tuple[Any, Any]
) -> tuple[float, float]:
    """Median seconds of one `train_on_batch` step of each model, timed in alternation.

    Two warm-up steps each first (tracing), then `STEP_REPEATS` rounds of one full step and one
    cached step: a slow spell on the machine lands on both sides, not on whichever was timed in
    it."""
    for _ in range(2):
        full.train_on_batch(*full_batch)
        cached.train_on_batch(*cached_batch)
    times: dict[str, list[float]] = {"full": [], "cached": []}
    for _ in range(STEP_REPEATS):
        for name, model, batch in (("full", full, full_batch), ("cached", cached, cached_batch)):
            start = time.perf_counter()
            model.train_on_batch(*batch)
            times[name].append(time.perf_counter() - start)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    return median["full"], median["cached"]


def predict_throughput(settings: dict[str, Any], init_file: Path, images: int = 256) -> float:
    """Images per second of `model.predict` on the whole frozen backbone (raw pixels in, pooled
    features out, the backbone's preprocessing inside) at the cache builds' batch size, after a
    warm-up: what the builds, which also write every entry, are measured against."""
    import keras
    import numpy as np

    from tuner.frozen.activations import build_batch, with_preprocessing
    from tuner.models.registry import build_backbone, get_backbone

    spec = get_backbone(settings["backbone"])
    size = settings["image_size"]
    keras.backend.clear_session()
    model = with_preprocessing(build_backbone(spec, size, str(init_file)), spec, size)
    batch = build_batch(SimpleNamespace(batch_size=settings["batch_size"]))
    x = np.random.default_rng(settings["seed"]).uniform(0, 255, (images, size, size, 3))
    x = x.astype("float32")
    model.predict(x[:batch], batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    return images / (time.perf_counter() - start)


def step_bounds(
    settings: dict[str, Any], init_file: Path, n_classes: int, trials: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What the cache can win per training step, measured in-process on the same batch, for the
    very models the search's `trials` trained.

    One row per (phase, unfreeze depth, head width) among the trials. Phase 1: the full model with
    the backbone frozen against the head alone on pooled features. Phase 2: the full model with
    the top k blocks trainable against those blocks and the head on activations cached at the
    cut. Each side is fed what the search feeds it: uint8 pixels to the full model, float16
    activations (the cache's dtype) to the cached one, both widened inside the traced step. The
    ratio of the two steps is the bound on the per-epoch speed-up of that phase.
    """
    import keras
    import numpy as np

    from tuner.frozen.activations import with_preprocessing
    from tuner.models import cuts
    from tuner.models.network import build_classifier, build_head, compile_model
    from tuner.models.registry import build_backbone, get_backbone
    from tuner.train.trial import _TopAndHead, labels_for

    spec = get_backbone(settings["backbone"])
    size = settings["image_size"]
    batch = settings["batch_size"]
    rng = np.random.default_rng(settings["seed"])
    x = rng.integers(0, 256, (batch, size, size, 3), dtype="uint8")
    y = labels_for(rng.integers(0, n_classes, batch), n_classes)
    keys = sorted({key for t in trials for phase in PHASES if (key := step_key(t, phase))})
    rows = []
    for phase, k, width in keys:
        keras.backend.clear_session()
        backbone = build_backbone(spec, size, str(init_file))
        head = build_head(
            int(backbone.output.shape[-1]), units=width, dropout=0.2, n_classes=n_classes
        )
        full = build_classifier(backbone, head, image_size=size, preprocessing=spec.preprocessing)
        cut = cuts.unfreeze_cut(backbone, spec.block_pattern, k) if k else len(backbone.layers) - 1
        if k:
            cuts.freeze_for_finetune(backbone, cut)
        else:
            backbone.trainable = False
        compile_model(full, 1e-5, n_classes)
        if k:
            bottom, top = cuts.split(backbone, cut)
            inputs = with_preprocessing(bottom, spec, size).predict(x, verbose=0)
            cached = _TopAndHead(top, head)
        else:
            inputs = with_preprocessing(backbone, spec, size).predict(x, verbose=0)
            cached = head
        compile_model(cached, 1e-5, n_classes)
        full_s, cached_s = _alternating_steps(full, (x, y), cached, (inputs.astype("float16"), y))
        rows.append(
            {
                "phase": phase,
                "unfreeze_blocks": k,
                "units": width,
                "full_step_s": full_s,
                "cached_step_s": cached_s,
                "bound": full_s / cached_s if cached_s else None,
            }
        )
    return rows
