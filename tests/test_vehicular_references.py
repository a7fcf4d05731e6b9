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


def test_every_baseline_earns_the_same_returns_on_the_continuous_env():
    """On ``continuous=True`` a baseline acts with ``box_action`` of its discrete choice: the env serves the
    same target, split and power, so the returns match the discrete env's on the same seeds."""
    from agents.vehicular_baselines import VehicularAllCloud, VehicularNearestRSU, VehicularRandomValid

    policies = [VehicularBestResponse(), VehicularSequentialGreedy(), VehicularGreedy(), VehicularNearestRSU(),
                VehicularAllCloud(), VehicularRandomValid]
    for policy in policies:
        frames = []
        for continuous in (False, True):
            p = policy(seed=0) if isinstance(policy, type) else policy
            frames.append(evaluate_vehicular(p, lambda: make_parallel(
                "offload_env/Vehicular-v0", num_vehicles=6, max_cycles=20, continuous=continuous), episodes=2, seed=5))
        np.testing.assert_array_equal(frames[1]["return"], frames[0]["return"])
        assert frames[1]["fallback_rate"].max() == 0.0
        assert frames[0]["return"].std() > 0  # not a constant that any policy would match


def test_box_action_is_served_as_the_discrete_action():
    env = make_parallel("offload_env/Vehicular-v0", num_vehicles=2, continuous=True).unwrapped
    R, L = env.num_rsus, env.L
    np.testing.assert_array_equal(env.box_action(0), [1.0] + [-1.0] * (R + 2) + [1.0])  # local, full power
    cloud_deep = env.action_of(R + 1, len(env.split_points) - 1)
    box = env.box_action(cloud_deep)
    assert box[R + 1] == 1.0 and (np.delete(box[:R + 2], R + 1) == -1.0).all() and box[R + 3] == 1.0
    assert int(np.rint((box[R + 2] + 1.0) / 2.0 * (L - 1))) == env.split_points[-1]
    for bad in (-1, env.num_actions, 1.5):
        with pytest.raises((ValueError, TypeError), match="action"):
            env.box_action(bad)


def test_the_cloned_reference_learns_the_best_responses_actions_from_own_observations(capsys):
    """benchmarks/cloned_reference.py: the student fits the best response's actions above the most frequent
    action's share, acts only on allowed actions, and the script prints its table."""
    import sys
    from pathlib import Path

    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import cloned_reference as cr
    from agents.madrl.common import mlp

    torch.manual_seed(0)
    env = make_env()
    n, obs_dim = len(env.possible_agents), env.observation_space(env.possible_agents[0]).shape[0]
    data = cr.label(None, make_env, [1, 2, 3], n)
    net = mlp(obs_dim + n, (32,), env.unwrapped.num_actions, 0.01, True)
    accuracy = cr.fit(net, *data, epochs=40, seed=0)
    majority = np.bincount(data[2]).max() / len(data[2])
    assert accuracy > majority + 0.05
    frame = evaluate_vehicular(cr.Student(net, n), make_env, episodes=1, seed=7)
    assert frame["fallback_rate"].max() == 0.0
    cr.main(["--settings", "8", "--episodes", "1", "--rounds", "1", "--epochs", "1", "--eval-episodes", "1"])
    out = capsys.readouterr().out
    assert "| 0 | 800 |" in out and "| 1 | 1,600 |" in out
    with pytest.raises(SystemExit):
        cr.main(["--rounds", "-1"])
