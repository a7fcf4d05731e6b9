"""Contextual-bandit routers: exactness, agreement with MABWiser, save/load, baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import bandits
from agents.bandits import (
    CostAwareLinUCB,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    RandomRouter,
    ThresholdRouter,
    always_best,
    always_cheapest,
    _Ridge,
)


def linear_problem(d=6, k=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((k, d))
    X = rng.standard_normal((n, d))
    return X, X @ theta.T + 0.1 * rng.standard_normal((n, k))


@pytest.mark.parametrize("d", [6, 80])  # 80 exercises the buffered (delayed) rank-1 updates
def test_sherman_morrison_inverse_and_estimate_are_exact(d):
    X, R = linear_problem(d=d, n=300)
    agent = LinUCB(3, d, alpha=0.5, l2=2.0)
    arms = np.arange(300) % 3
    for x, a, r in zip(X, arms, R[np.arange(300), arms]):
        agent.update(x, a, r)
    agent.flush()
    for a in range(3):
        Xa, ra = X[arms == a], R[arms == a, a]
        A = 2.0 * np.eye(d) + Xa.T @ Xa
        np.testing.assert_allclose(agent.A_inv[a], np.linalg.inv(A), atol=1e-10)
        np.testing.assert_allclose(agent.theta[a], np.linalg.solve(A, Xa.T @ ra), atol=1e-8)


def test_linucb_picks_the_same_arms_as_mabwiser():
    mab = pytest.importorskip("mabwiser.mab")
    X, R = linear_problem(d=5, n=260, seed=3)
    warm = np.arange(60)
    ours = LinUCB(3, 5, alpha=1.5, l2=1.0)
    theirs = mab.MAB(arms=[0, 1, 2], learning_policy=mab.LearningPolicy.LinUCB(alpha=1.5, l2_lambda=1.0), seed=1)
    decisions = warm % 3
    theirs.fit(decisions, R[warm, decisions], X[warm])
    for i in warm:
        ours.update(X[i], decisions[i], R[i, decisions[i]])
    agree = ties = 0
    for i in range(60, 260):
        arm = ours.act(X[i])
        scores = ours.scores(X[i])
        top2 = np.sort(scores)[-2:]
        other = theirs.predict([X[i]])
        if other == arm:
            agree += 1
        else:
            assert top2[1] - top2[0] < 1e-9, f"step {i}: MABWiser picks {other}, ours {arm}, scores {scores}"
            ties += 1
        theirs.partial_fit([arm], [R[i, arm]], [X[i]])
        ours.update(X[i], arm, R[i, arm])
    assert agree + ties == 200 and agree >= 195


def test_linucb_learns_the_best_arm():
    X, R = linear_problem(d=4, n=3000, seed=5)
    agent = LinUCB(3, 4, alpha=0.5)
    picks = []
    for x, r in zip(X, R):
        a = agent.act(x)
        agent.update(x, a, r[a])
        picks.append(a == np.argmax(r))
    assert np.mean(picks[-500:]) > 0.9


@pytest.mark.parametrize("make", [lambda: LinUCB(3, 70, alpha=0.7),
                                  lambda: LinTS(3, 70, v=0.3, seed=4),
                                  lambda: EpsilonGreedy(3, 70, epsilon=0.2, seed=4),
                                  lambda: CostAwareLinUCB(3, 70, budget_per_step=0.5, step_size=0.05)])
def test_save_load_round_trip_gives_identical_decisions(make, tmp_path):
    X, R = linear_problem(d=70, n=200, seed=2)
    agent = make()

    def run(a, rows):
        out = []
        for i in rows:
            arm = a.act(X[i])
            if isinstance(a, CostAwareLinUCB):
                a.update(X[i], arm, R[i, arm], cost=float(arm))
            else:
                a.update(X[i], arm, R[i, arm])
            out.append(arm)
        return out

    run(agent, range(103))  # stop mid-buffer: save must flush the pending rank-1 terms
    npz, meta = agent.save(tmp_path / "router")
    assert npz.name == "router.npz" and meta.name == "router.json"
    assert json.loads(meta.read_text())["class"] == type(agent).__name__
    clone = type(agent).load(tmp_path / "router")
    same = bandits.load(tmp_path / "router.json")
    assert run(agent, range(103, 200)) == run(clone, range(103, 200)) == run(same, range(103, 200))
    assert not list(tmp_path.glob(".*.tmp"))
    with np.load(npz, allow_pickle=False) as data:  # plain arrays only
        assert all(data[k].dtype != object for k in data.files)


def test_load_refuses_another_class(tmp_path):
    LinUCB(2, 3).save(tmp_path / "a")
    with pytest.raises(ValueError, match="class"):
        LinTS.load(tmp_path / "a")


def test_cost_aware_linucb_paces_its_budget():
    rng = np.random.default_rng(0)
    # arm 1 is better (quality 0.8 vs 0.5) but costs 1.0 per call vs 0.0; the budget allows 30% of calls to it
    agent = CostAwareLinUCB(2, 1, budget_per_step=0.3, alpha=0.1, step_size=0.02)
    spent = []
    for _ in range(4000):
        arm = agent.act([1.0])
        quality = float(rng.random() < (0.8 if arm else 0.5))
        agent.update([1.0], arm, quality, cost=float(arm))
        spent.append(float(arm))
    assert np.mean(spent[-2000:]) == pytest.approx(0.3, abs=0.05)
    unconstrained = LinUCB(2, 1, alpha=0.1)
    for _ in range(2000):
        arm = unconstrained.act([1.0])
        unconstrained.update([1.0], arm, float(rng.random() < (0.8 if arm else 0.5)))
    assert unconstrained.counts[1] > 1800


def test_threshold_router_routes_the_hard_queries_to_the_strong_model():
    rng = np.random.default_rng(0)
    difficulty = rng.standard_normal(4000)
    X = np.stack([difficulty, np.ones_like(difficulty)], axis=1)
    weak = (rng.random(4000) < 1 / (1 + np.exp(2 * difficulty))).astype(float)
    strong = np.ones(4000)
    router = ThresholdRouter(2, strong=1, weak=0).fit(X, weak, strong)
    assert router.weights[0] > 0  # harder -> more likely the weak model fails
    router.threshold_for_share(X, 0.3)
    share = np.mean([router.act(x) == 1 for x in X])
    assert share == pytest.approx(0.3, abs=0.01)
    assert weak[[router.act(x) == 0 for x in X]].mean() > weak.mean()


def test_simple_baselines():
    assert always_cheapest([0.3, 0.0, 1.0]).act(None) == 1
    assert always_best([0.6, 0.8, 0.7]).act(None) == 1
    r = RandomRouter(0.25, strong=2, weak=0, seed=1)
    picks = np.array([r.act(None) for _ in range(4000)])
    assert set(picks) == {0, 2} and np.mean(picks == 2) == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("call, field", [(lambda: LinUCB(0, 3), "n_arms"), (lambda: LinUCB(2, 3, alpha=-1), "alpha"),
                                         (lambda: LinUCB(2, 3, l2=0), "l2"),
                                         (lambda: EpsilonGreedy(2, 3, epsilon=2), "epsilon"),
                                         (lambda: LinUCB(2, 3).act(np.zeros(4)), "x"),
                                         (lambda: LinUCB(2, 3).update(np.zeros(3), 5, 1.0), "arm"),
                                         (lambda: CostAwareLinUCB(2, 3, budget_per_step=0), "budget_per_step")])
def test_bad_arguments_name_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


@pytest.mark.parametrize("d", [5, 70])  # 70: the buffered rank-1 updates
def test_weighted_ridge_update_equals_the_observation_repeated(d):
    rng = np.random.default_rng(0)
    once, twice = _Ridge(2, d, l2=1.0), _Ridge(2, d, l2=1.0)
    for _ in range(40):
        x, arm, r = rng.standard_normal(d), int(rng.integers(2)), float(rng.random())
        once.update(x, arm, r, weight=2.0)
        twice.update(x, arm, r)
        twice.update(x, arm, r)
    once.flush(), twice.flush()
    np.testing.assert_allclose(once.theta, twice.theta, atol=1e-10)
    np.testing.assert_allclose(once.A_inv, twice.A_inv, atol=1e-10)
    np.testing.assert_allclose(once.b, twice.b, atol=1e-10)
