"""Routing-v0: send each query to one model of a pool (edge SLM, edge-server LLM, cloud LLM)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers import TimeLimit

from .. import costs, observations, profiles
from ..channel import LinkModel
from ..workload import (TOKEN_SPEC_EXPECTED, HashedFeaturizer, OutcomeTable, SyntheticWorkload, load_workload,
                        lognormal_tokens, valid_token_spec, workload_features)
from . import _validation

__all__ = ["PoolMember", "RoutingScenario", "PRESETS", "RoutingEnv", "RoutingVectorEnv", "CONTEXT_FIELDS",
           "COST_UNITS"]

TIERS = ("local", "edge", "cloud")
COST_UNITS = ("usd", "edge_energy_j")
#: Default cost weight (lambda) per cost unit: a 70B cloud call then costs about as much
#: reward as the accuracy it adds over the 8B edge-server model (the trade-off is live).
DEFAULT_COST_WEIGHT = {"usd": 300.0, "edge_energy_j": 5e-4}
#: Live context appended to the query features: (name, low, high) (``offload_env.observations``).
CONTEXT_FIELDS = observations.ROUTING_CONTEXT_FIELDS
FEATURE_BOUND = observations.FEATURE_BOUND
#: Most topics of the built-in workload (its features one-hot them), most queries drawn ahead (``block``).
MAX_TOPICS, MAX_BLOCK = 1024, 65536


@dataclass(frozen=True)
class PoolMember:
    """One model of the pool and where it runs.

    ``tier``: ``local`` runs on the edge device itself; ``edge`` on an edge
    server over the access link; ``cloud`` over the access link and the
    backhaul, on a server whose background load varies. ``device=None`` is a
    hosted API model without a profile: it needs ``accuracy``, a price and
    its provider times (``first_token_s``, ``per_output_token_s``).
    """

    name: str  #: model profile name (or the API model's id when device is None)
    device: str | None  #: device profile it runs on; None for a hosted API
    tier: str = "cloud"  #: local | edge | cloud
    runtime: str | None = None  #: runtime on its device (profiles/runtimes; None: the device's usual one)
    weight_format: str | None = None  #: weight format (None: the device's usual one, if its runtime runs it)
    dtype: str | None = None  #: if set, the ideal roofline of this storage dtype in place of runtime and format
    accuracy: float | None = None  #: mean accuracy; default: the profile's published quality[benchmark]
    price_usd_per_million: tuple[float, float] | None = None  #: (input, output); default: the profile's, else 0
    first_token_s: float = 0.0  #: API members: provider time to the first token
    per_output_token_s: float = 0.0  #: API members: provider time per further output token


#: The GPT-4 API member of the MMLU preset (RouteLLM's strong model; no public architecture, so no profile).
GPT4_1106_API = PoolMember(
    name="gpt-4-1106-preview", device=None, tier="cloud",
    # OpenAI 2023, GPT-4 Technical Report (arXiv:2303.08774), Table 2: MMLU 86.4% (5-shot), measured on the
    # original GPT-4; OpenAI published no MMLU score for gpt-4-1106-preview. RouteLLM's MMLU data has 80.6%.
    accuracy=0.864,
    # OpenAI DevDay announcement (6 Nov 2023): GPT-4 Turbo (gpt-4-1106-preview) $0.01 / 1K input tokens,
    # $0.03 / 1K output tokens.
    price_usd_per_million=(10.0, 30.0),
    # assumption: 0.5 s to the first token and 20 ms per further token (50 tokens/s); no official figures.
    first_token_s=0.5, per_output_token_s=0.02,
)


@dataclass(frozen=True)
class RoutingScenario:
    """Everything that defines a Routing problem; every field is an env keyword argument."""

    pool: tuple[PoolMember, ...] = (
        PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local", runtime="mlc-llm", weight_format="q4f16_1"),
        PoolMember("llama-3.1-8b", "l4", "edge", runtime="vllm", weight_format="f16"),
        # int8 weights: 70.6 GB fit one 80 GB H100 (float16 would need two)
        PoolMember("llama-3.1-70b", "h100-sxm", "cloud", runtime="vllm", weight_format="int8"),
    )  #: the models to route between, cheapest first by convention
    edge_device: str = "jetson-orin-nano-8gb"  #: the user's device (radio and idle power)
    access_link: str = "5g-nr"  #: device to edge site
    backhaul_link: str | None = "backhaul-fiber"  #: edge site to cloud (None: cloud over the access link only)
    benchmark: str = "mmlu"  #: key of ModelProfile.quality giving each model's published accuracy
    n_topics: int = 8  #: built-in workload: topics
    proxy_noise: float = 0.7  #: built-in workload: noise of the visible difficulty proxy
    prompt_tokens: tuple[float, float, int, int] = (200.0, 0.8, 16, 4096)  #: lognormal (median, sigma, min, max)
    output_tokens: tuple[float, float, int, int] = (128.0, 0.6, 8, 1024)  #: lognormal (median, sigma, min, max)
    distance_m: tuple[float, float] = (30.0, 300.0)  #: device distance, uniform per episode
    fading_correlation: float = 0.9  #: Gauss-Markov correlation of the fading between queries
    channel_estimate_noise_db: float = 2.0  #: noise of the observed (one query old) SNR
    cloud_load_levels: tuple[float, ...] = (0.0, 0.5, 0.75)  #: cloud background load per Markov state
    cloud_load_stay: float = 0.95  #: probability that the cloud load state stays between queries
    deadline_s: float = 15.0  #: latency beyond this is an overrun
    cost_unit: str = "usd"  #: usd (API prices) | edge_energy_j (energy drawn on the edge device)
    cost_weight: float | None = None  #: lambda per cost unit (None: DEFAULT_COST_WEIGHT)
    overrun_weight: float = 0.05  #: mu per second of latency beyond the deadline
    budget: float | None = None  #: episode budget in the cost unit; once spent the cheapest model serves
    structure_seed: int = 0  #: fixes the built-in workload's topics and skills (not the query draws)

    @classmethod
    def preset(cls, name: str, **overrides) -> "RoutingScenario":
        if name not in PRESETS:
            raise ValueError(f"scenario: expected one of {', '.join(PRESETS)}, got {name!r}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, RoutingScenario] = {
    # Qwen2.5-1.5B on a Jetson Orin Nano, Llama-3.1-8B on an L4 edge server, Llama-3.1-70B in the cloud (5G)
    "orin-l4-h100-5g": RoutingScenario(),
    # RouteLLM's MMLU pair: Mixtral-8x7B on an edge A100 (int8) and GPT-4 as a hosted API
    "mmlu-mixtral-gpt4": RoutingScenario(pool=(PoolMember("mixtral-8x7b", "a100-80gb", "edge", runtime="vllm",
                                                          weight_format="int8"),
                                               GPT4_1106_API)),
}


def _check_scenario(s: RoutingScenario) -> RoutingScenario:
    """``s`` with its numbers as annotated; TypeError or ValueError naming its first bad field (types, then ranges)."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"Routing scenario field '{name}': expected {expected}, got {getattr(s, name)!r}")

    s = _validation.check_fields(s, "Routing")

    need(len(s.pool) >= 2 and all(isinstance(p, PoolMember) for p in s.pool), "pool",
         "a tuple of at least 2 PoolMember")
    need(len({p.name for p in s.pool}) == len(s.pool), "pool", "distinct model names")
    for i, p in enumerate(s.pool):
        where = f"pool[{i}] ({p.name})"
        if p.tier not in TIERS:
            raise ValueError(f"Routing scenario field '{where}.tier': expected one of {', '.join(TIERS)}, "
                             f"got {p.tier!r}")
        if p.dtype is not None and p.dtype not in profiles.DTYPE_BYTES:
            raise ValueError(f"Routing scenario field '{where}.dtype': expected None or one of "
                             f"{', '.join(profiles.DTYPE_BYTES)}, got {p.dtype!r}")
        if p.accuracy is not None and not 0 < p.accuracy < 1:
            raise ValueError(f"Routing scenario field '{where}.accuracy': expected a number in (0, 1), "
                             f"got {p.accuracy!r}")
        if p.price_usd_per_million is not None and (len(p.price_usd_per_million) != 2
                                                    or min(p.price_usd_per_million) < 0):
            raise ValueError(f"Routing scenario field '{where}.price_usd_per_million': expected (input, output) "
                             f"USD >= 0, got {p.price_usd_per_million!r}")
        if p.first_token_s < 0 or p.per_output_token_s < 0:
            raise ValueError(f"Routing scenario field '{where}.first_token_s/per_output_token_s': expected "
                             f"seconds >= 0, got {p.first_token_s!r}, {p.per_output_token_s!r}")
        if p.device is None and (p.tier == "local" or p.price_usd_per_million is None
                                 or p.first_token_s + p.per_output_token_s <= 0):
            raise ValueError(f"Routing scenario field '{where}': an API member (device None) needs tier 'edge' or "
                             "'cloud', price_usd_per_million and first_token_s/per_output_token_s > 0")
    need(1 <= s.n_topics <= MAX_TOPICS, "n_topics", f"an integer in [1, {MAX_TOPICS}]")
    need(s.proxy_noise >= 0, "proxy_noise", "a noise std >= 0")
    for name in ("prompt_tokens", "output_tokens"):
        need(valid_token_spec(getattr(s, name)), name, TOKEN_SPEC_EXPECTED)
    need(0 < s.distance_m[0] <= s.distance_m[1], "distance_m", "(min, max) with 0 < min <= max metres")
    need(0 <= s.fading_correlation < 1, "fading_correlation", "a correlation in [0, 1)")
    need(s.channel_estimate_noise_db >= 0, "channel_estimate_noise_db", "a noise std >= 0 dB")
    need(len(s.cloud_load_levels) >= 1 and all(0 <= x < 1 for x in s.cloud_load_levels), "cloud_load_levels",
         "one or more background loads in [0, 1)")
    need(0 <= s.cloud_load_stay <= 1, "cloud_load_stay", "a probability in [0, 1]")
    need(s.deadline_s > 0, "deadline_s", "a deadline > 0 s")
    need(s.cost_unit in COST_UNITS, "cost_unit", "one of " + ", ".join(COST_UNITS))
    need(s.cost_weight is None or s.cost_weight >= 0, "cost_weight", "None or a weight >= 0")
    need(s.overrun_weight >= 0, "overrun_weight", "a weight >= 0 per second")
    need(s.budget is None or s.budget > 0, "budget", "None or a budget > 0 in the cost unit")
    need(s.structure_seed >= 0, "structure_seed", "an integer >= 0 (a numpy seed)")
    return s


