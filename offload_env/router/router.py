"""``Router``: an exported policy behind a per-request ``decide`` that never raises while serving."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .artifact import Artifact, ArtifactError, read_artifact
from .policy import Policy, PolicyError, build_policy

__all__ = ["Decision", "RequestError", "NothingAllowed", "Router"]


class RequestError(ValueError):
    """A request field is missing or out of range; the message starts with the field's name."""

    @property
    def field(self) -> str:
        return str(self).split(":", 1)[0]


class NothingAllowed(RequestError):
    """The request's action mask allows no action: the safe default is the answer (not a malformed request)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the router decided: the env's ``action``, its ``label``, and whether it is the policy's own.

    ``label`` names a discrete action (the manifest's ``action.names``, e.g.
    ``"split 15"``); it is empty for a box action, whose numbers are the answer.

    ``ok`` is False when the safe default was returned instead; ``reason``
    then says why and ``error`` names the cause: ``request`` (a field
    missing or out of range; ``field`` names it), ``mask`` (the action mask
    allows nothing), ``policy`` (a non-finite output) or ``internal``.
    """

    action: Any
    label: str
    ok: bool = True
    reason: str = ""
    agent: str | None = None
    error: str = ""
    field: str = ""

    def to_json(self) -> dict:
        action = self.action.tolist() if isinstance(self.action, np.ndarray) else self.action
        out = {"action": action, "label": self.label, "ok": self.ok, "agent": self.agent}
        if not self.ok:
            out.update(reason=self.reason, error=self.error, field=self.field)
        return out


