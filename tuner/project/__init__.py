"""The project folder of a search: its layout, trial records, CSV text and TensorBoard logs."""

from tuner._lazy import exports

__all__ = [
    "Ranking",
    "PhaseSummary",
    "Row",
    "TrialSummary",
    "read_ranking",
    "read_run",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "TrialSummary": "layout",
        "PhaseSummary": "layout",
        "read_run": "layout",
        "Ranking": "rows",
        "Row": "rows",
        "read_ranking": "trials",
    },
)
