"""MADDPG (Lowe et al. 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive Environments").

Centralised training, decentralised execution on a PettingZoo ParallelEnv
with Box actions (the vehicular env with ``continuous=True``: per vehicle
``Box(-1, 1, (R + 4,))``, target logits, split and transmit power; the env
takes the argmax among the allowed targets, so ``act`` needs no mask; training
reads the infos' ``target_mask``):

* deterministic actors ``a_i = mu(o_i)``, tanh-bounded: one actor shared by
  all agents on the agent's own observation plus its one-hot id (or one
  actor per agent, ``share_actor=False``): ``act`` for a vehicle needs only
  that vehicle's observation;
* a centralised critic per agent, the paper's ``Q_i(x, a_1, ..., a_N)`` with
  ``x`` the env's global ``state()`` (every observation concatenated, plus the
  elapsed fraction), all agents' actions and agent i's one-hot id; one
  network for all agents with the id (BenchMARL's ``share_param_critic``), or
  one per agent (``share_critic=False``). Each critic learns its own agent's
  return (rewards are per vehicle);
* the target (the first K = len(infos' ``target_mask``) entries), by
  ``targets``: "gumbel" (default) learns it as the categorical choice it is, as
  the original MADDPG code does for discrete actions: exploration draws the
  target from the softmax of the actor's logits over the allowed targets (a
  uniformly random allowed one with probability ``target_epsilon``), the
  env and the critics get its one-hot (+1 / -1), and the actor's gradient
  reaches the logits through a straight-through Gumbel-softmax sample at
  ``temperature``, plus an entropy bonus (``entropy_coef``) that keeps the
  softmax from saturating. The split and power entries are trained as if a
  uniformly random allowed target were chosen (as P-DQN trains the parameters
  of every discrete action, not only of the chosen one), so the split is right
  when a vehicle starts to offload.
  "logits": the paper's continuous actions, Gaussian noise on every entry;
  "softmax": the same, the critics seeing the logits as their softmax at
  ``temperature`` over the allowed targets. ``act`` returns ``tanh`` of the
  actor's outputs in every mode: the env's argmax over the allowed targets is
  the best allowed logit;
* critic target ``y_i = r_i + gamma Q'_i(x', mu'_1(o'_1), ..., mu'_N(o'_N))``
  with target networks ``'`` tracked by Polyak averaging (``tau``); episodes
  end by truncation only, so every transition is bootstrapped;
* actor i ascends ``Q_i(x, a_1, .., mu_i(o_i), .., a_N)``, the other agents'
  actions as stored in the replay buffer (the paper's gradient), plus the
  original code's penalty on the squared pre-tanh outputs (``action_reg``);
* Gaussian exploration noise on the actions, clipped to the Box, its std
  decaying linearly from ``noise_std`` to ``noise_final_std`` over
  ``noise_decay_steps`` env steps (0: constant); uniformly random actions for
  the first ``learning_starts`` env steps (as CleanRL's DDPG);
* a replay buffer of (step, env copy) rows, each with every agent; every
  ``train_every`` steps of the copies, ``gradient_steps`` updates on
  minibatches of ``batch_size`` rows; gradient-norm clipping; inputs through
  a LayerNorm (``normalize_obs``).

Defaults: the paper's discount 0.95, tau 0.01 and two 64-unit layers;
EPyMARL's MADDPG learning rate 5e-4 (actor and critic), its action
regularisation 1e-3 and gradient-norm clip 10; the rest (batch of 256 rows,
buffer of 100k rows, 5 updates every 5 steps of the copies, 1,000 random
steps, noise 0.2 -> 0.05 over 10k env steps, target epsilon 0.2, entropy
weight 1) sized for this env on a CPU. On the tests' 4-vehicle contention
scenario (all-local -21.4, team best response -12.2), 20,000 env steps reach
-17.6, -16.6 and -18.1 on seeds 0-2 with "gumbel" and -19.7, -20.4 and -19.0
with "logits" (same noise); with "logits", the split entry rarely lands on
split 0 (whole model on the server, what the best response uses when it
offloads) and the target logits saturate on "local", where they get no
gradient.
Saved as ``weights.npz`` + ``agent.json`` (no pickle): networks, target
networks and optimizers; the replay buffer is not saved (a loaded agent
refills it before it updates again).
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
from .common import EnvCopies, GroupedMLP, live_rows, masked_logits, mlp

__all__ = ["MADDPGConfig", "MADDPGAgent"]

_FORMAT = 2  #: 1: before ``targets`` (its ``soft_targets`` true is "softmax", false "logits"); read too
TARGET_MODES = ("gumbel", "logits", "softmax")


@dataclass(frozen=True)
class MADDPGConfig:
    """MADDPG settings (the env copies and input normalisation are the harness's n_envs, normalize_obs)."""

    learning_rate: float = 5e-4  #: Adam, actor
    critic_learning_rate: float = 5e-4  #: Adam, critic
    gamma: float = 0.95  #: discount
    tau: float = 0.01  #: Polyak averaging of the target networks (1: copy)
    buffer_size: int = 100_000  #: replay rows (one step of one env copy, every agent)
    batch_size: int = 256  #: rows per minibatch
    learning_starts: int = 1_000  #: env steps (all copies) of uniformly random actions before any update
    train_every: int = 5  #: steps of every env copy between update rounds
    gradient_steps: int = 5  #: minibatch updates per round
    noise_std: float = 0.2  #: std of the Gaussian exploration noise on the tanh actions
    noise_final_std: float = 0.05  #: its std after noise_decay_steps
    noise_decay_steps: int = 10_000  #: env steps of the linear decay (0: noise_std throughout)
    action_reg: float = 1e-3  #: penalty on the actor's squared pre-tanh outputs
    max_grad_norm: float = 10.0  #: gradient clip (actor and critic)
    hidden: tuple[int, ...] = (64, 64)  #: hidden layer sizes of actor and critic
    agent_id: bool = True  #: append the agent's one-hot id to actor and critic inputs
    share_actor: bool = True  #: one actor for all agents (False: one per agent, trained together)
    share_critic: bool = True  #: one centralised critic for all agents (False: one per agent)
    #: how the target entries (the first len(infos' ``target_mask``) of the action) are learned: "gumbel", a
    #: categorical choice (explored by sampling, seen by the critics as a one-hot, trained through a
    #: straight-through Gumbel-softmax at ``temperature``); "logits", the paper's continuous actions; "softmax",
    #: continuous actions that the critics see as their softmax at ``temperature`` over the allowed targets
    targets: str = "gumbel"
    target_epsilon: float = 0.2  #: probability that an explored target is a uniformly random allowed one ("gumbel")
    #: weight of the target distribution's entropy in the actor's objective ("gumbel"; in reward units: it keeps
    #: the softmax from saturating, where its gradient vanishes)
    entropy_coef: float = 1.0
    temperature: float = 1.0  #: of the Gumbel-softmax ("gumbel") or of the critics' softmax ("softmax")

    def check(self) -> None:
        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        def integer(key: str, low: int) -> bool:
            v = getattr(self, key)
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low

        def number(key: str) -> float:  # NaN for what is not a finite number: every range test then fails
            v = getattr(self, key)
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
            return float(v) if ok else float("nan")

        need(number("learning_rate") > 0, "learning_rate", "a rate > 0")
        need(number("critic_learning_rate") > 0, "critic_learning_rate", "a rate > 0")
        need(0 <= number("gamma") <= 1, "gamma", "a discount in [0, 1]")
        need(0 < number("tau") <= 1, "tau", "a Polyak rate in (0, 1]")
        need(integer("batch_size", 1), "batch_size", "an integer >= 1")
        need(integer("buffer_size", 1) and self.buffer_size >= self.batch_size, "buffer_size",
             f"an integer >= batch_size ({self.batch_size})")
        need(integer("learning_starts", 0), "learning_starts", "an integer >= 0")
        need(integer("train_every", 1), "train_every", "an integer >= 1")
        need(integer("gradient_steps", 1), "gradient_steps", "an integer >= 1")
        need(number("noise_std") >= 0, "noise_std", "a std >= 0")
        need(number("noise_final_std") >= 0, "noise_final_std", "a std >= 0")
        need(integer("noise_decay_steps", 0), "noise_decay_steps", "an integer >= 0 (0: constant noise)")
        need(number("action_reg") >= 0, "action_reg", "a weight >= 0")
        need(number("max_grad_norm") > 0, "max_grad_norm", "a value > 0")
        need(number("temperature") > 0, "temperature", "a temperature > 0")
        need(0 <= number("target_epsilon") <= 1, "target_epsilon", "a probability in [0, 1]")
        need(number("entropy_coef") >= 0, "entropy_coef", "a weight >= 0")
        need(self.targets in TARGET_MODES, "targets", " or ".join(repr(m) for m in TARGET_MODES))
        need(isinstance(self.hidden, tuple) and len(self.hidden) >= 1
             and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden), "hidden",
             "a list of layer sizes >= 1")


