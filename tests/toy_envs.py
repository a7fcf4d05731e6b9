"""Small envs with known answers for the agents' tests (no torch, no JAX)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

CONTEXT_TOY = "offload_env_test/ContextToy-v0"


class ContextToy(gym.Env):
    """Three actions; the outcome ``cost`` is 0 for the action ``1 + sign(obs[0])`` (0 or 2), 0.5 for action 1,
    1 for the other: the best action depends on the context. Never reads a reward (it is 0)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self._t = 0
        return self._obs, {}

    def best(self, obs) -> int:
        return 2 if obs[0] > 0 else 0

    def step(self, action):
        cost = 0.0 if action == self.best(self._obs) else 0.5 if action == 1 else 1.0
        self._t += 1
        self._obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs, 0.0, False, self._t >= 50, {"cost": cost + 0.05 * self.np_random.normal()}


def register_context_toy() -> str:
    """Register :class:`ContextToy` (once) and return its id."""
    if CONTEXT_TOY not in gym.registry:
        gym.register(CONTEXT_TOY, entry_point=ContextToy)
    return CONTEXT_TOY
