"""The vehicular env's joint cost model and the full-information references built on it."""

from __future__ import annotations

import numpy as np
import pytest

from agents.vehicular_baselines import (VehicularBestResponse, VehicularGreedy, VehicularSequentialGreedy,
                                        evaluate_vehicular)
from offload_env import make_parallel


def make_env(**kw):
    return make_parallel("offload_env/Vehicular-v0", **{"num_vehicles": 6, "max_cycles": 12, **kw})


def test_joint_rewards_are_what_step_pays_without_fading_or_handover():
    env = make_env(fading=False)
    observations, infos = env.reset(seed=3)
    rng = np.random.default_rng(0)
    checked = 0
    while env.agents:
        masks = env.action_masks()
        joint = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        predicted = env.joint_rewards(joint[:, None])[:, 0]
        _, rewards, _, _, infos = env.step({a: int(joint[i]) for i, a in enumerate(env.possible_agents)})
        for i, agent in enumerate(env.possible_agents):
            info = infos[agent]
            if not info["handover"] and not info["fallback"]:
                assert info["reward_own"] == pytest.approx(predicted[i], rel=1e-9, abs=1e-12)
                checked += 1
    assert checked > 40


def test_joint_rewards_refuse_bad_shapes_and_price_masked_actions():
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^joint: expected an \(N=6, M\) array"):
        env.joint_rewards(np.zeros(6))
    with pytest.raises(ValueError, match=r"^joint: action indices must be in \[0, "):
        env.joint_rewards(np.full((6, 1), env.num_actions))
    masks = env.action_masks()
    if (~masks).any():
        i, a = np.argwhere(~masks)[0]
        joint = np.zeros((6, 1), dtype=np.int64)
        joint[i, 0] = a
        assert env.joint_rewards(joint)[i, 0] == -np.inf


def test_references_bound_the_deployable_baselines():
    """On the same episodes: best response (team) >= sequential greedy > independent greedy, and masks hold."""
    frames = {p.name: evaluate_vehicular(p, make_env, episodes=3, seed=10)
              for p in (VehicularGreedy(), VehicularSequentialGreedy(), VehicularBestResponse())}
    team = {name: f.groupby("episode")["return"].sum().mean() for name, f in frames.items()}
    assert team["best-response"] >= team["sequential-greedy"] > team["greedy"]
    for f in frames.values():
        assert f["fallback_rate"].max() == 0.0  # every action allowed by the mask
