"""The on-disk cache of large arrays: entries keyed by what produced them, read row by row."""

from tuner._lazy import exports

__all__ = [
    "ArrayCache",
    "DiskArray",
    "fingerprint",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "ArrayCache": "store",
        "DiskArray": "diskarray",
        "fingerprint": "files",
    },
)
