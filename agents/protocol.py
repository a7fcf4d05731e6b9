"""The one agent protocol every learned agent follows (SB3 learners, bandits, and the families to come).

An agent is built on an env factory (it reads the spaces from it) and then:

| method | what it does |
|---|---|
| ``reset(env)`` | start of an evaluation episode (stateless policies do nothing) |
| ``act(obs, info) -> action`` | one decision; ``info`` is the last info dict (it holds ``action_mask``) |
| ``learn(make_env, budget, callback=None)`` | train until ``budget`` env steps in all (a loaded agent continues) |
| ``num_timesteps`` | env steps learned from so far |
| ``save(folder)`` / ``Agent.load(folder, make_env=None)`` | the whole agent state in a folder |
| ``export(path)`` | the pickle-free artifact for the edge router (the export issue fills it) |

Agents that also learn while they are evaluated (bandits, judged on one
online pass) implement :class:`OnlineAgent`: ``observe(obs, action, reward,
info)`` after each step of that pass.

A multi-agent agent (``multi_agent=True`` in ``agents.registry``; PettingZoo
envs) keeps the same methods with dicts keyed by agent id:
``act(observations, infos) -> {agent: action}`` for every live agent, and
``reset(env)`` receives the ParallelEnv; ``agents.vehicular_baselines.
evaluate_vehicular`` is its episode loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["Agent", "OnlineAgent", "ExportNotAvailable"]


class ExportNotAvailable(NotImplementedError):
    """This agent family has no pickle-free export yet."""


@runtime_checkable
class Agent(Protocol):
    name: str

    @property
    def num_timesteps(self) -> int: ...

    def reset(self, env: Any = None) -> None: ...

    def act(self, obs: Any, info: dict | None = None) -> Any: ...

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Any = None) -> "Agent": ...

    def save(self, folder: str | os.PathLike) -> Path: ...

    def export(self, path: str | os.PathLike) -> Path: ...


@runtime_checkable
class OnlineAgent(Agent, Protocol):
    def observe(self, obs: Any, action: Any, reward: float, info: dict) -> None: ...
