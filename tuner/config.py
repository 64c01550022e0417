"""The one frozen configuration object of a search, built by the CLI and read by everything below it.

Nothing below `tuner.search` sees argparse: the CLI validates flags and builds a `SearchConfig`; the
engine, the cache and the export read only this object. It imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tuner.errors import ConfigError

ORACLES = ("random", "bayesian", "hyperband")
# The metrics every trial logs; an objective outside this set would fail every trial with a bare
# KeyError inside KerasTuner (docs/design.md §3), so it is rejected before the search starts.
OBJECTIVES = {
    "val_accuracy": "max",
    "val_balanced_accuracy": "max",  # the mean of per-class recall: for imbalanced classes
    "val_macro_f1": "max",
    "val_auc": "max",  # two classes only
    "val_loss": "min",
    "accuracy": "max",
    "loss": "min",
}
# `--objective auto` (the default) becomes val_balanced_accuracy when the training classes are
# imbalanced (`tuner.metrics.IMBALANCE_RATIO`) and val_accuracy otherwise: `resolve_for_data`.
AUTO = "auto"
CLASS_WEIGHTS = ("auto", "balanced", "none")
SELECTIONS = ("best", "one-se")  # `--select`: the best trial, or the cheapest one tied with it
CALIBRATIONS = ("temperature", "none")
AUGMENTATIONS = ("flip", "rotate", "zoom")
# `--augment` alone: no flip, which would change a class defined by its orientation (digits,
# text, arrows); `--augment flip,rotate,zoom` asks for it.
DEFAULT_AUGMENTATIONS = ("rotate", "zoom")
# Ties on the objective are common on a small validation set (several trials at val_accuracy
# 1.0): they are broken by the other metric of the pair, at the same best epoch. The recorder that
# picks a trial's best epoch (tuner.train.trial) and the leaderboard's ranking use the same rule, so
# the leaderboard's first row is the model that is exported.
TIEBREAK: dict[str, tuple[str, str]] = {
    "val_accuracy": ("val_loss", "min"),
    "val_balanced_accuracy": ("val_loss", "min"),
    "val_macro_f1": ("val_loss", "min"),
    "val_auc": ("val_loss", "min"),
    "val_loss": ("val_accuracy", "max"),
    "accuracy": ("loss", "min"),
    "loss": ("accuracy", "max"),
}


# The counts and sizes a search cannot run below (a None image size is each backbone's own).
_AT_LEAST = {
    "max_trials": 1,
    "epochs_head": 1,
    "epochs_finetune": 0,
    "patience": 0,
    "finetune_contenders": 0,
    "batch_size": 1,
    "augment_views": 1,
    "cache_memory": 0,
    "max_consecutive_failures": 1,
    "image_size": 1,
}


def _refuse(name: str, rule: str, value: Any) -> NoReturn:
    """Raises the one-line error for a field that breaks its rule, named by its flag."""
    flag = "--" + name.replace("_", "-")
    raise ConfigError(f"`{flag}` {rule}. Received: {name}={value!r}")


@dataclass(frozen=True)
class SearchConfig:
    """Everything one search needs, validated.

    Attributes are documented by the CLI flags of the same name (`python -m tuner.search --help`).
    """

    data: Path  # training images: class subfolders, or a flat folder of "label.N.ext" files
    backbones: tuple[str, ...]  # registry names; several make `backbone` a searched hyperparameter
    project_dir: Path  # trials, checkpoints, caches (unless cache_dir), leaderboard data, export
    val_data: Path | None = None  # a separate validation folder; else a stratified split of data
    val_split: float = 0.2  # fraction of each class held out when val_data is None
    image_size: int | None = None  # None: each backbone's default size
    weights: str = "imagenet"  # "imagenet", "none" or a path to a local weights file
    space: Path | None = None  # a user search-space TOML laid over the defaults
    oracle: str = "random"  # one of ORACLES
    max_trials: int = 10
    epochs_head: int = 4  # phase 1: backbone frozen
    epochs_finetune: int = 4  # phase 2: top blocks unfrozen
    patience: int = 2  # early stopping inside each phase; 0 turns it off
    finetune_contenders: int = 0  # phase 2 only for the N best head-only scores; 0: every trial
    batch_size: int = 32
    objective: str = AUTO  # one of OBJECTIVES, or "auto" until `resolve_for_data`
    class_weight: str = "auto"  # one of CLASS_WEIGHTS; "auto" until `resolve_for_data`
    select: str = "best"  # one of SELECTIONS: which tied trial is exported
    test_data: Path | None = None  # a held-out test folder, scored once on the export
    calibrate: str = "temperature"  # one of CALIBRATIONS: the export's temperature scaling
    seed: int = 1
    overwrite: bool = False
    export_dir: Path | None = None  # default: project_dir / "export"
    cache: bool = True  # train on cached frozen activations; False keeps the full-model path
    cache_dir: Path | None = None  # default: project_dir / "cache"
    cache_memory: int = 256 * 2**20  # bytes; larger entries are read from disk a batch at a time
    cache_dtype: str = "float16"  # float16 halves the cache for a ~2e-4 relative change
    augment: bool = False
    augment_views: int = 4  # cached views per image when augment is on (view 0 is clean)
    augmentations: tuple[str, ...] = DEFAULT_AUGMENTATIONS  # of AUGMENTATIONS, with augment on
    shuffle: bool = True
    max_consecutive_failures: int = 3
    time_budget: float | None = None  # seconds from the start: no trial starts after it
    demo: bool = False
    verbose: int = 1
    # A search over several processes (`tuner.cluster`): this one serves the oracle ("chief") at
    # `oracle_address`, or runs trials for the chief there ("worker", named `worker_id`).
    role: str = "single"
    oracle_address: str | None = None  # "HOST:PORT"
    worker_id: str | None = None
    worker_timeout: float = 600.0  # seconds of silence before a worker's trial is taken from it
    strategy: str | None = None  # "mirrored": tf.distribute.MirroredStrategy inside each trial

    def __post_init__(self) -> None:
        for name, least in _AT_LEAST.items():
            value = getattr(self, name)
            if value is not None and value < least:
                note = " (0 fine-tunes every trial)" if name == "finetune_contenders" else ""
                _refuse(name, f"must be >= {least}{note}", value)
        if not 0.0 < self.val_split < 1.0:
            _refuse("val_split", "must be between 0 and 1 (exclusive)", self.val_split)
        if not self.backbones:
            _refuse("backbone", "needs at least one name", self.backbones)
        for name in ("time_budget", "worker_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                _refuse(name, "must be > 0 (seconds)", value)
        self._check_cluster()
        if self.cache_dtype not in ("float16", "float32"):
            raise ConfigError(
                f"Expected cache_dtype 'float16' or 'float32'. Received: {self.cache_dtype!r}"
            )
        if self.oracle not in ORACLES:
            raise ConfigError(
                f"Unknown oracle. Expected one of {', '.join(ORACLES)}. "
                f"Received: oracle={self.oracle!r}"
            )
        if self.oracle == "hyperband" and self.epochs_finetune < 1:
            raise ConfigError(
                "`--epochs-finetune` must be >= 1 with --oracle hyperband: its brackets share out "
                f"fine-tuning epochs. Received: epochs_finetune={self.epochs_finetune}"
            )
        if self.objective != AUTO and self.objective not in OBJECTIVES:
            raise ConfigError(
                f"Unknown objective. Expected auto or one of {', '.join(OBJECTIVES)} (the metrics "
                f"every trial logs). Received: objective={self.objective!r}"
            )
        for name, allowed in (
            ("class_weight", CLASS_WEIGHTS),
            ("select", SELECTIONS),
            ("calibrate", CALIBRATIONS),
        ):
            if getattr(self, name) not in allowed:
                _refuse(name, f"must be one of {', '.join(allowed)}", getattr(self, name))
        if self.augment and self.cache and self.augment_views < 2:
            # View 0 of the cache is the clean image: one view would augment nothing.
            _refuse(
                "augment_views",
                "must be >= 2 with --augment (the first cached view is the clean image)",
                self.augment_views,
            )
        unknown = [a for a in self.augmentations if a not in AUGMENTATIONS]
        if unknown or not self.augmentations:
            _refuse(
                "augment",
                f"takes a comma-separated list of {', '.join(AUGMENTATIONS)}",
                ",".join(self.augmentations),
            )

    def _check_cluster(self) -> None:
        if self.role not in ("single", "chief", "worker"):
            raise ConfigError(f"Unknown role {self.role!r}: single, chief or worker.")
        if self.role != "single" and not self.oracle_address:
            raise ConfigError(f"A {self.role} needs the chief's address: --{self.role} HOST:PORT.")
        if self.role == "worker" and not self.worker_id:
            raise ConfigError("--worker needs --worker-id NAME, a name unique to this worker.")
        if self.role != "worker" and self.worker_id:
            raise ConfigError("--worker-id names a worker: pass it with --worker HOST:PORT.")
        if self.role == "worker" and self.overwrite:
            raise ConfigError(
                "Only the chief may start the search over: drop --overwrite from the worker "
                "(the trials folder is shared, and peers are running in it)."
            )
        if self.strategy not in (None, "mirrored"):
            raise ConfigError(
                f"Unknown --strategy. Expected mirrored. Received: strategy={self.strategy!r}"
            )

    @property
    def direction(self) -> str:
        """ "max" or "min", the direction of `objective` (every objective "auto" can become is
        maximized)."""
        return OBJECTIVES.get(self.objective, "max")

    @property
    def trials_dir(self) -> Path:
        """The KerasTuner project folder (oracle state and one folder per trial)."""
        return self.project_dir / "trials"

    @property
    def resolved_export_dir(self) -> Path:
        """Where the best model is exported: `--export`, else PROJECT_DIR/export."""
        return self.export_dir or self.project_dir / "export"

    @property
    def resolved_cache_dir(self) -> Path:
        """Where the cache lives: `--cache-dir`, else PROJECT_DIR/cache."""
        return self.cache_dir or self.project_dir / "cache"

    @property
    def total_epochs(self) -> int:
        """The whole per-trial budget; Hyperband runs over it with the phase boundary at
        `epochs_head`."""
        return self.epochs_head + self.epochs_finetune

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with `changes` applied, validated again."""
        return dataclasses.replace(self, **changes)


