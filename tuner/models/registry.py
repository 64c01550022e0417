"""The backbone registry: which pretrained networks tuner knows, and how to build one.

Shaped like timm's registry: one frozen `Backbone` record per network (its Keras constructor, its
default and minimum input size, the preprocessing its weights expect, how its layers group into
blocks), with `get_backbone`, `list_backbones`, `is_backbone` and `register_backbone`. Constructors
are dotted paths resolved only when a model is built, so importing this module (for `--help`, the
renderers or the search-space loader) never imports TensorFlow.

A tiny CNN is registered in the real registry as `"tiny"` so that tests and demos run the production
path in seconds.

Facts about `keras.applications` (Keras 3.15.1) this module relies on:

- With `include_top=False` the only size rule, with or without ImageNet weights, is the minimum
  side checked by `imagenet_utils.obtain_input_shape` (71 for Xception, 75 for InceptionV3 and
  InceptionResNetV2, 32 for every other one); the weights are convolutional and load at any size.
- MobileNet and MobileNetV2 publish one weights file per input size (MobileNet: 128, 160, 192, 224;
  MobileNetV2: 96, 128, 160, 192, 224); for any other size Keras warns and loads the 224 file.
  MobileNetV3 always loads the 224 file (and warns for any other size).
- EfficientNet, EfficientNetV2 and ConvNeXt derive the weights file name from the model `name`
  (ConvNeXt even refuses a name without its variant), so `name=` must never be passed to the
  constructor: `build_backbone` renames the model after it is built.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import numbers
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    import keras

__all__ = [
    "Backbone",
    "build_backbone",
    "file_sha256",
    "get_backbone",
    "is_backbone",
    "keras_cache_dir",
    "list_backbones",
    "register_backbone",
    "weights_file_for",
    "weights_origin",
]

PREPROCESSING_KINDS = ("tf", "caffe", "torch", "none")


@dataclass(frozen=True)
class Backbone:
    """One registered backbone: everything tuner needs to know before building it."""

    name: str  # registry key, lower case: "xception", "resnet50", "tiny"
    constructor: str  # "keras.applications.Xception" or "module.path:attribute", resolved lazily
    default_size: int  # input side used when --image-size is not given (the ImageNet size)
    min_size: int  # smallest square side that builds with include_top=False (checked per backbone)
    preprocessing: str  # "tf", "caffe", "torch" or "none" (the model holds its own preprocessing)
    block_pattern: str | None  # regex; group 1 of re.match on a layer name is its block's name
    family: str  # stem of search_spaces/<family>.toml
    weights_file: str | None = None  # file Keras downloads for include_top=False ImageNet weights
    # Input sides that have their own ImageNet weights file; `weights_file` then holds "{size}"
    # and any other side loads the 224 file, as Keras does (MobileNet, MobileNetV2).
    weights_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.name != self.name.lower():
            raise ValueError(f"Backbone names are lower case. Received: name={self.name!r}")
        if self.preprocessing not in PREPROCESSING_KINDS:
            raise ValueError(
                f"Backbone preprocessing must be one of {PREPROCESSING_KINDS}. "
                f"Received: preprocessing={self.preprocessing!r} for {self.name!r}"
            )
        if not 0 < self.min_size <= self.default_size:
            raise ValueError(
                "`0 < min_size <= default_size` must hold, but got "
                f"(min_size={self.min_size}, default_size={self.default_size}) for {self.name!r}"
            )


_REGISTRY: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone) -> Backbone:
    """Adds `backbone` to the registry under `backbone.name` and returns it.

    Registering the same record twice is harmless; registering a different record under a name
    that is taken is an error, so two modules cannot silently shadow each other.

    Raises:
        ValueError: another backbone is already registered under that name.
    """
    existing = _REGISTRY.get(backbone.name)
    if existing is not None and existing != backbone:
        raise ValueError(
            f"A different backbone is already registered as {backbone.name!r}. "
            "Pick another name or remove the old registration first."
        )
    _REGISTRY[backbone.name] = backbone
    return backbone


def get_backbone(name: str) -> Backbone:
    """Returns the registered backbone called `name` (case-insensitive).

    Raises:
        ConfigError: no backbone has that name; the message lists the valid names.
    """
    backbone = _REGISTRY.get(str(name).lower())
    if backbone is None:
        raise ConfigError(
            f"Unknown backbone {name!r}. Expected one of: {', '.join(list_backbones())}."
        )
    return backbone


def list_backbones(pattern: str = "*") -> list[str]:
    """Returns the sorted names of registered backbones matching the fnmatch `pattern`.

    Args:
        pattern: shell-style wildcard, matched case-insensitively. Defaults to `"*"`.
    """
    pattern = pattern.lower()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def is_backbone(name: str) -> bool:
    """Returns whether `name` (case-insensitive) is a registered backbone."""
    return str(name).lower() in _REGISTRY


# --- weights ---------------------------------------------------------------------------------


def keras_cache_dir() -> str:
    """Returns the folder where Keras keeps downloaded weights files.

    That is `$KERAS_HOME/models` (default `~/.keras/models`); Keras itself falls back to
    `/tmp/.keras/models` when the home folder is not writable, and so does this function.
    """
    home = os.environ.get("KERAS_HOME")
    # Keras reads KERAS_HOME once, when it is imported; if it is loaded, its value is the one that
    # counts. Importing it here just for a path would cost seconds, so it is never imported.
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:
        home = config.keras_home()
    base = os.path.expanduser(home or os.path.join("~", ".keras"))
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return os.path.join(base, "models")


def weights_file_for(backbone: Backbone, image_size: int) -> str | None:
    """Returns the name of the ImageNet weights file Keras downloads for this backbone and size."""
    if backbone.weights_file is None:
        return None
    if "{size}" not in backbone.weights_file:
        return backbone.weights_file
    size = image_size if image_size in backbone.weights_sizes else 224
    return backbone.weights_file.format(size=size)


def weights_origin(weights: str | None) -> str:
    """Returns a short, stable description of `weights` for trial and export metadata.

    Returns:
        `"imagenet"`, `"none"`, or `"file:<first 12 hex digits of the file's sha256>"`.

    Raises:
        ConfigError: `weights` is a path to a file that does not exist.
    """
    if weights is None or str(weights).lower() == "none":
        return "none"
    if weights == "imagenet":
        return "imagenet"
    path = os.path.expanduser(str(weights))
    if not os.path.isfile(path):
        raise ConfigError(_missing_weights_message(path))
    return f"file:{file_sha256(path)[:12]}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_weights_message(path: str) -> str:
    return (
        f"The weights file does not exist. Received: --weights {path}. "
        "Pass `--weights imagenet`, `--weights none` (random init) or the path of an existing "
        "weights file for this backbone without its top."
    )


def _resolve(dotted: str) -> Any:
    """Imports `module.attr` or `module:attr` and returns the attribute."""
    if ":" in dotted:
        module_name, attr = dotted.split(":", 1)
    else:
        module_name, _, attr = dotted.rpartition(".")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _is_download_failure(error: BaseException) -> bool:
    """Tells a failed weights download (offline, HTTP error, bad hash) from any other error."""
    import urllib.error

    if isinstance(error, (urllib.error.URLError, OSError, ConnectionError)):
        return True
    text = str(error)
    # Keras wraps URLError/HTTPError into a bare Exception with this text (file_utils.get_file),
    # and raises a ValueError when a downloaded file fails its hash check.
    return "URL fetch failure" in text or "file hash does not match" in text


def build_backbone(backbone: Backbone, image_size: int, weights: str | None) -> keras.Model:
    """Builds `backbone` without its classifier, pooled to one vector per image, named "backbone".

    The model takes `(image_size, image_size, 3)` inputs already preprocessed the way the backbone
    expects (see `tuner.models.preprocessing`), except for backbones whose preprocessing is "none", which
    hold it themselves and take raw 0-255 RGB.

    Args:
        backbone: the registry record.
        image_size: the side of the square input.
        weights: `"imagenet"`, `None` (random init) or the path of a local weights file for this
            backbone built with `include_top=False`.

    Returns:
        A functional `keras.Model` whose output is the global-average-pooled feature vector.

    Raises:
        ConfigError: `image_size` is below the backbone's minimum, or the weights file is missing.
        WeightsError: the ImageNet weights could not be downloaded, or the weights file would
            not load.
    """
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise ConfigError(
            f"The image size must be a whole number of pixels. Received: image_size={image_size!r}."
        )
    image_size = int(image_size)
    if image_size < backbone.min_size:
        raise ConfigError(
            f"The image size must be at least {backbone.min_size} for backbone "
            f"{backbone.name!r}. Received: image_size={image_size}. "
            f"Pass `--image-size {backbone.min_size}` or more "
            f"(its ImageNet size is {backbone.default_size})."
        )
    if weights is not None and weights != "imagenet":
        weights = os.path.expanduser(str(weights))
        if not os.path.isfile(weights):
            raise ConfigError(_missing_weights_message(weights))

    constructor = _resolve(backbone.constructor)
    try:
        model = constructor(
            include_top=False,
            weights=weights,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
    except WeightsError:
        raise
    except Exception as error:
        if weights == "imagenet" and _is_download_failure(error):
            raise WeightsError(_offline_message(backbone, image_size, error)) from error
        if weights not in (None, "imagenet"):
            raise WeightsError(
                f"Could not load the weights file {weights} into backbone {backbone.name!r} "
                f"(include_top=False, image_size={image_size}): {_first_line(error)}. The file "
                f"must hold the weights of {backbone.name} without its top; pass "
                "`--weights none` for random init."
            ) from error
        raise
    # Rename after building: EfficientNet/ConvNeXt derive their weights file from `name`.
    model.name = "backbone"
    return model


def _first_line(error: BaseException) -> str:
    """Returns the first line of `error`'s text: the CLI prints errors as one line."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(" .:") if text else type(error).__name__


