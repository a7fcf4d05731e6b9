"""RLlib PPO (``rllib_ppo``) behind the project's agent protocol.

Training runs RLlib's new API stack (an Algorithm with env runners and a
learner) on Ray, started on loopback or joined at ``RAY_ADDRESS``
(:func:`agents.rllib.cluster.init_ray`). Acting never touches Ray nor torch:
after each ``learn`` the actor (RLlib's encoder and policy head) is copied
into the router's numpy MLP (``offload_env.router.policy``), the same
description ``export`` writes, and ``act`` takes the argmax of its logits
after the action mask. A PettingZoo env trains one policy shared by every
agent (RLlib's parameter sharing via the policy mapping).

Saved as ``weights.npz`` + ``agent.json`` (the actor, no pickle: what
evaluation, ``export`` and the router read) and ``rllib/``, RLlib's own
checkpoint (module, optimizer and counters; it holds pickled files) that
``learn`` restores to continue a loaded agent: load one only from runs you
made or trust, as SB3 zips.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offload_env.router.policy import build_policy

from .._arrays import load_arrays, save_arrays
from .envs import is_multi_agent, register_factory

__all__ = ["RLlibPPOConfig", "RLlibAgent"]

_FORMAT = 1
_SHARED = "shared"  #: the one policy every agent of a PettingZoo env maps to
_SINGLE = "default_policy"


@dataclass
class RLlibPPOConfig:
    """``rllib_ppo`` settings, in the harness's names (RLlib's in the comments); env copies per runner: n_envs."""

    train_batch_size: int = 4000  #: env steps per training iteration, all runners and learners (train_batch_size)
    minibatch_size: int = 128  #: SGD minibatch (minibatch_size)
    num_epochs: int = 10  #: passes over each batch (num_epochs)
    learning_rate: float = 3e-4  #: Adam (lr)
    gamma: float = 0.99  #: discount
    gae_lambda: float = 0.95  #: GAE lambda (lambda_)
    clip_range: float = 0.2  #: PPO ratio clip (clip_param)
    ent_coef: float = 0.0  #: entropy bonus (entropy_coeff)
    vf_coef: float = 1.0  #: value-loss weight (vf_loss_coeff)
    vf_clip: float = 10.0  #: value-loss clip (vf_clip_param)
    kl_coeff: float = 0.2  #: initial KL penalty (0 with use_kl_loss false)
    max_grad_norm: float | None = None  #: gradient clip (grad_clip; null: none)
    hidden: tuple[int, ...] = (64, 64)  #: encoder layers (fcnet_hiddens)
    activation: str = "tanh"  #: encoder activation (fcnet_activation): tanh or relu
    share_value_layers: bool = False  #: one encoder for policy and value (vf_share_layers)
    num_env_runners: int = 0  #: Ray actors sampling (0: the driver samples)
    num_learners: int = 0  #: Ray actors updating (0: the driver updates)
    cpus_per_env_runner: float = 1.0  #: num_cpus_per_env_runner

    def check(self, n_envs: int = 1) -> None:
        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        def whole(key: str, low: int) -> bool:
            v = getattr(self, key)
            return isinstance(v, int) and not isinstance(v, bool) and v >= low

        def number(key: str, low: float, high: float = math.inf, open_low: bool = False) -> bool:
            v = getattr(self, key)
            return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and (v > low if open_low else v >= low) and v <= high)

        for key in ("train_batch_size", "minibatch_size", "num_epochs"):
            need(whole(key, 1), key, "an integer >= 1")
        for key in ("num_env_runners", "num_learners"):
            need(whole(key, 0), key, "an integer >= 0")
        need(number("learning_rate", 0, open_low=True), "learning_rate", "a finite rate > 0")
        need(number("gamma", 0, 1), "gamma", "a discount in [0, 1]")
        need(number("gae_lambda", 0, 1), "gae_lambda", "a value in [0, 1]")
        for key in ("clip_range", "vf_clip", "cpus_per_env_runner"):
            need(number(key, 0, open_low=True), key, "a finite number > 0")
        for key in ("ent_coef", "vf_coef", "kl_coeff"):
            need(number(key, 0), key, "a finite number >= 0")
        need(self.max_grad_norm is None or number("max_grad_norm", 0, open_low=True), "max_grad_norm",
             "null or a finite number > 0")
        need(len(self.hidden) >= 1 and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                           for h in self.hidden), "hidden", "a list of layer sizes >= 1")
        need(self.activation in ("tanh", "relu"), "activation", "'tanh' or 'relu'")
        need(self.minibatch_size <= self.train_batch_size, "minibatch_size", "at most train_batch_size")
        learners = max(self.num_learners, 1)
        need(self.train_batch_size % learners == 0, "train_batch_size", f"a multiple of num_learners ({learners})")
        per_sample = max(self.num_env_runners, 1) * n_envs
        need(self.train_batch_size % per_sample == 0, "train_batch_size",
             f"a multiple of max(num_env_runners, 1) x n_envs = {per_sample} (each runner samples an equal share)")


def _shared_policy(agent_id, episode=None, **kwargs) -> str:
    return _SHARED


def _spaces(env) -> tuple[Any, Any, list[str] | None]:
    if is_multi_agent(env):
        first = env.possible_agents[0]
        return env.observation_space(first), env.action_space(first), list(env.possible_agents)
    return env.observation_space, env.action_space, None


class RLlibAgent:
    """RLlib PPO on an env factory (a Gymnasium env, or a PettingZoo ParallelEnv with one shared policy)."""

    algo = "rllib_ppo"

    def __init__(self, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None, n_envs: int = 1,
                 **settings: Any):
        self.config = RLlibPPOConfig(**{k: tuple(v) if k == "hidden" else v for k, v in settings.items()})
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs < 1:
            raise ValueError(f"n_envs: expected an integer >= 1, got {n_envs!r}")
        self.config.check(n_envs)
        self.name, self.seed, self.n_envs = name or self.algo, int(seed), n_envs
        env = make_env()
        try:
            obs_space, act_space, agents = _spaces(env)
        finally:
            env.close()
        if not hasattr(act_space, "n"):
            raise ValueError(f"{self.algo}: needs discrete actions, got {act_space} (continuous: false)")
        self.agent_names, self.multi_agent = agents, agents is not None
        self.obs_dim, self.n_actions = int(np.prod(obs_space.shape)), int(act_space.n)
        self._make_env, self._steps, self._algorithm, self._restore_from = make_env, 0, None, None
        self.updates = self.env_steps_sampled = 0
        self._start()
        self._refresh()

    # ------------------------------------------------------------------ RLlib

    @property
    def policy_id(self) -> str:
        return _SHARED if self.multi_agent else _SINGLE

    def algorithm_config(self, env_name: str):
        """The ``PPOConfig`` this agent trains with on the Ray-registered env ``env_name``."""
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from .module import MaskedPPOTorchModule

        c = self.config
        model = {"fcnet_hiddens": list(c.hidden), "fcnet_activation": c.activation,
                 "vf_share_layers": c.share_value_layers}
        spec = RLModuleSpec(module_class=MaskedPPOTorchModule, model_config=model)
        config = (PPOConfig()
                  .environment(env_name, disable_env_checking=True)
                  .framework("torch")
                  .env_runners(num_env_runners=c.num_env_runners, num_envs_per_env_runner=self.n_envs,
                               num_cpus_per_env_runner=c.cpus_per_env_runner, rollout_fragment_length="auto")
                  .learners(num_learners=c.num_learners)
                  .training(train_batch_size_per_learner=c.train_batch_size // max(c.num_learners, 1),
                            minibatch_size=c.minibatch_size, num_epochs=c.num_epochs, lr=c.learning_rate,
                            gamma=c.gamma, lambda_=c.gae_lambda, clip_param=c.clip_range,
                            entropy_coeff=c.ent_coef, vf_loss_coeff=c.vf_coef, vf_clip_param=c.vf_clip,
                            kl_coeff=c.kl_coeff, use_kl_loss=c.kl_coeff > 0, grad_clip=c.max_grad_norm)
                  .reporting(metrics_num_episodes_for_smoothing=10)
                  .debugging(seed=self.seed, log_level="ERROR"))
        if self.multi_agent:
            return (config.multi_agent(policies={_SHARED}, policy_mapping_fn=_shared_policy)
                    .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={_SHARED: spec})))
        return config.rl_module(rl_module_spec=spec)

    def _start(self) -> None:
        from .cluster import init_ray

        init_ray()
        self._algorithm = self.algorithm_config(register_factory(self._make_env)).build_algo()
        if self._restore_from is not None:
            self._algorithm.restore_from_path(str(self._restore_from))
            self._restore_from = None

    @property
    def algorithm(self):
        """The RLlib Algorithm (built on first use; a loaded agent restores its checkpoint into it)."""
        if self._algorithm is None:
            if self._make_env is None:
                raise RuntimeError(f"{self.name}: loaded without make_env; pass one to learn")
            self._start()
        return self._algorithm

    def _refresh(self) -> None:
        """Copy the trained actor into the numpy policy that ``act`` and ``export`` use."""
        from ..export import _torch_layers

        module = self._algorithm.get_module(self.policy_id)
        encoder = module.encoder
        actor = getattr(encoder, "actor_encoder", None) or encoder.encoder
        arrays: dict[str, np.ndarray] = {}
        layers = _torch_layers([*actor.net.mlp, *module.pi.net.mlp], arrays, "actor.")
        spec: dict[str, Any] = {"type": "mlp", "input": {}, "layers": layers,
                                "output": {"type": "argmax", "mask": True}}
        if self.multi_agent:
            spec["agents"] = list(self.agent_names)
        self._set_policy(spec, arrays)

    def _set_policy(self, spec: dict, arrays: dict) -> None:
        self.policy_spec, self.policy_arrays = spec, arrays
        self._policy = build_policy(spec, arrays)

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        """Env steps learned from: iterations x ``train_batch_size`` (joint steps of a PettingZoo env).

        RLlib's vector env runners may sample a step or two more in an iteration (an episode ending in one
        copy); the exact count is :attr:`env_steps_sampled`.
        """
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: the policy has no memory."""

    def _decide(self, obs, info) -> int:
        mask = info.get("action_mask") if isinstance(info, dict) else None
        return self._policy.decide(np.asarray(obs, np.float32).ravel(),
                                   None if mask is None else np.asarray(mask, bool))

    def act(self, obs: Any, info: dict | None = None) -> Any:
        """The most likely allowed action (every live agent's, from its own observation, on a PettingZoo env)."""
        if self.multi_agent:
            infos = info or {}
            return {a: self._decide(o, infos.get(a)) for a, o in obs.items()}
        return self._decide(obs, info)

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "RLlibAgent":
        """RLlib training iterations (``train_batch_size`` env steps each) until ``budget`` env steps.

        ``callback(agent, stats)`` runs after each iteration with its losses and sampling rate; False stops.
        """
        if make_env is not None and self._algorithm is None:
            self._make_env = make_env
        algorithm = self.algorithm
        while self._steps < int(budget):
            result = algorithm.train()
            sampled = int(result["env_runners"]["num_env_steps_sampled"])
            self._steps += self.config.train_batch_size
            self.env_steps_sampled += sampled
            self.updates += 1
            learner = result.get("learners", {}).get(self.policy_id, {})
            stats = {"policy_loss": learner.get("policy_loss"), "value_loss": learner.get("vf_loss"),
                     "entropy": learner.get("entropy"), "approx_kl": learner.get("mean_kl_loss"),
                     "loss": learner.get("total_loss"),
                     "env_steps_sampled": self.env_steps_sampled,
                     "env_steps_per_s": sampled / max(float(result.get("time_this_iter_s", 0.0)), 1e-9)}
            if callback is not None and callback(self, {k: float(v) for k, v in stats.items() if v is not None}) \
                    is False:
                break
        self._refresh()
        return self

    def close(self) -> None:
        """Stop the Algorithm's env runners and learners (Ray itself keeps running)."""
        if self._algorithm is not None:
            self._algorithm.stop()
            self._algorithm = None

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target, fresh = folder / "rllib", folder / ".rllib.tmp"
        shutil.rmtree(fresh, ignore_errors=True)
        if self._algorithm is not None:
            self._algorithm.save_to_path(str(fresh.resolve()))
        elif self._restore_from is not None and self._restore_from.resolve() != target.resolve():
            shutil.copytree(self._restore_from, fresh)
        if fresh.exists():  # the new checkpoint is whole before the old one goes
            old = folder / ".rllib.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(fresh, target)
            shutil.rmtree(old, ignore_errors=True)
        meta = {"format": _FORMAT, "algo": self.algo, "name": self.name, "seed": self.seed,
                "num_timesteps": self._steps, "updates": self.updates, "env_steps_sampled": self.env_steps_sampled,
                "n_envs": self.n_envs,
                "config": dataclasses.asdict(self.config), "agents": self.agent_names,
                "obs_dim": self.obs_dim, "n_actions": self.n_actions, "policy": self.policy_spec}
        return save_arrays(folder, dict(self.policy_arrays), meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None,
             seed: int | None = None) -> "RLlibAgent":
        """The actor from ``weights.npz`` + ``agent.json`` (no pickle, no Ray); ``learn`` restores ``rllib/``."""
        folder = Path(folder)
        arrays, meta = load_arrays(folder)
        if meta.get("format") != _FORMAT or meta.get("algo") != cls.algo:
            raise ValueError(f"{folder}: not an {cls.algo} agent of format {_FORMAT}")
        agent = cls.__new__(cls)
        agent.config = RLlibPPOConfig(**{k: tuple(v) if k == "hidden" else v for k, v in meta["config"].items()})
        agent.name, agent.seed = meta["name"], int(meta["seed"] if seed is None else seed)
        agent.n_envs, agent.agent_names = int(meta["n_envs"]), meta["agents"]
        agent.multi_agent = agent.agent_names is not None
        agent.obs_dim, agent.n_actions = int(meta["obs_dim"]), int(meta["n_actions"])
        agent._steps, agent.updates = int(meta["num_timesteps"]), int(meta["updates"])
        agent.env_steps_sampled = int(meta["env_steps_sampled"])
        agent._make_env, agent._algorithm = make_env, None
        agent._restore_from = folder / "rllib" if (folder / "rllib").is_dir() else None
        agent._set_policy(meta["policy"], arrays)
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): params.npz + manifest.json."""
        from ..export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)