class _Replay:
    """A ring buffer of rows: obs (N, D), state (S), target masks (N, K), actions (N, A), rewards (N), and the
    next obs, state and masks."""

    def __init__(self, size: int, n_agents: int, obs_dim: int, state_dim: int, action_dim: int, n_targets: int):
        self.size, self.count, self.pos = size, 0, 0
        self.data = {"obs": np.zeros((size, n_agents, obs_dim), np.float32),
                     "states": np.zeros((size, state_dim), np.float32),
                     "masks": np.zeros((size, n_agents, n_targets), bool),
                     "actions": np.zeros((size, n_agents, action_dim), np.float32),
                     "rewards": np.zeros((size, n_agents), np.float32),
                     "next_obs": np.zeros((size, n_agents, obs_dim), np.float32),
                     "next_states": np.zeros((size, state_dim), np.float32),
                     "next_masks": np.zeros((size, n_agents, n_targets), bool)}

    def add(self, **rows: np.ndarray) -> None:
        n = len(rows["obs"])
        idx = (self.pos + np.arange(n)) % self.size
        for k, v in rows.items():
            self.data[k][idx] = v
        self.pos = (self.pos + n) % self.size
        self.count = min(self.count + n, self.size)

    def sample(self, n: int, rng: np.random.Generator, device=None) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.count, size=n)
        return {k: torch.as_tensor(v[idx], device=device) for k, v in self.data.items()}


