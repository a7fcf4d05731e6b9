"""Algorithm name (as in experiment configs) -> agent family: one registration per algorithm.

Each entry says how to build the agent on an env factory, how to load a
saved one, and whether it acts for one agent (Gymnasium envs) or for every
agent of a PettingZoo env. Families import lazily: listing the names needs
neither torch nor SB3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["AgentFamily", "AGENTS", "agent_family", "check_algo_for_env"]


@dataclass(frozen=True)
class AgentFamily:
    """How to build and load the agents of one algorithm."""

    algo: str  #: the name in configs
    kind: str  #: "sb3" (agents.sb3: needs the 'rl' extra, saves a pickled zip) or "bandit" (agents.bandit_agent)
    multi_agent: bool = False  #: acts for every agent of a PettingZoo env
    online: bool = False  #: can learn while it is evaluated (a bandit's online pass)

    @property
    def sb3(self) -> bool:
        return self.kind == "sb3"

    def build(self, make_env: Callable[[], Any], *, seed: int, name: str, **settings: Any):
        if self.sb3:
            from .sb3 import make_sb3_agent

            return make_sb3_agent(self.algo, make_env, seed=seed, name=name, **settings)
        from .bandit_agent import BanditAgent

        return BanditAgent(self.algo, make_env, seed=seed, name=name, **settings)

    def load(self, path, make_env: Callable[[], Any] | None = None, seed: int | None = None):
        if self.sb3:
            from .sb3 import SB3Agent

            return SB3Agent.load(path, make_env, seed=seed)
        from .bandit_agent import BanditAgent

        return BanditAgent.load(path, make_env)


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
