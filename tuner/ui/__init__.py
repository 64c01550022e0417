"""What the user sees: the events a search reports, the live views and the leaderboard table."""

from tuner._lazy import exports

__all__ = [
    "Board",
    "SearchDisplay",
    "build_table",
    "load",
    "make_display",
    "render",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "Board": "board",
        "load": "board",
        "render": "board",
        "build_table": "board",
        "SearchDisplay": "display",
        "make_display": "live",
    },
)
