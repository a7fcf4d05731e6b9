"""The ``tune`` section of a config and the points of ``python -m experiments sweep`` (no Ray needed here;
the sweep itself runs in tests/test_rllib.py, in the 'ray' venv)."""

from __future__ import annotations

import math

import pytest

from experiments.config import ConfigError, parse_config
from experiments.sweep import sweep_points, trial_config, trial_name

ROUTING = "offload_env/Routing-v0"


def config(tune, agents=None):
    raw = {"name": "sw", "seeds": [0, 1], "env": {"id": ROUTING, "kwargs": {}},
           "evaluation": {"episodes": 1, "curve_episodes": 1},
           "agents": agents or {"linucb": {"algo": "linucb", "budget": 100, "alpha": 0.3}}, "tune": tune}
    return parse_config(raw, check_envs=False)


def test_grid_keys_are_crossed_with_the_draws_of_the_others_and_rounded_to_what_the_name_shows():
    cfg = config({"space": {"alpha": {"grid": [0.1, 1.0]}, "l2": {"loguniform": [1e-3, 1.0]}},
                  "num_samples": 3, "search_seed": 7})
    assert cfg.tune.agent == "linucb"  # the only agent
    points = sweep_points(cfg.tune)
    assert len(points) == 6 and [p["alpha"] for p in points] == [0.1] * 3 + [1.0] * 3
    for p in points:
        assert 1e-3 <= p["l2"] <= 1.0 and float(f"{p['l2']:.4g}") == p["l2"]
    assert len({p["l2"] for p in points}) == 6  # fresh draws for each grid point
    assert sweep_points(cfg.tune) == points  # the same seed searches the same points
    other = config({**cfg.tune.__dict__, "search_seed": 8})
    assert sweep_points(other.tune) != points
    name = trial_name("linucb", points[0])
    assert name == f"linucb@alpha=0.1,l2={points[0]['l2']:g}"
    trial, trial_agent = trial_config(cfg, points[0])
    assert trial_agent == name and list(trial.agents) == [name] and trial.tune is None
    assert trial.agents[name].hyperparams["alpha"] == 0.1
    assert trial.agents[name].hyperparams["l2"] == points[0]["l2"]


def test_choice_randint_and_dotted_keys():
    cfg = config({"space": {"alpha": {"choice": [0.1, 0.5]}, "env_kwargs.cost_weight": {"randint": [1, 3]}},
                  "num_samples": 20})
    points = sweep_points(cfg.tune)
    assert {p["alpha"] for p in points} <= {0.1, 0.5}
    assert {p["env_kwargs.cost_weight"] for p in points} <= {1, 2, 3}
    assert len(points) == len({(p["alpha"], p["env_kwargs.cost_weight"]) for p in points}) <= 6  # no repeats
    trial, name = trial_config(cfg, points[0])
    assert name.endswith(f"cost_weight={points[0]['env_kwargs.cost_weight']}")
    assert trial.agent_env_kwargs(name)["cost_weight"] == points[0]["env_kwargs.cost_weight"]


@pytest.mark.parametrize("tune, message", [
    ({"space": {}}, r"tune\.space: expected at least one setting"),
    ({"space": {"alpah": {"grid": [1.0]}}}, r"tune\.space\.alpah: 1\.0 is not a valid alpah .*unknown key"),
    ({"space": {"alpha": {"grid": [-1.0]}}}, r"tune\.space\.alpha: -1\.0 is not a valid alpha"),
    ({"space": {"alpha": {"uniform": [1.0, 0.5]}}}, r"tune\.space\.alpha\.uniform: expected \[low, high\] with "
                                                    r"low < high"),
    ({"space": {"alpha": {"loguniform": [0.0, 1.0]}}}, r"tune\.space\.alpha\.loguniform: .*0 < low < high"),
    ({"space": {"alpha": {"normal": [0, 1]}}}, r"tune\.space\.alpha: expected one of \{grid"),
    ({"space": {"alpha": {"grid": []}}}, r"tune\.space\.alpha\.grid: expected a non-empty list"),
    ({"space": {"alpha": {"grid": [1.0, 1.0]}}}, r"tune\.space\.alpha\.grid: expected distinct values"),
    ({"space": {"budget": {"grid": [10, 20]}}}, r"tune\.space\.budget: budget is not searched"),
    ({"space": {"alpha": {"grid": [1.0]}}, "metric": "reward"}, r"tune\.metric: expected 'mean_return' or "
                                                                  r"'cost_per_request'"),
    ({"space": {"alpha": {"grid": [1.0]}}, "num_samples": 0}, r"tune\.num_samples: expected an integer >= 1"),
    ({"space": {"alpha": {"grid": [1.0]}}, "cpus_per_trial": 0}, r"tune\.cpus_per_trial: expected a number > 0"),
    ({"space": {"alpha": {"grid": [1.0]}}, "agent": "ppo"}, r"tune\.agent: expected one of: linucb, got 'ppo'"),
    ({"space": {"alpha": {"grid": [1.0]}}, "spcae": {}}, r"tune\.spcae: unknown key \(did you mean 'space'\?\)"),
])
def test_a_bad_search_is_refused_at_config_load_with_the_field(tune, message):
    with pytest.raises(ConfigError, match=message):
        config(tune)


def test_several_agents_need_tune_agent():
    agents = {"a": {"algo": "linucb", "budget": 100}, "b": {"algo": "lints", "budget": 100}}
    with pytest.raises(ConfigError, match=r"tune\.agent: expected the name of the agent to search \(one of: a, b\)"):
        config({"space": {"alpha": {"grid": [1.0]}}}, agents)
    cfg = config({"agent": "a", "space": {"alpha": {"uniform": [0.1, 2.0]}}, "num_samples": 4}, agents)
    assert all(0.1 <= p["alpha"] <= 2.0 and not math.isnan(p["alpha"]) for p in sweep_points(cfg.tune))


def test_a_config_without_tune_has_none_and_run_ignores_a_tune_section():
    raw = {"name": "sw", "env": {"id": ROUTING}, "agents": {"linucb": {"algo": "linucb", "budget": 100}}}
    assert parse_config(raw, check_envs=False).tune is None
