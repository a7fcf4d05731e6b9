"""The contextual-bandit routers of :mod:`agents.bandits` behind the agent protocol (:mod:`agents.protocol`).

Training a bandit is one online pass over the env for ``budget`` steps: act
on the observation, step, update on the served query's feedback. A
:class:`BanditAgent` also updates while it is evaluated when the harness asks
for an online evaluation (:meth:`observe`), as a bandit is judged
(cumulative reward and regret); a frozen evaluation only calls :meth:`act`.

The quality router (:mod:`agents.quality_router`) also reads the current
query's topic from the env (``query_topic()`` of the unwrapped env it
learns on, or is evaluated on through :meth:`BanditAgent.reset`), and learns
the served model's quality net of the latency penalty (``reward + lambda *
cost``, lambda the env's cost weight) and its cost; its own cost weight
defaults to the env's.

Saved as ``router.npz`` + ``router.json`` (the router's arrays and state) and
``agent.json`` (algo, name, seed, steps), never pickled.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offload_env.atomic import write_text

from . import bandits
from .protocol import SettingError
from .quality_router import QualityRouter

__all__ = ["BANDIT_ALGOS", "BanditAgent", "BanditKind", "KIND"]

#: Algorithm name (as in experiment configs) -> router class.
BANDIT_ALGOS: dict[str, type] = {
    "linucb": bandits.LinUCB,
    "lints": bandits.LinTS,
    "epsilon_greedy": bandits.EpsilonGreedy,
    "cost_aware_linucb": bandits.CostAwareLinUCB,
    "quality_router": QualityRouter,
}


class BanditAgent:
    """A linear contextual bandit on a discrete-action env whose observation is the context vector.

    ``params`` are the router's own (``alpha``, ``l2``, ``v``, ``epsilon``,
    ``budget_per_step``...); ``n_arms`` and ``n_features`` come from the env's
    spaces. The cost-aware router learns quality and cost separately, from
    ``info["quality"]`` and ``info["cost"]``; the others from the reward.
    """

    def __init__(self, algo: str, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None,
                 **params: Any):
        if algo not in BANDIT_ALGOS:
            raise ValueError(f"algo: expected one of {', '.join(BANDIT_ALGOS)}, got {algo!r}")
        env = make_env()
        space = env.action_space
        if not hasattr(space, "n") or len(env.observation_space.shape or ()) != 1:
            raise ValueError(f"{algo}: needs a Discrete action space and a 1-d observation, the env has "
                             f"{space} and {env.observation_space}")
        self.algo = algo
        self.name = name or algo
        self.seed = int(seed)
        self.params = dict(params)
        router = BANDIT_ALGOS[algo]
        kwargs = dict(params)
        if "seed" in inspect.signature(router).parameters:  # the randomised routers draw from the agent's seed
            kwargs.setdefault("seed", self.seed)
        base = env.unwrapped
        #: the env's cost weight: the quality router learns reward + this * cost (quality net of latency penalty)
        self.env_cost_weight = float(getattr(base, "cost_weight", 0.0))
        if router is QualityRouter:
            kwargs.setdefault("cost_weight", self.env_cost_weight)
            kwargs.setdefault("n_groups", len(getattr(base, "topic_names", ())))
        self.router = router(int(space.n), int(env.observation_space.shape[0]), **kwargs)
        env.close()
        self._topic_env = None
        self._group = None
        self._make_env = None
        self._env = None
        self._obs = self._info = None
        self._steps = 0

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: a bandit keeps what it learned (the quality router reads env's topics)."""
        if env is not None:
            self._topic_env = env.unwrapped

    def _query_topic(self) -> int | None:
        env = self._topic_env
        if not isinstance(self.router, QualityRouter) or not self.router.n_groups or env is None:
            return None
        topic = env.query_topic() if hasattr(env, "query_topic") else -1
        return topic if 0 <= topic < self.router.n_groups else None

    def act(self, obs, info: dict | None = None) -> int:
        x = np.asarray(obs, dtype=np.float64)
        if isinstance(self.router, QualityRouter):
            self._group = self._query_topic()  # observe() learns under the topic of the query acted on
            return self.router.act(x, self._group)
        return self.router.act(x)

    def observe(self, obs, action: int, reward: float, info: dict) -> None:
        """Update on the feedback of the query just served (``obs`` its context)."""
        x = np.asarray(obs, dtype=np.float64)
        if isinstance(self.router, QualityRouter):
            cost = float(info["cost"])
            served = int(info.get("model", action))  # once a budget is spent the cheapest model serves
            self.router.update(x, served, float(reward) + self.env_cost_weight * cost, cost=cost, group=self._group)
        elif self.algo == "cost_aware_linucb":
            self.router.update(x, action, float(info["quality"]), cost=float(info["cost"]))
        else:
            self.router.update(x, action, float(reward))

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "BanditAgent":
        """One online pass until ``budget`` steps in all; the env's episodes follow one seeded stream.

        ``callback(agent, info)`` runs after every step; returning False stops early.
        """
        if make_env is not None and make_env is not self._make_env:
            self._make_env, self._env = make_env, make_env()
            self._obs, self._info = self._env.reset(seed=self.seed)
        if self._env is not None:
            self._topic_env = self._env.unwrapped
        if self._env is None:
            raise RuntimeError(f"{self.name}: learn needs make_env the first time")
        while self._steps < int(budget):
            action = self.act(self._obs, self._info)
            obs, reward, terminated, truncated, info = self._env.step(action)
            self.observe(self._obs, action, reward, info)
            self._steps += 1
            self._obs, self._info = (obs, info) if not (terminated or truncated) else self._env.reset()
            if callback is not None and callback(self, info) is False:
                break
        return self

    def snapshot(self) -> "BanditAgent":
        """A copy that acts and learns without touching this agent (its generator state included)."""
        twin = copy.copy(self)
        twin.router = copy.deepcopy(self.router)
        twin._make_env = twin._env = twin._obs = twin._info = twin._topic_env = None
        return twin

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.router.save(folder / "router")
        write_text(folder / "agent.json", json.dumps({"algo": self.algo, "name": self.name, "seed": self.seed,
                                                     "num_timesteps": self._steps, "params": self.params,
                                                     "env_cost_weight": self.env_cost_weight},
                                                    indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None, **_: Any) -> "BanditAgent":
        """Read an agent written by :meth:`save` (no pickle); ``make_env`` is needed only to learn further."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "agent.json").read_text())
        except FileNotFoundError:
            raise ValueError(f"{folder}: not a bandit agent folder (no agent.json)") from None
        agent = cls.__new__(cls)
        agent.algo, agent.name, agent.seed = meta["algo"], meta["name"], int(meta["seed"])
        agent.params = meta["params"]
        agent.env_cost_weight = float(meta.get("env_cost_weight", 0.0))
        router = BANDIT_ALGOS.get(agent.algo)
        agent.router = router.load(folder / "router") if router is not None else bandits.load(folder / "router")
        agent._topic_env = agent._group = None
        agent._make_env, agent._env, agent._obs, agent._info = None, None, None, None
        agent._steps = int(meta["num_timesteps"])
        if make_env is not None:
            agent._make_env, agent._env = make_env, make_env()
            agent._obs, agent._info = agent._env.reset(seed=agent.seed + agent._steps)
            agent._topic_env = agent._env.unwrapped
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): params.npz + manifest.json."""
        from .export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)


