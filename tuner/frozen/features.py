"""The frozen backbones of a search: their weights, their builds, and what trials derive from them.

`Features` owns everything about a backbone that does not move during a search, once per process:
which weights it starts from (`Weights`, with `--weights none` drawn once and saved), its build,
and through `tuner.frozen.activations.BackboneSession` the activations of its frozen part for every
image, cached on disk (docs/design.md §1). The pooled output feeds phase 1; the activations at a block boundary feed
phase 2. From the pooled features it also derives what every trial's head starts from: their
per-channel statistics (`tuner.models.network.FeatureStats`) and the linear head (`tuner.models.probe`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tuner.cache.store import ArrayCache
from tuner.config import SearchConfig
from tuner.frozen.activations import (
    BackboneSession,
    build_batch,
    pixel_batches,
    run_frozen,
    with_preprocessing,
)
from tuner.frozen.context import SearchContext
from tuner.models import cuts
from tuner.models.network import FeatureStats
from tuner.models.probe import LinearHead, fit_linear_head
from tuner.models.registry import (
    Backbone,
    build_backbone,
    file_sha256,
    get_backbone,
    weights_origin,
)
from tuner.project.layout import atomic_write


@dataclass(frozen=True)
class Weights:
    """How one backbone gets its starting weights, and what identifies them."""

    argument: str | None  # what build_backbone receives: "imagenet" or a file path
    origin: str  # for the leaderboard and metadata: "imagenet", "none" or "file:<sha>"
    key: str  # identifies the exact weights inside cache fingerprints


def image_sizes(config: SearchConfig) -> dict[str, int]:
    """The input size of each searched backbone: `--image-size`, else the backbone's own."""
    return {name: config.image_size or get_backbone(name).default_size for name in config.backbones}


def resolve_weights(
    config: SearchConfig,
    backbone: Backbone,
    size: int,
    keep: Callable[[keras.Model], None] | None = None,
) -> Weights:
    """Resolves `--weights` for one backbone at one size.

    Random init (`none`) is drawn once, seeded, and saved under the project directory, so that
    every trial, every process and every rebuild (checkpoints, export) sees the same frozen
    weights, and the cache fingerprint can name them exactly. When this call draws it, the
    model it drew is handed to `keep`: it holds exactly the saved weights, so the first build
    need not be made and loaded again.
    """
    choice = config.weights
    if choice == "imagenet":
        return Weights("imagenet", "imagenet", f"imagenet:{keras.__version__}")
    if choice == "none":
        path = config.project_dir / "init" / f"{backbone.name}-{size}.weights.h5"
        drawn = _ensure_random_init(backbone, size, path, config.seed)
        if drawn is not None and keep is not None:
            keep(drawn)
        return Weights(str(path), "none", f"none:{file_sha256(path)[:16]}")
    # The key names the file by its sha256; the origin says what it is when it was made by
    # tuner.weights (for example HED's edge-detection VGG16), else the same sha.
    from tuner.models.pretrained import describe

    key = weights_origin(choice)
    return Weights(choice, describe(choice) or key, key)