@dataclass
class Router:
    """A verified artifact's policy and the env's observation layout; see :meth:`decide`."""

    artifact: Artifact
    policy: Policy
    safe_default: Any
    builder: Any = field(default=None, repr=False)  #: request -> (observation, mask), the env's own layout
    _decided: dict = field(default_factory=dict, repr=False)  #: (action, agent) -> its Decision (discrete)
    _single: bool = field(default=True, repr=False)  #: a one-agent policy (no agent argument)
    _context: Any = field(default=None, repr=False)  #: request -> the policy's context fields (policy.context)
    _build: Any = field(default=None, repr=False)  #: builder.build, bound once (the hot path)
    _rule: Any = field(default=None, repr=False)  #: policy._decide, bound once

    @classmethod
    def from_artifact(cls, path: str | os.PathLike, safe_default: Any = None) -> "Router":
        """Load and verify the artifact at ``path`` (ArtifactError names what is wrong); ``safe_default``
        overrides the manifest's ``action.safe_default`` (what is served when a decision fails)."""
        artifact = read_artifact(path)
        m = artifact.manifest
        try:
            policy = build_policy(m["policy"], artifact.arrays)
        except PolicyError as err:
            raise ArtifactError(f"{artifact.path / 'manifest.json'}: {err}") from None
        action = m["action"]
        n_obs = len(m["observation"].get("names", []))
        if n_obs != policy.obs_dim:
            raise ArtifactError(f"{artifact.path / 'manifest.json'}: observation: {n_obs} names, the policy reads "
                                f"{policy.obs_dim} entries")
        if safe_default is None:
            safe_default = action.get("safe_default")
        if safe_default is None:
            raise ArtifactError(f"{artifact.path / 'manifest.json'}: action.safe_default: missing; give "
                                "Router.from_artifact(path, safe_default=...)")
        router = cls(artifact, policy, safe_default)
        router._check_action(safe_default, "safe_default")
        from .requests import context_reader, request_builder

        router.builder = request_builder(m, artifact.arrays)
        router._build, router._rule = router.builder.build, policy._decide
        if policy.context:
            router._context = context_reader(m, policy.context)
        router._single = router.agents is None
        return router

    # ------------------------------------------------------------------ layout

    @property
    def manifest(self) -> dict:
        return self.artifact.manifest

    @property
    def agents(self) -> list[str] | None:
        """Agent names of a multi-agent policy (its ``agent`` argument), else None."""
        return self.manifest["policy"].get("agents")

    def _label(self, action) -> str:
        names = self.manifest["action"].get("names")
        if names is not None and isinstance(action, int) and 0 <= action < len(names):
            return str(names[action])
        return "" if isinstance(action, np.ndarray) else str(action)  # a box action is its own answer

    def _check_action(self, action, name: str) -> None:
        spec = self.manifest["action"]
        if spec["type"] == "discrete":
            if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or \
                    not 0 <= action < spec["n"]:
                raise ArtifactError(f"{name}: expected an action in [0, {spec['n'] - 1}], got {action!r}")
        else:
            a = np.asarray(action, dtype=np.float64)
            if a.shape != (len(spec["low"]),) or not np.isfinite(a).all():
                raise ArtifactError(f"{name}: expected {len(spec['low'])} finite numbers, got {action!r}")

    def _agent_index(self, agent) -> int:
        agents = self.agents
        if agents is None:
            if agent is not None:
                raise RequestError(f"agent: this policy serves one agent; got {agent!r}")
            return 0
        if agent in agents:
            return agents.index(agent)
        raise RequestError(f"agent: expected one of {', '.join(agents[:4])}{', ...' if len(agents) > 4 else ''}, "
                           f"got {agent!r}")

    # ------------------------------------------------------------------ deciding

    def _safe(self, reason: str, agent: str | None = None, error: str = "request", field: str = "") -> Decision:
        action = self.safe_default
        return Decision(action, self._label(action), False, reason, agent, error, field)

    def _finish(self, action, agent: str | None) -> Decision:
        if action.__class__ is int:  # discrete: one frozen Decision per action and agent, made once
            decision = self._decided.get((action, agent))
            if decision is None:
                decision = self._decided[(action, agent)] = Decision(action, self._label(action), True, "", agent)
            return decision
        if isinstance(action, np.ndarray) and not all(map(math.isfinite, action.tolist())):
            return self._safe("the policy's output is not finite", agent, "policy")
        return Decision(action, self._label(action), True, "", agent)

    def decide_observation(self, obs, mask=None, agent: str | None = None, **context) -> Decision:
        """Decide for an observation vector in the env's layout (``mask``: the env's action mask; ``context``:
        the request fields the policy reads besides, e.g. ``topic``)."""
        request = {**context, "observation": obs}
        if mask is not None:
            request["action_mask"] = mask
        if agent is not None:
            request["agent"] = agent
        return self.decide(request)

    def decide(self, request: Mapping[str, Any]) -> Decision:
        """Decide for one request (what the edge box knows; :mod:`offload_env.router.requests` lists the
        fields per env); on any failure the safe default, with the reason."""
        is_mapping = request.__class__ is dict or isinstance(request, Mapping)
        agent = request.get("agent") if is_mapping else None
        try:
            if not is_mapping:
                raise RequestError(f"request: expected an object of fields, got {type(request).__name__}")
            obs, mask = self._build(request)
            index = 0 if agent is None and self._single else self._agent_index(agent)
            if self._context is not None:  # a policy that reads request fields besides the observation
                return self._finish(self._rule(obs, mask, index, **self._context(request)), agent)
            return self._finish(self._rule(obs, mask, index), agent)
        except NothingAllowed as err:
            return self._safe(str(err), agent if isinstance(agent, str) else None, "mask", err.field)
        except RequestError as err:
            return self._safe(str(err), agent if isinstance(agent, str) else None, "request", err.field)
        except Exception as err:  # noqa: BLE001 - a serving loop must not die on one request
            return self._safe(f"internal error: {type(err).__name__}: {err}",
                              agent if isinstance(agent, str) else None, "internal")

    def decide_batch(self, requests) -> list[Decision]:
        """:meth:`decide` for each request."""
        return [self.decide(r) for r in requests]


def finite_number(request: Mapping[str, Any], name: str, low: float = -math.inf, high: float = math.inf,
                  default: float | None = None) -> float:
    """``request[name]`` as a float in [low, high] (RequestError names the field and the range)."""
    value = request.get(name, default)
    if value is None:
        raise RequestError(f"{name}: required (a number in [{low}, {high}])")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RequestError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    value = float(value)
    if not (low <= value <= high) or math.isnan(value):
        raise RequestError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return value
