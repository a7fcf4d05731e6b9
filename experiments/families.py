"""Env families: per family, its env ids, its episode loop and its baselines by name. One registration each.

A config's ``env.id`` picks the family; ``baselines`` are names of that
family (or ``module:factory`` paths) and ``evaluation.function`` defaults to
the family's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Family", "FAMILIES", "family_of"]


@dataclass(frozen=True)
class Family:
    name: str
    env_ids: tuple[str, ...]
    evaluate: str  #: ``module:function`` with the signature of ``agents.baselines.evaluate``
    baselines: dict[str, str] = field(default_factory=dict)  #: name -> ``module:factory(make_env?, seed?)``


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("layer_split", ("offload_env/LayerSplit-v0",), "agents.baselines:evaluate", {
        "all-local": "agents.baselines:AllLocal",
        "all-server": "agents.baselines:AllServer",
        "random": "agents.baselines:RandomFeasible",
        "best-fixed": "agents.baselines:BestFixedSplit",
        "greedy": "agents.baselines:Greedy",
        "oracle": "agents.baselines:Oracle",
    }),
    Family("routing", ("offload_env/Routing-v0",), "agents.routing_policies:evaluate_routing", {
        "always-cheapest": "agents.routing_policies:AlwaysCheapest",
        "always-best": "agents.routing_policies:AlwaysBest",
        "random": "agents.routing_policies:RandomRouting",
        "threshold": "agents.routing_policies:ThresholdRouting",
        "oracle": "agents.routing_policies:OracleRouting",
    }),
)}


def family_of(env_id: str) -> Family | None:
    """The family of ``env_id`` (None: an env no family knows, e.g. another package's)."""
    for family in FAMILIES.values():
        if env_id in family.env_ids:
            return family
    return None
