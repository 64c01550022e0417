"""The input preprocessing each backbone's weights expect, as builtin Keras layers.

The exported model takes raw RGB pixels (floats in 0-255) and must load with
`keras.saving.load_model(path, safe_mode=True)` in a process that never imports tuner, so only
builtin, serializable layers are used here: no `Lambda`, no custom classes. Each kind reproduces
`keras.applications.<family>.preprocess_input` to float32 rounding:

- "tf" (Xception, Inception, ResNetV2, MobileNet V1/V2, NASNet): `x / 127.5 - 1`, a `Rescaling`.
- "torch" (DenseNet): `(x / 255 - mean) / std` per channel, a `Normalization` whose mean and
  variance are given in 0-255 units (`mean * 255`, `(std * 255) ** 2`).
- "caffe" (VGG, ResNet V1): RGB to BGR, then minus the ImageNet BGR mean, a frozen 1x1 `Conv2D`
  whose kernel is the channel permutation (each output is `1 * x + 0 * y + 0 * z`, exact in floating
  point) and whose bias is minus the mean.
- "none" (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3): the Keras model already holds its
  own preprocessing and takes raw 0-255 RGB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = ["preprocessing_layers"]

KINDS = ("tf", "caffe", "torch", "none")

# ImageNet statistics, as in keras/src/applications/imagenet_utils.py.
_TORCH_MEAN = (0.485, 0.456, 0.406)  # RGB, on 0-1 values
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR, on 0-255 values


def preprocessing_layers(kind: str) -> list[keras.layers.Layer]:
    """Returns new, frozen layers that turn raw 0-255 RGB into the input a backbone expects.

    Args:
        kind: the backbone's `preprocessing`: "tf", "caffe", "torch" or "none".

    Returns:
        Layers to apply in order, named `preprocess_*`, all with `trainable=False`; empty for
        "none". Each call returns new layer objects, so call it once per model.

    Raises:
        ConfigError: `kind` is not one of the four kinds.
    """
    import keras
    import numpy as np

    if kind == "none":
        return []
    if kind == "tf":
        return [
            keras.layers.Rescaling(
                scale=1.0 / 127.5, offset=-1.0, name="preprocess_rescaling", trainable=False
            )
        ]
    if kind == "torch":
        mean = [255.0 * m for m in _TORCH_MEAN]
        variance = [(255.0 * s) ** 2 for s in _TORCH_STD]
        return [
            keras.layers.Normalization(
                mean=mean, variance=variance, name="preprocess_normalization", trainable=False
            )
        ]
    if kind == "caffe":
        layer = keras.layers.Conv2D(
            3, 1, use_bias=True, name="preprocess_rgb_to_bgr", trainable=False
        )
        layer.build((None, None, None, 3))
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel, in_channel in enumerate((2, 1, 0)):  # output BGR from input RGB
            kernel[0, 0, in_channel, out_channel] = 1.0
        bias = -np.asarray(_CAFFE_MEAN_BGR, dtype="float32")
        layer.set_weights([kernel, bias])
        return [layer]
    raise ConfigError(
        f"Unknown preprocessing kind. Expected one of {', '.join(KINDS)}. Received: kind={kind!r}."
    )
