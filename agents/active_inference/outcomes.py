"""What an active-inference agent observes about each served request, and what it prefers: one entry per env.

An :class:`OutcomeSpec` names the outcomes read from the env's ``info``
after each step and the default weights of the prior preference
(``log p~(o) = -sum_j w_j o_j``; :mod:`agents.active_inference.efe`). The
defaults are the env's own reward weights, so that with them the
extrinsic term is the expected reward of the step (up to a constant): the
agent then pursues the env's objective without ever reading the reward.
A config's ``preference`` setting overrides any weight by name.

| env | outcomes (default weight) |
|---|---|
| LayerSplit-v0 | latency_per_deadline (w_latency), energy_share: edge joules / energy_unit_j (w_energy), deadline_missed (w_deadline_miss), accuracy_penalty (w_accuracy), dropped_requests (w_dropped), fallback: a masked split served as the nearest allowed one (w_invalid) |
| Routing-v0 | quality (-1: sought), cost (the env's cost_weight), overrun_s (overrun_weight) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["OutcomeSpec", "NAMES", "OUTCOMES", "check_preference", "outcome_spec"]


@dataclass(frozen=True)
class OutcomeSpec:
    """The outcomes of one env: their names, how to read them from ``info`` and the default preference."""

    names: tuple[str, ...]
    read: Callable[[dict], list[float]]  #: info -> one number per name
    weights: tuple[float, ...]  #: default preference weights (the env's reward weights)

    def preference(self, overrides: dict[str, float] | None = None) -> np.ndarray:
        """The weights with ``overrides`` (name -> weight) applied; an unknown name is a ValueError."""
        check_preference(self.names, overrides)
        w = dict(zip(self.names, self.weights))
        for name, value in (overrides or {}).items():
            w[name] = float(value)
        return np.array([w[n] for n in self.names], dtype=np.float32)


def check_preference(names: tuple[str, ...], overrides: dict | None) -> None:
    """A ValueError naming the first key of ``overrides`` that is not one of the outcomes ``names``."""
    unknown = sorted(set(overrides or {}) - set(names))
    if unknown:
        raise ValueError(f"preference.{unknown[0]}: expected one of {', '.join(names)}")


#: Env id -> its outcomes' names.
NAMES: dict[str, tuple[str, ...]] = {
    "offload_env/LayerSplit-v0": ("latency_per_deadline", "energy_share", "deadline_missed", "accuracy_penalty",
                                  "dropped_requests", "fallback"),
    "offload_env/Routing-v0": ("quality", "cost", "overrun_s"),
}


def _layer_split(env: Any) -> OutcomeSpec:
    u = env.unwrapped
    s = u.scenario
    energy_ref = s.energy_unit_j  # the reward's energy unit

    def read(info: dict) -> list[float]:
        return [info["latency_s"] / info["deadline_s"], info["edge_energy_j"] / energy_ref,
                0.0 if info["deadline_met"] else 1.0, info["accuracy_penalty"], float(info["dropped_requests"]),
                1.0 if info["fallback"] else 0.0]
    return OutcomeSpec(NAMES["offload_env/LayerSplit-v0"], read,
                       (s.w_latency, s.w_energy, s.w_deadline_miss, s.w_accuracy, s.w_dropped, s.w_invalid))


def _routing(env: Any) -> OutcomeSpec:
    u = env.unwrapped

    def read(info: dict) -> list[float]:
        return [info["quality"], info["cost"], info["overrun_s"]]
    return OutcomeSpec(NAMES["offload_env/Routing-v0"], read, (-1.0, u.cost_weight, u.scenario.overrun_weight))


#: Env id -> factory(env) -> OutcomeSpec.
OUTCOMES: dict[str, Callable[[Any], OutcomeSpec]] = {
    "offload_env/LayerSplit-v0": _layer_split,
    "offload_env/Routing-v0": _routing,
}


def outcome_spec(env: Any) -> OutcomeSpec:
    """The outcome spec of ``env`` (a Gymnasium env of :data:`OUTCOMES`); a ValueError for any other env."""
    env_id = getattr(getattr(env, "spec", None), "id", None)
    if env_id not in OUTCOMES:
        raise ValueError(f"env: active inference needs the outcomes of its env; known for {', '.join(OUTCOMES)}, "
                         f"got {env_id!r}")
    return OUTCOMES[env_id](env)