# The search's configuration as it ran, in the project folder: what `python -m tuner.export`
# rebuilds the search's data and models from.
CONFIG_FILE = "config.json"
_PATHS = ("data", "project_dir", "val_data", "space", "export_dir", "cache_dir", "test_data")


def config_to_json(config: SearchConfig) -> str:
    """`config` as JSON, with absolute paths (a weights file's too)."""
    data = dataclasses.asdict(config)
    for name in _PATHS:
        if data[name] is not None:
            data[name] = str(Path(data[name]).absolute())
    if data["weights"] not in ("imagenet", "none"):
        data["weights"] = str(Path(data["weights"]).absolute())
    data["backbones"] = list(config.backbones)
    data["augmentations"] = list(config.augmentations)
    return json.dumps(data, indent=2)


def config_from_json(text: str) -> SearchConfig:
    """The `SearchConfig` that `config_to_json` wrote (fields it does not know are ignored).

    Raises:
        ConfigError: the text is not such a configuration.
    """
    try:
        data = json.loads(text)
        fields = {f.name for f in dataclasses.fields(SearchConfig)}
        settings = {k: v for k, v in data.items() if k in fields}
        for name in _PATHS:
            if settings.get(name) is not None:
                settings[name] = Path(settings[name])
        settings["backbones"] = tuple(settings["backbones"])
        if "augmentations" in settings:
            settings["augmentations"] = tuple(settings["augmentations"])
        elif settings.get("augment"):
            # Written before augmentations were a choice: every view was flipped, rotated, zoomed.
            settings["augmentations"] = AUGMENTATIONS
        # Written before "auto" existed: the objective it ran with, and no class weights.
        settings.setdefault("objective", "val_accuracy")
        settings.setdefault("class_weight", "none")
        return SearchConfig(**settings)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ConfigError(f"Not a search configuration ({CONFIG_FILE}): {error}") from error


