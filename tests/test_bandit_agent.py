"""Bandits behind the agent protocol: the same arms and rewards as a hand-run router, save/load, the registry."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_env  # noqa: F401  (registers the envs)
from agents import bandits
from agents.bandit_agent import BanditAgent
from agents.protocol import Agent, OnlineAgent
from agents.registry import AGENTS, agent_family, check_algo_for_env

ROUTING = "offload_env/Routing-v0"


def make_env():
    return gym.make(ROUTING, max_episode_steps=50)


def hand_run(router, steps, seed, cost_aware=False):
    """The loop a user writes by hand (README): act, step, update; reset with no seed between episodes."""
    env = make_env()
    obs, _ = env.reset(seed=seed)
    arms, total = [], 0.0
    for _ in range(steps):
        x = np.asarray(obs, dtype=np.float64)
        arm = router.act(x)
        obs, reward, terminated, truncated, info = env.step(arm)
        if cost_aware:
            router.update(x, arm, info["quality"], cost=info["cost"])
        else:
            router.update(x, arm, reward)
        arms.append(arm)
        total += reward
        if terminated or truncated:
            obs, _ = env.reset()
    return arms, total


def agent_run(agent, steps):
    arms, env_rewards = [], []

    def callback(a, info):
        arms.append(info["model"])
        env_rewards.append(info["rewards"][info["model"]])

    agent.learn(make_env, steps, callback=callback)
    return arms, float(np.sum(env_rewards))


@pytest.mark.parametrize("algo, router", [
    ("linucb", lambda n, d: bandits.LinUCB(n, d, alpha=0.3)),
    ("lints", lambda n, d: bandits.LinTS(n, d, v=0.2, seed=3)),
    ("epsilon_greedy", lambda n, d: bandits.EpsilonGreedy(n, d, epsilon=0.1, seed=3)),
    ("cost_aware_linucb", lambda n, d: bandits.CostAwareLinUCB(n, d, budget_per_step=1e-3, alpha=0.3)),
])
def test_agent_learns_exactly_as_the_hand_run_router(algo, router):
    params = {"linucb": {"alpha": 0.3}, "lints": {"v": 0.2}, "epsilon_greedy": {"epsilon": 0.1},
              "cost_aware_linucb": {"budget_per_step": 1e-3, "alpha": 0.3}}[algo]
    from experiments.config import AgentConfig

    settings = AgentConfig(algo=algo, budget=120, hyperparams=params)  # as the harness builds it
    agent = agent_family(algo).build(make_env, seed=3, name=algo, settings=settings)
    steps = 120  # past two episode ends (50 steps each)
    arms, total = agent_run(agent, steps)
    env = make_env()
    n, d = env.action_space.n, env.observation_space.shape[0]
    hand_arms, hand_total = hand_run(router(n, d), steps, seed=3, cost_aware=algo == "cost_aware_linucb")
    assert arms == hand_arms
    assert total == pytest.approx(hand_total, rel=1e-12, abs=1e-12)
    assert agent.num_timesteps == steps and len(set(arms)) > 1
    assert isinstance(agent, Agent) and isinstance(agent, OnlineAgent)


def test_learning_in_chunks_is_one_pass():
    whole = BanditAgent("linucb", make_env, seed=1, alpha=0.3)
    whole.learn(make_env, 90)
    chunked = BanditAgent("linucb", make_env, seed=1, alpha=0.3)
    chunked.learn(make_env, 40)
    chunked.learn(make_env, 90)
    assert chunked.num_timesteps == 90
    np.testing.assert_array_equal(whole.router.theta, chunked.router.theta)


def test_save_load_round_trip_without_pickle(tmp_path):
    agent = BanditAgent("lints", make_env, seed=2, v=0.3)
    agent.learn(make_env, 70)
    agent.save(tmp_path / "agent")
    loaded = BanditAgent.load(tmp_path / "agent")
    assert loaded.num_timesteps == 70 and loaded.name == "lints"
    env = make_env()
    obs, _ = env.reset(seed=9)
    for _ in range(20):  # LinTS samples at every act: one act each per step, the generator state saved too
        arm = agent.act(obs)
        assert loaded.act(obs) == arm
        obs, *_ = env.step(arm)
    from offload_env.router import read_artifact

    path = agent.export(tmp_path / "artifact", env_id=ROUTING)  # tests/test_export.py checks its decisions
    assert read_artifact(path).manifest["agent"]["num_timesteps"] == agent.num_timesteps
    with pytest.raises(ValueError, match="no agent.json"):
        BanditAgent.load(tmp_path)


def test_bad_algo_and_env_shapes_are_refused():
    with pytest.raises(ValueError, match="^algo: expected one of ddpg, td3, maskable_ppo, ppo, dqn, linucb"):
        agent_family("ucb")
    with pytest.raises(ValueError, match="^algo: expected one of linucb"):
        BanditAgent("ucb", make_env)
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        BanditAgent("linucb", lambda: gym.make("offload_env/LayerSplit-v0", continuous=True))


def test_single_and_multi_agent_algorithms_are_checked_against_the_env():
    check_algo_for_env("linucb", ROUTING)
    with pytest.raises(ValueError, match=r"^agents\.x\.algo: 'maskable_ppo' is a single-agent algorithm and "
                                         r"offload_env/Vehicular-v0 is a multi-agent env"):
        check_algo_for_env("maskable_ppo", "offload_env/Vehicular-v0", where="agents.x.algo")
    with pytest.raises(ValueError, match=r"^algo: 'mappo' is a multi-agent algorithm and offload_env/Routing-v0 "
                                         r"is a single-agent env; expected one of: ddpg, td3"):
        check_algo_for_env("mappo", ROUTING)
    assert {a for a, f in AGENTS.items() if f.multi_agent} == {"mappo", "ippo", "fedppo", "maddpg"}


def test_snapshot_acts_without_moving_the_agent():
    agent = BanditAgent("lints", make_env, seed=4, v=0.3)
    agent.learn(make_env, 30)
    state = agent.router.rng.bit_generator.state
    twin = agent.snapshot()
    env = make_env()
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        twin.observe(obs, twin.act(obs), 1.0, {"quality": 1.0, "cost": 0.0})
    assert agent.router.rng.bit_generator.state == state and agent.router.counts.sum() == 30
    assert twin.router.counts.sum() == 40