def _offline_message(backbone: Backbone, image_size: int, error: BaseException) -> str:
    file_name = weights_file_for(backbone, image_size) or f"the {backbone.name} no-top weights"
    cache = keras_cache_dir()
    return (
        f"Could not download the ImageNet weights of backbone {backbone.name!r} "
        f"({_first_line(error)}). Keras looks for {file_name} in {cache} and downloads it when "
        f"missing. Put that file there, or pass `--weights PATH` (a local weights file for "
        f"{backbone.name} without its top) or `--weights none` (random init)."
    )


# --- the tiny test backbone ------------------------------------------------------------------


def _tiny(
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "tiny",
    **kwargs: Any,
) -> keras.Model:
    """A small residual CNN with the keras.applications constructor signature, for tests and demos.

    Stem conv+BN+ReLU, then three residual blocks (`block1`..`block3`, stride 2 each, 16/32/64
    filters) that end in an `add`, then `top_relu` and the pooling. About 78k weights; it builds in
    well under a second and learns small image problems.

    Args:
        include_top: add a Dense classifier with `classes` outputs. Defaults to `False`.
        weights: `None` or the path of a weights file saved from this architecture; there are no
            ImageNet weights.
        input_tensor: optional Keras tensor to build on.
        input_shape: `(height, width, 3)`; sides of at least 16. Defaults to `(64, 64, 3)`.
        pooling: `None`, `"avg"` or `"max"` when `include_top` is False.
        classes: number of classes of the top. Defaults to `1000`.
        classifier_activation: activation of the top. Defaults to `"softmax"`.
        name: model name. Defaults to `"tiny"`.
        **kwargs: accepted and ignored, like the keras.applications constructors ignore extras.

    Raises:
        WeightsError: `weights="imagenet"`.
    """
    import keras
    from keras import layers

    if weights == "imagenet":
        raise WeightsError(
            "The tiny backbone has no ImageNet weights. Received: weights='imagenet'. "
            "Pass `--weights none` or the path of a tiny weights file."
        )
    if input_tensor is not None:
        inputs = input_tensor
    else:
        inputs = keras.Input(shape=input_shape or (64, 64, 3))
    # BatchNorm momentum 0.9 (Keras: 0.99) so the moving statistics catch up within the few dozen
    # steps of a demo or a test; with 0.99 validation accuracy stays at chance for several epochs.
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for index, filters in enumerate((16, 32, 64), start=1):
        prefix = f"block{index}"
        projection = layers.Conv2D(
            filters, 1, strides=2, use_bias=False, name=f"{prefix}_proj_conv"
        )
        shortcut = projection(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_proj_bn")(shortcut)
        y = layers.ReLU(name=f"{prefix}_relu0")(x) if index > 1 else x
        y = layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"{prefix}_conv1"
        )(y)
        y = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn1")(y)
        y = layers.ReLU(name=f"{prefix}_relu1")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
        y = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn2")(y)
        x = layers.Add(name=f"{prefix}_add")([shortcut, y])
    x = layers.ReLU(name="top_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


# --- the registry ----------------------------------------------------------------------------

_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"

# Block patterns, checked against the layer names of each built model (see tuner.models.cuts.blocks).
_BLOCK_N = r"(block\d+)_"  # VGG, Xception and the tiny backbone: block1_..., block2_...
_RESNET = r"(conv\d_block\d+)_"
# "mixed9_0"/"mixed9_1" are concats inside mixed9/mixed10: only whole names mark a block.
_INCEPTION_V3 = r"(mixed\d+)$"
_INCEPTION_RESNET = r"(block\d+_\d+|mixed_\d[a-z]|conv_7b)(?:_|$)"
_MOBILENET = r"(conv_(?:dw|pw)_\d+)(?:_|$)"
_MOBILENET_V2 = r"(expanded_conv|block_\d+|Conv_1)(?:_|$)"
_MOBILENET_V3 = r"(expanded_conv(?:_\d+)?|conv_1)(?:_|$)"
_DENSENET = r"(conv\d_block\d+|pool\d)_"
# NASNet cells take the outputs of the two cells below, so no cut exists between cells: the only
# block above the stem holds every cell, from the first reduction cell (Keras calls it "stem_1").
_NASNET = r"reduction_conv_1_(stem_1)$"
_EFFICIENTNET = r"(block\d+[a-z]|top)_"
_CONVNEXT = r"convnext_\w+?_(stage_\d+)_"

# Sizes with their own ImageNet file; any other size loads the 224 file.
_MOBILENET_SIZES = (128, 160, 192, 224)
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)

