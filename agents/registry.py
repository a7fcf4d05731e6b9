"""Algorithm name (as in experiment configs) -> agent family: one registration per algorithm.

Each entry says how to build the agent on an env factory, how to load a
saved one, and whether it acts for one agent (Gymnasium envs) or for every
agent of a PettingZoo env. Families import lazily: listing the names needs
neither torch nor SB3.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["AgentFamily", "AGENTS", "agent_family", "check_algo_for_env"]


@dataclass(frozen=True)
class AgentFamily:
    """How to build and load the agents of one algorithm."""

    algo: str  #: the name in configs
    module: str  #: where the family lives (imported on first use)
    multi_agent: bool = False  #: acts for every agent of a PettingZoo env
    online: bool = False  #: can learn while it is evaluated (a bandit's online pass)
    extra: str = ""  #: the optional dependencies it needs ("rl": torch, SB3)

    def build(self, make_env: Callable[[], Any], *, seed: int, name: str, **settings: Any):
        module = importlib.import_module(self.module)
        if self.module == "agents.bandit_agent":
            return module.BanditAgent(self.algo, make_env, seed=seed, name=name, **settings)
        return module.make_sb3_agent(self.algo, make_env, seed=seed, name=name, **settings)

    def load(self, path, make_env: Callable[[], Any] | None = None, seed: int | None = None):
        module = importlib.import_module(self.module)
        if self.module == "agents.bandit_agent":
            return module.BanditAgent.load(path, make_env)
        return module.SB3Agent.load(path, make_env, seed=seed)


AGENTS: dict[str, AgentFamily] = {
    "ddpg": AgentFamily("ddpg", "agents.sb3", extra="rl"),
    "td3": AgentFamily("td3", "agents.sb3", extra="rl"),
    "maskable_ppo": AgentFamily("maskable_ppo", "agents.sb3", extra="rl"),
    "linucb": AgentFamily("linucb", "agents.bandit_agent", online=True),
    "lints": AgentFamily("lints", "agents.bandit_agent", online=True),
    "epsilon_greedy": AgentFamily("epsilon_greedy", "agents.bandit_agent", online=True),
    "cost_aware_linucb": AgentFamily("cost_aware_linucb", "agents.bandit_agent", online=True),
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
    if family.multi_agent != multi_env:
        kind, need = ("multi-agent", "single-agent") if multi_env else ("single-agent", "multi-agent")
        fits = [a for a, f in AGENTS.items() if f.multi_agent == multi_env]
        raise ValueError(f"{where}: {algo!r} is a {need} algorithm and {env_id} is a {kind} env; expected one of: "
                         f"{', '.join(fits) or '(none registered yet)'}")