class _Member:
    """A pool member with its profiles loaded: computes its costs for a block of queries."""

    def __init__(self, spec: PoolMember, s: RoutingScenario, edge: profiles.DeviceProfile, field: str = "pool"):
        self.spec = spec
        self.edge = edge
        self.model = self.device = None
        if spec.device is not None:
            self.model = _validation.load_profile(profiles.load_model, spec.name, "Routing", f"{field}.name")
            self.device = _validation.load_profile(profiles.load_device, spec.device, "Routing", f"{field}.device")
        where = f"Routing scenario field 'pool' ({spec.name})"
        if spec.accuracy is not None:
            self.accuracy = spec.accuracy
        elif self.model is not None and s.benchmark in self.model.quality:
            self.accuracy = self.model.quality[s.benchmark]
        else:
            self.accuracy = None
        price = spec.price_usd_per_million
        if price is None and self.model is not None and self.model.api_price_usd_per_million_tokens:
            p = self.model.api_price_usd_per_million_tokens
            price = (p["input"], p["output"])
        self.price = price
        if self.model is not None:
            run = _validation.execution(self.device, spec.runtime, spec.weight_format, spec.dtype, "Routing",
                                        {k: f"{field}.{k}" for k in ("runtime", "weight_format", "dtype")})
            #: how the member's device runs it (costs.estimate keywords; dtype= resolves to the roofline runtime)
            self.run = dict(runtime=run.runtime, weight_format=run.weight_format)
            fit = costs.estimate(self.model, self.device, s.prompt_tokens[3], s.output_tokens[3], **self.run)
            if not bool(fit.feasible):
                raise ValueError(f"{where}: {spec.name} in {run.weight_format} does not fit {spec.device}'s usable "
                                 f"memory ({fit.peak_memory_bytes / 1e9:.1f} GB needed at the longest prompt and "
                                 "output); choose a smaller weight format or another device")

    def block_costs(self, P, T, up, down, rtt, share) -> dict[str, np.ndarray]:
        """Latency parts, edge energy and price of each query (arrays of shape P.shape)."""
        spec = self.spec
        zeros = np.zeros_like(P)
        usd = zeros
        if self.price is not None:
            usd, parts = costs.api_call_costs(P, T, *self.price, first_token_s=spec.first_token_s,
                                              per_output_token_s=spec.per_output_token_s)
        if spec.tier == "local":
            est = costs.estimate(self.model, self.device, P, T, **self.run)
            return dict(latency_s=est.total_s, edge_compute_s=est.total_s, uplink_s=zeros, server_compute_s=zeros,
                        downlink_s=zeros, round_trip_s=zeros, edge_energy_j=est.energy_j, usd=usd, uplink_bytes=zeros)
        if self.model is not None:
            full = costs.request_parts(self.model, self.edge, self.device, P, T, server_runtime=self.run["runtime"],
                                       server_weight_format=self.run["weight_format"])
            parts = costs.RequestParts(**{k: v[..., :1] for k, v in vars(full).items()})  # split 0: all remote
        sc = costs.link_costs(parts, self.edge, up, down, rtt, server_share=share, check=False)
        out = {k: getattr(sc, k)[..., 0] for k in ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s",
                                                    "round_trip_s", "edge_energy_j", "uplink_bytes")}
        out["latency_s"] = sc.total_s[..., 0]
        out["usd"] = usd
        return out


