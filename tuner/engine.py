"""The search itself: a KerasTuner HyperModel and Tuner that run both transfer-learning phases.

Layering: `Workbench` owns the data and everything frozen (decoded pixels, backbones built once per
process, cached activations); `TransferHyperModel` declares the search space and builds the full
model; `TransferTuner.run_trial` trains phase 1 (head on a frozen backbone) and phase 2 (top blocks
unfrozen at a low learning rate) and returns one merged result.

The cached path (the default) never recomputes what is frozen: phase 1 trains the head on pooled
backbone features and phase 2 trains only the backbone's top blocks plus the head, on activations
cached at the block boundary (docs/design.md §1). `--no-cache` trains the full model instead.

Error semantics live here: a `TrialError` (or any unexpected error inside a trial) fails that trial
with a one-line reason and the search goes on; a `TunerError` inside a trial is a configuration
problem that every trial would hit, so it stops the search.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from tuner import cuts
from tuner.backbones import Backbone, build_backbone, file_sha256, get_backbone, weights_origin
from tuner.cache import ArrayCache
from tuner.config import SearchConfig
from tuner.data import ImageSet
from tuner.display import SearchDisplay
from tuner.errors import TrialError, TunerError
from tuner.leaderboard import TIEBREAK, failure_reason, load_leaderboard
from tuner.model import (
    BACKBONE_NAME,
    HEAD_NAME,
    FeatureStats,
    Pieces,
    augmentation_layers,
    build_classifier,
    build_head,
    compile_model,
    layer_weights,
)
from tuner.preprocessing import preprocessing_layers
from tuner.probe import LinearHead, fit_linear_head
from tuner.spaces import Space

CHECKPOINT = "checkpoint.npz"
SUMMARY = "summary.json"
CACHE_FORMAT = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file so that readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def trial_seed(seed: int, trial_id: str) -> int:
    digest = hashlib.sha256(f"{seed}/{trial_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def labels_for(images: ImageSet, n_classes: int) -> np.ndarray:
    labels = np.asarray(images.labels)
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
) -> tf.data.Dataset:
    """Batches of `x` (float32) and `y`, gathered by index so `x` may be a memory map.

    With `views > 1`, `x` holds `views` blocks of `len(y)` rows (view-major) and every sample draws
    one view each time it is served. The same seeds give the same batches on the cached and the
    full-model path, which is what makes the two comparable (and testable) step by step.
    """
    n = len(y)
    if len(x) != n * views:
        raise ValueError(
            f"Expected {n * views} rows of x for {n} labels and {views} views; received {len(x)}."
        )
    rng = np.random.default_rng(view_seed)
    sample_shape = tuple(x.shape[1:])
    y_shape = tuple(y.shape[1:])

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = index if views == 1 else rng.integers(0, views, len(index)) * n + index
        # Memory maps read fastest in file order; restore the batch order afterwards.
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(rows),) + sample_shape, dtype=np.float32)
        batch[order] = x[rows[order]]
        return batch, y[index]

    indices = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        indices = indices.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        xb, yb = tf.numpy_function(
            gather, [index], [tf.float32, tf.as_dtype(y.dtype)], stateful=True
        )
        xb.set_shape((None,) + sample_shape)
        yb.set_shape((None,) + y_shape)
        return xb, yb

    return indices.batch(batch_size).map(load).prefetch(2)


@dataclass
class Weights:
    """How one backbone gets its starting weights, and what identifies them."""

    argument: str | None  # what build_backbone receives: "imagenet" or a file path
    origin: str  # for the leaderboard and metadata: "imagenet", "none" or "file:<sha>"
    key: str  # identifies the exact weights inside cache fingerprints


PIXELS_FORMAT = 1


class PixelStore:
    """Decoded, resized pixels of an image set, kept in the cache so that a rerun decodes nothing.

    An entry is keyed like the activations: by every file's path, size and mtime, the class names
    and the size. Its index (which files decoded, and why the others did not) is stored beside it,
    as JSON bytes in a uint8 entry, and is written last: without it the pixels are not used.
    The cache folder is only created by `save`, so a lookup never writes a file.
    """

    def __init__(self, root: Path, *, memory_budget: int) -> None:
        self.root = root
        self.memory_budget = memory_budget
        self._cache: ArrayCache | None = None

    def _open(self, create: bool) -> ArrayCache | None:
        if self._cache is None and (create or self.root.is_dir()):
            self._cache = ArrayCache(self.root, memory_budget=self.memory_budget)
        return self._cache

    @staticmethod
    def key(images: ImageSet, size: int) -> dict[str, Any]:
        from tuner.data import fingerprint_files

        return {
            "format": PIXELS_FORMAT,
            "size": size,
            "classes": list(images.class_names),
            "files": [list(f) for f in fingerprint_files(images)],
        }

    def load(self, images: ImageSet, size: int) -> tuple[ImageSet, np.ndarray, list] | None:
        """(kept images, uint8 pixels, skipped files) as `tuner.data.load_pixels` returns them,
        or None when not cached."""
        from tuner.data import Skipped

        cache = self._open(create=False)
        if cache is None:
            return None
        key = self.key(images, size)
        index = cache.lookup(f"pixels-{size}-index", key)
        pixels = cache.lookup(f"pixels-{size}", key) if index is not None else None
        if index is None or pixels is None:
            return None
        info = json.loads(bytes(np.asarray(index.array)).decode())
        keep = np.zeros(len(images), dtype=bool)
        keep[info["kept"]] = True
        skipped = [Skipped(path, reason) for path, reason in info["skipped"]]
        return images.subset(keep), np.asarray(pixels.array), skipped

    def save(self, images: ImageSet, size: int, result: tuple[ImageSet, np.ndarray, list]) -> None:
        kept, pixels, skipped = result
        cache = self._open(create=True)
        assert cache is not None
        key = self.key(images, size)
        position = {path: i for i, path in enumerate(images.paths)}
        info = {
            "kept": [position[path] for path in kept.paths],
            "skipped": [[item.path, item.reason] for item in skipped],
        }
        blob = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
        cache.get_or_build(
            f"pixels-{size}", key, shape=pixels.shape, dtype="uint8", produce=lambda: iter([pixels])
        )
        cache.get_or_build(
            f"pixels-{size}-index",
            key,
            shape=blob.shape,
            dtype="uint8",
            produce=lambda: iter([blob]),
        )


class Workbench:
    """The data and the frozen computations that every trial of one search shares.

    Args:
        config: the search configuration.
        space: the search space.
        train, val: the image sets, and their decoded pixels (uint8, N x S x S x 3), keyed by the
            image size they were decoded at.
        display: where progress goes.
    """

    def __init__(
        self,
        config: SearchConfig,
        space: Space,
        *,
        train: ImageSet,
        val: ImageSet,
        pixels: Callable[[ImageSet, int], np.ndarray],
        display: SearchDisplay | None = None,
    ) -> None:
        self.config = config
        self.space = space
        self.train = train
        self.val = val
        self._pixels = pixels
        self._pixel_cache: dict[tuple[int, int], np.ndarray] = {}
        self.display = display or SearchDisplay(verbose=0)
        self.class_names = tuple(train.class_names)
        self.n_classes = len(self.class_names)
        self.cache = (
            ArrayCache(config.resolved_cache_dir, memory_budget=config.cache_memory)
            if config.cache
            else None
        )
        self._sessions: dict[str, BackboneSession] = {}
        self._weights: dict[tuple[str, int], Weights] = {}
        self._pooled: dict[tuple[str, str], np.ndarray] = {}  # the no-cache path's, in memory
        self._stats: dict[str, FeatureStats] = {}
        self._linear: dict[str, LinearHead] = {}
        self.overhead_seconds = 0.0  # time outside training: building, tracing, cache I/O

    def pixels(self, which: str, size: int) -> np.ndarray:
        images = self.train if which == "train" else self.val
        key = (id(images), size)
        if key not in self._pixel_cache:
            self._pixel_cache[key] = self._pixels(images, size)
        return self._pixel_cache[key]

    def labels(self, which: str) -> np.ndarray:
        return labels_for(self.train if which == "train" else self.val, self.n_classes)

    def image_size(self, backbone: Backbone) -> int:
        return self.config.image_size or backbone.default_size

    def weights(self, backbone: Backbone) -> Weights:
        """Resolve `--weights` for one backbone.

        Random init (`none`) is drawn once, seeded, and saved under the project directory, so that
        every trial, every process and every rebuild (checkpoints, export) sees the same frozen
        weights, and the cache fingerprint can name them exactly.
        """
        size = self.image_size(backbone)
        key = (backbone.name, size)
        if key in self._weights:
            return self._weights[key]
        choice = self.config.weights
        if choice == "imagenet":
            resolved = Weights("imagenet", "imagenet", f"imagenet:{keras.__version__}")
        elif choice == "none":
            path = self.config.project_dir / "init" / f"{backbone.name}-{size}.weights.h5"
            self._ensure_random_init(backbone, size, path)
            resolved = Weights(str(path), "none", f"none:{file_sha256(path)[:16]}")
        else:
            # The key names the file by its sha256; the origin says what it is when it was made
            # by tuner.weights (for example HED's edge-detection VGG16), else the same sha.
            from tuner.weights import describe

            key = weights_origin(choice)
            resolved = Weights(choice, describe(choice) or key, key)
        self._weights[key] = resolved
        return resolved

    def _ensure_random_init(self, backbone: Backbone, size: int, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several workers of a distributed search share the project folder: one draws the init.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                return
            keras.utils.set_random_seed(self.config.seed)
            model = build_backbone(backbone, size, None)
            tmp = path.with_name(f"{path.name[: -len('.weights.h5')]}.{os.getpid()}.tmp.weights.h5")
            try:
                model.save_weights(tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)

    def build_backbone(self, backbone: Backbone) -> keras.Model:
        return build_backbone(backbone, self.image_size(backbone), self.weights(backbone).argument)

    def pooled(self, name: str, which: str) -> np.ndarray:
        """The frozen backbone's pooled output for every train or val image (un-augmented for
        val; with `--augment`, the cached train entry holds its views).

        On the cached path this is the cache entry phase 1 trains on. Without the cache it is
        computed once per process, in memory, for the head's standardization and the linear head.
        """
        if self.config.cache:
            session = self.session(name)
            return session.features(which, session.last)
        key = (name, which)
        if key not in self._pooled:
            start = time.perf_counter()
            spec = get_backbone(name)
            size = self.image_size(spec)
            inputs = keras.Input((size, size, 3))
            x = inputs
            for layer in preprocessing_layers(spec.preprocessing):
                x = layer(x)
            model = keras.Model(inputs, self.build_backbone(spec)(x))
            forward = tf.function(
                lambda xb: model(xb, training=False),
                input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
            )
            pixels = self.pixels(which, size)
            batch = build_batch(self.config.batch_size)
            with self.display.build_progress(f"pooling {which} features", len(pixels)) as update:
                parts = []
                for begin in range(0, len(pixels), batch):
                    parts.append(
                        np.asarray(forward(pixels[begin : begin + batch].astype("float32")))
                    )
                    update(min(len(pixels), begin + batch))
            self._pooled[key] = np.concatenate(parts)
            self.overhead_seconds += time.perf_counter() - start
        return self._pooled[key]

    def feature_stats(self, name: str) -> FeatureStats:
        """Per-channel statistics of the training set's pooled features, for the head's input."""
        if name not in self._stats:
            self._stats[name] = FeatureStats.of(self.pooled(name, "train"))
        return self._stats[name]

    def linear_head(self, name: str) -> LinearHead:
        """The logistic-regression head on standardized pooled features (`head/units = 0`),
        its regularization chosen on the validation set; fitted once per backbone and process."""
        if name not in self._linear:
            start = time.perf_counter()
            stats = self.feature_stats(name)
            train = self.pooled(name, "train")
            views = len(train) // len(self.train)
            labels = np.tile(np.asarray(self.train.labels), views)
            self._linear[name] = fit_linear_head(
                stats.standardize(train),
                labels,
                stats.standardize(self.pooled(name, "val")),
                np.asarray(self.val.labels),
                self.n_classes,
                # The search's own objective chooses C (accuracy, ties to the lower log-loss).
                # Measured on scripts/quality.py's binary case: choosing by log-loss alone kept
                # a C whose val accuracy was 0.76 where C = 1 scored 0.80.
                select_on="loss" if self.config.objective.endswith("loss") else "accuracy",
            )
            self.overhead_seconds += time.perf_counter() - start
        return self._linear[name]

    def session(self, name: str) -> BackboneSession:
        if name not in self._sessions:
            start = time.perf_counter()
            self._sessions[name] = BackboneSession(self, get_backbone(name))
            self.overhead_seconds += time.perf_counter() - start
        return self._sessions[name]


class BackboneSession:
    """One backbone built once per process, its blocks, and its cached frozen activations.

    Splits are made once per cut and reused, since every split adds graph nodes to the layers above
    it (docs/design.md §2). Phase 2 trains the shared top layers in place, so the pretrained
    weights above the deepest cut are kept and restored before each fine-tuning.
    """

    def __init__(self, bench: Workbench, backbone: Backbone) -> None:
        self.bench = bench
        self.spec = backbone
        self.size = bench.image_size(backbone)
        self.weights = bench.weights(backbone)
        self.model = bench.build_backbone(backbone)
        self.last = len(self.model.layers) - 1
        self._splits: dict[int, tuple[keras.Model, keras.Model]] = {}
        self._splits_between: dict[tuple[int, int], keras.Model] = {}
        self._features: dict[tuple[str, int], np.ndarray] = {}
        # Phase 2 trains the shared top layers in place; keep their pretrained weights, above the
        # deepest cut the space can ask for, to restore before each fine-tuning.
        n_blocks = len(cuts.blocks(self.model, backbone.block_pattern))
        deepest = min(bench.space.max_unfreeze_blocks(), n_blocks)
        self._deepest = self.cut(deepest) if deepest > 0 else self.last
        self._pretrained = {
            index: layer_weights([self.model.layers[index]])[0]
            for index in range(self._deepest + 1, len(self.model.layers))
        }

    @property
    def n_features(self) -> int:
        return int(self.model.output.shape[-1])

    def cut(self, k: int) -> int:
        return cuts.unfreeze_cut(self.model, self.spec.block_pattern, k)

    def split(self, cut: int) -> tuple[keras.Model, keras.Model]:
        if cut not in self._splits:
            self._splits[cut] = cuts.split(self.model, cut)
        return self._splits[cut]

    def restore_pretrained(self, cut: int) -> None:
        """Put the pretrained weights back on every layer above `cut`."""
        if cut < self._deepest:
            raise ValueError(
                f"Cut {cut} is below the deepest cut the space allows "
                f"({self._deepest}); its pretrained weights were not kept."
            )
        for index in range(cut + 1, len(self.model.layers)):
            if self._pretrained[index]:
                self.model.layers[index].set_weights(self._pretrained[index])

    @contextlib.contextmanager
    def pretrained(self) -> Iterator[None]:
        """Run the shared model with its pretrained weights, whatever a trial has done to them.

        Derived cache entries run layers above the deepest cut, which earlier trials fine-tuned
        in place; the entries (whose key says "pretrained") must never see those weights. The
        trial's own weights are put back afterwards.
        """
        layers = self.model.layers[self._deepest + 1 :]
        current = layer_weights(layers)
        self.restore_pretrained(self._deepest)
        try:
            yield
        finally:
            for layer, weights in zip(layers, current, strict=True):
                if weights:
                    layer.set_weights(weights)

    def source_of(self, cut: int) -> int | None:
        """The cut whose cached activations `cut`'s are derived from; None: from pixels.

        Only the deepest cut the space allows runs the frozen bottom over the images; every
        shallower boundary, and the pooled output, is derived from its cache by running just
        the few layers in between, so the backbone passes over the images once per search.
        """
        return self._deepest if self._deepest < cut else None

    def _between(self, start: int, end: int) -> keras.Model:
        """The layers after `start` up to `end`, as a model (made once per pair)."""
        if (start, end) not in self._splits_between:
            self._splits_between[(start, end)] = keras.Model(
                self.model.layers[start].output, self.model.layers[end].output
            )
        return self._splits_between[(start, end)]

    def cache_key(self, which: str, cut: int) -> dict[str, Any]:
        from tuner.data import fingerprint_files

        config = self.bench.config
        images = self.bench.train if which == "train" else self.bench.val
        augment = which == "train" and config.augment
        return {
            "format": CACHE_FORMAT,
            "backbone": self.spec.name,
            "weights": self.weights.key,
            "image_size": self.size,
            "preprocessing": self.spec.preprocessing,
            "cut": cut,
            "source": self.source_of(cut),
            "layers": len(self.model.layers),
            "dtype": config.cache_dtype,
            # The augmented views depend on the seed and on the batches they were drawn in.
            "augment": {
                "views": config.augment_views,
                "seed": config.seed,
                "batch": build_batch(config.batch_size),
            }
            if augment
            else None,
            # A random init is drawn from the seed (its file's hash is in "weights" too).
            "seed": config.seed if config.weights == "none" else None,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "files": [list(f) for f in fingerprint_files(images)],
        }

    def features(self, which: str, cut: int) -> np.ndarray:
        """The frozen output at `cut` for every train or val image, from the cache or built now.

        The pooled backbone output (phase 1) is the output of the last layer, `cut == self.last`.
        With augmentation, the train entry holds `augment_views` blocks of rows (view-major).
        """
        key = (which, cut)
        if key in self._features:
            return self._features[key]
        bench = self.bench
        config = bench.config
        assert bench.cache is not None
        images = bench.train if which == "train" else bench.val
        augment = which == "train" and config.augment
        views = config.augment_views if augment else 1
        source_cut = self.source_of(cut)
        shape = (views * len(images),) + tuple(
            int(d) for d in self.model.layers[cut].output.shape[1:]
        )
        name = f"{self.spec.name}-{self.size}-{which}-cut{cut}"
        cache_key = self.cache_key(which, cut)
        batch = build_batch(config.batch_size)

        def forward_batches():
            if source_cut is not None:
                source = self.features(which, source_cut)
                model = self._between(source_cut, cut)
                batches = (
                    np.asarray(source[i : i + batch], dtype="float32")
                    for i in range(0, len(source), batch)
                )
                sample_shape = tuple(source.shape[1:])
            else:
                bottom = self.model if cut == self.last else self.split(cut)[0]
                inputs = keras.Input((self.size, self.size, 3))
                x = inputs
                for pre in preprocessing_layers(self.spec.preprocessing):
                    x = pre(x)
                model = keras.Model(inputs, bottom(x))
                batches = self._pixel_batches(which, views if augment else 0, batch)
                sample_shape = (self.size, self.size, 3)
            # One trace per build: a fixed signature with a free batch size.
            forward = tf.function(
                lambda xb: model(xb, training=False),
                input_signature=[tf.TensorSpec((None,) + sample_shape, tf.float32)],
            )
            for xb in batches:
                yield np.asarray(forward(xb))

        start = time.perf_counter()
        entry = bench.cache.lookup(name, cache_key)
        if entry is None:
            if source_cut is not None:
                self.features(which, source_cut)  # its own bar first, then this one
            where = "pooled" if cut == self.last else f"@ {self.model.layers[cut].name}"
            description = f"caching {which} {where}"
            with self.pretrained(), bench.display.build_progress(description, shape[0]) as update:
                batches = forward_batches()
                first = next(batches)
                # float16 cannot hold every backbone's activations: a random init's are far below
                # its smallest normal number. The first batch decides; the key names the request.
                dtype = storage_dtype(first, config.cache_dtype)
                where_text = f"{self.spec.name} {which} {where}"
                entry = bench.cache.get_or_build(
                    name,
                    cache_key,
                    shape=shape,
                    dtype=dtype,
                    produce=lambda: checked(itertools.chain([first], batches), where_text),
                    progress=update,
                )
        bench.overhead_seconds += time.perf_counter() - start
        self._features[key] = entry.array
        return entry.array

    def _pixel_batches(self, which: str, views: int, batch: int):
        """Float32 pixel batches; with `views`, that many augmented passes (view-major)."""
        config = self.bench.config
        pixels = self.bench.pixels(which, self.size)
        augmenter = keras.Sequential(augmentation_layers(config.seed)) if views else None
        for _view in range(max(1, views)):
            for start in range(0, len(pixels), batch):
                xb = pixels[start : start + batch].astype("float32")
                if augmenter is not None:
                    xb = np.asarray(augmenter(xb, training=True))
                yield xb


def build_batch(batch_size: int) -> int:
    """The batch size cache builds run at (it is part of an augmented entry's key)."""
    return max(8, min(64, batch_size))


# float16's smallest normal number: below it values lose precision, then flush to zero.
_FLOAT16_TINY = float(np.finfo(np.float16).tiny)
# Headroom below float16's largest value, so later batches a little larger than the first fit.
_FLOAT16_LARGEST = float(np.finfo(np.float16).max) / 16


def storage_dtype(sample: np.ndarray, requested: str) -> str:
    """`requested`, or float32 where float16 cannot hold the values of `sample`.

    float16 is kept when the largest magnitude fits with headroom and at most 1 % of the non-zero
    values fall below its smallest normal number (ReLU outputs are exactly zero often; those are
    held exactly). Random-init backbones give pooled features about 1e-5 (Xception) to 1e-12
    (MobileNetV2) in size, which float16 would round coarsely or flush to zero.
    """
    if requested != "float16":
        return requested
    magnitudes = np.abs(np.asarray(sample, dtype="float32")).ravel()
    nonzero = magnitudes[magnitudes > 0]
    if nonzero.size == 0 or not np.all(np.isfinite(nonzero)):
        return "float32"  # `checked` decides whether such an entry may be published at all
    if float(nonzero.max()) > _FLOAT16_LARGEST:
        return "float32"
    if float(np.quantile(nonzero, 0.01)) < _FLOAT16_TINY:
        return "float32"
    return "float16"


def checked(batches: Iterable[np.ndarray], where: str) -> Iterator[np.ndarray]:
    """Pass `batches` on, refusing NaN, inf, and an entry that is all zeros.

    Raising inside `produce()` makes the cache drop the entry unpublished, so such an entry can
    never be read back. Every trial would see the same values, so the search stops (TunerError).
    """
    nonzero = False
    for batch in batches:
        if not np.all(np.isfinite(batch)):
            raise TunerError(
                f"The frozen backbone's output ({where}) holds NaN or inf, so nothing was cached. "
                "Check the weights (--weights) and the input size (--image-size)."
            )
        nonzero = nonzero or bool(np.any(batch))
        yield batch
    if not nonzero:
        raise TunerError(
            f"The frozen backbone's output ({where}) is zero for every image, so nothing was "
            "cached: there is nothing to learn from. Check the weights (--weights) and the input "
            "size (--image-size)."
        )


class TransferHyperModel(kt.HyperModel):
    """Backbone + head, with the hyperparameters of both phases.

    Hyperparameters: `head/units`, `head/dropout`, `head/learning_rate`,
    `finetune/unfreeze_blocks`, `finetune/learning_rate`, and `backbone` when several are searched.
    """

    def __init__(self, bench: Workbench) -> None:
        super().__init__(name="transfer")
        self.bench = bench

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        backbones = self.bench.config.backbones
        if len(backbones) > 1:
            hp.Choice("backbone", list(backbones))
        self.bench.space.declare(hp)

    def backbone_of(self, hp: kt.HyperParameters) -> str:
        return hp.values.get("backbone", self.bench.config.backbones[0])

    def build(
        self, hp: kt.HyperParameters, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `hp`: pretrained backbone, untrained head (initialised from
        `seed`, standardizing with the training set's feature statistics), compiled for phase 1.

        Args:
            hp: the trial's hyperparameters.
            seed: the head's initialisation seed. Defaults to `--seed`.
            augment: put the augmentation layers in front (they act only in training). Defaults
                to `--augment`; models that are served or evaluated are built without them,
                since a direct call `model(x)` would run them.
        """
        self.declare_hyperparameters(hp)
        bench = self.bench
        name = self.backbone_of(hp)
        spec = get_backbone(name)
        backbone = bench.build_backbone(spec)
        backbone.trainable = False
        head = build_head(
            int(backbone.output.shape[-1]),
            units=hp.get("head/units"),
            dropout=hp.get("head/dropout"),
            n_classes=bench.n_classes,
            seed=bench.config.seed if seed is None else seed,
            stats=bench.feature_stats(name),
        )
        augment = bench.config.augment if augment is None else augment
        model = build_classifier(
            backbone,
            head,
            image_size=bench.image_size(spec),
            preprocessing=spec.preprocessing,
            augment_seed=bench.config.seed if augment else None,
        )
        compile_model(model, hp.get("head/learning_rate"), bench.n_classes)
        return model


@dataclass
class PhaseResult:
    epochs: int = 0
    seconds: float = 0.0
    best: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "val_accuracy": self.best.get("val_accuracy"),
            "best": self.best,
        }


class _Recorder(keras.callbacks.Callback):
    """Tracks the best epoch across both phases, keeps its weights, and stops on divergence.

    One recorder serves both phases so that the checkpoint is always the epoch the score came
    from (docs/design.md §3).
    """

    def __init__(
        self,
        objective: str,
        direction: str,
        capture: Callable[[], Pieces],
        on_epoch: Callable[[int, dict[str, float], float], None],
    ) -> None:
        super().__init__()
        self.objective = objective
        self.direction = direction
        self.capture = capture
        self.on_epoch = on_epoch
        self.best_logs: dict[str, float] | None = None
        self.best_pieces: Pieces | None = None
        self.phase = 1
        self.phase_best: dict[int, dict[str, float]] = {}
        self._started = 0.0

    def better(self, logs: dict[str, float], than: dict[str, float]) -> bool:
        """Whether an epoch's `logs` beat `than` on the objective; a tie goes to the better
        `TIEBREAK` metric (the leaderboard ranks trials by the same rule)."""
        sign = 1.0 if self.direction == "max" else -1.0
        a, b = sign * logs[self.objective], sign * than[self.objective]
        if a != b:
            return a > b
        tie, direction = TIEBREAK.get(self.objective, (self.objective, self.direction))
        if tie not in logs or tie not in than:
            return False
        return logs[tie] > than[tie] if direction == "max" else logs[tie] < than[tie]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for name in ("loss", "val_loss"):
            if name in logs and not math.isfinite(logs[name]):
                raise TrialError(
                    f"diverged: {name} became {logs[name]} at epoch {epoch + 1} (phase "
                    f"{self.phase}); a lower learning rate may help"
                )
        self.on_epoch(epoch, logs, time.perf_counter() - self._started)
        value = logs.get(self.objective)
        if value is None:
            return
        phase_best = self.phase_best.get(self.phase)
        if phase_best is None or self.better(logs, phase_best):
            self.phase_best[self.phase] = logs
        if self.best_logs is None or self.better(logs, self.best_logs):
            self.best_logs = logs
            self.best_pieces = self.capture()


class _OutOfTime(Exception):
    """Raised between trials when `--time-budget` is spent; ends the search loop."""


class TransferTuner(kt.Tuner):
    """A KerasTuner `Tuner` whose trials run both transfer-learning phases.

    Works with any oracle. With Hyperband (whose plain-Tuner trials carry `tuner/epochs`,
    `tuner/initial_epoch` and `tuner/trial_id`), the budget runs over the total epochs with the
    phase boundary at absolute epoch `epochs_head`, and a continuation starts from its
    predecessor's checkpoint.
    """

    def __init__(
        self,
        oracle: kt.Oracle,
        bench: Workbench,
        *,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.bench = bench
        self.deadline = deadline  # time.monotonic() after which no trial starts; None: no limit
        self._trial_seconds: list[float] = []  # wall time of each trial this process ran
        self._trial_started = 0.0
        self.out_of_time = False
        self.trial_number = 0
        self.consecutive_failures = 0
        super().__init__(
            oracle=oracle,
            hypermodel=TransferHyperModel(bench),
            directory=str(bench.config.project_dir),
            project_name=bench.config.trials_dir.name,
            overwrite=bench.config.overwrite,
            **kwargs,
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
        if self.deadline is not None:
            if time.monotonic() + self._mean_trial_seconds() >= self.deadline:
                raise _OutOfTime

    def _mean_trial_seconds(self) -> float:
        seconds = self._trial_seconds
        return sum(seconds) / len(seconds) if seconds else 0.0

    def search(self, *args: Any, **kwargs: Any) -> None:
        """KerasTuner's search, stopped before a new trial once the time budget is spent.

        The check runs before the oracle creates a trial, so no trial is left RUNNING and a rerun
        resumes the search where it stopped.
        """
        try:
            super().search(*args, **kwargs)
        except _OutOfTime:
            self.out_of_time = True
            self.on_search_end()

    def checkpoint_path(self, trial_id: str) -> Path:
        return Path(self.get_trial_dir(trial_id)) / CHECKPOINT

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
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
        super().on_trial_end(trial)
        self._trial_seconds.append(time.monotonic() - self._trial_started)
        if trial.status == kt.engine.trial.TrialStatus.FAILED:
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        limit = self.bench.config.max_consecutive_failures
        if self.consecutive_failures >= limit:
            raise TunerError(
                f"The search stopped after {limit} consecutive failed trials; the last one said: "
                f"{last_failure(self, trial)}. Finished trials are kept; fix the cause and rerun "
                "the same command to resume."
            )

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict:
        bench = self.bench
        config = bench.config
        summary: dict[str, Any] = {
            "trial_id": trial.trial_id,
            "phase1": None,
            "phase2": None,
            "epochs_run": 0,
            "seconds": None,
            "reason": None,
            "augment": config.augment,
            "cache": config.cache,
        }
        started = time.perf_counter()
        values = {k: v for k, v in trial.hyperparameters.values.items()}
        # Hyperband sizes its brackets from the epoch budget, not from max_trials.
        total = None if config.oracle == "hyperband" else config.max_trials
        bench.display.trial_begin(trial.trial_id, self.trial_number, total, values)
        try:
            metrics = self._run(trial, summary)
        except TrialError as error:
            reason = str(error)
            summary["reason"] = reason
            raise kt.errors.FailedTrialError(reason) from error
        except TunerError as error:
            summary["reason"] = str(error)
            raise kt.errors.FatalError(str(error)) from error
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            reason = f"out of memory: {first_line(error)}; a smaller --batch-size may help"
            summary["reason"] = reason
            raise kt.errors.FailedTrialError(reason) from error
        except (kt.errors.FatalError, kt.errors.FailedTrialError):
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {first_line(error)}"
            summary["reason"] = reason
            raise kt.errors.FailedTrialError(reason) from error
        finally:
            summary["seconds"] = round(time.perf_counter() - started, 3)
            try:
                atomic_write_text(
                    Path(self.get_trial_dir(trial.trial_id)) / SUMMARY,
                    json.dumps(summary, indent=2),
                )
            except OSError as error:  # a full disk must not hide the trial's own outcome
                bench.display.warning(f"could not write the trial summary: {error}")
            bench.display.trial_end(
                trial.trial_id,
                "failed" if summary["reason"] else "done",
                (summary.get("best") or {}).get(config.objective),
                config.objective,
                summary["reason"],
            )
        return metrics

    def _run(self, trial: kt.engine.trial.Trial, summary: dict[str, Any]) -> dict[str, float]:
        bench = self.bench
        config = bench.config
        hp = trial.hyperparameters
        name = self.hypermodel.backbone_of(hp)
        summary["backbone"] = name
        k = int(hp.get("finetune/unfreeze_blocks"))
        head_epochs = config.epochs_head
        finetune_epochs = config.epochs_finetune if k > 0 else 0
        # Hyperband shares out fine-tuning epochs (`tuner/epochs` counts phase-2 epochs, see
        # make_oracle): phase 1 runs whole in a trial's first round, so survivors are chosen on
        # fine-tuned scores. Epochs are numbered on across phases: phase 2 starts at head_epochs.
        budget = int(hp.values.get("tuner/epochs", finetune_epochs))
        done = int(hp.values.get("tuner/initial_epoch", 0))
        predecessor = hp.values.get("tuner/trial_id")
        target = head_epochs + min(budget, finetune_epochs)
        seed = trial_seed(config.seed, trial.trial_id)
        keras.utils.set_random_seed(seed)

        if config.cache:
            plan: _Plan = _CachedPlan(self, hp, name, k, seed)
        else:
            plan = _FullPlan(self, hp, name, k, seed)
        if predecessor:
            plan.load(Pieces.load(self.checkpoint_path(predecessor)))

        def on_epoch(epoch: int, logs: dict[str, float], seconds: float) -> None:
            last = head_epochs if recorder.phase == 1 else target
            bench.display.epoch(recorder.phase, epoch + 1, last, logs, seconds)

        recorder = _Recorder(config.objective, config.direction, plan.capture, on_epoch)
        phase1 = PhaseResult()
        phase2: PhaseResult | None = None
        if not predecessor:
            recorder.phase = 1
            phase1 = plan.fit(1, 0, head_epochs, recorder, seed)
            if recorder.best_pieces is not None:
                # Fine-tuning starts from the best head, not the last one.
                plan.restore(recorder.best_pieces)
        if target > head_epochs + done:
            recorder.phase = 2
            phase2 = plan.fit(2, head_epochs + done, target, recorder, seed)
        if recorder.best_logs is None:
            # A Hyperband continuation with nothing left to train: score what it inherited.
            recorder.best_logs = plan.evaluate()
            recorder.best_pieces = plan.capture()
        assert recorder.best_pieces is not None
        start = time.perf_counter()
        try:
            recorder.best_pieces.save(self.checkpoint_path(trial.trial_id))
        except OSError as error:
            raise TunerError(
                f"Could not write the checkpoint {self.checkpoint_path(trial.trial_id)}: "
                f"{error.strerror or error}. Free disk space or pass --project-dir DIR on a "
                "writable disk; the search can be resumed by rerunning the same command."
            ) from error
        bench.overhead_seconds += time.perf_counter() - start
        phase1.best = recorder.phase_best.get(1, {})
        summary["phase1"] = phase1.as_dict() if phase1.epochs else None
        if phase2 is not None:
            phase2.best = recorder.phase_best.get(2, {})
            summary["phase2"] = phase2.as_dict()
        summary["epochs_run"] = phase1.epochs + (phase2.epochs if phase2 else 0)
        summary["best"] = recorder.best_logs
        return dict(recorder.best_logs)

    def load_model(self, trial: kt.engine.trial.Trial) -> keras.Model:
        """The trial's full model, without augmentation layers: rebuilt, then its trained pieces
        loaded from the checkpoint."""
        model = self.hypermodel.build(trial.hyperparameters, augment=False)
        pieces = Pieces.load(self.checkpoint_path(trial.trial_id))
        pieces.apply(model.get_layer(HEAD_NAME), model.get_layer(BACKBONE_NAME))
        return model

    def save_model(self, trial_id: str, model: keras.Model, step: int = 0) -> None:
        # Checkpoints are written by run_trial from the best epoch (see _Recorder).
        return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(error: BaseException) -> str:
    """The first meaningful line of an error's message, for a one-line reason.

    Keras wraps an error raised inside a layer's `call()` as "Exception encountered when calling
    X.call()." and puts the cause on a later line, in bold (ANSI escapes): that line is the one.
    """
    lines = [ln.strip() for ln in _ANSI.sub("", str(error)).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    return (lines[0] if lines else type(error).__name__)[:200]


class _Plan:
    """How one trial trains: on cached activations, or on the full model.

    A subclass says which model each phase trains and on which data (`_phase`); fitting, the
    linear head and evaluation are shared.
    """

    head: keras.Model  # set by each subclass

    def __init__(self, tuner: TransferTuner, hp: kt.HyperParameters, backbone: str, k: int):
        self.bench = tuner.bench
        self.config = tuner.bench.config
        self.hp = hp
        self.k = k
        self.backbone_name = backbone
        self.units = int(hp.get("head/units"))

    def _new_head(self, n_features: int, seed: int) -> keras.Model:
        return build_head(
            n_features,
            units=self.units,
            dropout=self.hp.get("head/dropout"),
            n_classes=self.bench.n_classes,
            seed=seed,
            stats=self.bench.feature_stats(self.backbone_name),
        )

    def _phase(self, phase: int, seed: int) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
        """The compiled model that `phase` trains, and its train and val batches."""
        raise NotImplementedError

    def fit(
        self, phase: int, initial: int, epochs: int, recorder: _Recorder, seed: int
    ) -> PhaseResult:
        """Train `phase` from epoch `initial` up to `epochs` (absolute epoch numbers)."""
        if epochs <= initial:
            return PhaseResult()
        model, train, val = self._phase(phase, seed)
        if phase == 1 and self.units == 0:
            return self._fit_linear(model, train, val, epochs - 1, recorder)
        start = time.perf_counter()
        history = model.fit(
            train,
            validation_data=val,
            initial_epoch=initial,
            epochs=epochs,
            callbacks=self._callbacks(recorder),
            shuffle=False,  # the dataset shuffles itself, seeded (see make_dataset)
            verbose=0 if self.config.verbose < 2 else 2,
        )
        return PhaseResult(epochs=len(history.epoch), seconds=time.perf_counter() - start)

    def _fit_linear(
        self,
        model: keras.Model,
        train: tf.data.Dataset,
        val: tf.data.Dataset,
        epoch: int,
        recorder: _Recorder,
    ) -> PhaseResult:
        """Phase 1 of a linear head (`head/units = 0`): set it to the logistic regression fitted
        on the standardized features (LP-FT's first step), then score it as one epoch."""
        start = time.perf_counter()
        recorder.on_epoch_begin(epoch)
        linear = self.bench.linear_head(self.backbone_name)
        self.head.get_layer("head_output").set_weights([linear.kernel, linear.bias])
        logs = model.evaluate(train, verbose=0, return_dict=True)
        logs.update(
            {f"val_{k}": v for k, v in model.evaluate(val, verbose=0, return_dict=True).items()}
        )
        recorder.on_epoch_end(epoch, logs)
        return PhaseResult(epochs=1, seconds=time.perf_counter() - start)

    def evaluate(self) -> dict[str, float]:
        """Score the model as it stands on the validation set (a Hyperband continuation that
        has nothing left to train)."""
        model, _, val = self._phase(0, 0)
        logs = model.evaluate(val, verbose=0, return_dict=True)
        return {f"val_{k}": float(v) for k, v in logs.items()}

    def _callbacks(self, recorder: _Recorder) -> list[keras.callbacks.Callback]:
        callbacks: list[keras.callbacks.Callback] = [recorder]
        if self.config.patience:
            # A fresh EarlyStopping per phase: its state must not leak from phase 1 into phase 2.
            callbacks.insert(
                0,
                keras.callbacks.EarlyStopping(
                    monitor=self.config.objective,
                    mode=self.config.direction,
                    patience=self.config.patience,
                ),
            )
        return callbacks

    def _dataset(self, x: np.ndarray, which: str, seed: int, phase: int, views: int = 1):
        y = self.bench.labels(which)
        shuffle = seed + phase if (which == "train" and self.config.shuffle) else None
        return make_dataset(
            x,
            y,
            self.config.batch_size,
            shuffle_seed=shuffle,
            views=views,
            view_seed=seed + 7 * phase,
        )


class _CachedPlan(_Plan):
    """Phase 1 on pooled features, phase 2 on activations cached at the block boundary."""

    def __init__(
        self, tuner: TransferTuner, hp: kt.HyperParameters, backbone: str, k: int, seed: int
    ):
        super().__init__(tuner, hp, backbone, k)
        self.session = self.bench.session(backbone)
        self.cut = self.session.cut(k) if k > 0 else None
        self.head = self._new_head(self.session.n_features, seed)
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
        return self.config.augment_views if self.config.augment else 1

    def _finetune_model(self) -> keras.Model:
        assert self.cut is not None
        top = self.session.split(self.cut)[1]
        inputs = keras.Input(tuple(int(d) for d in top.input.shape[1:]), name="activations")
        return keras.Model(inputs, self.head(top(inputs)), name="finetune")

    def _phase(self, phase: int, seed: int):
        session = self.session
        n_classes = self.bench.n_classes
        if phase == 1 or (phase == 0 and self._model2 is None):
            model, cut = self.head, session.last
            if phase == 1 or not model.compiled:
                compile_model(model, self.hp.get("head/learning_rate"), n_classes)
        else:
            assert self.cut is not None
            cut = self.cut
            if self._model2 is None:
                self._model2 = self._finetune_model()
            model = self._model2
            if phase == 2:
                cuts.freeze_for_finetune(session.model, cut)
                compile_model(model, self.hp.get("finetune/learning_rate"), n_classes)
            elif not model.compiled:
                compile_model(model, self.hp.get("finetune/learning_rate"), n_classes)
        views = self._views() if phase else 1
        train = self._dataset(session.features("train", cut), "train", seed, phase, views)
        val = self._dataset(session.features("val", cut), "val", seed, phase)
        return model, train, val


class _FullPlan(_Plan):
    """The no-cache path: every epoch runs the whole network, frozen parts included."""

    def __init__(
        self, tuner: TransferTuner, hp: kt.HyperParameters, backbone: str, k: int, seed: int
    ):
        super().__init__(tuner, hp, backbone, k)
        start = time.perf_counter()
        self.model = tuner.hypermodel.build(hp, seed=seed)
        self.bench.overhead_seconds += time.perf_counter() - start
        self.backbone = self.model.get_layer(BACKBONE_NAME)
        self.head = self.model.get_layer(HEAD_NAME)
        spec = get_backbone(backbone)
        self.size = self.bench.image_size(spec)
        self.pattern = spec.block_pattern
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
        n_classes = self.bench.n_classes
        if phase == 1:
            self.backbone.trainable = False
            compile_model(self.model, self.hp.get("head/learning_rate"), n_classes)
        elif phase == 2:
            self.cut = cuts.unfreeze_cut(self.backbone, self.pattern, self.k)
            cuts.freeze_for_finetune(self.backbone, self.cut)
            compile_model(self.model, self.hp.get("finetune/learning_rate"), n_classes)
        elif not self.model.compiled:
            compile_model(self.model, self.hp.get("head/learning_rate"), n_classes)
        train = self._dataset(self.bench.pixels("train", self.size), "train", seed, max(phase, 1))
        val = self._dataset(self.bench.pixels("val", self.size), "val", seed, max(phase, 1))
        return self.model, train, val


class _DefaultsFirst:
    """Makes an oracle's first candidate the space's defaults, then samples as usual.

    The defaults are a known-good configuration (the bundled spaces default to the linear head,
    fitted as a logistic regression, then fine-tuned: LP-FT), so every search measures it, whatever
    the oracle draws after it. KerasTuner 1.4.8's random, Bayesian and Hyperband oracles all draw
    new candidates through `Oracle._random_values`, and skip values already tried, so overriding it
    is enough and the defaults are tried once, also across a resume.
    """

    def _random_values(self) -> dict[str, Any] | None:
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:  # type: ignore[attr-defined]
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.default
        if not self._duplicate(hps.values):  # type: ignore[attr-defined]
            return hps.values
        return super()._random_values()  # type: ignore[misc]


class _RandomSearchOracle(_DefaultsFirst, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOptimizationOracle(_DefaultsFirst, kt.oracles.BayesianOptimizationOracle):
    pass


class _HyperbandOracle(_DefaultsFirst, kt.oracles.HyperbandOracle):
    pass


def make_oracle(config: SearchConfig, *, max_retries: int = 0) -> kt.Oracle:
    """The KerasTuner oracle named by `--oracle`; its first trial is the space's defaults.

    Hyperband's budget is phase-2 epochs (`max_epochs = --epochs-finetune`): every trial runs its
    whole phase 1 in its first round, and brackets share out fine-tuning, so survivors are chosen
    on fine-tuned scores.
    """
    objective = kt.Objective(config.objective, direction=config.direction)
    common: dict[str, Any] = {
        "objective": objective,
        "seed": config.seed,
        "max_retries_per_trial": max_retries,
        # Counted by TransferTuner.on_trial_end instead; see there.
        "max_consecutive_failed_trials": None,
    }
    if config.oracle == "random":
        return _RandomSearchOracle(max_trials=config.max_trials, **common)
    if config.oracle == "bayesian":
        return _BayesianOptimizationOracle(max_trials=config.max_trials, **common)
    return _HyperbandOracle(
        max_epochs=config.epochs_finetune, factor=3, hyperband_iterations=1, **common
    )


def completed_trials(tuner: TransferTuner) -> list[kt.engine.trial.Trial]:
    """Completed trials, best first, in the leaderboard's order (ties on the objective broken as
    the leaderboard breaks them), so the exported model is the leaderboard's first row.

    `get_best_trials` pads with unfinished trials (docs/design.md §3): only completed ones count.
    """
    trials = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
    done = {t.trial_id: t for t in trials if t.status == kt.engine.trial.TrialStatus.COMPLETED}
    board = load_leaderboard(tuner.bench.config.project_dir)
    ranked = [done[row.trial_id] for row in board.rows if row.trial_id in done]
    return ranked + [t for t in done.values() if t not in ranked]


def dump_run(config: SearchConfig, bench: Workbench) -> dict[str, Any]:
    """What `run.json` holds: the settings the leaderboard and export report, and those a resume
    must match (`RESUME_SETTINGS`)."""
    specs = [get_backbone(b) for b in config.backbones]
    weights = sorted({bench.weights(spec).origin for spec in specs})
    sizes = {spec.name: bench.image_size(spec) for spec in specs}
    return {
        "objective": config.objective,
        "direction": config.direction,
        "backbones": list(config.backbones),
        "weights": weights[0] if len(weights) == 1 else weights,
        "image_size": next(iter(sizes.values())) if len(set(sizes.values())) == 1 else None,
        "image_sizes": sizes,
        "augment": config.augment,
        "augment_views": config.augment_views if config.augment else 0,
        "oracle": config.oracle,
        "class_names": list(bench.class_names),
        "cache": config.cache,
        "seed": config.seed,
        "max_trials": config.max_trials,
        "epochs_head": config.epochs_head,
        "epochs_finetune": config.epochs_finetune,
        "patience": config.patience,
        "batch_size": config.batch_size,
        "space": space_settings(bench.space),
    }


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
    "augment_views": "--augment-views",
    "space": "--space",
}


def space_settings(space: Space) -> dict[str, dict[str, Any]]:
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


def hp_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def count_blocks(bench: Workbench, backbone: Backbone) -> int:
    """How many unfreezable blocks the backbone has."""
    # The cached path keeps this process's build; the full path builds its own in every trial.
    model = (
        bench.session(backbone.name).model if bench.config.cache else bench.build_backbone(backbone)
    )
    return len(cuts.blocks(model, backbone.block_pattern))


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


def describe_training(bench: Workbench) -> list[str]:
    """What the user should know about how trials train: cached or not, and why it matters."""
    config = bench.config
    if not config.cache:
        return ["cache off (--no-cache): every epoch runs the whole backbone"]
    lines = [
        f"cache on ({config.resolved_cache_dir}): the frozen backbone runs once per image"
        + (f"; {config.augment_views} augmented views per image" if config.augment else "")
    ]
    for name in config.backbones:
        noisy = stochastic_layers(bench.session(name).model)
        if noisy:
            lines.append(
                f"{name} has {len(noisy)} dropout/stochastic-depth layers: on the cached path its "
                "frozen part runs them in inference mode (deterministic features); --no-cache "
                "runs them in training mode instead"
            )
    return lines


def last_failure(tuner: kt.Tuner, trial: kt.engine.trial.Trial | None = None) -> str:
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
    try:
        summary = json.loads((Path(tuner.get_trial_dir(trial.trial_id)) / SUMMARY).read_text())
    except (OSError, ValueError):
        summary = {}
    reason = summary.get("reason") if isinstance(summary, dict) else None
    return failure_reason(reason, trial.message, limit=200) or "unknown"


def export_best(
    tuner: TransferTuner, trial: kt.engine.trial.Trial, directory: str | os.PathLike
) -> Path:
    """Export one trial's model to `directory` with its metadata."""
    from tuner.export import export_model

    bench = tuner.bench
    config = bench.config
    model = tuner.load_model(trial)
    name = tuner.hypermodel.backbone_of(trial.hyperparameters)
    spec = get_backbone(name)
    summary_path = Path(tuner.get_trial_dir(trial.trial_id)) / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    metadata = {
        "format": 1,
        "class_names": list(bench.class_names),
        "input": {
            "image_size": bench.image_size(spec),
            "channels": "RGB",
            "range": [0, 255],
            "note": "raw pixels of any size; resized (bilinear) and preprocessed inside",
        },
        "output": "sigmoid probability of class_names[1]"
        if bench.n_classes == 2
        else "softmax probabilities over class_names",
        "backbone": name,
        "weights": bench.weights(spec).origin,
        "hyperparameters": hp_values(trial.hyperparameters.values),
        "objective": {
            "name": config.objective,
            "direction": config.direction,
            "value": trial.score,
        },
        "validation": summary.get("best", {}),
        "phases": {"head": summary.get("phase1"), "finetune": summary.get("phase2")},
        "trial_id": trial.trial_id,
        "augment": config.augment,
        "cache": config.cache,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    return export_model(model, directory, image_size=bench.image_size(spec), metadata=metadata)
