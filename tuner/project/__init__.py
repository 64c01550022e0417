"""The project folder of a search: its layout, trial records, CSV text and TensorBoard logs."""

from tuner._lazy import exports

__all__ = [
    "Leaderboard",
    "PhaseSummary",
    "Row",
    "TrialSummary",
    "load_leaderboard",
    "read_run",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "TrialSummary": "layout",
        "PhaseSummary": "layout",
        "read_run": "layout",
        "Leaderboard": "trials",
        "Row": "trials",
        "load_leaderboard": "trials",
    },
)