def default_project_dir(backbones: tuple[str, ...]) -> Path:
    """`runs/<backbone>` (several backbones join with '+')."""
    return Path("runs") / "+".join(backbones)


def parse_size(text: str) -> int:
    """Parse a byte size such as "512M", "2G" or "1000000" (for `--cache-memory`)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    value = text.strip().lower().rstrip("b")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise ConfigError(
            f"Expected a size such as 512M or 2G. Received: cache_memory={text!r}"
        ) from None


def parse_augmentations(text: str) -> tuple[str, ...]:
    """`flip,rotate,zoom` (any subset, any order) as a tuple in AUGMENTATIONS order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if not names or unknown:
        raise ConfigError(
            f"--augment takes a comma-separated list of {', '.join(AUGMENTATIONS)} (alone: "
            f"{','.join(DEFAULT_AUGMENTATIONS)}, no flip). Received: {text!r}"
        )
    return tuple(a for a in AUGMENTATIONS if a in names)


def resolve_for_data(
    config: SearchConfig,
    counts: list[int],
    class_names: list[str],
    val_counts: list[int] | None = None,
) -> tuple[SearchConfig, list[str]]:
    """`config` with `--class-weight auto` and `--objective auto` decided by the training set's
    class counts, and one line for each saying what applies and why.

    Imbalanced means the largest class has at least `tuner.metrics.IMBALANCE_RATIO` times the
    images of the smallest: then auto weighs the classes (balanced) and ranks trials by
    val_balanced_accuracy; otherwise no weights and val_accuracy.

    Raises:
        ConfigError: `val_auc` with more than two classes, or with a validation split (its
            per-class `val_counts`) that lacks one of them: the AUC is then undefined on every
            epoch, and no trial could be ranked.
    """
    from tuner.metrics import IMBALANCE_RATIO, imbalance

    ratio = imbalance(counts)
    imbalanced = ratio >= IMBALANCE_RATIO
    largest, smallest = int(max(counts)), int(min(counts))
    big = class_names[counts.index(largest)]
    small = class_names[counts.index(smallest)]
    why = (
        f"the largest training class ({big}, {largest} images) is {ratio:.1f}x the smallest "
        f"({small}, {smallest})"
        if imbalanced
        else f"the classes are balanced within {IMBALANCE_RATIO:g}x ({ratio:.1f}x)"
    )
    changes: dict[str, Any] = {}
    notes = []
    if config.class_weight == "auto":
        changes["class_weight"] = "balanced" if imbalanced else "none"
        notes.append(f"class weights: {changes['class_weight']} (--class-weight auto: {why})")
    else:
        notes.append(f"class weights: {config.class_weight} (--class-weight)")
    if config.objective == AUTO:
        changes["objective"] = "val_balanced_accuracy" if imbalanced else "val_accuracy"
        notes.append(f"objective: {changes['objective']} (--objective auto: {why})")
    objective = changes.get("objective", config.objective)
    if objective == "val_auc" and len(class_names) != 2:
        raise ConfigError(
            f"--objective val_auc ranks two classes; these data have {len(class_names)}. Use "
            "val_balanced_accuracy or val_macro_f1."
        )
    if objective == "val_auc" and val_counts is not None and min(val_counts) == 0:
        missing = class_names[list(val_counts).index(0)]
        raise ConfigError(
            f"--objective val_auc needs validation images of both classes; the validation split "
            f"has none of class {missing!r}. Add some to --val-data (or raise --val-split), "
            "or rank by val_balanced_accuracy."
        )
    return (config.replace(**changes) if changes else config), notes
