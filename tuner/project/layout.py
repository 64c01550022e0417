"""The project directory of a search: its layout, how files in it are written, the typed trial
summary, the run settings a resume must match, and the one-line reasons a trial failed.

    PROJECT_DIR/
      run.json                    the search's settings (`run_settings`)
      skipped.txt                 files the data scan or the decoder could not use
      init/                       a `--weights none` random init, drawn once per backbone and size
      cache/                      decoded pixels and frozen activations (`tuner.cache.store`)
      trials/trial_<id>/          KerasTuner's trial.json, and ours:
        summary.json              `TrialSummary`
        checkpoint.npz            the trained pieces of the trial's best epoch (`tuner.models.network.Pieces`)
      export/                     the best model (`tuner.serve.formats`, `python -m tuner.export`)

Standard library only: the leaderboard reads a project through this module without TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config import SearchConfig

# KerasTuner's project lives in PROJECT_DIR/trials (directory=PROJECT_DIR, project_name="trials").
TRIALS_DIR = "trials"
RUN_FILE = "run.json"
TRIAL_FILE = "trial.json"  # written by KerasTuner
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.npz"
SKIPPED_FILE = "skipped.txt"
# The held-out test set's scores of the exported model (`--test-data`), in PROJECT_DIR: what the
# leaderboard's footer shows. The same block is metadata.json's `test`.
TEST_FILE = "test.json"
REASON_LIMIT = 100  # characters of a failure reason in the leaderboard


def trial_dir(project_dir: Path, trial_id: str) -> Path:
    """Where KerasTuner keeps one trial (`Tuner.get_trial_dir` gives the same path)."""
    return Path(project_dir) / TRIALS_DIR / f"trial_{trial_id}"


def atomic_write(path: Path, write: Callable[[Path], Any], *, suffix: str = "") -> None:
    """Writes `path` so that readers never see half of it: `write(tmp)` fills a temporary
    sibling (named to end with `suffix`, for writers that insist on one), which is then renamed
    into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes a small text file so that readers never see half of it."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


# ------------------------------------------------------------------------------ trial summary


