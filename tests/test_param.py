"""One key of a space: its YAML spec, its draw on an Optuna trial, the order of conditions."""

import optuna
import pytest

from search.errors import ConfigError
from search.space import param


def test_a_plain_value_pins_the_key_and_a_spec_becomes_a_distribution():
    assert param.parse("epochs", 4) == param.Param("epochs", value=4)
    lr = param.parse("base_lr", {"type": "float", "low": 1e-4, "high": 1e-2, "log": True})
    assert isinstance(lr.distribution, optuna.distributions.FloatDistribution)
    assert lr.distribution.log and lr.value is None
    width = param.parse("width", {"choices": [16, 32], "when": {"backbone": "separable"}})
    assert width.distribution.choices == (16, 32) and width.when == {"backbone": ("separable",)}
    assert width.active({"backbone": "separable"}) and not width.active({"backbone": "x"})


def test_list_choices_travel_as_text_and_come_back_as_lists():
    size = param.parse("image_size", {"choices": [[160, 96], [224, 128]]})
    assert size.distribution.choices == ("160x96", "224x128")
    assert size.suggest(optuna.trial.FixedTrial({"image_size": "224x128"})) == [224, 128]


def test_int_and_float_draws_stay_in_range():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    depth = param.parse("depth", {"type": "int", "low": 2, "high": 4})
    lr = param.parse("base_lr", {"type": "float", "low": 0.1, "high": 0.2})
    for _ in range(20):
        trial = study.ask()
        assert depth.suggest(trial) in (2, 3, 4) and 0.1 <= lr.suggest(trial) <= 0.2
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name, spec, message", [
    ("widht", 3, "params.widht: unknown key"),
    ("width", {"type": "normal"}, "params.width.type must be one of"),
    ("width", {"type": "int", "low": 1}, "needs low and high"),
    ("width", {"choices": []}, "choices must be a non-empty list"),
    ("width", {"value": 3, "low": 1}, "'value' cannot be combined"),
    ("width", {"type": "int", "low": 1, "high": 4, "log2": True}, "unknown field"),
    ("width", {"choices": [1], "when": "separable"}, "when must map"),
])
def test_mistakes_name_the_key(name, spec, message):
    with pytest.raises(ConfigError, match=message):
        param.parse(name, spec)


def test_parents_come_before_children_and_circles_are_refused():
    child = param.Param("width", distribution=None, value=8, when={"backbone": ("separable",)})
    parent = param.Param("backbone", value="separable")
    assert [p.name for p in param.ordered([child, parent])] == ["backbone", "width"]
    a = param.Param("depth", value=1, when={"width": (1,)})
    b = param.Param("width", value=1, when={"depth": (1,)})
    with pytest.raises(ConfigError, match="circular"):
        param.ordered([a, b])
