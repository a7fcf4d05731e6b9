"""Routing baselines as policies and the routing episode loop: its numbers against a hand-run, online passes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_env  # noqa: F401
from agents.bandit_agent import BanditAgent
from agents.routing_policies import (AlwaysBest, AlwaysCheapest, OracleRouting, RandomRouting, ThresholdRouting,
                                     evaluate_routing, routing_baselines, weak_and_strong)


def make_env():
    return gym.make("offload_env/Routing-v0", max_episode_steps=60)


def hand_episode(choose, seed, update=None):
    env = make_env()
    weak, strong = weak_and_strong(env)
    obs, info = env.reset(seed=seed)
    rewards, oracle, quality, cost, q_weak, q_strong, strong_calls = [], [], [], [], [], [], 0
    done = False
    while not done:
        arm = choose(obs, env)
        nxt, r, term, trunc, info = env.step(arm)
        if update is not None:
            update(obs, arm, r)
        rewards.append(r)
        oracle.append(info["oracle_reward"])
        quality.append(info["outcomes"][arm] if not info["forced"] else info["quality"])
        cost.append(info["cost"])
        q_weak.append(info["outcomes"][weak])
        q_strong.append(info["outcomes"][strong])
        strong_calls += info["model"] == strong
        obs, done = nxt, term or trunc
    n = len(rewards)
    return dict(steps=n, ret=sum(rewards), regret=sum(oracle) - sum(rewards), accuracy=np.mean(quality),
                cost=np.mean(cost), quality_weak=np.mean(q_weak), quality_strong=np.mean(q_strong),
                strong_share=strong_calls / n)


def check_row(row, hand):
    assert row["steps"] == hand["steps"] == 60
    assert row["return"] == pytest.approx(hand["ret"], abs=1e-9)
    assert row["regret"] == pytest.approx(hand["regret"], abs=1e-9)
    for key in ("accuracy", "cost", "quality_weak", "quality_strong", "strong_share"):
        assert row[key] == pytest.approx(hand[key], abs=1e-12), key


def test_fixed_baselines_match_a_hand_run():
    env = make_env()
    weak, strong = weak_and_strong(env)
    assert weak != strong
    for policy, arm in ((AlwaysCheapest(), weak), (AlwaysBest(), strong)):
        frame = evaluate_routing(policy, make_env, episodes=2, seed=5)
        for ep in range(2):
            check_row(frame.iloc[ep], hand_episode(lambda obs, e: arm, 5 + ep))
    cheap = evaluate_routing(AlwaysCheapest(), make_env, episodes=2, seed=5)
    best = evaluate_routing(AlwaysBest(), make_env, episodes=2, seed=5)
    np.testing.assert_allclose(cheap["accuracy"], cheap["quality_weak"])
    np.testing.assert_allclose(best["accuracy"], best["quality_strong"])
    assert (best["strong_share"] == 1).all() and (cheap["strong_share"] == 0).all()


def test_oracle_has_no_regret_and_bounds_every_baseline():
    frames = {p.name: evaluate_routing(p, make_env, episodes=3, seed=0)
              for p in routing_baselines(make_env, seed=0)}
    assert set(frames) == {"always-cheapest", "always-best", "random", "threshold", "oracle"}
    np.testing.assert_allclose(frames["oracle"]["regret"], 0.0, atol=1e-9)
    for name, frame in frames.items():
        assert (frame["regret"] >= -1e-9).all(), name
        assert (frame["return"] <= frames["oracle"]["return"] + 1e-9).all(), name
    share = frames["random"]["strong_share"].mean()
    assert 0.3 < share < 0.7
    assert 0.2 < frames["threshold"]["strong_share"].mean() < 0.8


def test_online_pass_is_the_hand_run_bandit():
    agent = BanditAgent("linucb", make_env, seed=0, alpha=0.3)
    frame = evaluate_routing(agent, make_env, episodes=2, seed=7, online=True)
    env = make_env()
    hand = BanditAgent("linucb", make_env, seed=0, alpha=0.3).router
    for ep in range(2):  # one router learning across both episodes, as the online pass does
        check_row(frame.iloc[ep], hand_episode(lambda obs, e: hand.act(np.asarray(obs, np.float64)), 7 + ep,
                                               update=lambda o, a, r: hand.update(np.asarray(o, np.float64), a, r)))
    assert agent.router.counts.sum() == 120  # online: one update per served query
    frozen = BanditAgent("linucb", make_env, seed=0, alpha=0.3)
    evaluate_routing(frozen, make_env, episodes=1, seed=7)
    assert frozen.router.counts.sum() == 0 and not frozen.router.theta.any()  # frozen: act only
    with pytest.raises(ValueError, match="online evaluation needs a policy with observe"):
        evaluate_routing(AlwaysBest(), make_env, episodes=1, online=True)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"^p: expected a probability in \[0, 1\], got 1.5"):
        RandomRouting(1.5)
    with pytest.raises(ValueError, match="^share: expected a number in"):
        ThresholdRouting(make_env, share=2.0, episodes=1)
    assert OracleRouting().name == "oracle"