class MADDPGAgent:
    """MADDPG on a ParallelEnv factory with Box actions; the agent protocol with dicts per agent."""

    def __init__(self, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None, n_envs: int = 4,
                 normalize_obs: bool = True, device: str = "cpu", **settings: Any):
        self.config = MADDPGConfig(**{k: tuple(v) if k == "hidden" else v for k, v in settings.items()})
        self.config.check()
        if n_envs < 1:
            raise ValueError(f"n_envs: expected an integer >= 1, got {n_envs!r}")
        self.algo = "maddpg"
        self.name = name or self.algo
        self.seed, self.n_envs, self.normalize_obs = int(seed), int(n_envs), bool(normalize_obs)
        env = make_env()
        _, infos = env.reset(seed=self.seed)
        self.agent_names = list(env.possible_agents)
        space = env.action_space(self.agent_names[0])
        if hasattr(space, "n") or len(getattr(space, "shape", ()) or ()) != 1:
            raise ValueError(f"{self.algo}: needs a 1-d Box action per agent (the vehicular env with continuous=True)")
        if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
            raise ValueError(f"{self.algo}: needs actions in [-1, 1] (its actors end in tanh)")
        self.n_agents, self.action_dim = len(self.agent_names), int(space.shape[0])
        self.obs_dim = int(np.prod(env.observation_space(self.agent_names[0]).shape))
        self.state_dim = int(np.asarray(env.state()).size)
        mask = infos[self.agent_names[0]].get("target_mask")
        if self.config.targets != "logits" and mask is None:
            raise ValueError(f"targets: expected 'logits' for an env whose infos carry no target_mask, got "
                             f"{self.config.targets!r}")
        self.n_targets = len(mask) if self.config.targets != "logits" else 0
        env.close()
        self._index = {a: i for i, a in enumerate(self.agent_names)}
        self.device = torch_device(device)  #: where the networks train; the env and the replay stay in numpy
        self._build()
        self._make_env = make_env
        self._steps = 0
        self.updates = 0

    # ------------------------------------------------------------------ networks

    def _build(self) -> None:
        torch.manual_seed(self.seed)
        c, N = self.config, self.n_agents
        ids = N if c.agent_id else 0
        actor_in, critic_in = self.obs_dim + ids, self.state_dim + N * self.action_dim + ids

        def actor():
            if c.share_actor:
                return mlp(actor_in, c.hidden, self.action_dim, 0.01, self.normalize_obs)
            return GroupedMLP(N, actor_in, c.hidden, self.action_dim, 0.01, self.normalize_obs)

        def critic():
            if c.share_critic:
                return mlp(critic_in, c.hidden, 1, 1.0, self.normalize_obs)
            return GroupedMLP(N, critic_in, c.hidden, 1, 1.0, self.normalize_obs)

        self.actor, self.critic = actor(), critic()
        self.actor_target, self.critic_target = actor(), critic()
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for p in [*self.actor_target.parameters(), *self.critic_target.parameters()]:
            p.requires_grad_(False)
        for net in self._networks().values():
            net.to(self.device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c.learning_rate)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c.critic_learning_rate)
        self._rng = np.random.default_rng(self.seed)
        self._eye = torch.eye(N, device=self.device)

    def _ids(self, x: torch.Tensor) -> torch.Tensor:
        return self._eye.expand(*x.shape[:-1], self.n_agents)

    def _actor_input(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., N, D) observations of every agent -> the actor's (..., N, D [+ N]) inputs."""
        return torch.cat([obs, self._ids(obs)], dim=-1) if self.config.agent_id else obs

    def _policy(self, net: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tanh actions, pre-tanh outputs) of (..., N, D) observations."""
        pre = net(self._actor_input(obs))
        return torch.tanh(pre), pre

    def _q(self, net: nn.Module, states: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """Q_i of (..., S) states and per-agent joint actions (..., N, N, A) (row i: what critic i sees) -> (..., N)."""
        flat = joint.reshape(*joint.shape[:-2], self.n_agents * self.action_dim)
        parts = [states[..., None, :].expand(*flat.shape[:-1], self.state_dim), flat]
        if self.config.agent_id:
            parts.append(self._ids(flat))
        return net(torch.cat(parts, dim=-1))[..., 0]

    def _critic_actions(self, actions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """What the critics see of (..., N, A) actions as the env takes them: with ``targets`` "softmax", the
        target logits (the first K entries) as their softmax at ``temperature`` over the allowed targets
        (``masks`` (..., N, K)), a fixed, differentiable part of the critic; else the actions as they are."""
        K = self.n_targets
        if self.config.targets != "softmax":
            return actions
        logits = torch.where(masks, actions[..., :K] / self.config.temperature, -torch.inf)
        return torch.cat([torch.softmax(logits, dim=-1), actions[..., K:]], dim=-1)

    def _targets_one_hot(self, chosen: torch.Tensor) -> torch.Tensor:
        """(...) target indices -> (..., K) target entries: 1 for the chosen one, -1 for the others (the env
        takes the argmax)."""
        return 2.0 * nn.functional.one_hot(chosen, self.n_targets).to(torch.float32) - 1.0

    def _actions(self, net: nn.Module, obs: torch.Tensor, masks: torch.Tensor, relaxed: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions (..., N, A) as the env takes them, pre-tanh outputs) of (..., N, D) observations.

        With ``targets`` "gumbel" the target entries are the one-hot of the best allowed target
        (``relaxed``: of a straight-through Gumbel-softmax sample at ``temperature``, which passes the
        critic's gradient to the target logits); else every entry is ``tanh`` of the actor's output.
        """
        a, pre = self._policy(net, obs)
        if self.config.targets != "gumbel":
            return a, pre
        K = self.n_targets
        logits = masked_logits(pre[..., :K], masks)
        if relaxed:
            chosen = 2.0 * nn.functional.gumbel_softmax(logits, tau=self.config.temperature, hard=True) - 1.0
        else:
            chosen = self._targets_one_hot(logits.argmax(-1))
        return torch.cat([chosen, a[..., K:]], dim=-1), pre

    def _same_joint(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., N, A) one joint action -> (..., N, N, A): every critic sees it."""
        return actions[..., None, :, :].expand(*actions.shape[:-2], self.n_agents, self.n_agents, self.action_dim)

    def noise_std(self) -> float:
        """The exploration noise's std now (linear decay over noise_decay_steps env steps)."""
        c = self.config
        if c.noise_decay_steps == 0:
            return c.noise_std
        frac = min(self._steps / c.noise_decay_steps, 1.0)
        return c.noise_std + frac * (c.noise_final_std - c.noise_std)

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        """Env steps learned from (joint steps of every copy); agent-steps are this times the agents."""
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: the policy has no memory."""

    def act(self, observations: dict, infos: dict | None = None) -> dict:
        """The deterministic (noise-free) action of every live agent, from its own observation only."""
        agents, rows, obs = live_rows(observations, self._index, self.obs_dim)
        if not agents:
            return {}
        with torch.no_grad():
            actions = self._policy(self.actor, torch.as_tensor(obs, device=self.device))[0][rows].cpu().numpy()
        return {a: actions[j].copy() for j, a in enumerate(agents)}

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "MADDPGAgent":
        """Step ``n_envs`` copies, ``gradient_steps`` updates every ``train_every`` steps, until ``budget`` env steps.

        ``callback(agent, stats)`` runs after each round of updates (or of steps, before
        updates start); returning False stops.
        """
        if make_env is None:
            make_env = self._make_env
        if make_env is None:
            raise RuntimeError(f"{self.name}: loaded without make_env; pass one to learn")
        self._make_env = make_env
        c = self.config
        if self._steps >= int(budget):
            return self
        if getattr(self, "_replay", None) is None:
            self._replay = _Replay(c.buffer_size, self.n_agents, self.obs_dim, self.state_dim, self.action_dim,
                                   self.n_targets)
        round_steps = c.train_every * self.n_envs
        copies = EnvCopies(make_env, self.n_envs, self.seed + 1_000_003 * (self._steps // round_steps + 1),
                           discrete=False)
        obs, masks, states = copies.reset()
        while self._steps < int(budget):
            rewards = []
            for _ in range(c.train_every):
                actions = self._explore(obs, masks[..., :self.n_targets])
                next_obs, next_masks, next_states, r, done, end_obs, end_states, end_masks = copies.step(actions)
                stored = [next_obs.copy(), next_states.copy(), next_masks.copy()]
                for k in np.flatnonzero(done):  # truncated: the next state is the one it ended in
                    stored[0][k], stored[1][k], stored[2][k] = end_obs[k], end_states[k], end_masks[k]
                K = self.n_targets  # 0: the critic needs no masks
                self._replay.add(obs=obs, states=states, masks=masks[..., :K], actions=actions, rewards=r,
                                 next_obs=stored[0], next_states=stored[1], next_masks=stored[2][..., :K])
                obs, masks, states = next_obs, next_masks, next_states
                self._steps += self.n_envs
                rewards.append(r)
            stats: dict[str, float] = {"mean_reward": float(np.mean(rewards)), "noise_std": self.noise_std()}
            if self._steps >= c.learning_starts and self._replay.count >= c.batch_size:
                stats.update(self._update())
            if callback is not None and callback(self, stats) is False:
                break
        return self

    def save(self, folder: str | os.PathLike) -> Path:
        arrays = {}
        for prefix, net in self._networks().items():
            arrays.update({f"{prefix}.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()})
        groups = {}
        for prefix, optimizer in self._optimizers().items():
            state, groups[prefix] = optimizer_arrays(optimizer, prefix)
            arrays.update(state)
        meta = {"format": _FORMAT, "algo": self.algo, "name": self.name, "seed": self.seed,
                "num_timesteps": self._steps, "n_envs": self.n_envs, "normalize_obs": self.normalize_obs,
                "config": dataclasses.asdict(self.config), "agents": self.agent_names,
                "action_dim": self.action_dim, "obs_dim": self.obs_dim, "state_dim": self.state_dim,
                "n_targets": self.n_targets,
                "optimizer_groups": groups, "updates": self.updates}
        return save_arrays(folder, arrays, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None,
             seed: int | None = None, device: str = "cpu") -> "MADDPGAgent":
        """Read an agent written by :meth:`save` (no pickle) onto ``device``; ``make_env`` is needed only to learn
        further."""
        arrays, meta = load_arrays(folder)
        if meta.get("format") not in (1, _FORMAT) or meta.get("algo") != "maddpg":
            raise ValueError(f"{folder}: not a MADDPG agent of format 1 or {_FORMAT}")
        settings = dict(meta["config"])
        if meta["format"] == 1:  # its soft_targets is now targets: "softmax" or "logits"
            settings["targets"] = "softmax" if settings.pop("soft_targets") else "logits"
        agent = cls.__new__(cls)
        agent.config = MADDPGConfig(**{k: tuple(v) if k == "hidden" else v for k, v in settings.items()})
        agent.algo, agent.name = meta["algo"], meta["name"]
        agent.seed = int(meta["seed"] if seed is None else seed)
        agent.n_envs, agent.normalize_obs = meta["n_envs"], meta["normalize_obs"]
        agent.agent_names, agent.n_agents = meta["agents"], len(meta["agents"])
        agent.action_dim, agent.obs_dim, agent.state_dim = meta["action_dim"], meta["obs_dim"], meta["state_dim"]
        agent.n_targets = int(meta["n_targets"])
        agent._index = {a: i for i, a in enumerate(agent.agent_names)}
        agent.device = torch_device(device)
        agent._build()
        agent._rng = np.random.default_rng([agent.seed, int(meta["num_timesteps"])])
        for prefix, net in agent._networks().items():
            net.load_state_dict({k[len(prefix) + 1:]: torch.as_tensor(v) for k, v in arrays.items()
                                 if k.startswith(prefix + ".")})
        for prefix, optimizer in agent._optimizers().items():
            load_optimizer(optimizer, arrays, prefix, meta["optimizer_groups"][prefix])
        agent._make_env, agent._steps, agent.updates = make_env, int(meta["num_timesteps"]), int(meta["updates"])
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): params.npz + manifest.json."""
        from ..export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)

    # ------------------------------------------------------------------ training

    def _networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

    def _target_entropy(self, pre: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(..., N) entropy of the actor's target distribution, the softmax of its logits over the allowed."""
        logp = torch.log_softmax(masked_logits(pre[..., :self.n_targets], masks), dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def _explore(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(E, N, D) observations, (E, N, K) target masks -> (E, N, A) float32 actions: uniform before
        learning_starts, then mu(o) + Gaussian noise; with ``targets`` "gumbel" the target entries are the
        one-hot of a target drawn from the softmax of the actor's logits over the allowed ones (uniform before
        learning_starts)."""
        shape = (*obs.shape[:-1], self.action_dim)
        K = self.n_targets if self.config.targets == "gumbel" else 0
        if self._steps < self.config.learning_starts:
            actions = self._rng.uniform(-1.0, 1.0, size=shape)
            logits = actions[..., :K]
        else:
            with torch.no_grad():
                mu, pre = self._policy(self.actor, torch.as_tensor(obs, device=self.device))
            actions = np.clip(mu.cpu().numpy() + self.noise_std() * self._rng.standard_normal(shape), -1.0, 1.0)
            logits = pre[..., :K].cpu().numpy() + self._rng.gumbel(size=(*shape[:-1], K))  # Gumbel-max: a sample
            if K and self.config.target_epsilon:
                uniform = self._rng.random(shape[:-1]) < self.config.target_epsilon
                logits = np.where(uniform[..., None], self._rng.random((*shape[:-1], K)), logits)
        if K:
            chosen = np.where(masks, logits, -np.inf).argmax(-1)
            actions[..., :K] = np.where(np.arange(K) == chosen[..., None], 1.0, -1.0)
        return actions.astype(np.float32)

    def _update(self) -> dict[str, float]:
        """``gradient_steps`` rounds of: critic on the TD target, actor on its critic, Polyak targets."""
        c = self.config
        stats = {"critic_loss": 0.0, "actor_loss": 0.0, "q": 0.0}
        own = self._eye[:, :, None]  # (N, N, 1): row i replaces agent i's action by mu_i(o_i)
        for _ in range(c.gradient_steps):
            b = self._replay.sample(c.batch_size, self._rng, self.device)
            with torch.no_grad():
                next_actions = self._critic_actions(self._actions(self.actor_target, b["next_obs"], b["next_masks"])[0],
                                                    b["next_masks"])
                y = b["rewards"] + c.gamma * self._q(self.critic_target, b["next_states"],
                                                     self._same_joint(next_actions))
            taken = self._critic_actions(b["actions"], b["masks"])
            q = self._q(self.critic, b["states"], self._same_joint(taken))
            critic_loss = nn.functional.mse_loss(q, y)
            self.critic_optimizer.zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm)
            self.critic_optimizer.step()

            mu, pre = self._actions(self.actor, b["obs"], b["masks"], relaxed=True)
            mu = self._critic_actions(mu, b["masks"])

            def q_own(own_actions):  # Q_i with agent i's action replaced: [b, i, j] = own_j if j == i else a_j
                return self._q(self.critic, b["states"], own * own_actions[:, None] + (1 - own) * taken[:, None])

            if c.targets == "gumbel":  # the choice, the other entries fixed; those, for a random allowed target
                K = self.n_targets
                q = q_own(torch.cat([mu[..., :K], mu[..., K:].detach()], dim=-1))
                draw = np.where(b["masks"].cpu().numpy(), self._rng.random(b["masks"].shape), -1.0).argmax(-1)
                as_if = self._targets_one_hot(torch.as_tensor(draw, device=mu.device))
                q = q + q_own(torch.cat([as_if, mu[..., K:]], dim=-1))
            else:
                q = q_own(mu)
            actor_loss = -q.mean() + c.action_reg * (pre ** 2).mean()
            if c.targets == "gumbel" and c.entropy_coef:
                actor_loss = actor_loss - c.entropy_coef * self._target_entropy(pre, b["masks"]).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), c.max_grad_norm)
            self.actor_optimizer.step()

            with torch.no_grad():
                for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                    for p, t in zip(net.parameters(), target.parameters()):
                        t.lerp_(p, c.tau)
            self.updates += 1
            stats["critic_loss"] += critic_loss.item()
            stats["actor_loss"] += actor_loss.item()
            stats["q"] += q.mean().item()
        return {k: v / c.gradient_steps for k, v in stats.items()}
