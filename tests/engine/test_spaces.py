"""Tests for tuner.engine.spaces: loading, layering, validation and declaration on KerasTuner."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO, run_python, space_path
from tuner.engine.spaces import (
    FAMILIES,
    PARAM_NAMES,
    SPACES_DIR,
    Param,
    Space,
    load_space,
    validate_unfreeze,
)
from tuner.errors import SpaceError
from tuner.hp import ACTS_WHEN_POSITIVE

DEFAULTS = {
    "head/units": 0,
    "head/dropout": 0.2,
    "head/learning_rate": 1e-3,
    "finetune/unfreeze_blocks": 1,
    "finetune/learning_rate": 1e-5,
}

# (largest unfreeze_blocks, its default) per family; None is the default space alone.
UNFREEZE = {
    None: (3, 1),
    "vgg": (2, 1),
    "resnet": (3, 1),
    "resnetv2": (3, 1),
    "inception": (2, 1),
    "xception": (4, 2),
    "mobilenet": (3, 1),
    "densenet": (8, 4),
    "nasnet": (1, 1),
    "efficientnet": (3, 1),
    "efficientnetv2": (3, 1),
    "convnext": (3, 1),
    "tiny": (3, 2),
}


@pytest.fixture(scope="module")
def kt():
    return pytest.importorskip("keras_tuner")


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def in_range(param: Param, value: object) -> bool:
    if param.kind == "choice":
        return value in param.values
    if param.kind == "fixed":
        return value == param.default
    return param.min <= value <= param.max


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, tuner.engine.spaces\n"
        "print([m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules])"
    )
    out = run_python("-c", code, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_default_declares_names_and_defaults(kt):
    space = load_space()
    assert space.sources == (str(SPACES_DIR / "default.toml"),)
    hp = kt.HyperParameters()
    values = space.declare(hp)
    # The default linear head has no use for phase 1's learning rate and dropout: inactive.
    assert values == {**DEFAULTS, "head/dropout": None, "head/learning_rate": None}
    assert [p.name for p in hp.space] == list(PARAM_NAMES) == list(space.names)
    assert list(hp.values) == ["head/units", "finetune/unfreeze_blocks", "finetune/learning_rate"]
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {
        "head/units": "Choice",
        "head/dropout": "Float",
        "head/learning_rate": "Float",
        "finetune/unfreeze_blocks": "Int",
        "finetune/learning_rate": "Float",
    }
    declared = {p.name: p for p in hp.space}
    assert declared["head/learning_rate"].sampling == "log"
    assert declared["head/learning_rate"].default == 1e-3
    with pytest.raises(ValueError, match="inactive"):
        hp.get("head/learning_rate")
    hp.values["head/units"] = 256
    assert hp.is_active("head/dropout") and hp.is_active("head/learning_rate")


@pytest.mark.parametrize("family", [None, *FAMILIES])
def test_every_family_loads_and_declares(kt, family):
    space = load_space(family)
    assert space.names == PARAM_NAMES
    assert (space.max_unfreeze_blocks(), space.get("finetune/unfreeze_blocks").default) == (
        UNFREEZE[family]
    )
    values = space.declare(kt.HyperParameters())
    assert values["finetune/unfreeze_blocks"] == UNFREEZE[family][1]


def test_bundled_files_are_default_or_a_family():
    stems = {path.stem for path in SPACES_DIR.glob("*.toml")}
    assert "default" in stems
    assert stems - {"default"} <= set(FAMILIES)


def test_family_overrides_only_its_keys():
    default, xception = load_space(), load_space("xception")
    assert xception.sources[-1].endswith("xception.toml")
    assert xception.get("finetune/unfreeze_blocks").max == 4
    assert xception.get("finetune/unfreeze_blocks").source.endswith("xception.toml")
    for name in PARAM_NAMES:
        if name != "finetune/unfreeze_blocks":
            assert xception.get(name) == default.get(name)
    # A family without its own file is the default space.
    assert load_space("resnet") == default


def test_user_file_overrides_family_and_replaces_whole_entry():
    path = space_path("overrides")
    space = load_space("xception", path)
    assert space.sources[-1] == str(path)
    # The default's `values` and `default` are gone: the user's table replaced the entry.
    assert space.get("head/units") == Param(
        "head/units", "int", None, 32, 64, 32, "linear", 32, source=str(path)
    )
    assert space.get("finetune/learning_rate").default == 3e-5
    assert space.max_unfreeze_blocks() == 4  # From xception.toml, untouched by the user file.


def test_user_file_alone_layers_on_default(tmp_path):
    path = write(tmp_path, "")
    assert load_space(path=path).params == load_space().params


def test_unknown_family_suggests():
    with pytest.raises(SpaceError, match=r"'xcepton'.*Did you mean xception"):
        load_space("xcepton")


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpaceError, match="does not exist") as info:
        load_space(path=path)
    assert str(path) in str(info.value)


def test_invalid_toml_reports_line(tmp_path):
    path = write(tmp_path, '[head.units]\ntype = "choice"\nvalues = [1, 2\ndefault = 1\n')
    with pytest.raises(SpaceError, match=r"invalid TOML.*line \d+") as info:
        load_space(path=path)
    assert str(path) in str(info.value)


# (file text, key the message must name, a fragment stating the rule)
INVALID = {
    "unknown key typo": ('[head.unit]\ntype = "fixed"\nvalue = 1', "head.unit", "Did you mean [head.units]"),
    "unknown group": ('[haed.dropout]\ntype = "fixed"\nvalue = 0.1', "haed.dropout", "Did you mean [head.dropout]"),
    "unknown far key": ('[optimizer.name]\ntype = "fixed"\nvalue = 1', "optimizer.name", "known keys are"),
    "not a table": ("[head]\nunits = 256", "head.units", 'type = "fixed"'),
    "group not a table": ("head = 5", "head", "must be a table"),
    "tuner prefix": ('[tuner.epochs]\ntype = "fixed"\nvalue = 3', "tuner.epochs", "`tuner/` prefix"),
    "tuner quoted": ('["tuner/epochs"]\ntype = "fixed"\nvalue = 3', "tuner/epochs", "`tuner/` prefix"),
    "backbone": ('[backbone]\ntype = "choice"\nvalues = ["a"]', "backbone", "declares `backbone`"),
    "unknown type": ('[head.units]\ntype = "categorical"\nvalues = [1]', "head.units", "unknown type"),
    "type typo": ('[head.units]\ntype = "chioce"\nvalues = [1]', "head.units", "Did you mean choice?"),
    "missing type": ("[head.units]\nvalues = [1]", "head.units", "required field `type`"),
    "missing values": ('[head.units]\ntype = "choice"', "head.units", "required field `values`"),
    "missing min": ('[head.dropout]\ntype = "float"\nmax = 0.5', "head.dropout", "required field `min`"),
    "unknown field": ('[head.units]\ntype = "choice"\nvaluse = [1]', "head.units", "Did you mean `values`"),
    "field of other type": ('[head.units]\ntype = "choice"\nvalues = [1]\nstep = 1', "head.units", "applies to type"),
    "min > max": ('[head.dropout]\ntype = "float"\nmin = 0.4\nmax = 0.1', "head.dropout", "`min <= max` must hold, but got (min=0.4, max=0.1)"),
    "log min <= 0": ('[head.learning_rate]\ntype = "float"\nmin = 0.0\nmax = 0.1\nsampling = "log"', "head.learning_rate", "`min > 0` must hold"),
    "unknown sampling": ('[head.learning_rate]\ntype = "float"\nmin = 0.1\nmax = 1.0\nsampling = "logg"', "head.learning_rate", "Did you mean log"),
    "step <= 0": ('[head.dropout]\ntype = "float"\nmin = 0.0\nmax = 0.5\nstep = 0.0', "head.dropout", "`step > 0` must hold"),
    "log step <= 1": ('[head.learning_rate]\ntype = "float"\nmin = 1e-4\nmax = 1e-2\nsampling = "log"\nstep = 0.5', "head.learning_rate", "`step > 1` must hold"),
    "default outside range": ('[head.dropout]\ntype = "float"\nmin = 0.0\nmax = 0.5\ndefault = 0.7', "head.dropout", "`min <= default <= max` must hold"),
    "default off grid": ('[head.dropout]\ntype = "float"\nmin = 0.0\nmax = 0.5\nstep = 0.1\ndefault = 0.25', "head.dropout", "grid"),
    "default not in values": ('[head.units]\ntype = "choice"\nvalues = [128, 256]\ndefault = 64', "head.units", "`default in values` must hold"),
    "empty choice": ('[head.units]\ntype = "choice"\nvalues = []', "head.units", "must not be empty"),
    "mixed choice": ('[head.dropout]\ntype = "choice"\nvalues = [0, 0.5]', "head.dropout", "one type"),
    "duplicate choice": ('[head.units]\ntype = "choice"\nvalues = [128, 128]', "head.units", "distinct"),
    "dropout = 1": ('[head.dropout]\ntype = "float"\nmin = 0.0\nmax = 1.0', "head.dropout", "`0 <= head.dropout < 1` must hold, but got (max=1.0)"),
    "dropout < 0": ('[head.dropout]\ntype = "fixed"\nvalue = -0.1', "head.dropout", "`0 <= head.dropout < 1` must hold, but got (value=-0.1)"),
    "head lr = 0": ('[head.learning_rate]\ntype = "float"\nmin = 0.0\nmax = 0.1', "head.learning_rate", "`head.learning_rate > 0` must hold, but got (min=0.0)"),
    "finetune lr choice <= 0": ('[finetune.learning_rate]\ntype = "choice"\nvalues = [1e-5, -1e-5]', "finetune.learning_rate", "`finetune.learning_rate > 0` must hold, but got (values[1]=-1e-05)"),
    "lr not a number": ('[head.learning_rate]\ntype = "choice"\nvalues = ["fast"]', "head.learning_rate", "numeric values"),
    "units < 0": ('[head.units]\ntype = "choice"\nvalues = [-1, 128]', "head.units", "`head.units >= 0` must hold, but got (values[0]=-1)"),
    "units int min < 0": ('[head.units]\ntype = "int"\nmin = -1\nmax = 64', "head.units", "`head.units >= 0` must hold, but got (min=-1)"),
    "units float": ('[head.units]\ntype = "float"\nmin = 32.0\nmax = 64.0', "head.units", "integer values"),
    "int min is float": ('[finetune.unfreeze_blocks]\ntype = "int"\nmin = 0.5\nmax = 2', "finetune.unfreeze_blocks", "`min` must be an integer"),
    "unfreeze < 0": ('[finetune.unfreeze_blocks]\ntype = "int"\nmin = -1\nmax = 2', "finetune.unfreeze_blocks", "`finetune.unfreeze_blocks >= 0` must hold, but got (min=-1)"),
    "not finite": ('[head.learning_rate]\ntype = "float"\nmin = 1e-4\nmax = inf', "head.learning_rate", "finite"),
    "number is a string": ('[head.dropout]\ntype = "float"\nmin = "0"\nmax = 0.5', "head.dropout", "`min` must be a number"),
}  # fmt: skip


@pytest.mark.parametrize(("text", "key", "rule"), INVALID.values(), ids=INVALID.keys())
def test_invalid_space_names_file_key_and_rule(tmp_path, text, key, rule):
    path = write(tmp_path, text + "\n")
    with pytest.raises(SpaceError) as info:
        load_space(path=path)
    message = str(info.value)
    assert f"[{key}]" in message
    assert rule in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_errors_in_bundled_files_are_not_masked_by_layering(tmp_path):
    # Every layer is validated on its own, so a bad user file fails even when a later layer
    # does not exist to replace it, and a bad entry is blamed on its own file.
    path = write(tmp_path, '[finetune.unfreeze_blocks]\ntype = "int"\nmin = 3\nmax = 1\n')
    with pytest.raises(SpaceError, match="finetune.unfreeze_blocks") as info:
        load_space("xception", path)
    assert str(info.value).startswith(str(path))


def test_validate_unfreeze():
    space = load_space("xception")
    validate_unfreeze(space, n_blocks=4, backbone="xception")
    with pytest.raises(SpaceError) as info:
        validate_unfreeze(space, n_blocks=2, backbone="xception")
    message = str(info.value)
    for fragment in (
        "[finetune.unfreeze_blocks]",
        "'xception'",
        "max=4",
        "blocks=2",
        "xception.toml",
    ):
        assert fragment in message


@pytest.mark.parametrize(
    ("entry", "largest"),
    [
        ('type = "choice"\nvalues = [2, 0, 1]\ndefault = 0', 2),
        ('type = "fixed"\nvalue = 0', 0),
        ('type = "int"\nmin = 0\nmax = 5\nstep = 5', 5),
    ],
)
def test_max_unfreeze_blocks_for_every_kind(tmp_path, entry, largest):
    path = write(tmp_path, f"[finetune.unfreeze_blocks]\n{entry}\n")
    assert load_space(path=path).max_unfreeze_blocks() == largest


def test_get_unknown_name_is_a_key_error():
    with pytest.raises(KeyError, match="Did you mean head/units"):
        load_space().get("head/unit")


def test_space_is_frozen_and_hashable():
    space = load_space()
    assert isinstance(space, Space)
    assert hash(space) == hash(load_space())
    with pytest.raises(AttributeError):
        space.params = ()  # type: ignore[misc]


def sample_trials(kt, space: Space, n: int) -> list[tuple[list[str], dict]]:
    """Declares `space` the way a tuner does for `n` random trials (KerasTuner's oracles draw a
    value for the active hyperparameters only): names and values seen."""
    template = kt.HyperParameters()
    space.declare(template)
    trials = []
    for seed in range(n):
        hp = kt.HyperParameters()
        for index, declared in enumerate(template.space):
            hp.merge([declared])
            if hp.is_active(declared):
                hp.values[declared.name] = declared.random_sample(seed * 10 + index)
        values = space.declare(hp)
        trials.append(([p.name for p in hp.space], values))
    return trials


def test_sampled_values_stay_in_range_and_names_are_stable(kt):
    space = load_space("xception")
    trials = sample_trials(kt, space, 200)
    for names, values in trials:
        assert names == list(space.names)
        assert list(values) == list(space.names)
        for name, value in values.items():
            if value is None:  # inactive: only where its parent is 0
                assert values[ACTS_WHEN_POSITIVE[name]] == 0, name
            else:
                assert in_range(space.get(name), value), (name, value)
    dropouts = {round(v["head/dropout"], 9) for _, v in trials if v["head/dropout"] is not None}
    # KerasTuner's floor division would drop 0.5 from 0.0..0.5 step 0.1; Param.declare keeps it.
    assert dropouts == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    blocks = {values["finetune/unfreeze_blocks"] for _, values in trials}
    assert blocks == {1, 2, 3, 4}
    rates = [values["finetune/learning_rate"] for _, values in trials]
    assert all(1e-6 <= rate <= 1e-4 for rate in rates)
    # Log sampling puts about half the draws below the geometric mean, 1e-5.
    assert 0.3 < sum(rate < 1e-5 for rate in rates) / len(rates) < 0.7


def test_user_space_samples_in_range(kt):
    path = space_path("sampled")
    space = load_space(path=path)
    trials = sample_trials(kt, space, 100)
    for _, values in trials:
        assert values["head/units"] in {16, 32, 64, 128, 256}
        assert 1e-4 <= values["head/learning_rate"] <= 1e-2
        # 0.1 + 3 * 0.1 is 0.4000000000000001: allow the float grid its rounding.
        dropout = values["head/dropout"]
        assert 0.1 <= dropout <= 0.4 or math.isclose(dropout, 0.4)
    assert {round(v["head/dropout"], 9) for _, v in trials} == {0.1, 0.2, 0.3, 0.4}


# --------------------------------------------------------------------------------------------
# Conditional hyperparameters: searched only where they act


def conditions(hp) -> dict[str, list[tuple[str, list]]]:
    return {p.name: [(c.name, list(c.values)) for c in p.conditions] for p in hp.space}


def test_phase_1_settings_need_a_hidden_layer_and_phase_2_s_rate_needs_a_block(kt):
    default = kt.HyperParameters()
    load_space().declare(default)
    assert conditions(default) == {
        "head/units": [],
        "head/dropout": [("head/units", [128, 256, 512])],
        "head/learning_rate": [("head/units", [128, 256, 512])],
        # The default range starts at 1 block: the rate always acts, so it has no condition.
        "finetune/unfreeze_blocks": [],
        "finetune/learning_rate": [],
    }
    tiny = kt.HyperParameters()
    load_space("tiny").declare(tiny)
    assert conditions(tiny)["finetune/learning_rate"] == [("finetune/unfreeze_blocks", [1, 2, 3])]
    assert tiny.values == {
        "head/units": 0,
        "finetune/unfreeze_blocks": 2,
        "finetune/learning_rate": 3e-3,
    }


@pytest.mark.parametrize(
    ("entry", "positive"),
    [
        ('type = "choice"\nvalues = [0, 8, 16]', (8, 16)),
        ('type = "choice"\nvalues = [8, 16]', None),
        ('type = "fixed"\nvalue = 0', ()),
        ('type = "fixed"\nvalue = 4', None),
        ('type = "int"\nmin = 0\nmax = 8\nstep = 4', (4, 8)),
        ('type = "int"\nmin = 0\nmax = 3', (1, 2, 3)),
        ('type = "int"\nmin = 1\nmax = 3', None),
        ('type = "int"\nmin = 16\nmax = 256\nstep = 2\nsampling = "log"', None),
    ],
)
def test_a_parent_s_values_above_zero_are_listed_for_its_condition(tmp_path, entry, positive):
    space = load_space(path=write(tmp_path, f"[head.units]\n{entry}\n"))
    assert space.get("head/units").positive_values() == positive


def test_a_hyperparameter_that_can_never_act_is_a_fixed_default_never_active(kt, tmp_path):
    path = write(tmp_path, '[head.units]\ntype = "fixed"\nvalue = 0\n')
    hp = kt.HyperParameters()
    values = load_space(path=path).declare(hp)
    assert values["head/dropout"] is None and values["head/learning_rate"] is None
    declared = {p.name: p for p in hp.space}
    assert type(declared["head/dropout"]).__name__ == "Fixed"
    assert declared["head/dropout"].default == 0.2
    assert not hp.is_active("head/dropout") and "head/dropout" not in hp.values


def test_the_space_is_declared_the_same_way_in_every_process(kt):
    """A worker declares the space again, and receives trials as protos: the same names, order
    and conditions every time, and a trial's build adds nothing to its space."""
    space = load_space("tiny")
    first, second = kt.HyperParameters(), kt.HyperParameters()
    space.declare(first)
    space.declare(second)
    assert first.get_config() == second.get_config()
    trial = first.copy()
    trial.values = {"head/units": 0, "finetune/unfreeze_blocks": 0}
    values = space.declare(trial)
    assert len(trial.space) == len(PARAM_NAMES)
    assert values == {
        "head/units": 0,
        "head/dropout": None,
        "head/learning_rate": None,
        "finetune/unfreeze_blocks": 0,
        "finetune/learning_rate": None,
    }
    received = kt.HyperParameters.from_proto(trial.to_proto())
    assert conditions(received) == conditions(trial)
    assert received.values == trial.values
    space.declare(received)
    assert len(received.space) == len(PARAM_NAMES)


