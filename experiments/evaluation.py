"""One evaluation code path for baselines and learned agents: the tidy per-episode table."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import pandas as pd

from .registry import action_space_label, env_factory, import_object, scenario_label

__all__ = ["BreakdownRecorder", "evaluate_policy", "episode_seed_base"]


def episode_seed_base(eval_seed: int, training_seed: int) -> int:
    """Env seed of evaluation episode 0 for a training seed (episode i adds i)."""
    return eval_seed + 1000 * training_seed


class BreakdownRecorder(gym.Wrapper):
    """Averages chosen numeric ``info`` keys over each episode (``episodes``: one dict per episode)."""

    def __init__(self, env: gym.Env, keys: list[str]):
        super().__init__(env)
        self.keys = list(keys)
        self.episodes: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._steps = 0

    def reset(self, **kwargs):
        self._close_episode()
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        for key in self.keys:
            if key in info:
                self._sums[key] = self._sums.get(key, 0.0) + float(info[key])
        if terminated or truncated:
            self._close_episode()
        return obs, reward, terminated, truncated, info

    def _close_episode(self) -> None:
        if self._steps:
            self.episodes.append({f"mean_{k}": v / self._steps for k, v in self._sums.items()})
        self._sums, self._steps = {}, 0


def evaluate_policy(policy, env_id: str, env_kwargs: dict[str, Any], *, agent: str, seed: int, episodes: int,
                    eval_seed: int, function: str = "agents.baselines:evaluate",
                    breakdown_keys: list[str] = (), progress: bool = False, online: bool = False) -> pd.DataFrame:
    """Evaluate ``policy`` for ``episodes`` episodes; one row per episode with the run's identity columns.

    Columns added to the evaluation function's: env, scenario, action_space,
    agent, seed (the training seed), episode_seed, cost_per_request and the
    ``mean_<key>`` latency breakdown (Gymnasium envs). A multi-agent env's loop
    gives one row per episode and agent (its ``vehicle`` column).
    """
    evaluate: Callable[..., pd.DataFrame] = import_object(function, "evaluation.function")
    recorders: list[BreakdownRecorder] = []
    build = env_factory(env_id, env_kwargs)

    def make_env():
        env = build()
        if not breakdown_keys or not isinstance(env, gym.Env):
            return env
        env = BreakdownRecorder(env, list(breakdown_keys))
        recorders.append(env)
        return env

    extra = {"online": True} if online else {}  # a bandit's online pass: it learns through the episodes
    frame = evaluate(policy, make_env, episodes=episodes, seed=episode_seed_base(eval_seed, seed),
                     progress=progress, **extra)
    frame = frame.rename(columns={"seed": "episode_seed"})
    breakdown = pd.DataFrame([ep for rec in recorders for ep in rec.episodes]) if recorders else pd.DataFrame()
    if len(breakdown) == len(frame):
        frame = pd.concat([frame.reset_index(drop=True), breakdown], axis=1)
    frame["agent"] = agent
    frame.insert(0, "env", env_id.split("/")[-1])
    frame.insert(1, "scenario", scenario_label(env_kwargs))
    frame.insert(2, "action_space", action_space_label(env_kwargs))
    frame.insert(4, "seed", seed)
    if "return" in frame and "steps" in frame:
        requests = frame["requests"] if "requests" in frame else frame["steps"]
        frame["cost_per_request"] = -frame["return"] / requests.clip(lower=1)  # dropped requests count
    if "deadline_miss_rate" in frame:
        frame["deadline_miss_rate"] = frame["deadline_miss_rate"].astype(float)
    front = ["env", "scenario", "action_space", "agent", "seed", "episode", "episode_seed", "vehicle"]
    return frame[[c for c in front if c in frame] + [c for c in frame if c not in front]]