_COST_KEYS = ("latency_s", "edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s",
              "edge_energy_j", "usd", "uplink_bytes")


def _table_rows(part, n: int) -> np.ndarray:
    """Rows ``[start * n, stop * n)`` of a fixed permutation (seed 0) of ``n`` table rows."""
    ok = (isinstance(part, (tuple, list)) and len(part) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part)
          and 0.0 <= part[0] < part[1] <= 1.0)
    if not ok:
        raise ValueError(f"table_rows: expected (start, stop) fractions with 0 <= start < stop <= 1, got {part!r}")
    rows = np.random.default_rng(0).permutation(n)[int(round(part[0] * n)):int(round(part[1] * n))]
    if rows.size == 0:
        raise ValueError(f"table_rows: {part!r} keeps no query of the table's {n}")
    return rows


def _scenario_from_kwargs(scenario, overrides: dict) -> RoutingScenario:
    if scenario is not None and not isinstance(scenario, (str, RoutingScenario)):
        raise TypeError(f"scenario: expected None, a preset name ({', '.join(PRESETS)}) or a RoutingScenario, "
                        f"got {scenario!r}")
    base = scenario if isinstance(scenario, RoutingScenario) else RoutingScenario.preset(scenario or "orin-l4-h100-5g")
    _validation.check_unknown("Routing", overrides, [f.name for f in dataclasses.fields(RoutingScenario)])
    converted = {k: tuple(v) if isinstance(v, list) or (isinstance(v, np.ndarray) and v.ndim == 1) else v
                 for k, v in overrides.items()}
    return dataclasses.replace(base, **converted)


