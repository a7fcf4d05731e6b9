"""Experiment configs: round trip, errors naming the key, --set overrides."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.config import ConfigError, apply_overrides, dump_yaml, load_config, parse_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.yaml"))


def minimal(**agent) -> dict:
    return {"name": "t", "seeds": [0], "baselines": ["greedy"], "env": {"id": "offload_env/LayerSplit-v0"},
            "agents": {"default": {"gamma": 0.9}, "ppo": {"algo": "maskable_ppo", "budget": 128, "n_steps": 64,
                                                           **agent}}}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_round_trip(path, tmp_path):
    from experiments.suite import is_suite, load_suite

    # env checks off: the round trip is about the config's keys (a real workload's env takes minutes to build)
    configs = list(load_suite(path, check_envs=False).members) if is_suite(path) else [load_config(path, check_envs=False)]
    for cfg in configs:
        saved = tmp_path / "resolved.yaml"
        saved.write_text(dump_yaml(to_dict(cfg)))
        assert load_config(saved, check_envs=False) == cfg
        assert to_dict(load_config(saved, check_envs=False)) == to_dict(cfg)


def test_default_block_merges_and_agent_keys_win():
    cfg = parse_config(minimal(gamma=0.5))
    assert cfg.agents["ppo"].hyperparams["gamma"] == 0.5
    assert "default" not in cfg.agents
    assert parse_config(minimal()).agents["ppo"].hyperparams["gamma"] == 0.9


@pytest.mark.parametrize("raw, key", [
    ({**minimal(), "seedz": [0]}, "seedz"),
    ({**minimal(), "evaluation": {"episods": 3}}, "evaluation.episods"),
    (minimal(learnin_rate=1e-3), "agents.ppo.learnin_rate"),
    (minimal(n_steps="many"), "agents.ppo.n_steps"),
    (minimal(budget=100), "agents.ppo.budget"),  # not a whole number of 64-step rollouts
    ({**minimal(), "env": {"id": "offload_env/Nope-v0"}}, "env.id"),
    ({**minimal(), "baselines": ["greedy", "oracel"]}, "baselines[1]"),
    ({**minimal(), "agents": {"x": {"algo": "sac", "budget": 10}}}, "agents.x.algo"),
])
def test_bad_keys_are_named(raw, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + "[:.]"):
        parse_config(raw)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        parse_config(minimal(learnin_rate=1e-3))


def test_yaml_1e3_without_dot_is_a_float():
    cfg = parse_config(yaml.safe_load("name: t\nenv: {id: offload_env/LayerSplit-v0}\nagents:\n  p: {algo: maskable_ppo, budget: 64, n_steps: 64, "
                                      "learning_rate: 1e-3}\n"))
    assert cfg.agents["p"].hyperparams["learning_rate"] == pytest.approx(1e-3)


def test_set_overrides_every_agent_or_one():
    raw = minimal()
    raw["agents"]["ppo2"] = {"algo": "maskable_ppo", "budget": 64, "n_steps": 64}
    cfg = parse_config(apply_overrides(raw, ["agent.learning_rate=1e-3", "agents.ppo2.budget=128",
                                             "evaluation.episodes=4", "seeds=[1, 2]"]))
    assert cfg.agents["ppo"].hyperparams["learning_rate"] == pytest.approx(1e-3)
    assert cfg.agents["ppo2"].hyperparams["learning_rate"] == pytest.approx(1e-3)
    assert cfg.agents["ppo2"].budget == 128 and cfg.agents["ppo"].budget == 128
    assert cfg.evaluation.episodes == 4 and cfg.seeds == [1, 2]
    assert raw["agents"]["ppo2"]["budget"] == 64  # the input is not modified


@pytest.mark.parametrize("override, key", [
    ("agent.learning_rate=fast", "agents.ppo.learning_rate"),
    ("evaluation.episodes=ten", "evaluation.episodes"),
    ("agents.ppo.batch_size=1.5", "agents.ppo.batch_size"),
    ("agent.lerning_rate=0.1", "agents.ppo.lerning_rate"),
    ("agents.ppo.normalize_obs=maybe", "agents.ppo.normalize_obs"),
])
def test_set_type_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}[:.]"):
        parse_config(apply_overrides(minimal(), [override]))


def test_set_needs_key_value():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(minimal(), ["agent.learning_rate"])


def test_cli_fails_before_training_naming_the_key(tmp_path):
    raw = minimal(learnin_rate=1e-3)
    raw["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "experiments", "run", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "agents.ppo.learnin_rate" in out.stderr
    assert not (tmp_path / "runs").exists()
