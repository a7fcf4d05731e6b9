"""What the multi-agent learners share: the env copies, value normalisation, GAE, masks, networks, files.

Shapes: E env copies, N agents (vehicles), A discrete actions, D observation
size, S global-state size; a rollout holds T steps of every copy.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


__all__ = ["EnvCopies", "live_rows", "ValueNorm", "gae", "masked_logits", "mlp", "shared_input_mlp", "GroupedMLP"]


class EnvCopies:
    """E copies of a PettingZoo ParallelEnv stepped together, as stacked arrays.

    Every agent acts every step (the vehicular env keeps all its vehicles);
    a copy whose episode ended is reset at once, and the observation, state
    and mask it ended in are kept for bootstrapping (episodes end by
    truncation). ``discrete``: actions (E, N) of ints and masks from
    ``infos[agent]["action_mask"]``; else actions (E, N, A) of floats and
    masks from ``infos[agent]["target_mask"]`` (empty where there is none).
    """

    def __init__(self, make_env: Callable[[], Any], n: int, seed: int, discrete: bool = True):
        self.envs = [make_env() for _ in range(n)]
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        self.n_agents = len(self.agents)
        self.seed = int(seed)
        self.discrete = bool(discrete)
        self._mask_key = "action_mask" if discrete else "target_mask"
        self._episodes = 0

    def _reset_one(self, k: int):
        obs, infos = self.envs[k].reset(seed=self.seed + 7919 * self._episodes + k)
        self._episodes += 1
        return obs, infos

    def _arrays(self, obs: dict, infos: dict, env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = np.stack([obs[a] for a in self.agents]).astype(np.float32)
        m = np.stack([np.asarray(infos[a].get(self._mask_key, ()), dtype=bool) for a in self.agents])
        return o, m, np.asarray(env.state(), dtype=np.float32)

    def reset(self):
        """obs (E, N, D), masks (E, N, A), states (E, S) of freshly reset copies."""
        out = [self._arrays(*self._reset_one(k), env) for k, env in enumerate(self.envs)]
        return tuple(np.stack(x) for x in zip(*out))

    def step(self, actions: np.ndarray):
        """actions -> obs (E, N, D), masks (E, N, A), states (E, S), rewards (E, N), done (E,), and the
        observations, states and masks each finished copy ended in (None where it did not end)."""
        obs, masks, states, rewards, done, end_obs, end_states, end_masks = [], [], [], [], [], [], [], []
        for k, env in enumerate(self.envs):
            row = actions[k].tolist() if self.discrete else actions[k]
            o, r, term, trunc, infos = env.step({a: row[i] for i, a in enumerate(self.agents)})
            if len(o) != self.n_agents:
                raise RuntimeError("a vehicle left the env mid-episode: these learners need every agent every step")
            arrays = self._arrays(o, infos, env)
            finished = not env.agents
            rewards.append([r[a] for a in self.agents])
            done.append(finished)
            for ended, x in zip((end_obs, end_masks, end_states), arrays):
                ended.append(x if finished else None)
            if finished:
                arrays = self._arrays(*self._reset_one(k), env)
            obs.append(arrays[0])
            masks.append(arrays[1])
            states.append(arrays[2])
        return (np.stack(obs), np.stack(masks), np.stack(states), np.asarray(rewards, dtype=np.float32),
                np.asarray(done), end_obs, end_states, end_masks)

def live_rows(observations: dict, index: dict[str, int], obs_dim: int) -> tuple[list[str], list[int], np.ndarray]:
    """(live agents, their rows, observations (N, D)) for decentralised acting: each agent's row holds its own
    observation, the rows of absent agents zeros (a row's action depends on its own row only)."""
    agents = [a for a in observations if a in index]
    obs = np.zeros((len(index), obs_dim), dtype=np.float32)
    rows = [index[a] for a in agents]
    if agents:
        obs[rows] = np.stack([np.asarray(observations[a], dtype=np.float32).reshape(-1) for a in agents])
    return agents, rows, obs


class ValueNorm:
    """Running mean and variance of the value targets (debiased exponential averages, as in MAPPO)."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5):
        self.beta, self.epsilon = beta, epsilon
        self.mean = self.mean_sq = self.debias = 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.mean = self.beta * self.mean + (1 - self.beta) * float(x.mean())
        self.mean_sq = self.beta * self.mean_sq + (1 - self.beta) * float((x ** 2).mean())
        self.debias = self.beta * self.debias + (1 - self.beta)

    def _stats(self) -> tuple[float, float]:
        d = max(self.debias, self.epsilon)
        mean, mean_sq = self.mean / d, self.mean_sq / d
        return mean, max(mean_sq - mean * mean, 1e-2) ** 0.5

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats()
        return x * std + mean

    def to_json(self) -> dict:
        return {"beta": self.beta, "epsilon": self.epsilon, "mean": self.mean, "mean_sq": self.mean_sq,
                "debias": self.debias}

    @classmethod
    def from_json(cls, d: dict) -> "ValueNorm":
        v = cls(d["beta"], d["epsilon"])
        v.mean, v.mean_sq, v.debias = d["mean"], d["mean_sq"], d["debias"]
        return v


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, done: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns of a rollout: rewards, values, next_values (T, E, N); done (T, E).

    ``next_values[t]`` is the value of the state after step t (the state the
    episode ended in where ``done[t]``: episodes end by truncation, so they are
    bootstrapped); the advantage recursion stops at episode ends.
    """
    adv = np.zeros_like(rewards)
    last = np.zeros(rewards.shape[1:], dtype=rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        last = delta + gamma * lam * (1.0 - done[t][:, None]) * last
        adv[t] = last
    return adv, adv + values


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with masked actions at the lowest float: never sampled, never the argmax."""
    return torch.where(mask, logits, torch.finfo(logits.dtype).min)


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, out_gain: float, layer_norm: bool) -> nn.Sequential:
    """[LayerNorm] -> (Linear, ReLU) per hidden size -> Linear; orthogonal initialisation."""
    layers: list[nn.Module] = [nn.LayerNorm(n_in)] if layer_norm else []
    sizes = (n_in, *hidden)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_out))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=out_gain if layer is layers[-1] else np.sqrt(2))
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def shared_input_mlp(net: nn.Sequential, shared: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``net(cat([shared expanded over the agents, own], -1))`` of an :func:`mlp`, with the shared part's
    share of the first layer computed once per row instead of once per agent.

    ``shared`` (..., S), e.g. the global state; ``own`` (..., N, K), each agent's
    own input. The input LayerNorm, if any, is folded in: its mean and variance
    over the whole concatenated input are sums of the parts' sums. Equal to the
    plain call up to float rounding; a centralised critic's first layer reads
    the state N times less often.
    """
    layers = list(net)
    norm = layers.pop(0) if isinstance(layers[0], nn.LayerNorm) else None
    first = layers.pop(0)
    S = shared.shape[-1]
    w_shared, w_own = first.weight[:, :S], first.weight[:, S:]
    if norm is None:
        h = (shared @ w_shared.T)[..., None, :] + own @ w_own.T + first.bias
    else:
        n = S + own.shape[-1]
        mean = (shared.sum(-1)[..., None] + own.sum(-1)) / n  # (..., N)
        var = (shared.pow(2).sum(-1)[..., None] + own.pow(2).sum(-1)) / n - mean * mean
        g_shared, g_own = norm.weight[:S], norm.weight[S:]
        projected = (shared * g_shared) @ w_shared.T  # (..., H): once per row
        h = (projected[..., None, :] + (own * g_own) @ w_own.T - mean[..., None] * (first.weight @ norm.weight))
        h = h * torch.rsqrt(var.clamp_min(0.0) + norm.eps)[..., None] + (first.weight @ norm.bias + first.bias)
    for layer in layers:
        h = layer(h)
    return h


class GroupedMLP(nn.Module):
    """One MLP per group (per agent), all evaluated at once: x (..., G, n_in) -> (..., G, n_out).

    The same layers as :func:`mlp` (a LayerNorm shared by the groups), each
    group with its own weights; initialised group by group as :func:`mlp` is.
    """

    def __init__(self, groups: int, n_in: int, hidden: tuple[int, ...], n_out: int, out_gain: float,
                 layer_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(n_in) if layer_norm else None
        sizes = (n_in, *hidden, n_out)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = torch.empty(groups, a, b)
            with torch.no_grad():
                for g in range(groups):
                    nn.init.orthogonal_(w[g], gain=out_gain if i == len(sizes) - 2 else np.sqrt(2))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(groups, b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) if self.norm is not None else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("...gi,gio->...go", h, w) + b
            if i < last:
                h = torch.relu(h)
        return h

    def average_groups(self, weights: torch.Tensor) -> None:
        """FedAvg: every group's parameters set to their ``weights``-weighted mean over the groups."""
        w = weights / weights.sum()
        with torch.no_grad():
            for p in [*self.weights, *self.biases]:
                p.copy_((w.reshape(-1, *([1] * (p.dim() - 1))) * p).sum(dim=0, keepdim=True).expand_as(p))

    def group_parameters(self) -> int:
        """Parameters of one group (what one agent sends to the aggregator)."""
        return sum(p[0].numel() for p in [*self.weights, *self.biases])