def _ensure_random_init(backbone: Backbone, size: int, path: Path, seed: int) -> keras.Model | None:
    """Draws and saves the random init at `path` unless it exists; returns the drawn model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several workers of a distributed search share the project folder: one draws the init.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return None
        keras.utils.set_random_seed(seed)
        model = build_backbone(backbone, size, None)
        # Keras saves weights only to a name that ends in ".weights.h5".
        atomic_write(path, model.save_weights, suffix=".weights.h5")
        return model


class Features:
    """The frozen computations every trial of one search shares, once per process.

    Args:
        context: the search's configuration and images, where cache builds show their progress,
            and where time spent building and caching is counted.
        image_sizes: the input size of each backbone, resolved once (`image_sizes`).
        max_unfreeze_blocks: the most blocks any trial of the space unfreezes.
    """

    def __init__(
        self,
        context: SearchContext,
        *,
        image_sizes: dict[str, int],
        max_unfreeze_blocks: int,
    ) -> None:
        config = context.config
        self.context = context
        self.image_sizes = dict(image_sizes)
        self.max_unfreeze_blocks = max_unfreeze_blocks
        self.cache = (
            ArrayCache(config.resolved_cache_dir, memory_budget=config.cache_memory)
            if config.cache
            else None
        )
        self._weights: dict[str, Weights] = {}
        self._drawn: dict[str, keras.Model] = {}  # a random init drawn here, not yet handed out
        self._sessions: dict[str, BackboneSession] = {}
        self._pooled: dict[tuple[str, str], np.ndarray] = {}  # the no-cache path's, in memory
        self._stats: dict[str, FeatureStats] = {}
        self._linear: dict[str, LinearHead] = {}

    def weights(self, name: str) -> Weights:
        """The starting weights of backbone `name` (resolved once)."""
        if name not in self._weights:
            size = self.image_sizes[name]
            self._weights[name] = resolve_weights(
                self.context.config,
                get_backbone(name),
                size,
                keep=lambda model: self._drawn.__setitem__(name, model),
            )
        return self._weights[name]

    def build_backbone(self, name: str) -> keras.Model:
        """A new build of backbone `name` with its starting weights (the first, when this process
        drew the random init, is the very model it drew)."""
        spec = get_backbone(name)
        weights = self.weights(name)
        drawn = self._drawn.pop(name, None)
        if drawn is not None:
            return drawn
        return build_backbone(spec, self.image_sizes[name], weights.argument)

    def session(self, name: str) -> BackboneSession:
        """Backbone `name` built once for this process, with its cached activations."""
        if name not in self._sessions:
            with self.context.overhead.timed():
                spec = get_backbone(name)
                self._sessions[name] = BackboneSession(
                    spec,
                    self.build_backbone(name),
                    size=self.image_sizes[name],
                    weights_key=self.weights(name).key,
                    context=self.context,
                    cache=self.cache,
                    max_unfreeze_blocks=self.max_unfreeze_blocks,
                )
        return self._sessions[name]

    def count_blocks(self, name: str) -> int:
        """How many unfreezable blocks backbone `name` has."""
        # The cached path keeps this process's build; the full path builds its own in every trial.
        model = self.session(name).model if self.context.config.cache else self.build_backbone(name)
        return len(cuts.blocks(model, get_backbone(name).block_pattern))

    def pooled(self, name: str, which: str) -> np.ndarray:
        """The frozen backbone's pooled output for every train or val image (un-augmented for
        val; with `--augment`, the cached train entry holds its views).

        On the cached path this is the cache entry phase 1 trains on. Without the cache it is
        computed once per process, in memory, for the head's standardization and the linear head.
        """
        config, data = self.context.config, self.context.data
        if config.cache:
            session = self.session(name)
            return session.features(which, session.last)
        key = (name, which)
        if key not in self._pooled:
            with self.context.overhead.timed():
                spec = get_backbone(name)
                size = self.image_sizes[name]
                model = with_preprocessing(self.build_backbone(name), spec, size)
                batches = pixel_batches(data.pixels(which, size), build_batch(config))
                parts = []
                with self.context.display.build_progress(
                    f"pooling {which} features", len(data.images(which))
                ) as update:
                    for xb in run_frozen(model, batches, (size, size, 3)):
                        parts.append(xb)
                        update(sum(len(p) for p in parts))
                self._pooled[key] = np.concatenate(parts)
        return self._pooled[key]

    def feature_stats(self, name: str) -> FeatureStats:
        """Per-channel statistics of the training set's pooled features, for the head's input."""
        if name not in self._stats:
            self._stats[name] = FeatureStats.of(self.pooled(name, "train"))
        return self._stats[name]

    def linear_head(self, name: str) -> LinearHead:
        """The logistic-regression head on standardized pooled features (`head/units = 0`),
        fitted once per backbone and process on the training features alone: its regularization
        is chosen by stratified k-fold log-loss on them (`tuner.models.probe`), weighted by the
        class weights when the classes are weighed. The validation features never reach it: they
        choose epochs and trials.

        Raises:
            DataError: a class has fewer than 2 training images (no fold could hold it out).
        """
        if name not in self._linear:
            data = self.context.data
            with self.context.overhead.timed():
                stats = self.feature_stats(name)
                train = self.pooled(name, "train")
                images = len(data.train)
                views = len(train) // images
                labels = np.tile(data.labels("train"), views)
                self._linear[name] = fit_linear_head(
                    stats.standardize(train),
                    labels,
                    data.n_classes,
                    sample_weight=self.context.sample_weights(labels),
                    seed=self.context.config.seed,
                    # The views of one image stay in one fold: a fit never scores what it saw.
                    groups=np.tile(np.arange(images), views),
                    class_names=list(data.class_names),
                )
        return self._linear[name]


def stochastic_layers(model: keras.Model) -> list[str]:
    """Layers of a backbone that act differently under `fit` (dropout, noise)."""
    kinds = (
        keras.layers.Dropout,
        keras.layers.SpatialDropout2D,
        keras.layers.GaussianNoise,
        keras.layers.GaussianDropout,
        keras.layers.AlphaDropout,
    )
    names = [layer.name for layer in model.layers if isinstance(layer, kinds)]
    # ConvNeXt's stochastic depth is its own layer class.
    names += [layer.name for layer in model.layers if "StochasticDepth" in type(layer).__name__]
    return names


def describe_training(config: SearchConfig, features: Features) -> list[str]:
    """What the user should know about how trials train: cached or not, and why it matters."""
    operations = ", ".join(config.augmentations)
    if not config.cache:
        return [
            "cache off (--no-cache): every epoch runs the whole backbone"
            + (f"; every training image augmented ({operations})" if config.augment else "")
        ]
    lines = [
        f"cache on ({config.resolved_cache_dir}): the frozen backbone runs once per image"
        + (
            f"; {config.augment_views} views per image, the clean one and "
            f"{config.augment_views - 1} augmented ({operations})"
            if config.augment
            else ""
        )
    ]
    for name in config.backbones:
        noisy = stochastic_layers(features.session(name).model)
        if noisy:
            lines.append(
                f"{name} has {len(noisy)} dropout/stochastic-depth layers: on the cached path its "
                "frozen part runs them in inference mode (deterministic features); --no-cache "
                "runs them in training mode instead"
            )
    return lines
