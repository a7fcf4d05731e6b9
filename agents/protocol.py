"""The one agent protocol every learned agent follows (SB3 learners, bandits, and the families to come).

An agent is built on an env factory (it reads the spaces from it) and then:

| method | what it does |
|---|---|
| ``reset(env)`` | start of an evaluation episode (stateless policies do nothing) |
| ``act(obs, info) -> action`` | one decision; ``info`` is the last info dict (it holds ``action_mask``) |
| ``learn(make_env, budget, callback=None)`` | train until ``budget`` env steps in all (a loaded agent continues) |
| ``num_timesteps`` | env steps learned from so far |
| ``save(folder)`` / ``Agent.load(folder, make_env=None)`` | the whole agent state in a folder |
| ``export(path, env_id=, env_kwargs=)`` | the pickle-free artifact for the edge router (``agents.export``) |

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

__all__ = ["Agent", "OnlineAgent", "AgentKind", "SettingError", "ExportNotAvailable"]


class ExportNotAvailable(NotImplementedError):
    """This agent family has no pickle-free export yet."""


class SettingError(ValueError):
    """One setting of an agent's config is invalid for its kind; the harness prefixes the config path."""

    def __init__(self, key: str, expected: str):
        super().__init__(f"{key}: expected {expected}")
        self.key, self.expected = key, expected


@runtime_checkable
class Agent(Protocol):
    name: str

    @property
    def num_timesteps(self) -> int: ...

    def reset(self, env: Any = None) -> None: ...

    def act(self, obs: Any, info: dict | None = None) -> Any: ...

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Any = None) -> "Agent": ...

    def save(self, folder: str | os.PathLike) -> Path: ...

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path: ...


@runtime_checkable
class OnlineAgent(Agent, Protocol):
    def observe(self, obs: Any, action: Any, reward: float, info: dict) -> None: ...


@runtime_checkable
class AgentKind(Protocol):
    """How the experiments harness configures, builds and loads one kind of agent (``agents.registry.KINDS``).

    ``settings`` is the agent's config (``experiments.config.AgentConfig``:
    ``hyperparams`` plus the harness keys n_envs, policy, normalize_obs,
    normalize_reward, action_noise). ``check`` sees every setting before
    anything is built or written: types, ranges and combinations the kind
    would otherwise refuse only when training starts (its SettingError key
    may be dotted, ``policy_kwargs.net_arch``). A new kind of agent (MADRL, active
    inference, RLlib) is one such object and its ``AGENTS`` entries.
    """

    saved_as: str  #: file or folder name of a saved agent inside a run or checkpoint folder
    uses_torch: bool  #: the harness sets torch's thread count for it

    def hyperparameters(self, algo: str) -> dict[str, Any]: ...  # name -> type hint of the algorithm's settings

    def check(self, algo: str, settings: Any) -> None: ...  # raise SettingError for a setting it cannot take

    # Optional: ``check_env(algo, spaces, settings)`` raises SettingError when the algorithm cannot act in
    # the env whose ``spaces.action_space`` / ``spaces.observation_space`` (a PettingZoo env's: its first
    # agent's; ``spaces.parallel`` tells which, ``spaces.env_id`` names the env) it would train on. The harness calls it at config load,
    # after building each distinct env once, so that no run starts with an agent its env cannot take.
    # Optional flags: ``sb3_callbacks`` (learn takes SB3 callbacks and a logger: agents.sb3) and
    # ``update_scalars`` (learn calls ``callback(agent, stats)`` after each update with its losses, which the
    # harness writes to TensorBoard as ``losses/<key>``: agents.madrl, agents.rllib); without it, learn calls
    # ``callback(agent, info)`` after each env step, which an env family's training trace reads (Routing's regret).
    # Optional flag ``uses_device``: build takes the config's ``device`` (cpu / auto / cuda[:N]) and ``load`` a
    # ``device=`` keyword (agents.madrl); the harness refuses any device but the CPU for the other kinds.
    # Optional: ``worker_cpus(settings)``, the CPUs of each Ray worker a run starts besides its own process
    # (agents.rllib), which a sweep reserves for each trial (experiments.sweep).

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]: ...  # budgets are multiples of it, and why

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any) -> Agent: ...

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None) -> Agent: ...