class BanditKind:
    """The bandits in the experiments harness (``agents.registry`` kind ``bandit``): one online pass, no torch."""

    saved_as = "agent"
    uses_torch = False

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        init = BANDIT_ALGOS[algo].__init__
        hints = typing.get_type_hints(init)
        return {n: hints.get(n, Any) for n in inspect.signature(init).parameters
                if n not in ("self", "n_arms", "n_features", "seed")}

    def check(self, algo: str, settings: Any) -> None:
        if settings.n_envs != 1:
            raise SettingError("n_envs", "1 (a bandit makes one online pass)")
        if settings.action_noise is not None:
            raise SettingError("action_noise", "null (bandits explore by their own rule)")
        if settings.normalize_reward:
            raise SettingError("normalize_reward", "false (bandits learn from the raw reward)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' (the default: {algo} has no policy network)")
        router = BANDIT_ALGOS[algo]
        missing = [n for n, p in inspect.signature(router).parameters.items()
                   if p.default is inspect.Parameter.empty and n not in ("n_arms", "n_features")
                   and n not in settings.hyperparams]
        if missing:
            raise SettingError(missing[0], f"a value (required by {algo})")
        try:  # the router checks its own settings: build one on a stand-in space (2 arms, 2 features)
            router(2, 2, **settings.hyperparams)
        except (TypeError, ValueError) as err:
            key, _, rest = str(err).partition(": expected ")
            if rest and key in settings.hyperparams:
                raise SettingError(key, rest) from None
            raise SettingError(next(iter(settings.hyperparams), "algo"), str(err)) from None

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        """A bandit needs a Discrete action space (the arms) and a 1-d observation (the context)."""
        if spaces.parallel or not hasattr(spaces.action_space, "n") or len(spaces.observation_space.shape or ()) != 1:
            raise SettingError("algo", f"an algorithm for this env ({algo} needs a Discrete action space and a 1-d "
                                       f"observation, the env has {spaces.action_space} and "
                                       f"{spaces.observation_space})")

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        return 1, ""

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any) -> BanditAgent:
        return BanditAgent(algo, make_env, seed=seed, name=name, **settings.hyperparams)

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None
             ) -> BanditAgent:
        return BanditAgent.load(path, make_env)


KIND = BanditKind()
