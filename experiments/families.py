"""Env families: per family, its env ids, episode loop, baselines, table columns. One registration each.

A config's ``env.id`` picks the family; ``baselines`` are names of that
family (or ``module:factory`` paths), ``evaluation.function`` defaults to the
family's loop and ``evaluation.breakdown_keys`` to its per-step info keys.
``compare`` and ``report`` summarise the family's ``metrics`` and sort its
table by ``sort_by``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Family", "FAMILIES", "family_of", "family_of_name"]


@dataclass(frozen=True)
class Family:
    name: str
    env_ids: tuple[str, ...]
    evaluate: str  #: ``module:function`` with the signature of ``agents.baselines.evaluate``
    baselines: dict[str, str] = field(default_factory=dict)  #: name -> ``module:factory(make_env?, seed?)``
    metrics: dict[str, str] = field(default_factory=dict)  #: summarised column -> label in the printed table
    headline: tuple[str, ...] = ()  #: the few metrics of the short summary a suite prints (all when empty)
    sort_by: tuple[str, bool] = ("return", False)  #: (column, ascending) ordering the summary's rows
    breakdown_keys: tuple[str, ...] = ()  #: ``info`` keys averaged per episode into ``mean_<key>`` columns
    trace: str = ""  #: ``module:class`` of a per-step callback of online learners' training (``trace.csv``)
    #: (reference baseline, simple baselines): ``gap_closed`` scores every row from the best simple baseline
    #: (0) to the reference (1) on the same episodes (``experiments.compare.add_gap_closed``)
    gap: tuple[str, tuple[str, ...]] | None = None


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("layer_split", ("offload_env/LayerSplit-v0",), "agents.baselines:evaluate", {
        "all-local": "agents.baselines:AllLocal",
        "all-server": "agents.baselines:AllServer",
        "random": "agents.baselines:RandomFeasible",
        "best-fixed": "agents.baselines:BestFixedSplit",
        "greedy": "agents.baselines:Greedy",
        "myopic-oracle": "agents.baselines:Oracle",  # full information, myopic: spends the budget early
        "oracle": "agents.baselines:Oracle",  # the myopic oracle's name before the references (older configs)
        "pacing": "agents.baselines:Pacing",  # observation only, energy priced so that the budget lasts
        "reference": "agents.baselines:BudgetReference",  # full information, paced: bounds every policy
    }, metrics={
        "cost_ratio_to_oracle": "cost / oracle",
        "cost_ratio_to_oracle_policy": "cost / oracle policy",
        "cost_ratio_to_greedy": "cost / greedy",
        "gap_closed": "gap closed",
        "cost_per_request": "cost / request",
        "return": "return",
        "mean_latency_s": "latency (s)",
        "edge_energy_j": "edge energy (J)",
        "deadline_miss_rate": "deadline miss",
    }, headline=("gap_closed", "cost_ratio_to_oracle", "return", "deadline_miss_rate"),
       sort_by=("cost_ratio_to_oracle", True), breakdown_keys=(
        "edge_queue_s", "server_queue_s", "edge_compute_s", "uplink_s", "server_compute_s", "downlink_s",
        "round_trip_s"), gap=("reference", ("all-local", "all-server", "best-fixed", "greedy"))),
    Family("routing", ("offload_env/Routing-v0",), "agents.routing_policies:evaluate_routing", {
        "always-cheapest": "agents.routing_policies:AlwaysCheapest",
        "always-best": "agents.routing_policies:AlwaysBest",
        "random": "agents.routing_policies:RandomRouting",
        "threshold": "agents.routing_policies:ThresholdRouting",
        "knn": "agents.routing_policies:KNNRouting",  # supervised reference, fitted on a warm-up prefix
        "per-subject": "agents.routing_policies:PerSubjectRouting",  # supervised reference, by the query's topic
        "oracle": "agents.routing_policies:OracleRouting",
    }, metrics={
        "return": "return",
        "accuracy": "accuracy",
        "cost": "cost / query",
        "mean_latency_s": "latency (s)",
        "regret": "regret",
        "strong_share": "best-model share",
        "apgr": "APGR",
        "cpt_50": "CPT(50%)",
        "cpt_80": "CPT(80%)",
        "aiq": "AIQ",
    }, headline=("return", "accuracy", "cost", "apgr"), sort_by=("return", False),
       trace="agents.routing_policies:RegretTrace"),
    Family("vehicular", ("offload_env/Vehicular-v0",), "agents.vehicular_baselines:evaluate_vehicular", {
        "all-local": "agents.vehicular_baselines:VehicularAllLocal",
        "nearest-rsu": "agents.vehicular_baselines:VehicularNearestRSU",
        "least-loaded-rsu": "agents.vehicular_baselines:VehicularLeastLoadedRSU",
        "all-cloud": "agents.vehicular_baselines:VehicularAllCloud",
        "random": "agents.vehicular_baselines:VehicularRandomValid",
        "greedy": "agents.vehicular_baselines:VehicularGreedy",
        "sequential-greedy": "agents.vehicular_baselines:VehicularSequentialGreedy",  # full information
        "best-response": "agents.vehicular_baselines:VehicularBestResponse",  # full information, team objective
        "selfish-best-response": "agents.vehicular_baselines:VehicularSelfishBestResponse",  # full information
    }, metrics={
        "team_return": "team return",
        "return": "return / vehicle",
        "mean_latency_s": "latency (s)",
        "deadline_miss_rate": "deadline miss",
        "energy_j": "energy / vehicle (J)",
        "handover_rate": "handovers",
        "share_local": "local",
        "share_rsu": "RSU",
        "share_cloud": "cloud",
    }, headline=("team_return", "mean_latency_s", "deadline_miss_rate", "energy_j"),
       sort_by=("team_return", False)),
)}


def family_of(env_id: str) -> Family | None:
    """The family of ``env_id`` (None: an env no family knows, e.g. another package's)."""
    for family in FAMILIES.values():
        if env_id in family.env_ids:
            return family
    return None


def family_of_name(env_name: str) -> Family | None:
    """The family of an env as the tables name it (the id without its namespace, e.g. ``Routing-v0``)."""
    for family in FAMILIES.values():
        if any(env_name in (i, i.split("/")[-1]) for i in family.env_ids):
            return family
    return None
