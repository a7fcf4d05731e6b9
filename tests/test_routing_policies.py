"""Routing baselines as policies and the routing episode loop: its numbers against a hand-run, online passes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_env  # noqa: F401
from agents.bandit_agent import BanditAgent
from agents.routing_policies import (AlwaysBest, AlwaysCheapest, KNNRouting, OracleRouting, PerSubjectRouting,
                                     RandomRouting, ThresholdRouting, calibration, evaluate_routing, group_gain,
                                     knn_gain, routing_baselines, weak_and_strong)


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


def test_gain_scores_by_hand():
    X_fit = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    gain = np.array([1.0, 0.0, -1.0, 0.0])
    np.testing.assert_allclose(knn_gain(X_fit, gain, [[1.0, 0.05], [0.0, 2.0]], k=2), [0.5, -0.5])
    np.testing.assert_allclose(knn_gain(X_fit, gain, X_fit, k=1, exclude_self=True), [0.0, 1.0, 0.0, -1.0])
    # group 2 was never fitted: the global mean gain (0); -1 (unknown topic) too
    np.testing.assert_allclose(group_gain([0, 0, 1, 1], gain, [1, 0, 2, -1]), [-0.5, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"^k: expected an integer >= 1"):
        knn_gain(X_fit, gain, X_fit, k=0)


@pytest.mark.parametrize("make", [lambda mk, share: KNNRouting(mk, k=20, share=share),
                                  lambda mk, share: PerSubjectRouting(mk, share=share)], ids=["knn", "per-subject"])
def test_supervised_references_fit_on_the_warm_up_prefix_and_act(make):
    def long_env():
        return gym.make("offload_env/Routing-v0", max_episode_steps=600)

    policies = {share: make(long_env, share) for share in (0.2, 0.5)}
    frames = {share: evaluate_routing(p, make_env, episodes=4, seed=0) for share, p in policies.items()}
    for share, frame in frames.items():
        assert frame["strong_share"].mean() == pytest.approx(share, abs=0.15)  # the calibration share, on new queries
    best = evaluate_routing(AlwaysBest(), make_env, episodes=4, seed=0)
    # half the queries to the best model keep most of its accuracy: the score ranks the queries by its gain
    gap = best["accuracy"] - best["quality_weak"]
    recovered = ((frames[0.5]["accuracy"] - best["quality_weak"]) / gap).mean()
    assert recovered > 0.6
    assert policies[0.5].name in ("knn-20", "per-subject") and policies[0.2].name.endswith("(share=0.2)")


def test_per_subject_reads_the_topic_and_falls_back_to_the_global_gain():
    policy = PerSubjectRouting(make_env, share=0.5)
    assert policy.by_topic.shape == (8,) and policy.global_gain == pytest.approx(
        np.average(policy.by_topic, weights=np.bincount(calibration(make_env, 1, 10_000)["topic"], minlength=8)))
    env = make_env()
    env.reset(seed=0)
    policy.reset(env)
    score = policy.score(None)
    assert score == policy.by_topic[env.unwrapped.query_topic()]
    policy.by_topic = policy.by_topic[:0]  # a topic the calibration never saw
    assert policy.score(None) == policy.global_gain


def test_calibration_prefix_and_bad_settings():
    full = calibration(make_env, 2, 10_000)
    half = calibration(make_env, 2, 10_000, warmup=0.5)
    assert len(full["obs"]) == 120 and len(half["obs"]) == 60
    np.testing.assert_array_equal(half["obs"], full["obs"][:60])
    for call, field in ((lambda: KNNRouting(make_env, k=0), "k"), (lambda: KNNRouting(make_env, warmup=0), "warmup"),
                        (lambda: PerSubjectRouting(make_env, warmup=1.5), "warmup"),
                        (lambda: PerSubjectRouting(make_env, episodes=0), "episodes"),
                        (lambda: KNNRouting(make_env, share=-0.1), "share")):
        with pytest.raises(ValueError, match=f"^{field}: expected"):
            call()
