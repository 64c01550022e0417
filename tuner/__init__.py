"""tuner: find the best fine-tuned image classifier for a small dataset, by a KerasTuner search over
two-phase transfer learning (a new head on a frozen pretrained backbone, then fine-tuning its top
blocks), with the frozen backbone's activations computed once.

The public API; each name loads its module on first use, so `import tuner` loads no TensorFlow:

    import tuner

    result = tuner.run("./my_images", backbone="xception", max_trials=10)  # a SearchResult
    result.leaderboard                       # the trials, best first; renders itself
    tuner.load("runs/xception")              # the same leaderboard, read again later

- `run`: a search, exactly as `python -m tuner.search` runs it (its flags as keywords);
- `load`: the leaderboard of one or several finished or running searches (a `Board`);
- `SearchConfig`: every setting of a search, validated and frozen; `SearchResult`: what `run`
  returns;
- `list_backbones`, `register_backbone`: the backbone registry;
- the errors: `TunerError` (bad input, configuration, data, weights or cache, one subclass each)
  and `TrialError` (one failed trial);
- `__version__`.

The command lines are `python -m tuner.search`, `tuner.leaderboard`, `tuner.export`,
`tuner.predict` and `tuner.weights`.
"""

from tuner._lazy import exports

__all__ = [
    "CacheError",
    "ConfigError",
    "DataError",
    "SearchConfig",
    "SearchResult",
    "SpaceError",
    "TrialError",
    "TunerError",
    "WeightsError",
    "__version__",
    "list_backbones",
    "load",
    "register_backbone",
    "run",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "run": "search",
        "load": "ui.board",
        "SearchConfig": "config",
        "SearchResult": "engine.runner",
        "list_backbones": "models.registry",
        "register_backbone": "models.registry",
        "TunerError": "errors",
        "ConfigError": "errors",
        "SpaceError": "errors",
        "DataError": "errors",
        "WeightsError": "errors",
        "CacheError": "errors",
        "TrialError": "errors",
        "__version__": "_version",
    },
)
