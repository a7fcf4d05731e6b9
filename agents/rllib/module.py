"""RLlib's default PPO RLModule, its logits masked by the action mask the observation ends with.

The encoder and heads see only the env's own observation (the first
``obs_dim`` columns); a masked action's logit is the lowest float, so it is
never sampled in training nor chosen in evaluation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

__all__ = ["MaskedPPOTorchModule"]


class MaskedPPOTorchModule(DefaultPPOTorchRLModule):
    """PPO's default torch module on ``Box(obs_dim + n_actions)`` observations whose tail is the mask."""

    def __init__(self, *, observation_space=None, action_space=None, **kwargs):
        self.n_mask = n = int(action_space.n)
        self.masked_observation_space = observation_space
        inner = gym.spaces.Box(observation_space.low[:-n], observation_space.high[:-n], dtype=np.float32)
        super().__init__(observation_space=inner, action_space=action_space, **kwargs)

    def setup(self):
        super().setup()  # the encoder and heads are built on the inner space
        self.observation_space = self.masked_observation_space  # what RLlib rebuilds the module with

    def _split(self, batch: dict) -> tuple[torch.Tensor, dict]:
        obs = batch[Columns.OBS]
        return obs[..., -self.n_mask:], {**batch, Columns.OBS: obs[..., :-self.n_mask]}

    def _masked(self, out: dict, mask: torch.Tensor) -> dict:
        logits = out[Columns.ACTION_DIST_INPUTS]
        out[Columns.ACTION_DIST_INPUTS] = logits.masked_fill(mask < 0.5, torch.finfo(logits.dtype).min)
        return out

    def _forward_inference(self, batch, **kwargs):
        mask, batch = self._split(batch)
        return self._masked(super()._forward_inference(batch, **kwargs), mask)

    def _forward_exploration(self, batch, **kwargs):
        mask, batch = self._split(batch)
        return self._masked(super()._forward_exploration(batch, **kwargs), mask)

    def _forward_train(self, batch, **kwargs):
        mask, batch = self._split(batch)
        return self._masked(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch, embeddings=None):
        if embeddings is None:
            _, batch = self._split(batch)
        return super().compute_values(batch, embeddings)
