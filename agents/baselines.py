"""Baseline policies and the evaluation loop every agent is compared in.

Every policy has ``act(obs, info) -> action`` (``info`` is the last info
dict, holding ``action_mask``) and ``reset(env)``, called at the start of each
episode. The oracle and greedy baselines are built on the env they act in.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np
import pandas as pd

from agents._episodes import episode_range

__all__ = [
    "Policy",
    "AllLocal",
    "AllServer",
    "RandomFeasible",
    "FixedSplit",
    "BestFixedSplit",
    "Greedy",
    "Oracle",
    "evaluate",
    "layer_split_baselines",
    # vehicular (PettingZoo) baselines, defined in agents.vehicular_baselines
    "VehicularAllLocal",
    "VehicularNearestRSU",
    "VehicularLeastLoadedRSU",
    "VehicularAllCloud",
    "VehicularRandomValid",
    "VehicularGreedy",
    "vehicular_baselines",
    "evaluate_vehicular",
]


class Policy(Protocol):
    name: str

    def reset(self, env: gym.Env) -> None: ...

    def act(self, obs: np.ndarray, info: dict) -> Any: ...


def _mask(info: dict) -> np.ndarray:
    try:
        return np.asarray(info["action_mask"], dtype=bool)
    except KeyError:
        raise KeyError("this policy needs info['action_mask'] (LayerSplit-v0 puts it in every info)") from None


class _Base:
    name = "baseline"

    def reset(self, env: gym.Env) -> None:
        self.env = env.unwrapped


class AllLocal(_Base):
    """The deepest allowed split: as much of the model on the edge as fits."""

    name = "all-local"

    def act(self, obs, info):
        return int(np.flatnonzero(_mask(info))[-1])


class AllServer(_Base):
    """The shallowest allowed split: 0, or the privacy minimum."""

    name = "all-server"

    def act(self, obs, info):
        return int(np.flatnonzero(_mask(info))[0])


class RandomFeasible(_Base):
    """A uniformly random allowed split."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, info):
        return int(self.rng.choice(np.flatnonzero(_mask(info))))


class FixedSplit(_Base):
    """Always split at ``k`` (the nearest allowed split when ``k`` is masked)."""

    def __init__(self, k: int):
        self.k = int(k)
        self.name = f"fixed-{self.k}"

    def act(self, obs, info):
        allowed = np.flatnonzero(_mask(info))
        return int(allowed[np.argmin(np.abs(allowed - self.k))])


class BestFixedSplit(FixedSplit):
    """The fixed split with the best mean return over calibration episodes."""

    name = "best-fixed"

    def __init__(self, make_env: Callable[[], gym.Env], episodes: int = 10, seed: int = 10_000):
        env = make_env()
        n_actions = env.action_space.n
        returns = []
        for k in range(n_actions):
            frame = evaluate(FixedSplit(k), make_env, episodes=episodes, seed=seed, progress=False)
            returns.append(frame["return"].mean())
        super().__init__(int(np.argmax(returns)))
        self.name = "best-fixed"
        self.calibration_returns = np.asarray(returns)


class Greedy(_Base):
    """Best split for the observed (delayed, noisy) state under the cost model: myopic, model-based."""

    name = "greedy"

    def act(self, obs, info):
        rewards = self.env.myopic_rewards(obs)
        return int(np.argmax(np.where(_mask(info), rewards, -np.inf)))


class Oracle(_Base):
    """Best immediate reward given the true current state (privileged: reads the simulator)."""

    name = "oracle"

    def act(self, obs, info):
        return self.env.oracle_action()


def layer_split_baselines(make_env: Callable[[], gym.Env], seed: int = 0, calibrate: bool = True) -> list:
    """The LayerSplit baselines, ready for :func:`evaluate`."""
    policies = [AllLocal(), AllServer(), RandomFeasible(seed), Greedy(), Oracle()]
    if calibrate:
        policies.insert(3, BestFixedSplit(make_env))
    return policies


def evaluate(policy, make_env: Callable[[], gym.Env] | gym.Env, episodes: int = 10, seed: int = 0,
             progress: bool = False) -> pd.DataFrame:
    """Run ``policy`` for ``episodes`` episodes; one row per episode.

    Columns: agent, episode, seed, steps, requests (served + dropped), return, mean latency (s), edge energy (J),
    deadline-miss rate, mean accuracy penalty, fallback rate, oracle return and
    cost ratio to the oracle (the policy's cost, minus its return, over the
    oracle's cost on the same requests and states).
    """
    env = make_env() if callable(make_env) else make_env
    rows = []
    for ep in episode_range(episodes, policy, progress):
        obs, info = env.reset(seed=seed + ep)
        if hasattr(policy, "reset"):
            policy.reset(env)
        total = oracle_total = 0.0
        latency, energy, misses, penalty, fallbacks, steps, dropped = [], 0.0, 0, [], 0, 0, 0
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.act(obs, info))
            done = terminated or truncated
            steps += 1
            total += reward
            oracle_total += info["oracle_reward"]
            latency.append(info["latency_s"])
            energy += info["edge_energy_j"]
            misses += not info["deadline_met"]
            penalty.append(info["accuracy_penalty"])
            fallbacks += bool(info.get("fallback", False))
            dropped += int(info.get("dropped_requests", 0))
        rows.append({
            "agent": getattr(policy, "name", type(policy).__name__), "episode": ep, "seed": seed + ep,
            "steps": steps, "requests": steps + dropped, "return": total, "mean_latency_s": float(np.mean(latency)), "edge_energy_j": energy,
            "deadline_miss_rate": misses / steps, "mean_accuracy_penalty": float(np.mean(penalty)),
            "fallback_rate": fallbacks / steps, "oracle_return": oracle_total,
            "cost_ratio_to_oracle": (-total) / (-oracle_total) if oracle_total < 0 else np.nan,
        })
    return pd.DataFrame(rows)


from agents.vehicular_baselines import (  # noqa: E402  (one place to import every baseline from)
    VehicularAllCloud,
    VehicularAllLocal,
    VehicularGreedy,
    VehicularLeastLoadedRSU,
    VehicularNearestRSU,
    VehicularRandomValid,
    evaluate_vehicular,
    vehicular_baselines,
)