class RoutingEnv(gym.Env):
    """Route each query to one model of a pool: an edge SLM, an edge-server LLM or a cloud LLM.

    ## Description

    Each step one user query arrives at an edge device; the agent picks the
    model that answers it. The answer's quality depends on the query and the
    model; its cost (money from API prices, or energy drawn on the edge
    device) and latency depend on the model, its device, the wireless link
    and the cloud's load. Latency and energy come from ``offload_env.costs``
    (roofline compute, link transfers, edge radio and idle power) with link
    rates from ``offload_env.channel.LinkModel``; prices from the model
    profiles (``api_price_usd_per_million_tokens``) or the pool member. The
    env owns the state: the query stream (``offload_env.workload``), a
    Gauss-Markov Rayleigh channel at a per-episode distance, a Markov
    background load on the cloud server (its compute share is 1 - load) and
    an optional episode budget. This is the online version of the routing
    problem of FrugalGPT, HybridLLM and RouteLLM, with more than two models,
    latency and a budget: the router learns from the feedback of the queries
    it routes.

    Queries come from the built-in generator (``SyntheticWorkload``: topics,
    latent difficulty, and an item-response model calibrated so that each
    model's mean accuracy is its published ``benchmark`` score) or, with
    ``workload=OutcomeTable``, from real per-query outcomes (e.g. RouteLLM's
    MMLU table), one pass in a shuffled order per episode.

    ## Action Space

    ``Discrete(n_models)``: the index of the pool member that serves the
    query. Once the budget is spent, the cheapest model for the query serves
    whatever the action (``info["forced"]``).

    ## Observation Space

    ``Box(d + 3,)`` float32: the query's features, then the live context.

    | index | observation | min | max |
    |---|---|---|---|
    | 0..d-1 | query features (built-in: one-hot topic, log prompt length / log max, difficulty proxy / 3, 1; real data: the featuriser's output) | -10 | 10 |
    | d | uplink SNR of the previous query (dB) + N(0, channel_estimate_noise_db), / 30 | -2 | 3 |
    | d+1 | cloud background load at the previous query (a monitoring heartbeat) | 0 | 1 |
    | d+2 | share of the episode budget left (1 without a budget) | 0 | 1 |

    ## Rewards

    ``quality - cost_weight * cost - overrun_weight * max(0, latency - deadline_s)``:
    quality is 1/0 (right or wrong; a score in [0, 1] for RouterBench data),
    cost is in ``cost_unit`` (USD, or edge-device joules), latency in seconds.

    ## Starting State

    Distance uniform in ``distance_m``, fading from its stationary law, cloud
    load in its lowest state, the full budget; real data: a new shuffled order.

    ## Episode End

    Built-in workload: never terminates; truncated after ``max_episode_steps``
    queries (1000 at registration). Real data: terminated after one pass
    over the table. Spending the budget does not end the episode.

    ## Info

    The served query: ``model`` (index served), ``model_name``, ``forced``,
    ``quality``, ``cost`` (in ``cost_unit``), ``usd``, ``edge_energy_j``,
    ``latency_s`` and its parts (``edge_compute_s``, ``uplink_s``,
    ``server_compute_s``, ``downlink_s``, ``round_trip_s``), ``uplink_bytes``,
    ``overrun_s``, ``deadline_met``, ``budget_left``, ``cloud_load``.
    **Privileged** (for regret and offline evaluation; an agent must not read
    them to act): ``outcomes`` (quality of every model on this query),
    ``expected_outcomes`` (built-in workload: each model's probability of
    a right answer; real data: the outcomes), ``costs``, ``latencies_s``
    and ``rewards`` of every model,
    ``oracle_model`` and ``oracle_reward`` (the best model in hindsight).
    Not privileged, and not in the observation: the current query's topic,
    ``query_topic()`` (an index into ``topic_names``: the built-in topics, or
    a real table's groups such as the MMLU subjects).

    ## Arguments

    ``gymnasium.make("offload_env/Routing-v0", scenario="orin-l4-h100-5g",
    workload=None, features=None, render_mode=None, **fields)``: ``scenario``
    is a preset name (``PRESETS``) or a ``RoutingScenario``; any field can be
    overridden by keyword (pool, cost_unit, cost_weight, overrun_weight,
    budget, deadline_s, cloud_load_levels, access_link...). ``workload`` an
    ``OutcomeTable`` whose model names match the pool's, or the name of a
    real workload (``offload_env.workload.WORKLOADS``: ``routellm-mmlu``,
    with ``scenario="mmlu-mixtral-gpt4"``); ``features`` its (n, d) feature
    matrix, a featuriser, or a featuriser's name (``hashed``, the default,
    or ``minilm``: the ``embeddings`` extra). ``table_rows=(start, stop)``
    keeps the queries from fraction ``start`` to ``stop`` of a fixed shuffle
    of the table (seed 0): disjoint parts for training and evaluation.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, scenario: str | RoutingScenario | None = None, *, workload: OutcomeTable | str | None = None,
                 features: np.ndarray | Callable | str | None = None, table_rows: tuple[float, float] | None = None,
                 render_mode: str | None = None, block: int = 256, **fields: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.block = _validation.check_count(block, "block", 1, MAX_BLOCK)
        self.scenario = s = _check_scenario(_scenario_from_kwargs(scenario, fields))
        self.render_mode = render_mode
        self.edge = _validation.load_profile(profiles.load_device, s.edge_device, "Routing", "edge_device")
        self.members = [_Member(p, s, self.edge, f"pool[{i}]") for i, p in enumerate(s.pool)]
        self.model_names = tuple(p.name for p in s.pool)
        self.n_models = len(self.members)
        access = _validation.load_profile(profiles.load_link, s.access_link, "Routing", "access_link")
        if access.medium != "wireless":
            raise ValueError(f"Routing scenario field 'access_link': expected a wireless link profile, "
                             f"got {s.access_link!r}")
        self.access = LinkModel.from_profile(access)
        self.access_rtt_s = access.base_rtt_s
        backhaul = (None if s.backhaul_link is None
                    else _validation.load_profile(profiles.load_link, s.backhaul_link, "Routing", "backhaul_link"))
        self.backhaul_rate_bps = np.inf if backhaul is None else LinkModel.from_profile(backhaul).uplink_rate_bps(1.0)
        self.backhaul_rtt_s = 0.0 if backhaul is None else backhaul.base_rtt_s
        self.cost_weight = DEFAULT_COST_WEIGHT[s.cost_unit] if s.cost_weight is None else float(s.cost_weight)
        n_levels = len(s.cloud_load_levels)
        move = (1.0 - s.cloud_load_stay) / max(n_levels - 1, 1)
        stay = s.cloud_load_stay if n_levels > 1 else 1.0
        self._load_cdf = np.cumsum(np.where(np.eye(n_levels, dtype=bool), stay, move), axis=1)
        self._load_levels = np.asarray(s.cloud_load_levels, dtype=np.float64)

        self.table = None
        if table_rows is not None and workload is None:
            raise ValueError("table_rows: applies to a real workload only (workload=...)")
        if workload is not None:
            if isinstance(workload, str):
                if features is None or isinstance(features, str):
                    features = workload_features(workload, features or "hashed")
                workload = load_workload(workload)
            if not isinstance(workload, OutcomeTable):
                raise TypeError(f"workload: expected an OutcomeTable, a name of offload_env.workload.WORKLOADS or "
                                f"None, got {type(workload).__name__}")
            if isinstance(features, str):
                raise ValueError(f"features: a featuriser name ({features!r}) needs a workload name; give an "
                                 "OutcomeTable its matrix or featuriser")
            table = workload.select(self.model_names)
            #: the topics of the queries: the table's groups (e.g. MMLU subjects), of the whole table
            self.topic_names = tuple(sorted(set(table.groups)))
            if features is None:
                features = HashedFeaturizer(32)
            matrix = np.asarray(features(list(table.prompts)) if callable(features) else features, dtype=np.float32)
            if matrix.shape[0] != len(table) or matrix.ndim != 2:
                raise ValueError(f"features: expected a ({len(table)}, d) matrix, got shape {matrix.shape}")
            if table_rows is not None:
                rows = _table_rows(table_rows, len(table))
                table, matrix = table.subset(rows), matrix[rows]
            self.table, self.table_features = table, matrix
            index = {name: k for k, name in enumerate(self.topic_names)}
            self._table_topic = np.array([index[g] for g in table.groups], dtype=np.int64)
            self.synthetic = None
            n_features = self.table_features.shape[1]
        else:
            missing = [m.spec.name for m in self.members if m.accuracy is None]
            if missing:
                raise ValueError(f"Routing scenario field 'pool': {missing[0]} has no published {s.benchmark!r} score "
                                 f"(profile quality.{s.benchmark}, field 'benchmark') and no accuracy given")
            self.synthetic = SyntheticWorkload(tuple(m.accuracy for m in self.members), n_topics=s.n_topics,
                                               proxy_noise=s.proxy_noise, prompt_tokens=s.prompt_tokens,
                                               output_tokens=s.output_tokens, structure_seed=s.structure_seed)
            n_features = self.synthetic.n_features
            self.topic_names = tuple(f"topic_{t}" for t in range(s.n_topics))
        self.n_query_features = n_features
        low = np.concatenate([np.full(n_features, -FEATURE_BOUND), [f[1] for f in CONTEXT_FIELDS]])
        high = np.concatenate([np.full(n_features, FEATURE_BOUND), [f[2] for f in CONTEXT_FIELDS]])
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_models)
        self.published_accuracy = np.array([np.nan if m.accuracy is None else m.accuracy for m in self.members])
        self.mean_cost = self._reference_costs()
        self._rng: np.random.Generator | None = None
        self._last: dict | None = None

    # ------------------------------------------------------------------ dynamics

    def _reference_costs(self) -> np.ndarray:
        """Mean cost of each model over a fixed sample of queries (public knowledge: a price list)."""
        rng = np.random.default_rng(self.scenario.structure_seed)
        P = lognormal_tokens(self.scenario.prompt_tokens, rng.standard_normal(512))
        T = lognormal_tokens(self.scenario.output_tokens, rng.standard_normal(512))
        distance = float(np.mean(self.scenario.distance_m))
        c = self._costs(P, T, np.full(512, distance), np.ones(512), np.zeros(512))
        return c["cost"].mean(axis=0)

    def _costs(self, P, T, distance, fading_power, load) -> dict[str, np.ndarray]:
        """Every cost of every model, shape (n, m) per key, plus ``cost`` in the cost unit."""
        up_access = self.access.uplink_rate_bps(distance, fading_power)
        down_access = self.access.downlink_rate_bps(distance, fading_power)
        per_model = []
        for m in self.members:
            cloud = m.spec.tier == "cloud"
            up = np.minimum(up_access, self.backhaul_rate_bps) if cloud else up_access
            down = np.minimum(down_access, self.backhaul_rate_bps) if cloud else down_access
            rtt = self.access_rtt_s + (self.backhaul_rtt_s if cloud else 0.0)
            share = 1.0 - load if cloud else np.ones_like(load)
            per_model.append(m.block_costs(P, T, up, down, rtt, share))
        out = {k: np.stack([np.broadcast_to(c[k], P.shape) for c in per_model], axis=1) for k in _COST_KEYS}
        out["cost"] = out["usd"] if self.scenario.cost_unit == "usd" else out["edge_energy_j"]
        return out

    def _refill(self) -> None:
        """Draw the next block of queries and their exogenous state; cost every model on them."""
        s, rng = self.scenario, self._rng
        if self.table is not None:
            idx = self._order[self._served_total:self._served_total + self.block]
            output = lognormal_tokens(s.output_tokens, rng.standard_normal(len(idx)))
            q = self.table.batch(self.table_features, output, idx)
            topic = self._table_topic[idx]
        else:
            q = self.synthetic.sample(rng, self.block)
            topic = q.topic
        n = len(q)
        rho = s.fading_correlation
        w = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2.0)
        u = rng.random(n)
        noise = rng.standard_normal(n)
        h = np.empty(n, dtype=np.complex128)
        load_state = np.empty(n, dtype=np.int64)
        hh, ls = self._fading, self._load_state
        for t in range(n):
            hh = rho * hh + np.sqrt(1.0 - rho * rho) * w[t]
            ls = int(min(np.searchsorted(self._load_cdf[ls], u[t], side="right"), len(self._load_levels) - 1))
            h[t], load_state[t] = hh, ls
        self._fading, self._load_state = hh, ls
        power = np.abs(h) ** 2
        load = self._load_levels[load_state]
        snr_db = 10.0 * np.log10(np.maximum(self.access.uplink_snr(self._distance, power), 1e-30))
        prev_snr = np.concatenate([[self._last_snr_db], snr_db[:-1]])
        prev_load = np.concatenate([[self._last_load], load[:-1]])
        self._last_snr_db, self._last_load = snr_db[-1], load[-1]
        c = self._costs(q.prompt_tokens, q.output_tokens, np.full(n, self._distance), power, load)
        overrun = np.maximum(c["latency_s"] - s.deadline_s, 0.0)
        c["overrun_s"] = overrun
        c["reward"] = q.quality - self.cost_weight * c["cost"] - s.overrun_weight * overrun
        context = np.stack([prev_snr + s.channel_estimate_noise_db * noise, prev_load], axis=1)  # dB, load
        self._buf = dict(c, quality=q.quality, expected_quality=q.expected_quality, features=q.features,
                         context=context, load=load, prompt_tokens=q.prompt_tokens, output_tokens=q.output_tokens,
                         topic=np.asarray(topic, dtype=np.int64))
        self._ptr = 0
        self._buf_len = n

    # ------------------------------------------------------------------ API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        s = self.scenario
        self._rng = np.random.default_rng(int(self.np_random.integers(0, 2**63)))
        lo, hi = s.distance_m
        self._distance = float(lo + (hi - lo) * self._rng.random())
        self._fading = complex((self._rng.standard_normal() + 1j * self._rng.standard_normal()) / np.sqrt(2.0))
        self._load_state = 0
        self._last_load = float(self._load_levels[0])
        self._last_snr_db = float(10.0 * np.log10(self.access.uplink_snr(self._distance, abs(self._fading) ** 2)))
        self._budget_left = np.inf if s.budget is None else float(s.budget)
        self._served_total = 0
        self._order = None if self.table is None else self._rng.permutation(len(self.table))
        self._refill()
        self._last = None
        return self._observe(), {}

    def _budget_share(self) -> float:
        return 1.0 if self.scenario.budget is None else max(self._budget_left, 0.0) / self.scenario.budget

    def _observe(self) -> np.ndarray:
        b, i = self._buf, self._ptr
        snr_db, load = b["context"][i]
        return observations.routing_observation(b["features"][i], snr_db, load, self._budget_share())

    @property
    def observation_names(self) -> tuple[str, ...]:
        return tuple(f"feature_{k}" for k in range(self.n_query_features)) + tuple(f[0] for f in CONTEXT_FIELDS)

    @property
    def action_names(self) -> list[str]:
        return list(self.model_names)

    @property
    def safe_action(self) -> int:
        """What a router serves when it cannot decide: the first model of the most local tier in the pool."""
        tiers = [m.tier for m in self.scenario.pool]
        return min(range(len(tiers)), key=lambda k: (TIERS.index(tiers[k]), k))

    def query_topic(self) -> int:
        """The current query's topic, an index into ``topic_names`` (built-in: its topic; real data: its group,
        e.g. the MMLU subject). Known with the query, not an outcome; the observation does not carry it."""
        if self._rng is None:
            raise gym.error.ResetNeeded("call reset() before query_topic()")
        return int(self._buf["topic"][self._ptr])

    def router_layout(self) -> tuple[dict, dict[str, np.ndarray]]:
        """What the edge router needs to build this env's observation from a request (JSON, arrays)."""
        return {"builder": "routing", "n_features": int(self.n_query_features), "topics": list(self.topic_names)}, {}

    def router_request(self) -> dict:
        """The current query as the edge box knows it: its features (an embedding), its topic and the live
        context."""
        if self._rng is None:
            raise gym.error.ResetNeeded("call reset() before router_request()")
        b, i = self._buf, self._ptr
        snr_db, load = b["context"][i]
        return {"features": b["features"][i].tolist(), "snr_estimate_db": float(snr_db),
                "cloud_load_estimate": float(load), "budget_left": float(self._budget_share()),
                "topic": self.query_topic()}

    def _served(self, action: int) -> tuple[int, bool]:
        if self._budget_left > 0:
            return action, False
        return int(np.argmin(self._buf["cost"][self._ptr])), True

    def step(self, action):
        if self._rng is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        served, forced = self._served(_validation.discrete_action(action, self.n_models))
        b, i = self._buf, self._ptr
        rewards = b["reward"][i]
        if forced:  # once the budget is spent only the cheapest model can serve: so too for the oracle
            oracle = served
        else:
            oracle = int(np.argmax(rewards))
        self._budget_left -= b["cost"][i, served]
        info = {k: float(b[k][i, served]) for k in _COST_KEYS + ("cost", "overrun_s")}
        info.update(model=served, model_name=self.model_names[served], forced=forced,
                    quality=float(b["quality"][i, served]), deadline_met=info["overrun_s"] == 0.0,
                    budget_left=float(self._budget_left), cloud_load=float(b["load"][i]),
                    prompt_tokens=float(b["prompt_tokens"][i]), output_tokens=float(b["output_tokens"][i]),
                    outcomes=b["quality"][i].copy(), expected_outcomes=b["expected_quality"][i].copy(),
                    costs=b["cost"][i].copy(),
                    latencies_s=b["latency_s"][i].copy(), rewards=rewards.copy(),
                    oracle_model=oracle, oracle_reward=float(rewards[oracle]))
        reward = float(rewards[served])
        self._served_total += 1
        self._ptr += 1
        terminated = self.table is not None and self._served_total >= len(self.table)
        if not terminated and self._ptr >= self._buf_len:
            self._refill()
        self._last = info
        obs = self._observe() if not terminated else self._observe_last()
        return obs, reward, terminated, False, info

    def _observe_last(self) -> np.ndarray:
        self._ptr = min(self._ptr, self._buf_len - 1)
        return self._observe()

    def oracle_action(self) -> int:
        """The best model for the current query in hindsight (privileged: reads the outcomes)."""
        if self._budget_left <= 0:
            return self._served(0)[0]
        return int(np.argmax(self._buf["reward"][self._ptr]))

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None")
            return None
        b, i = self._buf, self._ptr
        lines = [f"query: prompt {int(b['prompt_tokens'][i])} tok, output {int(b['output_tokens'][i])} tok, "
                 f"cloud load {b['load'][i]:.2f}"
                 + ("" if self._last is None else f"; last: {self._last['model_name']}, "
                    f"quality {self._last['quality']:.0f}, reward {self._last['rewards'][self._last['model']]:.3f}")]
        for j, name in enumerate(self.model_names):
            lines.append(f"{j} {name:24s} latency {b['latency_s'][i, j]:7.2f} s  cost {b['cost'][i, j]:.3g} "
                         f"{self.scenario.cost_unit}")
        return "\n".join(lines) + "\n"


