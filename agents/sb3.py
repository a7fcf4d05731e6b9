"""Thin agents over Stable-Baselines3 DDPG, TD3, PPO and DQN and sb3-contrib MaskablePPO.

Every agent has the common interface of :mod:`agents.protocol`: ``act(obs,
info=None)``, ``learn(make_env, budget, callback=None)``, ``save(path)`` and
``load(path)``. Observations are normalised
by a ``VecNormalize`` during training; its statistics are saved inside the
model's ``.zip`` (member ``offload_agent.json``) and, at evaluation, restored
and frozen: ``act`` never updates them.

References: DDPG, Lillicrap et al. (2016) "Continuous control with deep
reinforcement learning"; TD3, Fujimoto et al. (2018) "Addressing function
approximation error in actor-critic methods"; PPO, Schulman et al. (2017)
"Proximal policy optimization algorithms"; DQN, Mnih et al. (2015)
"Human-level control through deep reinforcement learning"; MaskablePPO, Huang
& Ontañón (2022) "A closer look at invalid action masking in policy gradient
algorithms".

Security: an SB3 ``.zip`` holds pickled (cloudpickle) objects and a replay
buffer file is a pickle; loading them runs code. Load only files you trust.
(The pickle-free artifact of DESIGN.md, ONNX + JSON manifest, is not built yet.)
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3 import DDPG, DQN, PPO, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from offload_env.atomic import atomic_path

__all__ = [
    "ActionNoiseSpec",
    "ObsNormalization",
    "SB3Agent",
    "DDPGAgent",
    "TD3Agent",
    "MaskablePPOAgent",
    "PPOAgent",
    "DQNAgent",
    "SB3_AGENTS",
    "make_sb3_agent",
    "SB3Kind",
    "KIND",
]

#: Name of the zip member holding the agent's own settings and normalisation statistics.
_META = "offload_agent.json"
_FORMAT = 1


def _silent_logger() -> Logger:
    """An SB3 logger that writes nothing (the experiments runner sets its own)."""
    return Logger(folder=None, output_formats=[])


@dataclass(frozen=True)
class ActionNoiseSpec:
    """Exploration noise of DDPG/TD3, in the [-1, 1] action units."""

    kind: str = "normal"  #: "normal" (Gaussian) or "ornstein-uhlenbeck"
    sigma: float = 0.1  #: standard deviation
    theta: float = 0.15  #: Ornstein-Uhlenbeck mean reversion rate
    dt: float = 1e-2  #: Ornstein-Uhlenbeck time step

    KINDS: ClassVar[tuple[str, ...]] = ("normal", "ornstein-uhlenbeck")

    def build(self, action_dim: int) -> ActionNoise:
        mean, sigma = np.zeros(action_dim), self.sigma * np.ones(action_dim)
        if self.kind == "normal":
            return NormalActionNoise(mean, sigma)
        if self.kind == "ornstein-uhlenbeck":
            return OrnsteinUhlenbeckActionNoise(mean, sigma, theta=self.theta, dt=self.dt)
        raise ValueError(f"action_noise.kind: expected one of {', '.join(self.KINDS)}, got {self.kind!r}")


@dataclass
class ObsNormalization:
    """Running mean/variance of observations, applied as VecNormalize does (clip((x - mean) / sqrt(var + eps)))."""

    mean: np.ndarray
    var: np.ndarray
    count: float
    clip: float = 10.0
    epsilon: float = 1e-8

    def apply(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip).astype(np.float32)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": float(self.count),
                "clip": float(self.clip), "epsilon": float(self.epsilon)}

    @classmethod
    def from_json(cls, d: dict) -> "ObsNormalization":
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["var"], dtype=np.float64),
                   float(d["count"]), float(d["clip"]), float(d["epsilon"]))

    @classmethod
    def from_vecnormalize(cls, vn: VecNormalize) -> "ObsNormalization":
        rms = vn.obs_rms
        return cls(rms.mean.copy(), rms.var.copy(), float(rms.count), float(vn.clip_obs), float(vn.epsilon))

    def to_running_mean_std(self) -> RunningMeanStd:
        rms = RunningMeanStd(shape=self.mean.shape)
        rms.mean, rms.var, rms.count = self.mean.copy(), self.var.copy(), self.count
        return rms


class SB3Agent:
    """An SB3 algorithm on a ``make_env`` factory, with the project's agent interface.

    ``hyperparams`` are the algorithm's constructor arguments (learning_rate,
    batch_size, gamma, ...). Subclasses fix the algorithm: :class:`DDPGAgent`,
    :class:`TD3Agent`, :class:`MaskablePPOAgent`.
    """

    algo: ClassVar[str] = ""
    discrete: ClassVar[bool] = False  #: needs a Discrete action space
    on_policy: ClassVar[bool] = False  #: learns in whole rollouts of ``n_steps`` x ``n_envs`` steps

    def __init__(self, make_env: Callable[[], gym.Env], *, seed: int = 0, name: str | None = None,
                 policy: str = "MlpPolicy", n_envs: int = 1, normalize_obs: bool = True,
                 normalize_reward: bool = False, action_noise: ActionNoiseSpec | dict | None = None,
                 device: str = "cpu", verbose: int = 0, **hyperparams: Any):
        if isinstance(action_noise, dict):
            action_noise = ActionNoiseSpec(**action_noise)
        self.name = name or self.algo
        self.seed = int(seed)
        self.n_envs = int(n_envs)
        self.normalize_obs = bool(normalize_obs)
        self.normalize_reward = bool(normalize_reward)
        self.action_noise = action_noise
        self.hyperparams = copy.deepcopy(hyperparams)  # SB3 edits nested dicts (policy_kwargs) in place
        self._frozen_norm: ObsNormalization | None = None
        self._make_env = make_env
        self.venv = self._make_venv(make_env, self.seed)
        kwargs = copy.deepcopy(hyperparams)
        if action_noise is not None:
            if self.discrete:
                raise ValueError(f"{self.algo}: action_noise applies to DDPG/TD3 only")
            kwargs["action_noise"] = action_noise.build(int(np.prod(self.venv.action_space.shape)))
        self.model = self._algorithm_class()(policy, self.venv, seed=self.seed, device=device, verbose=verbose,
                                             **kwargs)
        if not verbose:
            self.model.set_logger(_silent_logger())  # else SB3 makes an empty SB3-<date> folder in /tmp per learn

    # ------------------------------------------------------------------ building

    @classmethod
    def _algorithm_class(cls):
        raise NotImplementedError

    def _make_venv(self, make_env: Callable[[], gym.Env], seed: int,
                   norm: ObsNormalization | None = None, ret_rms: RunningMeanStd | None = None):
        venv = DummyVecEnv([lambda: Monitor(make_env()) for _ in range(self.n_envs)])
        venv.seed(seed)
        space = venv.action_space
        if self.discrete != isinstance(space, gym.spaces.Discrete):
            kind = "a Discrete" if self.discrete else "a Box"
            raise ValueError(f"{self.algo} needs {kind} action space, the env has {space} "
                             "(LayerSplit-v0: continuous=True for DDPG/TD3, False for MaskablePPO)")
        if not (self.normalize_obs or self.normalize_reward):
            return venv
        gamma = self.hyperparams.get("gamma", 0.99)
        vn = VecNormalize(venv, training=True, norm_obs=self.normalize_obs, norm_reward=self.normalize_reward,
                          gamma=gamma)
        if norm is not None:
            vn.obs_rms = norm.to_running_mean_std()
        if ret_rms is not None:
            vn.ret_rms = ret_rms
        return vn

    # ------------------------------------------------------------------ interface

    @property
    def num_timesteps(self) -> int:
        """Environment steps taken in training so far (all envs)."""
        return int(self.model.num_timesteps)

    @property
    def obs_normalization(self) -> ObsNormalization | None:
        """The statistics ``act`` normalises with (live while training, frozen once loaded)."""
        if isinstance(self.venv, VecNormalize) and self.venv.norm_obs:
            return ObsNormalization.from_vecnormalize(self.venv)
        return self._frozen_norm

    def reset(self, env: gym.Env | None = None) -> None:
        """Start of an evaluation episode (stateless policy: nothing to do)."""

    def act(self, obs: np.ndarray, info: dict | None = None):
        """Deterministic action for one observation; never updates the normalisation statistics."""
        obs = np.asarray(obs, dtype=np.float32)
        if isinstance(self.venv, VecNormalize) and self.venv.norm_obs:
            obs = self.venv.normalize_obs(obs)
        elif self._frozen_norm is not None:
            obs = self._frozen_norm.apply(obs)
        action, _ = self._predict(obs, info)
        return int(action) if self.discrete else np.asarray(action, dtype=np.float32)

    def _predict(self, obs, info):
        return self.model.predict(obs, deterministic=True)

    def learn(self, make_env: Callable[[], gym.Env] | None, budget: int,
              callback: BaseCallback | list[BaseCallback] | None = None) -> "SB3Agent":
        """Train until ``budget`` environment steps in all (a loaded checkpoint continues where it stopped).

        ``make_env``: None or the factory the agent was built (or loaded) on; SB3
        keeps its vectorised copies of that env, with their normalisation.
        """
        if self.venv is None:
            raise RuntimeError(f"{self.name}: loaded without make_env, so it can act but not learn")
        if make_env is not None and make_env is not getattr(self, "_make_env", make_env):
            raise ValueError(f"{self.name}: learn(make_env=...) must be None or the factory the agent was built on "
                             "(SB3 trains on the vectorised copies it made of it)")
        remaining = int(budget) - self.num_timesteps
        if remaining > 0:
            self.model.learn(remaining, callback=callback, reset_num_timesteps=False, progress_bar=False)
        return self

    def clone(self, observations: np.ndarray, masks: np.ndarray, actions: np.ndarray, *, epochs: int = 30,
              learning_rate: float = 1e-3, batch_size: int = 256, seed: int = 0) -> float:
        """Fit the policy to ``actions`` (behaviour cloning: cross-entropy, action masks applied where the
        algorithm uses them); returns the fitted policy's accuracy on the data (argmax). The observation
        statistics restart from the data's. On-policy discrete algorithms only (PPO, MaskablePPO)."""
        import torch

        if not (self.discrete and self.on_policy):
            raise TypeError(f"{self.algo}: cloning needs a discrete on-policy algorithm (ppo, maskable_ppo)")
        observations = np.asarray(observations, dtype=np.float32)
        if isinstance(self.venv, VecNormalize) and self.venv.norm_obs:
            rms = self.venv.obs_rms
            rms.mean = observations.mean(axis=0).astype(np.float64)
            rms.var = observations.var(axis=0).astype(np.float64)
            rms.count = float(len(observations))
            observations = self.venv.normalize_obs(observations)
        policy = self.model.policy
        masked = self.algo == "maskable_ppo"
        x = torch.as_tensor(observations, device=policy.device)
        y = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=policy.device)
        masks = np.asarray(masks, dtype=bool)
        optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
        generator = torch.Generator().manual_seed(int(seed))

        def distribution(rows):
            if masked:
                return policy.get_distribution(x[rows], action_masks=masks[rows.numpy()])
            return policy.get_distribution(x[rows])
        policy.set_training_mode(True)
        for _ in range(int(epochs)):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), int(batch_size)):
                rows = order[i:i + int(batch_size)]
                loss = -distribution(rows).log_prob(y[rows]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        policy.set_training_mode(False)
        with torch.no_grad():
            chosen = distribution(torch.arange(len(x))).distribution.probs.argmax(dim=1)
        return float((chosen == y).float().mean())

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): params.npz + manifest.json."""
        from .export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)

    def set_logger(self, logger: Logger) -> None:
        self.model.set_logger(logger)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model and normalisation statistics to one ``.zip``, atomically."""
        path = Path(path)
        with atomic_path(path, ".zip") as tmp:
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(_META, json.dumps(self._meta(), indent=1))
        return path

    def _meta(self) -> dict:
        norm = self.obs_normalization
        ret = None
        if isinstance(self.venv, VecNormalize) and self.venv.norm_reward:
            r = self.venv.ret_rms
            ret = {"mean": np.asarray(r.mean).tolist(), "var": np.asarray(r.var).tolist(), "count": float(r.count)}
        return {"format": _FORMAT, "algo": self.algo, "name": self.name, "seed": self.seed, "n_envs": self.n_envs,
                "normalize_obs": self.normalize_obs, "normalize_reward": self.normalize_reward,
                "action_noise": None if self.action_noise is None else asdict(self.action_noise),
                "hyperparams": self.hyperparams, "obs_normalization": None if norm is None else norm.to_json(),
                "ret_rms": ret}

    @classmethod
    def load(cls, path: str | os.PathLike, make_env: Callable[[], gym.Env] | None = None, *,
             seed: int | None = None, device: str = "cpu") -> "SB3Agent":
        """Load an agent saved by :meth:`save`. Unpickles: load only files you trust.

        Without ``make_env`` the agent can act (normalisation frozen) but not
        learn; with it, training continues from the saved step count (the
        normalisation statistics keep updating, from their saved values).
        """
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read(_META))
        except (FileNotFoundError, KeyError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not an agent saved by agents.sb3 ({err})") from None
        target = SB3_AGENTS.get(meta["algo"])
        if target is None or not issubclass(target, cls):
            raise ValueError(f"{path}: holds a {meta['algo']!r} agent, not a {cls.algo or 'SB3'} one")
        agent = target.__new__(target)
        agent.name, agent.seed, agent.n_envs = meta["name"], int(meta["seed"] if seed is None else seed), meta["n_envs"]
        agent.normalize_obs, agent.normalize_reward = meta["normalize_obs"], meta["normalize_reward"]
        agent.action_noise = None if meta["action_noise"] is None else ActionNoiseSpec(**meta["action_noise"])
        agent.hyperparams = meta["hyperparams"]
        norm = None if meta["obs_normalization"] is None else ObsNormalization.from_json(meta["obs_normalization"])
        agent._frozen_norm = norm
        agent._make_env = make_env
        if make_env is None:
            agent.venv = None
            agent.model = target._algorithm_class().load(path, device=device)
            return agent
        ret_rms = None
        if meta["ret_rms"] is not None:
            ret_rms = ObsNormalization(np.asarray(meta["ret_rms"]["mean"]), np.asarray(meta["ret_rms"]["var"]),
                                       meta["ret_rms"]["count"]).to_running_mean_std()
        agent.venv = agent._make_venv(make_env, agent.seed, norm, ret_rms)
        agent.model = target._algorithm_class().load(path, env=agent.venv, device=device)
        agent.model.set_logger(_silent_logger())
        agent.model.set_random_seed(agent.seed)
        return agent

    # ------------------------------------------------------------------ checkpoints

    @property
    def has_replay_buffer(self) -> bool:
        return getattr(self.model, "replay_buffer", None) is not None

    def save_replay_buffer(self, path: str | os.PathLike) -> None:
        """Pickle the replay buffer (off-policy only), atomically."""
        with atomic_path(Path(path), ".pkl") as tmp:
            self.model.save_replay_buffer(tmp)

    def load_replay_buffer(self, path: str | os.PathLike) -> None:
        """Restore a replay buffer written by :meth:`save_replay_buffer`. Unpickles: trusted files only."""
        self.model.load_replay_buffer(path)


class DDPGAgent(SB3Agent):
    """Deep deterministic policy gradient (Lillicrap et al. 2016), SB3's implementation."""

    algo = "ddpg"

    @classmethod
    def _algorithm_class(cls):
        return DDPG


class TD3Agent(SB3Agent):
    """Twin delayed DDPG (Fujimoto et al. 2018), SB3's implementation."""

    algo = "td3"

    @classmethod
    def _algorithm_class(cls):
        return TD3


class MaskablePPOAgent(SB3Agent):
    """PPO that never samples a masked action (sb3-contrib); the mask comes from ``info["action_mask"]``.

    In training, masks come from the env's ``action_masks()`` method. In
    :meth:`act`, ``info["action_mask"]`` is used when given; without it the
    agent acts unmasked (the env then serves the nearest allowed action).
    """

    algo = "maskable_ppo"
    discrete = True
    on_policy = True

    @classmethod
    def _algorithm_class(cls):
        from sb3_contrib import MaskablePPO

        return MaskablePPO

    def _predict(self, obs, info):
        mask = None if info is None else info.get("action_mask")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
        return self.model.predict(obs, deterministic=True, action_masks=mask)


class PPOAgent(SB3Agent):
    """Proximal policy optimisation (Schulman et al. 2017), SB3's implementation; no action mask."""

    algo = "ppo"
    discrete = True
    on_policy = True

    @classmethod
    def _algorithm_class(cls):
        return PPO


class DQNAgent(SB3Agent):
    """Deep Q-network (Mnih et al. 2015), SB3's implementation (epsilon-greedy exploration); no action mask."""

    algo = "dqn"
    discrete = True

    @classmethod
    def _algorithm_class(cls):
        return DQN


#: Algorithm name (as in experiment configs) -> agent class.
SB3_AGENTS: dict[str, type[SB3Agent]] = {"ddpg": DDPGAgent, "td3": TD3Agent, "maskable_ppo": MaskablePPOAgent,
                                         "ppo": PPOAgent, "dqn": DQNAgent}


def make_sb3_agent(algo: str, make_env: Callable[[], gym.Env], **kwargs: Any) -> SB3Agent:
    """Build the agent of algorithm ``algo`` (a key of :data:`SB3_AGENTS`)."""
    try:
        cls = SB3_AGENTS[algo]
    except KeyError:
        raise ValueError(f"algo: expected one of {', '.join(SB3_AGENTS)}, got {algo!r}") from None
    return cls(make_env, **kwargs)


class SB3Kind:
    """The SB3 agents in the experiments harness (``agents.registry`` kind ``sb3``; the ``rl`` extra).

    Settings: the algorithm's constructor arguments plus policy, n_envs,
    normalize_obs, normalize_reward and action_noise. Budgets are whole
    rollouts (on-policy) or whole ``train_freq`` chunks (off-policy).
    """

    saved_as = "model.zip"
    uses_torch = True
    #: SB3 reports losses through its logger and steps through BaseCallbacks (experiments.callbacks)
    sb3_callbacks = True
    _RESERVED = {"self", "policy", "env", "seed", "device", "verbose", "action_noise", "tensorboard_log",
                 "_init_setup_model"}

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        import inspect
        import typing

        init = SB3_AGENTS[algo]._algorithm_class().__init__
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references: names only
            hints = {}
        return {n: hints.get(n, Any) for n in inspect.signature(init).parameters if n not in self._RESERVED}

    def check(self, algo: str, settings: Any) -> None:
        """Every setting's type and range, before anything is built (SB3 would refuse some only when
        training starts, and take others, gamma 2 or batch_size 0, without a word)."""
        from .protocol import SettingError

        cls = SB3_AGENTS[algo]
        if cls.discrete and settings.action_noise is not None:
            raise SettingError("action_noise", f"null ({algo} has discrete actions: it explores by its own rule)")
        if settings.action_noise is not None and settings.action_noise.kind not in ActionNoiseSpec.KINDS:
            raise SettingError("action_noise", "kind 'normal' or 'ornstein-uhlenbeck'")
        aliases = cls._algorithm_class().policy_aliases
        if settings.policy not in aliases:
            raise SettingError("policy", f"one of {', '.join(aliases)}")
        hp = settings.hyperparams
        for key, value in hp.items():
            rule = _RANGES.get(key)
            if rule is not None and not (value is None and rule[2]):
                _check_range(key, value, *rule[:2], *rule[3:])
            if key.endswith("_class") and value is not None:
                raise SettingError(key, "null (classes cannot be named in a config)")
            if key.endswith("_kwargs") and key != "policy_kwargs" and value is not None and not isinstance(value, dict):
                raise SettingError(key, "a mapping or null")
        if cls.on_policy and hp.get("normalize_advantage", True):
            if hp.get("batch_size", 64) < 2:
                raise SettingError("batch_size", "an integer >= 2 (advantages are normalised per minibatch)")
            if hp.get("n_steps", 2048) * settings.n_envs < 2:
                raise SettingError("n_steps", "n_steps x n_envs >= 2 (advantages are normalised per minibatch)")
        if hp.get("optimize_memory_usage"):
            raise SettingError("optimize_memory_usage", "false (SB3's memory-optimised buffer does not handle "
                                                        "time-limit truncation)")
        _check_policy_kwargs(algo, aliases[settings.policy], hp.get("policy_kwargs"))

    def imitates(self, algo: str) -> bool:
        """Whether ``algo`` can clone a teacher before training (``SB3Agent.clone``)."""
        return SB3_AGENTS[algo].discrete and SB3_AGENTS[algo].on_policy

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        """The algorithm's action space against the env's (DDPG/TD3: Box; PPO, MaskablePPO, DQN: Discrete)."""
        from .protocol import SettingError

        cls = SB3_AGENTS[algo]
        space = spaces.action_space
        if spaces.parallel:
            raise SettingError("algo", f"a multi-agent algorithm ({algo} acts for one agent)")
        if cls.discrete != isinstance(space, gym.spaces.Discrete) or not isinstance(
                space, (gym.spaces.Discrete, gym.spaces.Box)):
            need = "a Discrete" if cls.discrete else "a Box"
            hint = "false" if cls.discrete else "true"
            raise SettingError("env_kwargs", f"an env with {need} action space for {algo}, got one with {space} "
                                             f"(LayerSplit-v0: env_kwargs: {{continuous: {hint}}})")
        if settings.hyperparams.get("use_sde") and not isinstance(space, gym.spaces.Box):
            raise SettingError("use_sde", f"false (state-dependent exploration needs a Box action space, the env "
                                          f"has {space})")

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        import inspect

        from .protocol import SettingError

        cls, n_envs = SB3_AGENTS[algo], settings.n_envs
        if cls.on_policy:
            rollout = settings.hyperparams.get("n_steps", 2048) * n_envs
            return rollout, f"n_steps x n_envs = {rollout} (PPO rollouts)"
        freq = settings.hyperparams.get("train_freq", inspect.signature(cls._algorithm_class().__init__)
                                        .parameters["train_freq"].default)
        if isinstance(freq, (list, tuple)):
            if len(freq) != 2 or freq[1] != "step":
                raise SettingError("train_freq", f"an integer or [n, 'step'] (checkpoints and budgets count steps), "
                                                 f"got {freq!r}")
            freq = freq[0]
        if not isinstance(freq, int) or isinstance(freq, bool) or freq < 1:
            raise SettingError("train_freq", f"an integer >= 1, got {freq!r}")
        if freq == 1:
            return n_envs, f"n_envs = {n_envs}"
        return freq * n_envs, f"train_freq x n_envs = {freq * n_envs} (steps between updates)"

    def build(self, algo: str, make_env: Callable[[], gym.Env], *, seed: int, name: str, settings: Any) -> SB3Agent:
        noise = settings.action_noise
        spec = None if noise is None else ActionNoiseSpec(kind=noise.kind, sigma=noise.sigma, theta=noise.theta,
                                                          dt=noise.dt)
        return make_sb3_agent(algo, make_env, seed=seed, name=name, policy=settings.policy, n_envs=settings.n_envs,
                              normalize_obs=settings.normalize_obs, normalize_reward=settings.normalize_reward,
                              action_noise=spec, **_resolved(settings.hyperparams))

    def load(self, algo: str, path, make_env: Callable[[], gym.Env] | None = None, seed: int | None = None
             ) -> SB3Agent:
        return SB3Agent.load(path, make_env, seed=seed)


#: Number ranges of SB3 settings: key -> (low, high, None allowed, low open, high open, integer); None: no bound.
_RANGES: dict[str, tuple] = {
    "learning_rate": (0.0, None, False, True, False, False),
    "gamma": (0.0, 1.0, False, False, False, False),
    "gae_lambda": (0.0, 1.0, False, False, False, False),
    "tau": (0.0, 1.0, False, True, False, False),
    "clip_range": (0.0, None, False, True, False, False),
    "clip_range_vf": (0.0, None, True, True, False, False),
    "target_kl": (0.0, None, True, True, False, False),
    "ent_coef": (0.0, None, False, False, False, False),
    "vf_coef": (0.0, None, False, False, False, False),
    "max_grad_norm": (0.0, None, False, True, False, False),
    "exploration_fraction": (0.0, 1.0, False, False, False, False),
    "exploration_initial_eps": (0.0, 1.0, False, False, False, False),
    "exploration_final_eps": (0.0, 1.0, False, False, False, False),
    "target_policy_noise": (0.0, None, False, False, False, False),
    "target_noise_clip": (0.0, None, False, False, False, False),
    "n_steps": (1, None, False, False, False, True),
    "batch_size": (1, None, False, False, False, True),
    "n_epochs": (1, None, False, False, False, True),
    "buffer_size": (1, None, False, False, False, True),
    "learning_starts": (0, None, False, False, False, True),
    "target_update_interval": (1, None, False, False, False, True),
    "policy_delay": (1, None, False, False, False, True),
    "stats_window_size": (1, None, False, False, False, True),
    "sde_sample_freq": (-1, None, False, False, False, True),
    "gradient_steps": (1, None, False, False, False, True),  # or -1: as many as steps taken
}
#: Activation names a config may give (``policy_kwargs.activation_fn``), besides ``module:Class``.
ACTIVATIONS = ("relu", "tanh", "elu")


def _check_range(key: str, value: Any, low, high, low_open: bool, high_open: bool, integer: bool) -> None:
    import math

    from .protocol import SettingError

    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    expected = (f"an integer {lo}" if integer else
                f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                if high is not None else f"a number {lo}").strip()
    if key == "learning_rate":
        expected += " (schedules are not configurable)"
    if key == "gradient_steps":
        expected += " or -1 (as many as the steps taken)"
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if key == "gradient_steps":
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)
    if not ok:
        raise SettingError(key, expected)


