"""Imitation warm start: a cloned policy follows its teacher; configs check it; runs record it."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import yaml

import offload_env  # noqa: F401
from agents.baselines import Greedy
from agents.imitation import ImitationSettings, collect, imitate
from agents.sb3 import make_sb3_agent
from experiments.config import ConfigError, parse_config, to_dict
from experiments.runner import run_experiment, run_paths

SHORT = {"max_episode_steps": 40}


def make_env():
    return gym.make("offload_env/LayerSplit-v0", **SHORT)


def _agreement(agent, teacher, episodes: int = 3, seed: int = 900) -> float:
    """Share of the teacher's states (teacher acting) where the agent picks the teacher's action."""
    env = make_env()
    obs, masks, actions = collect(teacher, env, episodes, seed)
    env.close()
    chosen = [agent.act(o, {"action_mask": m}) for o, m in zip(obs, masks)]
    return float(np.mean(np.asarray(chosen) == actions))


def test_cloned_policy_follows_its_teacher_on_unseen_episodes():
    agent = make_sb3_agent("maskable_ppo", make_env, seed=0, n_envs=1, n_steps=32, batch_size=16,
                           policy_kwargs={"net_arch": [64, 64]})
    teacher = Greedy()
    before = _agreement(agent, teacher)
    record = imitate(agent, teacher, make_env, ImitationSettings("greedy", episodes=6, dagger_rounds=1, epochs=40),
                     seed=0)
    after = _agreement(agent, teacher)
    assert record["samples"] == 6 * 40 + 3 * 40 and record["rounds"] == 2 and len(record["accuracy"]) == 2
    assert after >= 0.7 and after > before + 0.5, (before, after)  # measured: 0.01 before, 0.78 after


def test_clone_respects_the_action_mask_and_reports_accuracy():
    agent = make_sb3_agent("maskable_ppo", make_env, seed=0, n_envs=1, n_steps=32, batch_size=16)
    env = make_env()
    obs, masks, actions = collect(Greedy(), env, 2, 0)
    accuracy = agent.clone(obs, masks, actions, epochs=5)
    assert 0.0 <= accuracy <= 1.0
    for o, m in zip(obs, masks):  # the masked argmax never picks a barred split
        assert m[agent.act(o, {"action_mask": m})]


def test_clone_is_refused_for_continuous_and_off_policy_agents():
    agent = make_sb3_agent("ddpg", lambda: gym.make("offload_env/LayerSplit-v0", continuous=True), seed=0)
    with pytest.raises(TypeError, match="discrete on-policy"):
        agent.clone(np.zeros((2, 9)), np.ones((2, 31), bool), np.zeros(2, int))


def _config(tmp_path, imitation=None, algo="maskable_ppo", **agent):
    ppo = {"algo": algo, "budget": 64, "n_steps": 32, "batch_size": 16, "n_epochs": 1, **agent}
    if algo == "ddpg":
        ppo = {"algo": "ddpg", "env_kwargs": {"continuous": True}, "budget": 20, "learning_starts": 10}
    if imitation is not None:
        ppo["imitation"] = imitation
    return {"name": "imitate", "runs_dir": str(tmp_path / "runs"), "seeds": [0],
            "env": {"id": "offload_env/LayerSplit-v0", "kwargs": {"max_episode_steps": 20}},
            "baselines": ["greedy"], "evaluation": {"episodes": 1, "curve_episodes": 1},
            "agents": {"ppo": ppo}}


@pytest.mark.parametrize("imitation, message", [
    ({"teacher": "nobody"}, "agents.ppo.imitation.teacher"),
    ({"teacher": "greedy", "episodes": 0}, r"imitation\.episodes: expected an integer >= 1"),
    ({"teacher": "greedy", "dagger_rounds": -1}, r"imitation\.dagger_rounds: expected an integer >= 0"),
    ({"teacher": "greedy", "learning_rate": 0}, r"imitation\.learning_rate: expected a number > 0"),
    ({"teacher": "greedy", "epochs": 0}, r"imitation\.epochs"),
    ({"teacher": "greedy", "batch_size": 0}, r"imitation\.batch_size"),
    ({"episodes": 3}, r"imitation\.teacher: required"),
    ({"teacher": "greedy", "rounds": 3}, r"imitation\.rounds"),
])
def test_config_names_a_bad_imitation_key(tmp_path, imitation, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(tmp_path, imitation), check_envs=False)


def test_config_refuses_imitation_for_an_agent_that_cannot_clone(tmp_path):
    raw = _config(tmp_path, algo="ddpg")
    raw["agents"]["ppo"]["imitation"] = {"teacher": "greedy"}
    with pytest.raises(ConfigError, match=r"agents\.ppo\.imitation: expected null \(ddpg cannot clone"):
        parse_config(raw, check_envs=False)


def test_records_without_imitation_do_not_name_it(tmp_path):
    assert "imitation" not in to_dict(parse_config(_config(tmp_path), check_envs=False))["agents"]["ppo"]
    with_it = to_dict(parse_config(_config(tmp_path, {"teacher": "greedy"}), check_envs=False))
    assert with_it["agents"]["ppo"]["imitation"]["teacher"] == "greedy"
    assert parse_config(with_it, check_envs=False).agents["ppo"].imitation.teacher == "greedy"  # read back


def test_run_imitates_before_training_and_records_it(tmp_path):
    cfg = parse_config(_config(tmp_path, {"teacher": "greedy", "episodes": 2, "dagger_rounds": 1, "epochs": 2}))
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "ppo", 0)
    record = json.loads(paths.imitation.read_text())
    assert record["teacher"] == "greedy" and record["samples"] == 2 * 20 + 1 * 20 and record["rounds"] == 2
    assert json.loads(paths.done.read_text())["total_steps"] == 64  # the budget is the learner's own steps
    assert yaml.safe_load(paths.config.read_text())["agents"]["ppo"]["imitation"]["episodes"] == 2
