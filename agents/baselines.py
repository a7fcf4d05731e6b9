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
    "BudgetReference",
    "Pacing",
    "calibrate_energy_price",
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
    """The myopic oracle: best immediate reward given the true current state (privileged: reads the simulator).

    Myopic: it spends the energy budget as if each request were the last
    (``reference`` paces it).
    """

    name = "myopic-oracle"

    def act(self, obs, info):
        return self.env.oracle_action()


class _PricedEnergy(_Base):
    """Best split for the current request with edge energy priced at ``price`` (reward units per
    ``energy_reference_j``, the budget's share of one request) on top of the reward; ``price`` is found
    by :func:`calibrate_energy_price` when not given."""

    privileged = False

    def __init__(self, make_env: Callable[[], gym.Env] | None = None, price: float | None = None,
                 episodes: int = 5, seed: int = 20_000):
        if price is None:
            if make_env is None:
                raise TypeError(f"{type(self).__name__}: give price= or make_env= to calibrate it")
            price, self.calibration = calibrate_energy_price(type(self), make_env, episodes=episodes, seed=seed)
        if not np.isfinite(price) or price < 0:
            raise ValueError(f"price: expected a finite number >= 0, got {price!r}")
        self.price = float(price)

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        if getattr(self.env, "continuous", False):
            raise TypeError(f"{self.name}: needs the discrete LayerSplit env (continuous=False)")
        self._per_joule = self.price / self.env.energy_reference_j

    def act(self, obs, info):
        reward, energy = self.env.split_scores(None if self.privileged else obs)
        return _priced_choice(reward, energy, _mask(info), self._per_joule)


def _priced_choice(reward: np.ndarray, energy: np.ndarray, mask: np.ndarray, per_joule: float) -> int:
    return int(np.argmax(np.where(mask, reward - per_joule * energy, -np.inf)))


class BudgetReference(_PricedEnergy):
    """The full-information reference: the oracle's choice with edge energy priced so that the budget lasts.

    A Lagrangian relaxation of the episode's energy budget. With ``hindsight``
    (the default) the multiplier is found for each episode on replays of
    that episode (copies of the env at its reset): bisection to the smallest
    price at which no request is dropped, then dearer prices (powers of 2 up
    to 64), and the best return of all those tried. It knows the episode's future, which
    bounds every policy that does not. Without, one price calibrated on other episodes
    (:func:`calibrate_energy_price`). Privileged: it reads the true state.
    """

    name = "reference"
    privileged = True

    def __init__(self, make_env: Callable[[], gym.Env] | None = None, price: float | None = None,
                 episodes: int = 5, seed: int = 20_000, hindsight: bool = True, iterations: int = 8):
        self.hindsight = bool(hindsight)
        self.iterations = int(iterations)
        super().__init__(make_env, 0.0 if hindsight and price is None else price, episodes, seed)

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        if self.hindsight:
            import copy

            start = copy.deepcopy(self.env)
            joule = self.env.energy_reference_j
            def outcome(price: float) -> tuple[float, float]:
                return _replay(copy.deepcopy(start), price / joule)
            price, self.tried = _search_price(outcome, self.iterations)
            # a dearer joule can pay beyond the budget's bound: every power of 2 up to 64 and 1.5x, 3x the bound
            for candidate in [2.0 ** k for k in range(-2, 7)] + [price * 1.5, price * 3.0]:
                if candidate not in self.tried:
                    self.tried[candidate] = outcome(candidate)
            self._per_joule = max(self.tried, key=lambda p: self.tried[p][1]) / joule


def _replay(env, per_joule: float) -> tuple[float, float]:
    """(requests dropped, return) of the rest of ``env``'s episode under the priced full-information choice."""
    mask, total, dropped = env.action_masks().astype(bool), 0.0, 0
    while True:
        reward, energy = env.split_scores()
        _, r, terminated, truncated, info = env.step(_priced_choice(reward, energy, mask, per_joule))
        total += r
        dropped += int(info.get("dropped_requests", 0))
        mask = np.asarray(info["action_mask"], dtype=bool)
        if terminated or truncated:
            return float(dropped), total


class Pacing(_PricedEnergy):
    """Budget pacing from the observation alone: greedy's cost model with edge energy priced so that the
    budget lasts (one price calibrated on other episodes, :func:`calibrate_energy_price`)."""

    name = "pacing"


def calibrate_energy_price(policy_class, make_env: Callable[[], gym.Env], episodes: int = 5, seed: int = 20_000,
                           iterations: int = 10, max_price: float = 64.0) -> tuple[float, dict]:
    """The energy price of ``policy_class(price=...)`` for which its budget lasts on calibration episodes.

    :func:`_search_price` over the mean (dropped requests, return) of
    ``episodes`` episodes from ``seed``. Returns (price, every price tried).
    """
    def outcome(price: float) -> tuple[float, float]:
        kwargs = {"hindsight": False} if policy_class is BudgetReference else {}
        frame = evaluate(policy_class(price=price, **kwargs), make_env, episodes=episodes, seed=seed)
        return float((frame["requests"] - frame["steps"]).mean()), float(frame["return"].mean())
    return _search_price(outcome, iterations, max_price)


def _search_price(outcome: Callable[[float], tuple[float, float]], iterations: int = 10,
                  max_price: float = 64.0) -> tuple[float, dict]:
    """The smallest price whose ``outcome`` drops no request, or the best return of the prices tried.

    0 when nothing is dropped at 0; else doubling from 0.25 until nothing is
    dropped (at most ``max_price``: a request's reward is a few units), then
    ``iterations`` bisection steps. Of the prices tried it keeps the one with
    the best return (the price where the budget just lasts, unless spending
    early is worth the drops, or no price avoids them). Returns (price,
    {price: (dropped, return)}).
    """
    tried: dict[float, tuple[float, float]] = {}

    def at(price: float) -> tuple[float, float]:
        if price not in tried:
            tried[price] = outcome(price)
        return tried[price]

    if at(0.0)[0] == 0:
        return 0.0, tried
    low, high = 0.0, 0.25
    while at(high)[0] > 0 and high < max_price:
        low, high = high, high * 2
    if at(high)[0] == 0:
        for _ in range(iterations):
            middle = (low + high) / 2
            low, high = (middle, high) if at(middle)[0] > 0 else (low, middle)
    return max(tried, key=lambda p: tried[p][1]), tried


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