# fmt: off
# name, keras.applications attribute, default size, min size, preprocessing, pattern, family,
# include_top=False weights file (read from keras/src/applications/*.py), sizes with own weights.
_APPLICATIONS: list[tuple[Any, ...]] = [
    ("vgg16", "VGG16", 224, 32, "caffe", _BLOCK_N, "vgg", "vgg16" + _NOTOP),
    ("vgg19", "VGG19", 224, 32, "caffe", _BLOCK_N, "vgg", "vgg19" + _NOTOP),
    ("resnet50", "ResNet50", 224, 32, "caffe", _RESNET, "resnet", "resnet50" + _NOTOP),
    ("resnet101", "ResNet101", 224, 32, "caffe", _RESNET, "resnet", "resnet101" + _NOTOP),
    ("resnet152", "ResNet152", 224, 32, "caffe", _RESNET, "resnet", "resnet152" + _NOTOP),
    ("resnet50v2", "ResNet50V2", 224, 32, "tf", _RESNET, "resnetv2", "resnet50v2" + _NOTOP),
    ("resnet101v2", "ResNet101V2", 224, 32, "tf", _RESNET, "resnetv2", "resnet101v2" + _NOTOP),
    ("resnet152v2", "ResNet152V2", 224, 32, "tf", _RESNET, "resnetv2", "resnet152v2" + _NOTOP),
    ("inceptionv3", "InceptionV3", 299, 75, "tf", _INCEPTION_V3, "inception",
     "inception_v3" + _NOTOP),
    ("inceptionresnetv2", "InceptionResNetV2", 299, 75, "tf", _INCEPTION_RESNET, "inception",
     "inception_resnet_v2" + _NOTOP),
    ("xception", "Xception", 299, 71, "tf", _BLOCK_N, "xception", "xception" + _NOTOP),
    ("mobilenet", "MobileNet", 224, 32, "tf", _MOBILENET, "mobilenet",
     "mobilenet_1_0_{size}_tf_no_top.h5", _MOBILENET_SIZES),
    ("mobilenetv2", "MobileNetV2", 224, 32, "tf", _MOBILENET_V2, "mobilenet",
     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5", _MOBILENET_V2_SIZES),
    ("mobilenetv3small", "MobileNetV3Small", 224, 32, "none", _MOBILENET_V3, "mobilenet",
     "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    ("mobilenetv3large", "MobileNetV3Large", 224, 32, "none", _MOBILENET_V3, "mobilenet",
     "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    ("densenet121", "DenseNet121", 224, 32, "torch", _DENSENET, "densenet", "densenet121" + _NOTOP),
    ("densenet169", "DenseNet169", 224, 32, "torch", _DENSENET, "densenet", "densenet169" + _NOTOP),
    ("densenet201", "DenseNet201", 224, 32, "torch", _DENSENET, "densenet", "densenet201" + _NOTOP),
    ("nasnetmobile", "NASNetMobile", 224, 32, "tf", _NASNET, "nasnet", "nasnet_mobile_no_top.h5"),
    ("nasnetlarge", "NASNetLarge", 331, 32, "tf", _NASNET, "nasnet", "nasnet_large_no_top.h5"),
    *(
        (f"efficientnetb{i}", f"EfficientNetB{i}", size, 32, "none", _EFFICIENTNET,
         "efficientnet", f"efficientnetb{i}_notop.h5")
        for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    ),
    *(
        (f"efficientnetv2{v}", f"EfficientNetV2{v.upper()}", size, 32, "none", _EFFICIENTNET,
         "efficientnetv2", f"efficientnetv2-{v}_notop.h5")
        for v, size in (("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300), ("s", 384))
    ),
    ("convnexttiny", "ConvNeXtTiny", 224, 32, "none", _CONVNEXT, "convnext",
     "convnext_tiny_notop.h5"),
]
# fmt: on

for _name, _attr, *_rest in _APPLICATIONS:
    register_backbone(Backbone(_name, "keras.applications." + _attr, *_rest))
register_backbone(Backbone("tiny", "tuner.models.registry:_tiny", 64, 16, "tf", _BLOCK_N, "tiny"))
del _name, _attr, _rest