def test_an_older_project_s_space_keeps_every_hyperparameter_unconditional(kt):
    """A project searched before conditions existed reloads a space without them: it stays so,
    and its trials go on holding every value."""
    space = load_space()
    old = kt.HyperParameters()
    for param in space.params:
        param.declare(old)
    before = old.get_config()
    values = space.declare(old)
    assert old.get_config() == before
    assert values == DEFAULTS


def test_without_fine_tuning_the_unfreeze_depth_and_its_rate_are_not_searched(kt, tmp_path):
    """`--epochs-finetune 0`: no trial fine-tunes, so two trials that differed only in the
    unfreeze depth or the fine-tuning rate would be the same trial; neither is searched."""
    from tests.helpers import tiny_config
    from tuner.engine.spaces import space_for

    config = tiny_config(tmp_path / "data", tmp_path / "project")
    searched = space_for(config)
    assert searched.get("finetune/unfreeze_blocks").kind != "fixed"
    space = space_for(config.replace(epochs_finetune=0))
    unfreeze = space.get("finetune/unfreeze_blocks")
    assert unfreeze.kind == "fixed" and unfreeze.default == 0
    assert unfreeze.source == "--epochs-finetune 0"
    hp = kt.HyperParameters()
    values = space.declare(hp)
    assert values["finetune/unfreeze_blocks"] == 0 and values["finetune/learning_rate"] is None
    assert not hp.is_active("finetune/learning_rate")
    # The head's hyperparameters are searched as before.
    assert space.get("head/units") == searched.get("head/units")
