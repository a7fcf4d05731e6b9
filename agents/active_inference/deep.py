"""Deep active inference: a learned ensemble generative model, and actions chosen by expected free energy.

The agent learns, from its own experience only, a probabilistic model of
what follows an action: an ensemble (:class:`~agents.active_inference.
ensemble.GaussianEnsemble`) predicts the request's outcomes (latency,
energy, deadline missed, accuracy penalty... :mod:`~agents.active_inference.
outcomes`) and the change of the observation, given the observation and
the action. To act it scores candidate action sequences over ``horizon``
steps by their expected free energy (:mod:`~agents.active_inference.efe`):
the expected log-preference of the predicted outcomes plus
``epistemic_weight`` times the information they would give about the
outcome model (the ensemble's disagreement about them), and takes the first
action of the best. On
a discrete action space every allowed action is scored (a sequence repeats
it over the horizon); on a Box, the cross-entropy method searches sequences.
This is the scheme of Tschantz et al. (2020), "Reinforcement learning
through active inference", in the setting of He et al. (IEEE TMC 2024),
whose system model and settings are not public (the agent's defaults are
this project's, measured in ``benchmarks/active_inference.py``).

**Preference and reward.** The agent never reads the env's reward. Its
prior preference is ``log p~(o) = -sum_j w_j o_j`` over the outcomes; the
default weights are the env's reward weights, so the extrinsic term is the
expected reward of each step and the agent's objective is the env's
(the reward is used only to evaluate it). Other weights (``preference``)
give other goals.

Before ``learning_starts`` steps it acts uniformly among the allowed
actions; then the model is refit every ``train_every`` steps
(``gradient_steps`` Adam steps on bootstrap minibatches of everything seen,
up to ``buffer_size`` transitions). Saved as ``weights.npz`` + ``agent.json``
(model, optimizer, buffer, generator state; no pickle).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import DeepAIFConfig
from .efe import expected_free_energy
from .ensemble import GaussianEnsemble
from .outcomes import outcome_spec

__all__ = ["DeepAIFConfig", "DeepAIFAgent"]


class DeepAIFAgent:
    """Deep active inference on a Gymnasium env with outcomes in :data:`~agents.active_inference.outcomes.
    OUTCOMES` (LayerSplit-v0, discrete or continuous; Routing-v0); see the module docstring."""

    algo = "deep_aif"

    def __init__(self, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None, **settings: Any):
        self.config = DeepAIFConfig(**{k: tuple(v) if k == "hidden" else v for k, v in settings.items()})
        self.config.check()
        self.name = name or self.algo
        self.seed = int(seed)
        env = make_env()
        self._spaces(env)
        self.outcomes = outcome_spec(env)
        self.preference = torch.as_tensor(self.outcomes.preference(self.config.preference))
        env.close()
        k, d = len(self.outcomes.names), self.obs_dim
        self.model = GaussianEnsemble(d + self.action_dim, k + d, members=self.config.members,
                                      hidden=self.config.hidden, seed=self.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate)
        self.rng = np.random.default_rng(self.seed)
        cap = self.config.buffer_size
        self._x = np.zeros((cap, d + self.action_dim), dtype=np.float32)
        self._y = np.zeros((cap, k + d), dtype=np.float32)
        self._has_next = np.zeros(cap, dtype=bool)  #: the next observation follows (not an episode's end)
        self._stored = 0  #: transitions written (the buffer holds the last min(_stored, cap))
        self._steps = 0
        self._fitted = False
        self.last_loss = float("nan")
        self._make_env = self._env = self._obs = self._info = None

    def _spaces(self, env) -> None:
        obs_space, space = env.observation_space, env.action_space
        if len(obs_space.shape or ()) != 1:
            raise ValueError(f"deep_aif: needs a 1-d Box observation, the env has {obs_space}")
        self.obs_dim = int(obs_space.shape[0])
        self.obs_low = np.asarray(obs_space.low, dtype=np.float32)
        self.obs_high = np.asarray(obs_space.high, dtype=np.float32)
        self.discrete = hasattr(space, "n")
        if self.discrete:
            self.n_actions, self.action_dim = int(space.n), int(space.n)
        elif len(space.shape or ()) == 1 and np.isfinite(space.low).all() and np.isfinite(space.high).all():
            self.n_actions, self.action_dim = None, int(space.shape[0])
            self.action_low = np.asarray(space.low, dtype=np.float32)
            self.action_high = np.asarray(space.high, dtype=np.float32)
        else:
            raise ValueError(f"deep_aif: needs a Discrete or a bounded 1-d Box action space, the env has {space}")

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: the model keeps what it learned."""

    def _encode(self, actions: np.ndarray) -> np.ndarray:
        """Actions -> the model's action input: one-hot (discrete) or the Box values."""
        if self.discrete:
            return np.eye(self.n_actions, dtype=np.float32)[np.asarray(actions, dtype=np.int64)]
        return np.asarray(actions, dtype=np.float32)

    def _allowed(self, info: dict | None) -> np.ndarray:
        mask = None if info is None else info.get("action_mask")
        if mask is None:
            return np.arange(self.n_actions)
        allowed = np.flatnonzero(np.asarray(mask))
        return allowed if allowed.size else np.arange(self.n_actions)

    def _random_action(self, info: dict | None):
        if self.discrete:
            return int(self.rng.choice(self._allowed(info)))
        return self.rng.uniform(self.action_low, self.action_high).astype(np.float32)

    @torch.no_grad()
    def free_energy(self, obs: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Expected free energy of each action sequence (``[C, H]`` discrete, ``[C, H, A]`` Box) from ``obs``:
        member-consistent rollouts through the model, G summed over the horizon."""
        cfg, k = self.config, len(self.outcomes.names)
        n = sequences.shape[0]
        state = torch.as_tensor(np.broadcast_to(np.asarray(obs, dtype=np.float32), (n, self.obs_dim)).copy())
        state = state.expand(cfg.members, n, self.obs_dim)
        low, high = torch.as_tensor(self.obs_low), torch.as_tensor(self.obs_high)
        total = torch.zeros(n)
        floor = (cfg.information_floor * self.model.y_std[:k]) ** 2
        for t in range(sequences.shape[1]):
            a = torch.as_tensor(self._encode(sequences[:, t])).expand(cfg.members, n, self.action_dim)
            mu, var = self.model(torch.cat([state, a], dim=-1))  # [E, C, K + D]
            total += expected_free_energy(mu[..., :k].transpose(0, 1), var[..., :k].transpose(0, 1),
                                          self.preference, cfg.epistemic_weight, floor)
            state = torch.clamp(state + mu[..., k:], low, high)
        return total.numpy()

    def act(self, obs, info: dict | None = None):
        """The first action of the sequence of least expected free energy (uniform before the first fit)."""
        if not self._fitted:
            return self._random_action(info)
        cfg = self.config
        if self.discrete:
            allowed = self._allowed(info)
            g = self.free_energy(obs, np.repeat(allowed[:, None], cfg.horizon, axis=1))
            return int(allowed[int(np.argmin(g))])
        return self._cem(obs)

    def _cem(self, obs) -> np.ndarray:
        cfg = self.config
        shape = (cfg.horizon, self.action_dim)
        mean = np.broadcast_to((self.action_low + self.action_high) / 2, shape).astype(np.float64)
        std = np.broadcast_to((self.action_high - self.action_low) / 2, shape).astype(np.float64)
        for _ in range(cfg.cem_iterations):
            samples = np.clip(mean + std * self.rng.standard_normal((cfg.cem_population, *shape)),
                              self.action_low, self.action_high)
            g = self.free_energy(obs, samples.astype(np.float32))
            elites = samples[np.argsort(g)[:cfg.cem_elites]]
            mean, std = elites.mean(axis=0), elites.std(axis=0) + 1e-3
        return mean[0].astype(np.float32)

    # ------------------------------------------------------------------ learning

    def _store(self, obs, action, outcomes: list[float], next_obs, has_next: bool) -> None:
        i = self._stored % self.config.buffer_size
        obs = np.asarray(obs, dtype=np.float32)
        self._x[i, :self.obs_dim] = obs
        self._x[i, self.obs_dim:] = self._encode(np.asarray([action]))[0]
        k = len(outcomes)
        self._y[i, :k] = outcomes
        self._y[i, k:] = (np.asarray(next_obs, dtype=np.float32) - obs) if has_next else 0.0
        self._has_next[i] = has_next
        self._stored += 1

    def fit(self) -> float:
        """Refit the model on the buffer (``gradient_steps`` Adam steps); returns the last loss."""
        n = min(self._stored, self.config.buffer_size)
        k = len(self.outcomes.names)
        weight = np.ones((n, self._y.shape[1]), dtype=np.float32)
        weight[~self._has_next[:n], k:] = 0.0  # no next observation after an episode's last step
        self.last_loss = self.model.fit(self._x[:n], self._y[:n], self.optimizer, steps=self.config.gradient_steps,
                                        batch_size=self.config.batch_size, rng=self.rng, weight=weight)
        self._fitted = True
        return self.last_loss

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "DeepAIFAgent":
        """Act and learn online until ``budget`` steps in all; ``callback(agent, info)`` after every step
        (returning False stops early)."""
        if make_env is not None and make_env is not self._make_env:
            self._make_env, self._env = make_env, make_env()
            self._obs, self._info = self._env.reset(seed=self.seed + self._steps)
        if self._env is None:
            raise RuntimeError(f"{self.name}: learn needs make_env the first time")
        cfg = self.config
        while self._steps < int(budget):
            action = self.act(self._obs, self._info) if self._steps >= cfg.learning_starts else \
                self._random_action(self._info)
            obs, _reward, terminated, truncated, info = self._env.step(action)  # the reward is not read
            done = terminated or truncated
            self._store(self._obs, action, self.outcomes.read(info), obs, not done)
            self._steps += 1
            if self._steps >= cfg.learning_starts and (self._steps - cfg.learning_starts) % cfg.train_every == 0:
                self.fit()
            self._obs, self._info = (obs, info) if not done else self._env.reset()
            if callback is not None and callback(self, info) is False:
                break
        return self

    def snapshot(self) -> "DeepAIFAgent":
        """A copy that acts without touching this agent's generator or env (for evaluations during training)."""
        twin = copy.copy(self)
        twin.rng = copy.deepcopy(self.rng)
        twin._make_env = twin._env = twin._obs = twin._info = None
        return twin

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | os.PathLike) -> Path:
        from .._arrays import optimizer_arrays, save_arrays

        n = min(self._stored, self.config.buffer_size)
        arrays = {f"model.{k}": v.detach().numpy() for k, v in self.model.state_dict().items()}
        optimizer, groups = optimizer_arrays(self.optimizer, "optimizer")
        arrays.update(optimizer)
        arrays.update(buffer_x=self._x[:n], buffer_y=self._y[:n], buffer_has_next=self._has_next[:n])
        meta = {"algo": self.algo, "name": self.name, "seed": self.seed, "num_timesteps": self._steps,
                "stored": self._stored, "fitted": self._fitted, "config": dataclasses.asdict(self.config),
                "optimizer_groups": groups,
                "rng": self.rng.bit_generator.state}
        return save_arrays(folder, arrays, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None, **_: Any
             ) -> "DeepAIFAgent":
        """Read an agent written by :meth:`save` (no pickle); ``make_env`` builds its env (needed to act)."""
        from .._arrays import load_arrays, load_optimizer

        arrays, meta = load_arrays(folder)
        if meta.get("algo") != cls.algo or make_env is None:
            raise ValueError(f"{folder}: expected a saved {cls.algo} agent and make_env, got algo "
                             f"{meta.get('algo')!r}")
        agent = cls(make_env, seed=meta["seed"], name=meta["name"], **meta["config"])
        agent.model.load_state_dict({k[len("model."):]: torch.as_tensor(v) for k, v in arrays.items()
                                     if k.startswith("model.")})
        load_optimizer(agent.optimizer, arrays, "optimizer", meta["optimizer_groups"])
        n = len(arrays["buffer_x"])
        if n > agent.config.buffer_size or arrays["buffer_x"].shape[1] != agent._x.shape[1]:
            raise ValueError(f"{folder}: the saved buffer does not fit this agent's env")
        agent._x[:n], agent._y[:n] = arrays["buffer_x"], arrays["buffer_y"]  # in the ring's own order
        agent._has_next[:n] = arrays["buffer_has_next"]
        agent._stored, agent._steps, agent._fitted = int(meta["stored"]), int(meta["num_timesteps"]), meta["fitted"]
        agent.rng.bit_generator.state = meta["rng"]
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): the ensemble and the EFE rule, at
        horizon 1 on discrete actions (ExportNotAvailable otherwise)."""
        from ..export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)