class RoutingVectorEnv(SyncVectorEnv):
    """``num_envs`` Routing envs (each in ``TimeLimit(max_episode_steps)``) stepped in turn (next-step autoreset).

    ``gymnasium.make_vec("offload_env/Routing-v0", num_envs=4, vectorization_mode="vector_entry_point")``
    builds it; other arguments are :class:`RoutingEnv`'s. Sub-env i reset with
    ``seed`` gets ``seed + i``. ``step`` takes ints of shape (num_envs,) in
    [0, n_models - 1]; anything else is a ValueError naming ``actions``
    (checked before any sub-env steps).
    """

    def __init__(self, num_envs: int = 1, scenario: str | RoutingScenario | None = None, *,
                 max_episode_steps: int | None = 1000, **kwargs: Any):
        num_envs = _validation.check_count(num_envs, "num_envs", 1, 4096)
        if max_episode_steps is not None:
            max_episode_steps = _validation.check_count(max_episode_steps, "max_episode_steps", 1)
        first = RoutingEnv(scenario, **kwargs)  # fails here, once, on a bad argument

        def make(i: int):
            def build():
                env = first if i == 0 else RoutingEnv(scenario, **kwargs)
                return env if max_episode_steps is None else TimeLimit(env, max_episode_steps)
            return build

        super().__init__([make(i) for i in range(num_envs)])
        self._n_models = first.n_models

    def step(self, actions):
        return super().step(_validation.vector_discrete_actions(actions, self.num_envs, self._n_models))
