"""Routing-v0 baselines as policies (``reset(env)``, ``act(obs, info)``) and the routing episode loop.

Baselines: always-cheapest (lowest mean cost, ``env.mean_cost``), always-best
(highest published accuracy), random (the best model with probability ``p``,
else the cheapest: RouteLLM's random router), threshold (RouteLLM-style
logistic score fitted on calibration episodes whose seeds are disjoint from
evaluation), the supervised references knn and per-subject (the best model's
mean gain over the cheapest among the nearest calibration queries, or in the
query's topic, fitted on a warm-up prefix of those episodes) and the oracle
(PRIVILEGED: the best model in hindsight).

:func:`evaluate_routing` runs any policy; with ``online=True`` a policy that
has ``observe`` (a bandit) updates after every step, so the table is its
online pass: cumulative reward and regret, as a bandit is judged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from agents._episodes import episode_range

from .bandits import ThresholdRouter, _check_int, _check_number, share_threshold

__all__ = ["AlwaysCheapest", "AlwaysBest", "RandomRouting", "ThresholdRouting", "KNNRouting", "PerSubjectRouting",
           "OracleRouting", "routing_baselines", "evaluate_routing", "weak_and_strong", "calibration", "knn_gain",
           "group_gain", "RegretTrace"]


def weak_and_strong(env) -> tuple[int, int]:
    """(cheapest model by mean cost, best model by published accuracy) of a Routing env."""
    base = env.unwrapped
    return int(np.argmin(base.mean_cost)), int(np.nanargmax(base.published_accuracy))


class _Routing:
    name = "routing-baseline"

    def reset(self, env) -> None:
        self.env = env.unwrapped
        self.weak, self.strong = weak_and_strong(env)


class AlwaysCheapest(_Routing):
    """The model with the lowest mean cost, every query."""

    name = "always-cheapest"

    def act(self, obs, info=None) -> int:
        return self.weak


class AlwaysBest(_Routing):
    """The model with the highest published accuracy, every query."""

    name = "always-best"

    def act(self, obs, info=None) -> int:
        return self.strong


class RandomRouting(_Routing):
    """The best model with probability ``p``, else the cheapest."""

    def __init__(self, p: float = 0.5, seed: int | None = None):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self.name = "random" if self.p == 0.5 else f"random(p={self.p:g})"

    def act(self, obs, info=None) -> int:
        return self.strong if self.rng.random() < self.p else self.weak


def calibration(make_env: Callable[[], Any], episodes: int, seed: int, warmup: float = 1.0) -> dict:
    """The first ``warmup`` share of the queries of ``episodes`` episodes (env seeds ``seed + i``).

    Returns arrays: ``obs``, ``topic`` (``env.query_topic()``), ``q_weak`` and
    ``q_strong`` (the cheapest and the best model's quality on each query,
    read from the privileged ``info["outcomes"]``: calibration data, as a
    supervised router's training set), and ``weak``, ``strong``,
    ``n_query_features``.
    """
    _check_int("episodes", episodes, 1)
    warmup = _check_number("warmup", warmup, 0.0, 1.0, low_open=True)
    env = make_env()
    base = env.unwrapped
    weak, strong = weak_and_strong(env)
    X, topic, q_weak, q_strong = [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            X.append(obs)
            topic.append(base.query_topic() if hasattr(base, "query_topic") else -1)
            obs, _, terminated, truncated, info = env.step(weak)
            q_weak.append(info["outcomes"][weak])
            q_strong.append(info["outcomes"][strong])
            done = terminated or truncated
    env.close()
    n = max(int(round(warmup * len(X))), 1)
    return {"obs": np.asarray(X[:n], dtype=np.float64), "topic": np.asarray(topic[:n], dtype=np.int64),
            "q_weak": np.asarray(q_weak[:n], dtype=np.float64), "q_strong": np.asarray(q_strong[:n], dtype=np.float64),
            "weak": weak, "strong": strong, "n_query_features": int(getattr(base, "n_query_features", len(X[0])))}


class ThresholdRouting(_Routing):
    """RouteLLM-style threshold router, fitted on ``episodes`` calibration episodes from seed ``seed``.

    The score is a logistic fit of "the cheapest model fails where the best
    succeeds" on the observation; the threshold sends ``share`` of the
    calibration queries to the best model.
    """

    def __init__(self, make_env: Callable[[], Any], share: float = 0.5, episodes: int = 2, seed: int = 10_000,
                 l2: float = 1.0):
        data = calibration(make_env, episodes, seed)
        X = data["obs"]
        self.router = ThresholdRouter(X.shape[1], strong=data["strong"], weak=data["weak"], l2=l2).fit(
            X, data["q_weak"], data["q_strong"])
        self.router.threshold_for_share(X, share)
        self.share = float(share)
        self.name = "threshold" if self.share == 0.5 else f"threshold(share={self.share:g})"

    def act(self, obs, info=None) -> int:
        return self.router.act(np.asarray(obs, dtype=np.float64))


def _unit_rows(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)


def knn_gain(X_fit, gain_fit, X, k: int = 40, exclude_self: bool = False, block: int = 1024) -> np.ndarray:
    """Mean of ``gain_fit`` over the ``k`` fitted queries most similar (cosine) to each row of ``X``.

    ``exclude_self``: ``X`` is ``X_fit`` and each query leaves itself out (leave-one-out scores).
    """
    F, gain_fit = _unit_rows(X_fit), np.asarray(gain_fit, dtype=np.float64)
    Z = _unit_rows(np.atleast_2d(X))
    k = min(_check_int("k", k, 1), len(F) - int(exclude_self))
    if k < 1:
        raise ValueError("X_fit: expected at least 2 fitted queries to leave one out")
    out = np.empty(len(Z))
    for start in range(0, len(Z), block):
        sim = Z[start:start + block] @ F.T
        if exclude_self:
            sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        out[start:start + block] = gain_fit[top].mean(axis=1)
    return out


def group_gain(groups_fit, gain_fit, groups) -> np.ndarray:
    """Mean of ``gain_fit`` in each query's group (e.g. its subject); the global mean for a group not fitted."""
    groups_fit, gain_fit = np.asarray(groups_fit, dtype=np.int64), np.asarray(gain_fit, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    size = max(groups_fit.max(initial=-1), groups.max(initial=-1)) + 1
    seen = groups_fit >= 0
    count = np.bincount(groups_fit[seen], minlength=size)
    total = np.bincount(groups_fit[seen], gain_fit[seen], minlength=size)
    mean = np.where(count > 0, total / np.maximum(count, 1), gain_fit.mean())
    return np.where(groups >= 0, mean[np.maximum(groups, 0)], gain_fit.mean())


class _GainRouting(_Routing):
    """The best model when a fitted score of its gain over the cheapest reaches a threshold (ties: the best)."""

    def _fit(self, scores: np.ndarray, share: float, name: str) -> None:
        self.threshold = share_threshold(scores, share)
        self.share = float(share)
        self.name = name if self.share == 0.5 else f"{name}(share={self.share:g})"

    def score(self, obs) -> float:
        raise NotImplementedError

    def act(self, obs, info=None) -> int:
        return self.strong if self.score(obs) >= self.threshold else self.weak


class KNNRouting(_GainRouting):
    """Supervised reference: the best model's mean gain over the cheapest among the ``k`` nearest calibration queries.

    Fitted on the first ``warmup`` share of ``episodes`` calibration episodes
    from seed ``seed`` (disjoint from evaluation, as :class:`ThresholdRouting`);
    similarity is the cosine of the query features (the observation without
    its live context); the threshold sends ``share`` of the calibration queries
    (scored leaving themselves out) to the best model.
    """

    def __init__(self, make_env: Callable[[], Any], k: int = 40, share: float = 0.5, warmup: float = 1.0,
                 episodes: int = 1, seed: int = 10_000):
        data = calibration(make_env, episodes, seed, warmup)
        self.k = _check_int("k", k, 1)
        self.n_query_features = data["n_query_features"]
        self.features = data["obs"][:, :self.n_query_features]
        self.gain = data["q_strong"] - data["q_weak"]
        self._fit(knn_gain(self.features, self.gain, self.features, self.k, exclude_self=True), share,
                  "knn" if self.k == 40 else f"knn-{self.k}")

    def score(self, obs) -> float:
        x = np.asarray(obs, dtype=np.float64)[:self.n_query_features]
        return float(knn_gain(self.features, self.gain, x, self.k)[0])


class PerSubjectRouting(_GainRouting):
    """Supervised reference: the best model's mean gain over the cheapest in the query's topic (e.g. MMLU subject).

    The topic is the env's ``query_topic()`` (metadata of the query that the
    observation does not carry, read from the unwrapped env); an unseen
    topic gets the global mean gain. Fitted like :class:`KNNRouting`.
    """

    def __init__(self, make_env: Callable[[], Any], share: float = 0.5, warmup: float = 1.0, episodes: int = 1,
                 seed: int = 10_000):
        data = calibration(make_env, episodes, seed, warmup)
        topics, gain = data["topic"], data["q_strong"] - data["q_weak"]
        self.by_topic = group_gain(topics, gain, np.arange(topics.max(initial=-1) + 1))
        self.global_gain = float(gain.mean())
        self._fit(group_gain(topics, gain, topics), share, "per-subject")

    def score(self, obs) -> float:
        topic = self.env.query_topic()
        return float(self.by_topic[topic]) if 0 <= topic < len(self.by_topic) else self.global_gain


class OracleRouting(_Routing):
    """The best model in hindsight for each query. PRIVILEGED: reads the env's hidden outcomes."""

    name = "oracle"

    def act(self, obs, info=None) -> int:
        return int(self.env.oracle_action())


def routing_baselines(make_env: Callable[[], Any], seed: int = 0) -> list:
    """The Routing baselines, ready for :func:`evaluate_routing`."""
    return [AlwaysCheapest(), AlwaysBest(), RandomRouting(0.5, seed), ThresholdRouting(make_env), OracleRouting()]


def evaluate_routing(policy, make_env: Callable[[], Any] | Any, episodes: int = 10, seed: int = 0,
                     progress: bool = False, online: bool = False) -> pd.DataFrame:
    """Run ``policy`` on a Routing env for ``episodes`` episodes (env seeds ``seed + i``); one row per episode.

    Columns: agent, episode, seed, steps, return, accuracy (mean quality
    served), cost (mean, in the env's cost unit), usd and edge_energy_j (per
    query), mean_latency_s, deadline_miss_rate, forced_rate (budget spent),
    regret (oracle return minus return), oracle_return, strong_share (share of
    queries served by the best model), and the episode's reference points:
    quality_weak / cost_weak (the cheapest model on the same queries) and
    quality_strong / cost_strong (the best model), read from the privileged
    per-model outcomes of ``info``.
    """
    env = make_env() if callable(make_env) else make_env
    observe = getattr(policy, "observe", None) if online else None
    if online and observe is None:
        raise ValueError(f"{getattr(policy, 'name', policy)}: online evaluation needs a policy with observe()")
    weak, strong = weak_and_strong(env)
    rows = []
    for ep in episode_range(episodes, policy, progress):
        obs, info = env.reset(seed=seed + ep)
        if hasattr(policy, "reset"):
            policy.reset(env)
        n = 0
        sums = dict.fromkeys(("return", "oracle", "quality", "cost", "usd", "energy", "latency", "miss", "forced",
                              "strong", "q_weak", "q_strong", "c_weak", "c_strong"), 0.0)
        done = False
        while not done:
            action = policy.act(obs, info)
            next_obs, reward, terminated, truncated, info = env.step(action)
            if observe is not None:
                observe(obs, action, reward, info)
            obs, done, n = next_obs, terminated or truncated, n + 1
            for key, value in (("return", reward), ("oracle", info["oracle_reward"]), ("quality", info["quality"]),
                               ("cost", info["cost"]), ("usd", info["usd"]), ("energy", info["edge_energy_j"]),
                               ("latency", info["latency_s"]), ("miss", not info["deadline_met"]),
                               ("forced", info["forced"]), ("strong", info["model"] == strong),
                               ("q_weak", info["outcomes"][weak]), ("q_strong", info["outcomes"][strong]),
                               ("c_weak", info["costs"][weak]), ("c_strong", info["costs"][strong])):
                sums[key] += float(value)
        rows.append({
            "agent": getattr(policy, "name", type(policy).__name__), "episode": ep, "seed": seed + ep, "steps": n,
            "return": sums["return"], "accuracy": sums["quality"] / n, "cost": sums["cost"] / n,
            "usd": sums["usd"] / n, "edge_energy_j": sums["energy"] / n, "mean_latency_s": sums["latency"] / n,
            "deadline_miss_rate": sums["miss"] / n, "forced_rate": sums["forced"] / n,
            "regret": sums["oracle"] - sums["return"], "oracle_return": sums["oracle"],
            "strong_share": sums["strong"] / n, "quality_weak": sums["q_weak"] / n,
            "quality_strong": sums["q_strong"] / n, "cost_weak": sums["c_weak"] / n,
            "cost_strong": sums["c_strong"] / n,
        })
    return pd.DataFrame(rows)


class RegretTrace:
    """Per-step callback ``(agent, info)`` of an online pass: cumulative reward and regret (oracle reward minus
    reward, from the step's ``info``), one row every ``every`` steps; ``rows`` continues those of a resumed run."""

    def __init__(self, every: int = 1, rows: list[dict] | None = None):
        self.every = max(int(every), 1)
        self.rows = list(rows or [])
        last = self.rows[-1] if self.rows else {}
        self.step = int(last.get("step", 0))
        self.cumulative_reward = float(last.get("cumulative_reward", 0.0))
        self.cumulative_regret = float(last.get("cumulative_regret", 0.0))

    def __call__(self, agent, info: dict) -> None:
        reward = float(info["rewards"][info["model"]])
        self.step += 1
        self.cumulative_reward += reward
        self.cumulative_regret += float(info["oracle_reward"]) - reward
        if self.step % self.every == 0:
            self._row()

    def finish(self) -> list[dict]:
        """The rows, the last step included."""
        if self.step and (not self.rows or self.rows[-1]["step"] != self.step):
            self._row()
        return self.rows

    def _row(self) -> None:
        self.rows.append({"step": self.step, "cumulative_reward": self.cumulative_reward,
                          "cumulative_regret": self.cumulative_regret})