def _positive_ints(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                    for v in value)


def _check_policy_kwargs(algo: str, policy_cls, pk: Any) -> None:
    """``policy_kwargs``: a mapping of the policy class's arguments; net_arch and activation_fn as SB3 takes
    them from a config (a list of layer sizes, or per network ``{pi: [...], vf|qf: [...]}``; a name)."""
    import inspect

    from .protocol import SettingError

    if pk is None:
        return
    if not isinstance(pk, dict):
        raise SettingError("policy_kwargs", "a mapping of policy arguments (e.g. {net_arch: [64, 64]})")
    known = [n for n in inspect.signature(policy_cls.__init__).parameters
             if n not in ("self", "observation_space", "action_space", "lr_schedule")]
    for key, value in pk.items():
        where = f"policy_kwargs.{key}"
        if key not in known:
            raise SettingError(where, f"a key of {policy_cls.__name__}: one of {', '.join(known)}; got {key!r}")
        if key == "net_arch":
            nets = ("pi", "vf") if SB3_AGENTS[algo].on_policy else ("pi", "qf")
            if algo == "dqn":
                if not _positive_ints(value):
                    raise SettingError(where, "a list of layer sizes (integers >= 1)")
            elif isinstance(value, dict):
                if not value or set(value) - set(nets) or not all(_positive_ints(v) for v in value.values()):
                    raise SettingError(where, f"a list of layer sizes (integers >= 1) or a mapping "
                                              f"{{{': [...], '.join(nets)}: [...]}} of such lists")
            elif not _positive_ints(value):
                raise SettingError(where, f"a list of layer sizes (integers >= 1) or a mapping "
                                          f"{{{': [...], '.join(nets)}: [...]}} of such lists")
        elif key == "activation_fn":
            if not isinstance(value, str):
                raise SettingError(where, f"one of {', '.join(ACTIVATIONS)} or 'module:Class'")
            try:
                _activation(value)
            except ValueError as err:
                raise SettingError(where, str(err).split(": expected ", 1)[-1]) from None
        elif key.endswith("_class") and value is not None:
            raise SettingError(where, "null (classes cannot be named in a config)")
        elif key.endswith("_kwargs") and value is not None and not isinstance(value, dict):
            raise SettingError(where, "a mapping or null")
        elif key in ("ortho_init", "use_sde", "full_std", "use_expln", "squash_output", "share_features_extractor",
                     "normalize_images") and not isinstance(value, bool):
            raise SettingError(where, "true or false")
        elif key == "n_critics" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise SettingError(where, "an integer >= 1")
        elif key == "log_std_init":
            _check_range(where, value, None, None, False, False, False)


def _activation(name: str):
    """``policy_kwargs.activation_fn`` by name ("relu", "torch.nn:ReLU") -> the torch module class."""
    import importlib

    import torch.nn as nn

    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"policy_kwargs.activation_fn: expected one of {', '.join(ACTIVATIONS)} or an "
                             f"importable 'module:Class', got {name!r} ({err})") from None
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ValueError(f"policy_kwargs.activation_fn: expected a torch.nn.Module class, got {name!r}")
        return found
    named = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
    if name.lower() not in named:
        raise ValueError(f"policy_kwargs.activation_fn: expected one of {', '.join(ACTIVATIONS)} or "
                         f"'module:Class', got {name!r}")
    return named[name.lower()]


def _resolved(hyperparams: dict) -> dict:
    """Config values SB3 takes as objects: ``policy_kwargs.activation_fn`` named ("relu", "torch.nn:ReLU")."""
    hp = dict(hyperparams)
    pk = dict(hp.get("policy_kwargs") or {})
    name = pk.get("activation_fn")
    if isinstance(name, str):
        pk["activation_fn"] = _activation(name)
        hp["policy_kwargs"] = pk
    return hp


KIND = SB3Kind()
