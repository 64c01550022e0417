"""A backbone's frozen activations: computed once per image, cached at its block boundaries.

`BackboneSession` holds one backbone built once per process and the activations of its frozen
part for every training and validation image, in the on-disk cache (docs/design.md §1). Only the
deepest cut the space allows runs over the pixels; shallower boundaries and the pooled output are
derived from it. An entry's key names everything its bytes depend on; an entry that holds NaN,
inf or only zeros is never published (`checked`), and float16 is used only where it holds the
values (`storage_dtype`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import itertools
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tuner.cache.store import ArrayCache
from tuner.config import SearchConfig
from tuner.data.folders import fingerprint_files
from tuner.errors import TunerError
from tuner.frozen.context import SearchContext
from tuner.models import cuts
from tuner.models.network import augmentation_layers, layer_weights
from tuner.models.preprocessing import preprocessing_layers
from tuner.models.registry import Backbone
from tuner.runtime.pipeline import ahead

CACHE_FORMAT = 1


class BackboneSession:
    """One backbone built once per process, its blocks, and its cached frozen activations.

    Splits are made once per cut and reused, since every split adds graph nodes to the layers above
    it (docs/design.md §2). Phase 2 trains the shared top layers in place, so the pretrained
    weights above the deepest cut are kept and restored before each fine-tuning.

    Args:
        spec: the backbone's registry entry.
        model: its build, with its starting weights.
        size: its input size.
        weights_key: what identifies its starting weights in cache keys (`Weights.key`).
        context: the search's configuration (cache dtype, augmentation, seed, batch size), the
            images whose activations are cached, where cache builds show their progress, and
            where time spent caching is counted.
        cache: the on-disk cache; None on the no-cache path (then only the blocks are used).
        max_unfreeze_blocks: the most blocks any trial unfreezes (the deepest cut kept).
    """

    def __init__(
        self,
        spec: Backbone,
        model: keras.Model,
        *,
        size: int,
        weights_key: str,
        context: SearchContext,
        cache: ArrayCache | None,
        max_unfreeze_blocks: int,
    ) -> None:
        self.spec = spec
        self.model = model
        self.size = size
        self.weights_key = weights_key
        self.context = context
        self.cache = cache
        self.last = len(self.model.layers) - 1
        self._splits: dict[int, tuple[keras.Model, keras.Model]] = {}
        # The layers above the deepest cut, with the derived cuts asked for as outputs.
        self._splits_between: dict[tuple[int, ...], keras.Model] = {}
        self._features: dict[tuple[str, int], np.ndarray] = {}
        # Phase 2 trains the shared top layers in place; keep their pretrained weights, above the
        # deepest cut the space can ask for, to restore before each fine-tuning.
        n_blocks = len(cuts.blocks(self.model, spec.block_pattern))
        deepest = min(max_unfreeze_blocks, n_blocks)
        self._deepest = self.cut(deepest) if deepest > 0 else self.last
        self._pretrained = {
            index: layer_weights([self.model.layers[index]])[0]
            for index in range(self._deepest + 1, len(self.model.layers))
        }

    @property
    def n_features(self) -> int:
        """Channels of the pooled output."""
        return int(self.model.output.shape[-1])

    def cut(self, k: int) -> int:
        """The layer index below the top `k` blocks."""
        return cuts.unfreeze_cut(self.model, self.spec.block_pattern, k)

    def split(self, cut: int) -> tuple[keras.Model, keras.Model]:
        """(bottom, top) of the shared model at `cut`, made once per cut."""
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

    def _augmented(self, which: str) -> bool:
        return which == "train" and self.context.config.augment

    def cache_key(self, which: str, cut: int) -> dict[str, Any]:
        """Everything the bytes of the entry at `cut` depend on."""
        config = self.context.config
        return {
            "format": CACHE_FORMAT,
            "backbone": self.spec.name,
            "weights": self.weights_key,
            "image_size": self.size,
            "preprocessing": self.spec.preprocessing,
            "cut": cut,
            "source": self.source_of(cut),
            "layers": len(self.model.layers),
            "dtype": config.cache_dtype,
            # The augmented views depend on the operations, the seed and the batches they were
            # drawn in. View 0 is the clean image: an entry from before it was (every view
            # augmented, flip always on) has no "operations" and is never read back.
            "augment": {
                "views": config.augment_views,
                "operations": list(config.augmentations),
                "clean_view": 0,
                "seed": config.seed,
                "batch": build_batch(config),
            }
            if self._augmented(which)
            else None,
            # A random init is drawn from the seed (its file's hash is in "weights" too).
            "seed": config.seed if config.weights == "none" else None,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "files": [list(f) for f in fingerprint_files(self.context.data.images(which))],
        }

    def features(self, which: str, cut: int) -> np.ndarray:
        """The frozen output at `cut` for every train or val image, from the cache or built now.

        The pooled backbone output (phase 1) is the output of the last layer, `cut == self.last`.
        With augmentation, the train entry holds `augment_views` blocks of rows (view-major):
        the first the clean images, the others augmented by `--augment`'s operations.
        A derived entry is built together with every other derived entry of `which` that is
        missing (`_build_derived`).
        """
        key = (which, cut)
        if key in self._features:
            return self._features[key]
        assert self.cache is not None
        with self.context.overhead.timed():
            entry = self.cache.lookup(self._entry_name(which, cut), self.cache_key(which, cut))
            if entry is not None:
                self._features[key] = entry.array
            elif self.source_of(cut) is None:
                self._features[key] = self._build_from_pixels(which, cut)
            else:
                self._build_derived(which, cut)
        return self._features[key]

    def derived_cuts(self) -> list[int]:
        """Every cut the space can ask for above the deepest one, the pooled output last."""
        found = cuts.blocks(self.model, self.spec.block_pattern)
        shallower = {block.cut for block in found if block.cut > self._deepest}
        return sorted(shallower) + ([self.last] if self._deepest < self.last else [])

    def _entry_name(self, which: str, cut: int) -> str:
        return f"{self.spec.name}-{self.size}-{which}-cut{cut}"

    def _shape(self, which: str, cut: int, views: int) -> tuple[int, ...]:
        return (views * len(self.context.data.images(which)),) + tuple(
            int(d) for d in self.model.layers[cut].output.shape[1:]
        )

    def _views(self, which: str) -> int:
        return self.context.config.augment_views if self._augmented(which) else 1

    def _where(self, cut: int) -> str:
        return "pooled" if cut == self.last else f"@ {self.model.layers[cut].name}"

    @contextlib.contextmanager
    def _timed_build(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.context.overhead.cache_build_seconds += time.perf_counter() - started

    def _publish(self, which: str, cut: int, batches: Iterator[np.ndarray], progress) -> Any:
        """Writes the entry at `cut` from `batches` (float32, consecutive rows); returns it."""
        shape = self._shape(which, cut, self._views(which))
        first = next(batches)
        # float16 cannot hold every backbone's activations: a random init's are far below its
        # smallest normal number. The first batch decides; the key names the request.
        dtype = storage_dtype(first, self.context.config.cache_dtype)
        where_text = f"{self.spec.name} {which} {self._where(cut)}"
        assert self.cache is not None
        return self.cache.get_or_build(
            self._entry_name(which, cut),
            self.cache_key(which, cut),
            shape=shape,
            dtype=dtype,
            produce=lambda: checked(itertools.chain([first], batches), where_text),
            progress=progress,
        )

    def _build_from_pixels(self, which: str, cut: int) -> np.ndarray:
        """The entry at `cut`, from one pass of the frozen bottom over the images."""
        views = self._views(which)
        shape = self._shape(which, cut, views)
        with (
            self._timed_build(),
            self.context.display.build_progress(
                f"caching {which} {self._where(cut)}", shape[0]
            ) as update,
        ):
            bottom = self.model if cut == self.last else self.split(cut)[0]
            model = with_preprocessing(bottom, self.spec, self.size)
            config = self.context.config
            augmenter = (
                keras.Sequential(augmentation_layers(config.seed, config.augmentations))
                if self._augmented(which)
                else None
            )
            batches = pixel_batches(
                self.context.data.pixels(which, self.size),
                build_batch(self.context.config),
                views=views,
                augmenter=augmenter,
            )
            return self._publish(
                which, cut, run_frozen(model, batches, (self.size, self.size, 3)), update
            ).array

    def _build_derived(self, which: str, cut: int) -> None:
        """Builds the derived entry at `cut` and every other missing one of `which`, in one pass.

        The layers between the deepest cut and the pooled output run once over the deepest
        cut's entry, with every derived cut as an output: each derived entry alone would run
        them again from the deepest cut (on Xception at 128 px, 4 blocks: 14.9 ms an image for
        the pooled output and two cuts one at a time, 7.0 ms for all of them at once,
        docs/design.md §1). The values are the same as one at a time: the same layers run on
        the same rows. `cut`'s entry is written as the pass runs; the others' rows go to
        anonymous temporary files in the cache folder and are published right after.
        """
        source = self._deepest
        self.features(which, source)  # its own bar first, then this one
        assert self.cache is not None
        missing = [cut]
        for other in self.derived_cuts():
            if other == cut or (which, other) in self._features:
                continue
            found = self.cache.lookup(self._entry_name(which, other), self.cache_key(which, other))
            if found is not None:
                self._features[(which, other)] = found.array
            else:
                missing.append(other)
        rows = self._shape(which, cut, self._views(which))[0]
        names = ", ".join(self._where(c) for c in missing)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._timed_build())
            stack.enter_context(self.pretrained())
            update = stack.enter_context(
                self.context.display.build_progress(f"caching {which} {names}", rows)
            )
            spills = {
                other: stack.enter_context(tempfile.TemporaryFile(dir=self.cache.root))
                for other in missing[1:]
            }
            written = dict.fromkeys(spills, 0)

            def requested() -> Iterator[np.ndarray]:
                for outputs in self._derive(source, missing, which):
                    for other, batch in zip(missing[1:], outputs[1:], strict=True):
                        spills[other].write(np.ascontiguousarray(batch, dtype="float32"))
                        written[other] += len(batch)
                    yield outputs[0]

            self._features[(which, cut)] = self._publish(which, cut, requested(), update).array
            for other, spill in spills.items():
                if written[other] == rows:
                    batches = read_spill(spill, self._shape(which, other, 1)[1:], rows)
                else:  # another process built `cut`'s entry meanwhile: nothing was spilled
                    batches = (outputs[0] for outputs in self._derive(source, [other], which))
                entry = self._publish(which, other, batches, None)
                self._features[(which, other)] = entry.array

    def _derive(self, source: int, targets: list[int], which: str) -> Iterator[list[np.ndarray]]:
        """Batches of the frozen outputs at `targets`, from `source`'s entry."""
        if tuple(targets) not in self._splits_between:
            self._splits_between[tuple(targets)] = keras.Model(
                self.model.layers[source].output,
                [self.model.layers[t].output for t in targets],
            )
        model = self._splits_between[tuple(targets)]
        rows = self.features(which, source)
        batch = build_batch(self.context.config)
        batches = (np.asarray(rows[start : start + batch]) for start in range(0, len(rows), batch))
        for outputs in run_frozen(model, batches, tuple(rows.shape[1:])):
            yield tf.nest.flatten(outputs)  # numpy arrays already (`run_frozen`)


