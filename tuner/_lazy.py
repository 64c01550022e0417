"""Lazy re-exports: a package names what it offers, and each name's module loads on first use.

Every `__init__` of tuner only re-exports, and none may load TensorFlow when imported, while some
of the names it offers live in modules that do (optuna's `_LazyImport` serves the same end). A
package writes

    __all__ = ["ArrayCache", "DiskArray"]
    __getattr__, __dir__ = exports(__name__, {"ArrayCache": "store", "DiskArray": "diskarray"})

and `tuner.cache.ArrayCache` imports `tuner.cache.store` the first time it is read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module-level `__getattr__` and `__dir__` for lazily re-exported names.

    Args:
        package: The package's `__name__`.
        names: Each exported name and the module, relative to the package, that defines it.

    Returns:
        `(__getattr__, __dir__)`, to assign at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