@dataclass
class PhaseSummary:
    """One phase of a trial: epochs run, wall time, and the logs of its best epoch."""

    epochs: int = 0
    seconds: float = 0.0
    best: dict[str, float] = field(default_factory=dict)
    # Every epoch's logs, in order, each with its absolute "epoch" (1-based, counted across both
    # phases): the learning curves of the leaderboard and its CSV/JSON.
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float | None:
        """Validation accuracy at the phase's best epoch, when it was logged."""
        return number(self.best.get("val_accuracy"))

    def as_dict(self) -> dict[str, Any]:
        """The phase as summary.json holds it."""
        return {
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "val_accuracy": self.val_accuracy,
            "best": self.best,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PhaseSummary | None:
        """A phase read back from summary.json; None when there is none."""
        if not isinstance(data, dict):
            return None
        best = data.get("best") if isinstance(data.get("best"), dict) else {}
        if "val_accuracy" not in best and number(data.get("val_accuracy")) is not None:
            best = {**best, "val_accuracy": number(data.get("val_accuracy"))}
        history = data.get("history") if isinstance(data.get("history"), list) else []
        return cls(
            epochs=integer(data.get("epochs")) or 0,
            seconds=number(data.get("seconds")) or 0.0,
            best=best,
            history=[
                {str(k): v for k, v in logs.items() if number(v) is not None}
                for logs in history
                if isinstance(logs, dict)
            ],
        )


@dataclass
class TrialSummary:
    """What our engine records about one trial, in `trials/trial_<id>/summary.json`.

    KerasTuner's own trial.json holds the hyperparameters, the status and the score; this adds
    what happened in each phase, the metrics of the best epoch, and why a trial failed.
    """

    trial_id: str
    augment: bool = False
    cache: bool = True
    backbone: str | None = None
    phase1: PhaseSummary | None = None
    phase2: PhaseSummary | None = None  # None: the trial had no phase 2
    skipped: str | None = None  # why phase 2 was skipped (`tuner.engine.effort`); None: it was not
    epochs_run: int = 0
    seconds: float | None = None
    reason: str | None = None  # one line; set when the trial failed
    best: dict[str, float] | None = None  # the logs of the epoch the checkpoint holds
    best_epoch: int | None = None  # that epoch, counted from 1 across both phases
    # Validation at that epoch, per class: {"recall": [per class, None for an absent class],
    # "confusion": [[true x predicted counts]], "images": N}.
    per_class: dict[str, Any] | None = None
    # The 95 % interval of the objective at that epoch (`tuner.metrics.score_interval`).
    interval: list[float] | None = None

    def to_json(self) -> str:
        """The summary as summary.json holds it."""
        data = {
            "trial_id": self.trial_id,
            "phase1": self.phase1.as_dict() if self.phase1 else None,
            "phase2": self.phase2.as_dict() if self.phase2 else None,
            "epochs_run": self.epochs_run,
            "seconds": self.seconds,
            "reason": self.reason,
            "finetune_skipped": self.skipped,
            "augment": self.augment,
            "cache": self.cache,
        }
        if self.backbone is not None:
            data["backbone"] = self.backbone
        if self.best is not None:
            data["best"] = self.best
        if self.best_epoch is not None:
            data["best_epoch"] = self.best_epoch
        if self.per_class is not None:
            data["per_class"] = self.per_class
        if self.interval is not None:
            data["interval"] = self.interval
        return json.dumps(data, indent=2)

    def write(self, directory: Path) -> None:
        """Writes summary.json into the trial's `directory`, atomically."""
        atomic_write_text(Path(directory) / SUMMARY_FILE, self.to_json())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], trial_id: str = "") -> TrialSummary:
        """A summary read back from summary.json's contents, tolerating missing fields."""
        best = data.get("best")
        return cls(
            trial_id=str(data.get("trial_id", trial_id)),
            augment=bool(data.get("augment", False)),
            cache=bool(data.get("cache", True)),
            backbone=data.get("backbone") if isinstance(data.get("backbone"), str) else None,
            phase1=PhaseSummary.from_dict(data.get("phase1")),
            phase2=PhaseSummary.from_dict(data.get("phase2")),
            epochs_run=integer(data.get("epochs_run")) or 0,
            seconds=number(data.get("seconds")),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
            skipped=data.get("finetune_skipped")
            if isinstance(data.get("finetune_skipped"), str)
            else None,
            best=dict(best) if isinstance(best, dict) else None,
            best_epoch=integer(data.get("best_epoch")),
            per_class=dict(data["per_class"]) if isinstance(data.get("per_class"), dict) else None,
            interval=_pair(data.get("interval")),
        )

    @classmethod
    def read(cls, directory: Path) -> tuple[TrialSummary | None, str | None]:
        """(the summary, None), or (None, a one-line problem) when summary.json is unreadable;
        (None, None) when there is none yet (a trial still running, or killed)."""
        path = Path(directory) / SUMMARY_FILE
        if not path.exists():
            return None, None
        try:
            with path.open(encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as error:
            return None, one_line(f"{SUMMARY_FILE} unreadable: {error}")
        if not isinstance(data, dict):
            return None, None
        return cls.from_dict(data, Path(directory).name.removeprefix("trial_")), None


def _pair(value: Any) -> list[float] | None:
    """A [low, high] pair of numbers, or None."""
    if isinstance(value, list) and len(value) == 2:
        low, high = number(value[0]), number(value[1])
        if low is not None and high is not None:
            return [low, high]
    return None


def number(value: Any) -> float | None:
    """`value` as a float, or None when it is not a JSON number."""
    # bool is an int subclass, and a true/false here is a writer's bug, not a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def integer(value: Any) -> int | None:
    """`value` as an int, or None when it is not a finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


# ------------------------------------------------------------------------------ failure reasons

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A traceback's last line names the exception by its full dotted path
# ("tuner.errors.TrialError: diverged ..."); the class name alone reads better in a narrow table.
_DOTTED_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*(?::|$).*)$")


def first_line(error: BaseException) -> str:
    """The first meaningful line of an error's message, for a one-line reason.

    Keras wraps an error raised inside a layer's `call()` as "Exception encountered when calling
    X.call()." and puts the cause on a later line, in bold (ANSI escapes): that line is the one.
    """
    lines = [ln.strip() for ln in _ANSI.sub("", str(error)).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    return (lines[0] if lines else type(error).__name__)[:200]


def one_line(text: Any, limit: int = REASON_LIMIT) -> str | None:
    """`text` on one line, cut to `limit` characters; None when it is not a non-empty string."""
    if not isinstance(text, str) or not text.strip():
        return None
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def _last_line(message: Any, limit: int) -> str | None:
    if not isinstance(message, str):
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return None
    return one_line(_DOTTED_EXCEPTION.sub(r"\1", lines[-1]), limit)


def failure_reason(summary_reason: Any, message: Any, *, limit: int = REASON_LIMIT) -> str | None:
    """A failed trial's one-line reason: the engine's own (summary.json) first, else the last line
    of KerasTuner's traceback (trial.json "message") without the exception's module path."""
    return one_line(summary_reason, limit) or _last_line(message, limit)


# ------------------------------------------------------------------------------ run settings

# The settings that make trials comparable, each with the flag that sets it. A resume must match
# them all; max_trials, the time budget, the cache and the seed may change between runs.
RESUME_SETTINGS: dict[str, str] = {
    "backbones": "--backbone",
    "weights": "--weights",
    "image_sizes": "--image-size",
    "class_names": "--data",
    "objective": "--objective",
    "oracle": "--oracle",
    "epochs_head": "--epochs-head",
    "epochs_finetune": "--epochs-finetune",
    "patience": "--patience",
    "batch_size": "--batch-size",
    "augment": "--augment",
    "augmentations": "--augment",
    "augment_views": "--augment-views",
    "class_weight": "--class-weight",
    "select": "--select",
    "space": "--space",
}


def run_settings(
    config: SearchConfig,
    *,
    space: Any,
    class_names: tuple[str, ...],
    image_sizes: Mapping[str, int],
    weights: Mapping[str, str],
) -> dict[str, Any]:
    """What `run.json` holds: the settings the leaderboard and export report, and those a resume
    must match (`RESUME_SETTINGS`).

    Args:
        config: the search's configuration.
        space: the `tuner.engine.spaces.Space` searched.
        class_names: the classes, in label order.
        image_sizes: the input size of each backbone, resolved.
        weights: the weights origin of each backbone ("imagenet", "none", "file:<sha>", ...).
    """
    origins = sorted(set(weights.values()))
    sizes = dict(image_sizes)
    return {
        "objective": config.objective,
        "direction": config.direction,
        "backbones": list(config.backbones),
        "weights": origins[0] if len(origins) == 1 else origins,
        "image_size": next(iter(sizes.values())) if len(set(sizes.values())) == 1 else None,
        "image_sizes": sizes,
        "augment": config.augment,
        "augment_views": config.augment_views if config.augment else 0,
        "augmentations": list(config.augmentations) if config.augment else [],
        "class_weight": config.class_weight,
        "select": config.select,
        "calibrate": config.calibrate,
        "finetune_contenders": config.finetune_contenders,
        "oracle": config.oracle,
        "class_names": list(class_names),
        "cache": config.cache,
        "seed": config.seed,
        "max_trials": config.max_trials,
        "epochs_head": config.epochs_head,
        "epochs_finetune": config.epochs_finetune,
        "patience": config.patience,
        "batch_size": config.batch_size,
        "space": space_settings(space),
    }


def space_settings(space: Any) -> dict[str, dict[str, Any]]:
    """The search space as plain data, without the files it was read from."""
    return {
        param.name: {
            "kind": param.kind,
            "values": list(param.values) if param.values is not None else None,
            "min": param.min,
            "max": param.max,
            "step": param.step,
            "sampling": param.sampling,
            "default": param.default,
        }
        for param in space.params
    }


def changed_settings(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The `RESUME_SETTINGS` in which `current` differs from a project's `previous` run.json, as
    "FLAG NEW (this project: OLD)" phrases. A setting an older run.json lacks is not compared."""
    changes = []
    for key, flag in RESUME_SETTINGS.items():
        if key not in previous or previous[key] == current.get(key):
            continue
        if key == "space":
            old, new = previous[key] or {}, current[key] or {}
            names = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
            changes.append(f"{flag} (differs in {', '.join(names)})")
        else:
            changes.append(
                f"{flag} {_setting(current.get(key))} (this project: {_setting(previous[key])})"
            )
    return changes


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def read_run(project_dir: Path) -> dict[str, Any] | None:
    """The project's run.json as a dict; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads((Path(project_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def last_failure(tuner: Any, trial: Any = None) -> str:
    """The one-line reason a trial failed (default: the last failed one), for the message that
    stops a search.

    The trial's own summary.json reason comes first: KerasTuner's message is a whole traceback
    whose last line names the exception by its dotted path ("keras_tuner.src.errors....: ...").
    """
    if trial is None:
        failed = [t for t in tuner.oracle.trials.values() if t.status in ("FAILED", "INVALID")]
        if not failed:
            return "unknown"
        trial = failed[-1]
    summary, _ = TrialSummary.read(Path(tuner.get_trial_dir(trial.trial_id)))
    reason = summary.reason if summary else None
    return failure_reason(reason, trial.message, limit=200) or "unknown"
