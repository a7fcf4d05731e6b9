"""Algorithm name (as in experiment configs) -> agent family: one registration per algorithm.

Each entry names the algorithm's kind (``KINDS``: how the harness
configures, builds and loads it, an :class:`agents.protocol.AgentKind`) and
whether it acts for one agent (Gymnasium envs) or for every agent of a
PettingZoo env. A new kind of agent is one ``KINDS`` entry (its module's
``KIND`` object) plus its ``AGENTS`` entries. Kinds import lazily: listing
the names needs neither torch nor SB3.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["AgentFamily", "KINDS", "AGENTS", "agent_family", "check_algo_for_env"]

#: Agent kind -> ``module:object`` implementing :class:`agents.protocol.AgentKind`.
KINDS: dict[str, str] = {
    "sb3": "agents.sb3:KIND",  # DDPG, TD3, PPO, DQN, MaskablePPO; needs the 'rl' extra; saves a pickled zip
    "bandit": "agents.bandit_agent:KIND",  # contextual bandits and the quality router; numpy only; npz + JSON
    "madrl": "agents.madrl:KIND",  # MAPPO, IPPO, federated IPPO, MADDPG on PettingZoo envs; torch; npz + JSON
    "aif": "agents.active_inference:KIND",  # deep active inference (ensemble model, EFE planning); torch; npz + JSON
    "pymdp": "agents.active_inference:PYMDP_KIND",  # discrete active inference with pymdp; JAX ('aif' extra)
    "rllib": "agents.rllib:KIND",  # RLlib PPO on Ray, single- or multi-agent ('ray' extra); actor as npz + JSON
}


@dataclass(frozen=True)
class AgentFamily:
    """How to build and load the agents of one algorithm."""

    algo: str  #: the name in configs
    kind: str  #: a key of :data:`KINDS`
    multi_agent: bool | None = False  #: acts for every agent of a PettingZoo env (None: on either kind of env)
    online: bool = False  #: can learn while it is evaluated (a bandit's online pass)

    @property
    def impl(self):
        """The kind's :class:`agents.protocol.AgentKind` (imported on first use)."""
        module, _, attr = KINDS[self.kind].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as err:
            raise ImportError(f"algo {self.algo!r} (kind {self.kind}) cannot be imported: {err}"
                              + (" (install the 'rl' extra: torch, stable-baselines3, sb3-contrib)"
                                 if self.kind == "sb3" else "")) from err

    def build(self, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any):
        """A fresh agent for ``settings`` (an ``experiments.config.AgentConfig``)."""
        return self.impl.build(self.algo, make_env, seed=seed, name=name, settings=settings)

    def load(self, path, make_env: Callable[[], Any] | None = None, seed: int | None = None, **options: Any):
        """A saved agent; ``options`` go to kinds that take them (``device`` for the MADRL learners)."""
        return self.impl.load(self.algo, path, make_env, seed=seed, **options)


AGENTS: dict[str, AgentFamily] = {
    "ddpg": AgentFamily("ddpg", "sb3"),
    "td3": AgentFamily("td3", "sb3"),
    "maskable_ppo": AgentFamily("maskable_ppo", "sb3"),
    "ppo": AgentFamily("ppo", "sb3"),
    "dqn": AgentFamily("dqn", "sb3"),
    "linucb": AgentFamily("linucb", "bandit", online=True),
    "lints": AgentFamily("lints", "bandit", online=True),
    "epsilon_greedy": AgentFamily("epsilon_greedy", "bandit", online=True),
    "cost_aware_linucb": AgentFamily("cost_aware_linucb", "bandit", online=True),
    "quality_router": AgentFamily("quality_router", "bandit", online=True),
    "mappo": AgentFamily("mappo", "madrl", multi_agent=True),
    "ippo": AgentFamily("ippo", "madrl", multi_agent=True),
    "fedppo": AgentFamily("fedppo", "madrl", multi_agent=True),
    "maddpg": AgentFamily("maddpg", "madrl", multi_agent=True),
    "deep_aif": AgentFamily("deep_aif", "aif"),
    "pymdp_aif": AgentFamily("pymdp_aif", "pymdp"),
    "rllib_ppo": AgentFamily("rllib_ppo", "rllib", multi_agent=None),
}


def agent_family(algo: str) -> AgentFamily:
    if algo not in AGENTS:
        raise ValueError(f"algo: expected one of {', '.join(AGENTS)}, got {algo!r}")
    return AGENTS[algo]


def check_algo_for_env(algo: str, env_id: str, where: str = "algo") -> None:
    """Refuse a single-agent algorithm on a PettingZoo env or a multi-agent one on a Gymnasium env."""
    from offload_env import is_parallel_env

    family = agent_family(algo)
    multi_env = is_parallel_env(env_id)
    if family.multi_agent is not None and family.multi_agent != multi_env:
        kind, need = ("multi-agent", "single-agent") if multi_env else ("single-agent", "multi-agent")
        fits = [a for a, f in AGENTS.items() if f.multi_agent in (multi_env, None)]
        raise ValueError(f"{where}: {algo!r} is a {need} algorithm and {env_id} is a {kind} env; expected one of: "
                         f"{', '.join(fits) or '(none registered yet)'}")
