"""The project's envs as RLlib sees them: the action mask appended to each observation, registered with Ray.

RLlib's PPO samples from the RLModule's logits; :mod:`agents.rllib.module`
masks them with the last ``n_actions`` observation columns, which these
wrappers fill from ``info["action_mask"]`` (a Gymnasium env) or
``infos[agent]["action_mask"]`` (a PettingZoo ParallelEnv, then wrapped in
RLlib's ``ParallelPettingZooEnv``). Box-action envs pass through unchanged.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["masked_space", "MaskedObservations", "MaskedParallelEnv", "register_factory", "is_multi_agent"]


def masked_space(obs_space: spaces.Box, n_actions: int) -> spaces.Box:
    """``obs_space`` with ``n_actions`` 0/1 columns appended (the mask)."""
    low = np.concatenate([obs_space.low.ravel(), np.zeros(n_actions)]).astype(np.float32)
    high = np.concatenate([obs_space.high.ravel(), np.ones(n_actions)]).astype(np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def _with_mask(obs, info: dict, n_actions: int) -> np.ndarray:
    mask = info.get("action_mask") if isinstance(info, dict) else None
    mask = np.ones(n_actions, np.float32) if mask is None else np.asarray(mask, np.float32)
    return np.concatenate([np.asarray(obs, np.float32).ravel(), mask])


class MaskedObservations(gym.Wrapper):
    """A discrete-action Gymnasium env whose observation ends with ``info["action_mask"]``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.n_actions = int(env.action_space.n)
        self.observation_space = masked_space(env.observation_space, self.n_actions)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return _with_mask(obs, info, self.n_actions), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return _with_mask(obs, info, self.n_actions), reward, terminated, truncated, info


class MaskedParallelEnv:
    """A discrete-action PettingZoo ParallelEnv whose observations end with ``infos[agent]["action_mask"]``."""

    def __init__(self, env):
        self.env = env
        self.possible_agents = list(env.possible_agents)
        self.metadata = getattr(env, "metadata", {})
        self.render_mode = getattr(env, "render_mode", None)
        first = self.possible_agents[0]
        self.n_actions = int(env.action_space(first).n)
        self._spaces = {a: masked_space(env.observation_space(a), self.n_actions) for a in self.possible_agents}

    @property
    def agents(self) -> list:
        return self.env.agents

    @property
    def unwrapped(self):
        return self.env.unwrapped

    def observation_space(self, agent):
        return self._spaces[agent]

    def action_space(self, agent):
        return self.env.action_space(agent)

    def _masked(self, observations: dict, infos: dict) -> dict:
        return {a: _with_mask(o, infos.get(a, {}), self.n_actions) for a, o in observations.items()}

    def reset(self, seed=None, options=None):
        observations, infos = self.env.reset(seed=seed, options=options)
        return self._masked(observations, infos), infos

    def step(self, actions):
        observations, rewards, terms, truncs, infos = self.env.step(actions)
        return self._masked(observations, infos), rewards, terms, truncs, infos

    def state(self):
        return self.env.state()

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


def is_multi_agent(env: Any) -> bool:
    """A PettingZoo ParallelEnv (it has ``possible_agents``) rather than a Gymnasium env."""
    return hasattr(env, "possible_agents")


def _rllib_env(make_env: Callable[[], Any]):
    env = make_env()
    if is_multi_agent(env):
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

        first = env.possible_agents[0]
        return ParallelPettingZooEnv(MaskedParallelEnv(env) if hasattr(env.action_space(first), "n") else env)
    return MaskedObservations(env) if hasattr(env.action_space, "n") else env


def register_factory(make_env: Callable[[], Any]) -> str:
    """Register ``make_env`` (masked, and for a PettingZoo env wrapped for RLlib) with Ray; returns the name."""
    from ray.tune.registry import register_env

    name = f"offload_env_rllib_{uuid.uuid4().hex[:12]}"
    register_env(name, lambda env_config: _rllib_env(make_env))
    return name