def read_spill(spill: Any, row_shape: tuple[int, ...], rows: int, batch: int = 256):
    """Float32 rows of `row_shape` written to the open file `spill`, read back a batch at a time."""
    spill.flush()
    spill.seek(0)
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * 4
    for start in range(0, rows, batch):
        count = min(batch, rows - start)
        data = spill.read(count * row_bytes)
        if len(data) != count * row_bytes:
            raise OSError(errno.EIO, f"a spill file ended early at row {start}")
        yield np.frombuffer(data, dtype="float32").reshape(count, *row_shape)


def with_preprocessing(model: keras.Model, spec: Backbone, size: int) -> keras.Model:
    """`model` behind the backbone's own input preprocessing, taking raw pixels."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for layer in preprocessing_layers(spec.preprocessing):
        x = layer(x)
    return keras.Model(inputs, model(x))


def run_frozen(
    model: keras.Model, batches: Iterable[np.ndarray], sample_shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """`model` in inference mode over `batches`, traced once (a free batch size).

    Batches may hold any real dtype (uint8 pixels, float16 activations): they are widened to
    float32 inside the traced call, exactly. Three things run at once, each in its own thread
    (`tuner.runtime.pipeline.ahead`): reading the next batches, the forward pass, and the consumer (a
    cache build's cast, checks, hash and write). The forward pass runs `FORWARD_STREAMS` batches
    at a time: on a 2-core CPU two concurrent calls keep both cores busier than one call's own
    intra-op threads do (docs/design.md §1). Each batch is computed alone by the same traced
    function, so the outputs are the same, in the same order, whatever the number of streams.
    """
    streams = FORWARD_STREAMS
    context = _strategy_context()

    def call(forward: Any, xb: np.ndarray) -> Any:
        with context() if context is not None else contextlib.nullcontext():
            return tf.nest.map_structure(np.asarray, forward(xb))

    def outputs() -> Iterator[np.ndarray]:
        with contextlib.closing(ahead(batches, context=context, name="tuner-read")) as source:
            first = next(source, None)
            if first is None:
                return
            forward = tf.function(
                lambda x: model(tf.cast(x, tf.float32), training=False),
                input_signature=[
                    tf.TensorSpec((None,) + tuple(sample_shape), tf.as_dtype(first.dtype))
                ],
            )
            yield call(forward, first)  # traced here, once, before any concurrent call
            with concurrent.futures.ThreadPoolExecutor(
                streams, thread_name_prefix="tuner-forward"
            ) as pool:
                pending: collections.deque[concurrent.futures.Future] = collections.deque()
                try:
                    for xb in source:
                        pending.append(pool.submit(call, forward, xb))
                        if len(pending) > streams:
                            yield pending.popleft().result()
                    while pending:
                        yield pending.popleft().result()
                finally:
                    for future in pending:
                        future.cancel()

    return ahead(outputs(), context=context, name="tuner-forward")


def _strategy_context() -> Any:
    """The caller's `tf.distribute` strategy scope, for threads that build or run its models."""
    if not tf.distribute.has_strategy():
        return None
    return tf.distribute.get_strategy().scope


def pixel_batches(
    pixels: np.ndarray, batch: int, *, views: int = 1, augmenter: keras.Model | None = None
) -> Iterator[np.ndarray]:
    """Batches of `pixels` as stored (uint8); with an `augmenter`, `views` passes (view-major) as
    float32: the first of the clean images, the others augmented.

    The clean view keeps what validation and test images look like among the training rows, so
    the feature statistics and the linear head, fitted on every view, see it too. Its float32
    values are the uint8 pixels exactly, so its features are the un-augmented ones.
    """
    for view in range(views if augmenter is not None else 1):
        for start in range(0, len(pixels), batch):
            xb = np.asarray(pixels[start : start + batch])
            if augmenter is not None:
                # One dtype for every batch: the frozen pass is traced for the first one's.
                xb = xb.astype("float32")
                if view:
                    xb = np.asarray(augmenter(xb, training=True))
            yield xb


# Batches of a frozen forward pass computed at once (`run_frozen`).
FORWARD_STREAMS = 2


def build_batch(config: SearchConfig) -> int:
    """The batch size cache builds run at (it is part of an augmented entry's key)."""
    return max(8, min(64, config.batch_size))


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
