"""MAPPO and IPPO (Yu et al. 2022, "The surprising effectiveness of PPO in cooperative multi-agent games").

Centralised training, decentralised execution on a PettingZoo ParallelEnv
with discrete, masked actions (the vehicular env):

* one actor shared by all agents, on the agent's own observation plus its
  one-hot id (or one actor per agent, ``share_actor=False``): ``act`` for a
  vehicle needs only that vehicle's observation;
* a critic per agent input: MAPPO's is centralised (the env's global
  ``state()`` plus the agent's own observation and id, the
  "agent-specific global state"); IPPO's sees only what the actor sees;
* PPO's clipped objective, GAE, value normalisation and a clipped Huber
  value loss, advantage normalisation, entropy bonus, gradient clipping;
  inputs through a LayerNorm (``normalize_obs``); masked actions are never
  sampled nor chosen (their logits are the lowest float);
* federated training in the spirit of Wu et al. (IEEE TVT 2025), algo
  ``fedppo``: per-agent actors and local critics, each trained on its own
  agent's data, averaged by FedAvg (weighted by samples) every
  ``federated_every`` updates; the bytes each round moves (every agent's
  parameters up, the average down, float32) are counted.

Defaults follow the MAPPO paper's (marlbenchmark/on-policy): learning rate
5e-4, 64-unit layers, clip 0.2, GAE lambda 0.95, Huber delta 10, gradient
norm 10. Saved as ``weights.npz`` + ``agent.json`` (no pickle).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .._arrays import load_arrays, load_optimizer, optimizer_arrays, save_arrays
from ..devices import torch_device
from .common import EnvCopies, GroupedMLP, ValueNorm, gae, live_rows, masked_logits, mlp, shared_input_mlp

__all__ = ["MAPPOConfig", "MAPPOAgent"]

_FORMAT = 1


@dataclass
class MAPPOConfig:
    """MAPPO / IPPO settings (the env copies and input normalisation are the harness's n_envs, normalize_obs)."""

    n_steps: int = 100  #: steps of every env copy per rollout
    learning_rate: float = 5e-4  #: Adam, actor and critic
    gamma: float = 0.99  #: discount
    gae_lambda: float = 0.95  #: GAE lambda
    clip_range: float = 0.2  #: PPO ratio clip (and the value clip)
    n_epochs: int = 10  #: passes over each rollout
    n_minibatches: int = 1  #: minibatches per pass
    ent_coef: float = 0.01  #: entropy bonus
    vf_coef: float = 1.0  #: value-loss weight
    max_grad_norm: float = 10.0  #: gradient clip
    huber_delta: float = 10.0  #: Huber loss of the (normalised) value
    hidden: tuple[int, ...] = (64, 64)  #: hidden layer sizes of actor and critic
    value_norm: bool = True  #: normalise value targets by their running statistics
    agent_id: bool = True  #: append the agent's one-hot id to actor and critic inputs
    share_actor: bool = True  #: one actor for all agents (False: one per agent, trained together)
    federated_every: int = 0  #: FedAvg of the per-agent actors and local critics every K updates (0: off)

    def check(self) -> None:
        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        need(self.n_steps >= 1, "n_steps", "an integer >= 1")
        need(self.learning_rate > 0, "learning_rate", "a rate > 0")
        need(0 <= self.gamma <= 1, "gamma", "a discount in [0, 1]")
        need(0 <= self.gae_lambda <= 1, "gae_lambda", "a value in [0, 1]")
        need(self.clip_range > 0, "clip_range", "a value > 0")
        need(self.n_epochs >= 1, "n_epochs", "an integer >= 1")
        need(self.n_minibatches >= 1, "n_minibatches", "an integer >= 1")
        need(self.ent_coef >= 0 and self.vf_coef >= 0, "ent_coef", "coefficients >= 0")
        need(self.max_grad_norm > 0 and self.huber_delta > 0, "max_grad_norm", "values > 0")
        need(len(self.hidden) >= 1 and all(isinstance(h, int) and h >= 1 for h in self.hidden), "hidden",
             "a list of layer sizes >= 1")
        need(self.federated_every >= 0, "federated_every", "an integer >= 0 (0: no federated averaging)")
        need(self.federated_every == 0 or not self.share_actor, "share_actor",
             "false with federated_every > 0 (federated training averages per-agent actors)")


class MAPPOAgent:
    """MAPPO (``centralised=True``) or IPPO on a ParallelEnv factory; the agent protocol with dicts per agent."""

    def __init__(self, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None,
                 centralised: bool = True, n_envs: int = 4, normalize_obs: bool = True, device: str = "cpu",
                 **settings: Any):
        self.config = MAPPOConfig(**{k: tuple(v) if k == "hidden" else v for k, v in settings.items()})
        self.config.check()
        if n_envs < 1:
            raise ValueError(f"n_envs: expected an integer >= 1, got {n_envs!r}")
        if self.config.federated_every and centralised:
            raise ValueError("federated_every: federated training keeps each agent's data local, so its critic is "
                             "local too (centralised=False)")
        self.algo = ("fedppo" if self.config.federated_every else "ippo") if not centralised else "mappo"
        self.name = name or self.algo
        self.seed, self.n_envs, self.centralised = int(seed), int(n_envs), bool(centralised)
        self.normalize_obs = bool(normalize_obs)
        env = make_env()
        observations, infos = env.reset(seed=self.seed)
        self.agent_names = list(env.possible_agents)
        first = self.agent_names[0]
        if not hasattr(env.action_space(first), "n") or "action_mask" not in infos[first]:
            raise ValueError(f"{self.algo}: needs discrete actions with infos[agent]['action_mask'] "
                             "(the vehicular env with continuous=False)")
        self.n_agents, self.n_actions = len(self.agent_names), int(env.action_space(first).n)
        self.obs_dim = int(np.prod(env.observation_space(first).shape))
        self.state_dim = int(np.asarray(env.state()).size)
        env.close()
        self._index = {a: i for i, a in enumerate(self.agent_names)}
        self.device = torch_device(device)  #: where the networks train; rollouts and the env stay in numpy
        self._build()
        self._make_env = make_env
        self._steps = 0
        self.updates = 0
        self.federated_bytes = 0  #: bytes sent to and from the aggregator so far (float32 parameters)

    # ------------------------------------------------------------------ networks

    def _build(self) -> None:
        torch.manual_seed(self.seed)
        c, ids, N = self.config, self.n_agents if self.config.agent_id else 0, self.n_agents
        if c.share_actor:
            self.actor = mlp(self.obs_dim + ids, c.hidden, self.n_actions, 0.01, self.normalize_obs)
        else:
            self.actor = GroupedMLP(N, self.obs_dim + ids, c.hidden, self.n_actions, 0.01, self.normalize_obs)
        critic_in = (self.state_dim if self.centralised else 0) + self.obs_dim + ids
        if c.federated_every:
            self.critic = GroupedMLP(N, critic_in, c.hidden, 1, 1.0, self.normalize_obs)
            first = torch.eye(N)[0]  # FedAvg starts every agent from the same model (averaging independently
            self.actor.average_groups(first)  # initialised networks would mix unrelated features: measured, it
            self.critic.average_groups(first)  # collapses the policy to one action for every observation)
        else:
            self.critic = mlp(critic_in, c.hidden, 1, 1.0, self.normalize_obs)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.optimizer = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=c.learning_rate,
                                          eps=1e-5)
        self.value_norm = ValueNorm() if c.value_norm else None
        self._generator = torch.Generator().manual_seed(self.seed)
        self._eye = torch.eye(self.n_agents, device=self.device)

    def _ids(self, obs: torch.Tensor) -> torch.Tensor:
        return self._eye.expand(*obs.shape[:-1], self.n_agents)

    def _actor_input(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., N, D) observations of every agent -> the actor's (..., N, D [+ N]) inputs."""
        return torch.cat([obs, self._ids(obs)], dim=-1) if self.config.agent_id else obs

    def _critic_input(self, obs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """(..., N, D) observations and (..., S) states -> the critic's per-agent inputs."""
        parts = [states[..., None, :].expand(*obs.shape[:-1], self.state_dim)] if self.centralised else []
        parts += [obs] + ([self._ids(obs)] if self.config.agent_id else [])
        return torch.cat(parts, dim=-1)

    def _critic(self, obs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """(..., N) critic outputs (normalised values) of (..., N, D) observations with their (..., S) states;
        the centralised critic reads each row's state once, not once per agent."""
        if not (self.centralised and isinstance(self.critic, nn.Sequential)):
            return self.critic(self._critic_input(obs, states))[..., 0]
        own = torch.cat([obs, self._ids(obs)], dim=-1) if self.config.agent_id else obs
        return shared_input_mlp(self.critic, states, own)[..., 0]

    def _values(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Denormalised values of (..., N, D) observations with their (..., S) states."""
        with torch.no_grad():
            v = self._critic(self._tensor(obs), self._tensor(states))
            if self.value_norm is not None:
                v = self.value_norm.denormalize(v)
        return v.cpu().numpy().astype(np.float32)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        """Env steps learned from (joint steps of every copy); agent-steps are this times the agents."""
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: the policy has no memory."""

    def act(self, observations: dict, infos: dict | None = None) -> dict:
        """The most likely allowed action of every live agent, from its own observation only."""
        agents, rows, obs = live_rows(observations, self._index, self.obs_dim)
        if not agents:
            return {}
        with torch.no_grad():
            logits = self.actor(self._actor_input(self._tensor(obs)))[rows].cpu()
        if infos is not None and all(a in infos and "action_mask" in infos[a] for a in agents):
            mask = torch.as_tensor(np.stack([np.asarray(infos[a]["action_mask"], dtype=bool) for a in agents]))
            logits = masked_logits(logits, mask)
        return {a: int(x) for a, x in zip(agents, logits.argmax(dim=-1))}

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "MAPPOAgent":
        """Rollouts of ``n_steps`` over ``n_envs`` copies, each followed by PPO epochs, until ``budget`` env steps.

        ``callback(agent, stats)`` runs after each update; returning False stops.
        """
        if make_env is None:
            make_env = self._make_env
        if make_env is None:
            raise RuntimeError(f"{self.name}: loaded without make_env; pass one to learn")
        self._make_env = make_env
        rollout = self.config.n_steps * self.n_envs
        if self._steps < int(budget):
            copies = EnvCopies(make_env, self.n_envs, self.seed + 1_000_003 * (self._steps // rollout + 1))
            current = copies.reset()
            while self._steps < int(budget):
                batch, current = self._collect(copies, current)
                self._steps += rollout
                stats = self._update(batch)
                if callback is not None and callback(self, stats) is False:
                    break
        return self

    def save(self, folder: str | os.PathLike) -> Path:
        arrays = {f"actor.{k}": v.detach().cpu().numpy() for k, v in self.actor.state_dict().items()}
        arrays.update({f"critic.{k}": v.detach().cpu().numpy() for k, v in self.critic.state_dict().items()})
        optimizer, groups = optimizer_arrays(self.optimizer, "optimizer")
        arrays.update(optimizer)
        meta = {"format": _FORMAT, "algo": self.algo, "name": self.name, "seed": self.seed,
                "num_timesteps": self._steps, "n_envs": self.n_envs, "centralised": self.centralised,
                "normalize_obs": self.normalize_obs, "config": dataclasses.asdict(self.config),
                "agents": self.agent_names, "n_actions": self.n_actions, "obs_dim": self.obs_dim,
                "state_dim": self.state_dim, "optimizer_groups": groups,
                "value_norm": None if self.value_norm is None else self.value_norm.to_json(),
                "updates": self.updates, "federated_bytes": self.federated_bytes}
        return save_arrays(folder, arrays, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None,
             seed: int | None = None, device: str = "cpu") -> "MAPPOAgent":
        """Read an agent written by :meth:`save` (no pickle) onto ``device``; ``make_env`` is needed only to learn
        further."""
        arrays, meta = load_arrays(folder)
        if meta.get("format") != _FORMAT or meta.get("algo") not in ("mappo", "ippo", "fedppo"):
            raise ValueError(f"{folder}: not a MAPPO/IPPO agent of format {_FORMAT}")
        agent = cls.__new__(cls)
        agent.config = MAPPOConfig(**{k: tuple(v) if k == "hidden" else v for k, v in meta["config"].items()})
        agent.algo, agent.name = meta["algo"], meta["name"]
        agent.seed = int(meta["seed"] if seed is None else seed)
        agent.n_envs, agent.centralised = meta["n_envs"], meta["centralised"]
        agent.normalize_obs = meta["normalize_obs"]
        agent.agent_names, agent.n_agents = meta["agents"], len(meta["agents"])
        agent.n_actions, agent.obs_dim, agent.state_dim = meta["n_actions"], meta["obs_dim"], meta["state_dim"]
        agent._index = {a: i for i, a in enumerate(agent.agent_names)}
        agent.device = torch_device(device)
        agent._build()
        agent._generator.manual_seed(agent.seed + int(meta["num_timesteps"]))
        for net, prefix in ((agent.actor, "actor."), (agent.critic, "critic.")):
            net.load_state_dict({k[len(prefix):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)})
        load_optimizer(agent.optimizer, arrays, "optimizer", meta["optimizer_groups"])
        if meta["value_norm"] is not None:
            agent.value_norm = ValueNorm.from_json(meta["value_norm"])
        agent._make_env, agent._steps = make_env, int(meta["num_timesteps"])
        agent.updates, agent.federated_bytes = int(meta["updates"]), int(meta["federated_bytes"])
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): params.npz + manifest.json."""
        from ..export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)

    # ------------------------------------------------------------------ training

    def _collect(self, copies: EnvCopies, current):
        obs, masks, states = current
        T, E, N = self.config.n_steps, self.n_envs, self.n_agents
        buf = {"obs": np.empty((T, E, N, self.obs_dim), np.float32), "masks": np.empty((T, E, N, self.n_actions), bool),
               "states": np.empty((T, E, self.state_dim), np.float32), "actions": np.empty((T, E, N), np.int64),
               "logp": np.empty((T, E, N), np.float32), "values": np.empty((T, E, N), np.float32),
               "rewards": np.empty((T, E, N), np.float32), "done": np.empty((T, E), bool),
               "next_values": np.empty((T, E, N), np.float32)}
        for t in range(T):
            with torch.no_grad():  # sampled on the CPU: the same stream on any device
                logits = masked_logits(self.actor(self._actor_input(self._tensor(obs))).cpu(), torch.as_tensor(masks))
                dist = torch.distributions.Categorical(logits=logits, validate_args=False)
                action = torch.multinomial(dist.probs.reshape(E * N, -1), 1, generator=self._generator).reshape(E, N)
                logp = dist.log_prob(action)
            buf["obs"][t], buf["masks"][t], buf["states"][t] = obs, masks, states
            buf["actions"][t], buf["logp"][t] = action.numpy(), logp.numpy()
            buf["values"][t] = self._values(obs, states)
            obs, masks, states, rewards, done, end_obs, end_states, _ = copies.step(action.numpy())
            buf["rewards"][t], buf["done"][t] = rewards, done
            for k in np.flatnonzero(done):  # the episode ended by truncation: bootstrap from where it ended
                buf["next_values"][t, k] = self._values(end_obs[k], end_states[k])
        buf["next_values"][:-1] = np.where(buf["done"][:-1, :, None], buf["next_values"][:-1], buf["values"][1:])
        last = self._values(obs, states)
        buf["next_values"][-1] = np.where(buf["done"][-1][:, None], buf["next_values"][-1], last)
        return buf, (obs, masks, states)

    def _update(self, buf: dict) -> dict[str, float]:
        """PPO epochs over the rollout, in minibatches of (step, copy) rows with every agent of each row."""
        c = self.config
        adv, returns = gae(buf["rewards"], buf["values"], buf["next_values"], buf["done"].astype(np.float32),
                           c.gamma, c.gae_lambda)
        T, E, N = buf["actions"].shape
        rows = T * E

        def flat(x):
            return self._tensor(x).reshape(rows, *x.shape[2:])

        obs, states, masks, actions = flat(buf["obs"]), flat(buf["states"]), flat(buf["masks"]), flat(buf["actions"])
        old_logp, old_values, returns_t = flat(buf["logp"]), flat(buf["values"]), flat(returns)
        if self.value_norm is not None:
            self.value_norm.update(returns_t)
            targets, old_v = self.value_norm.normalize(returns_t), self.value_norm.normalize(old_values)
        else:
            targets, old_v = returns_t, old_values
        adv_t = flat(adv)
        adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)
        actor_in = self._actor_input(obs)
        size = max(rows // c.n_minibatches, 1)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0}
        steps = 0
        params = [*self.actor.parameters(), *self.critic.parameters()]
        huber = nn.functional.huber_loss
        for _ in range(c.n_epochs):
            order = torch.randperm(rows, generator=self._generator).to(self.device)
            for start in range(0, rows - size + 1, size):
                mb = order[start:start + size]
                dist = torch.distributions.Categorical(logits=masked_logits(self.actor(actor_in[mb]), masks[mb]),
                                                       validate_args=False)
                logp = dist.log_prob(actions[mb])
                ratio = torch.exp(logp - old_logp[mb])
                policy_loss = -torch.min(ratio * adv_t[mb],
                                         ratio.clamp(1 - c.clip_range, 1 + c.clip_range) * adv_t[mb]).mean()
                v = self._critic(obs[mb], states[mb])
                v_clipped = old_v[mb] + (v - old_v[mb]).clamp(-c.clip_range, c.clip_range)
                value_loss = torch.max(huber(v, targets[mb], delta=c.huber_delta, reduction="none"),
                                       huber(v_clipped, targets[mb], delta=c.huber_delta, reduction="none")).mean()
                entropy = dist.entropy().mean()
                loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                self.optimizer.step()
                steps += 1
                stats["policy_loss"] += policy_loss.item()
                stats["value_loss"] += value_loss.item()
                stats["entropy"] += entropy.item()
                stats["clip_fraction"] += ((ratio.detach() - 1).abs() > c.clip_range).float().mean().item()
        out = {k: v / max(steps, 1) for k, v in stats.items()}
        out["mean_reward"] = float(buf["rewards"].mean())
        self.updates += 1
        if c.federated_every and self.updates % c.federated_every == 0:
            out["federated_bytes"] = self._federated_average(samples=torch.full((N,), float(rows), device=self.device))
        return out

    def _federated_average(self, samples: torch.Tensor) -> int:
        """FedAvg of the per-agent actors and critics, weighted by each agent's samples; returns the bytes moved
        (every agent uploads its parameters and downloads the average, float32)."""
        per_agent = self.actor.group_parameters() + self.critic.group_parameters()
        self.actor.average_groups(samples)
        self.critic.average_groups(samples)
        moved = 2 * self.n_agents * per_agent * 4
        self.federated_bytes += moved
        return moved
