"""Requests -> observations: what the edge box knows, turned into the env's observation by the env's own function.

Every request may instead carry ``observation`` (a vector in the env's
layout) and ``action_mask``. The env-specific fields (``*_REQUEST`` below,
numbers in a documented range; vectors named in each builder):

| env | fields |
|---|---|
| LayerSplit-v0 | snr_estimate_db, prompt_tokens, expected_output_tokens, deadline_s, energy_left_j; edge_backlog_s, server_backlog_s, server_load_observed, requests_served (default 0); action_mask (default: the splits from ``min_split`` to the deepest whose weights and KV cache fit the edge for prompt + expected output) |
| Routing-v0 | features (the query's d features: its embedding), snr_estimate_db; cloud_load_estimate (0), budget_left (1) |
| Vehicular-v0 | agent, position_m, velocity_mps, rsu_distance_m, rsu_snr_db, rsu_tasks, rsu_backlog_s (R each), prompt_tokens, output_tokens, deadline_s; own_backlog_s, cloud_tasks (0); action_mask; with ``broadcast_intents``: intent_tasks (R + 1), intent_work_s (R) |

Each env's ``router_request()`` gives its current state in this form.

Some policies read request fields besides the observation
(:attr:`offload_env.router.policy.Policy.context`, read by :func:`context_reader`):
``topic`` (the quality router: the query's topic, an index into the env's
topics or its name; Routing-v0's ``router_request()`` carries it) and
``cost_weight`` (a number >= 0; default: the artifact's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .. import observations
from .router import NothingAllowed, RequestError

__all__ = ["Field", "RequestBuilder", "request_builder", "context_reader", "BUILDERS"]


@dataclass(frozen=True)
class Field:
    """One request field: a number in [low, high], or ``size`` of them (``default`` None: required)."""

    name: str
    low: float
    high: float
    doc: str
    default: float | None = None
    size: int = 0  #: 0: a number; n: a list of n numbers


@dataclass(frozen=True)
class RequestBuilder:
    """``builder(request) -> (observation, mask)``; ``fields`` document and validate the request."""

    fields: tuple[Field, ...]
    build: Callable[[Mapping[str, Any]], tuple]

    def __call__(self, request: Mapping[str, Any]) -> tuple:
        return self.build(request)


def _raw(request: Mapping[str, Any], n_obs: int, n_actions: int | None, low: np.ndarray, high: np.ndarray):
    """A raw ``observation`` (clipped to the layout's bounds, as the env clips) and ``action_mask``."""
    x = _vector(request, Field("observation", -np.inf, np.inf, "the env's observation vector", size=n_obs))
    if not np.isfinite(x).all():
        raise RequestError(f"observation: expected {n_obs} finite numbers")
    mask = _mask_field(request, n_actions) if n_actions is not None else None
    return np.clip(x, low, high), mask


def _numbers(request: Mapping[str, Any], fields: tuple[Field, ...]) -> list[float]:
    """The values of ``fields`` in ``request`` (defaults filled), each checked against its range."""
    return _number_reader(fields)(request)


def _number_reader(fields: tuple[Field, ...],
                   kept: dict = {}) -> Callable[[Mapping[str, Any]], list[float]]:  # noqa: B006 - the cache
    """``read(request)``: :func:`_numbers` of ``fields``, their names and ranges unpacked once (made once per
    tuple of fields)."""
    read = kept.get(fields)
    if read is not None:
        return read
    specs = tuple((f.name, f.default, f.low, f.high, f) for f in fields)

    def read(request: Mapping[str, Any]) -> list[float]:
        out = []
        get = request.get
        for name, default, low, high, f in specs:
            v = get(name, default)
            if v.__class__ is not float and v.__class__ is not int:  # as JSON gives them: checked by the range
                _check_number(v, f)
            if not low <= v <= high:  # NaN fails too
                raise RequestError(f"{name}: expected a number in [{low:g}, {high:g}], got {v!r}")
            out.append(float(v))
        return out
    kept[fields] = read
    return read


def _check_number(v: Any, f: Field) -> None:
    """RequestError unless ``v`` is a number (a numpy number too), not a bool."""
    if v is None:
        raise RequestError(f"{f.name}: required ({f.doc}; a number in [{f.low:g}, {f.high:g}])")
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        raise RequestError(f"{f.name}: expected a number in [{f.low:g}, {f.high:g}], got {v!r}"[:200])


_PLAIN_NUMBERS = frozenset((float, int))


def _vector(request: Mapping[str, Any], f: Field) -> np.ndarray:
    """``request[f.name]``: ``f.size`` numbers in [f.low, f.high]."""
    return np.asarray(_checked_vector(request, f), dtype=np.float64)


def _checked_vector(request: Mapping[str, Any], f: Field) -> list | np.ndarray:
    """:func:`_vector`'s check; a list of plain numbers (as JSON gives it) comes back as it is."""
    v, n = request.get(f.name), f.size
    if v.__class__ is list and len(v) == n and set(map(type, v)) <= _PLAIN_NUMBERS:  # as JSON gives it
        # min and max are exact unless an entry is NaN; then the sum (of numbers in range: no overflow) is NaN
        if n == 0 or (min(v) >= f.low and max(v) <= f.high and (total := sum(v)) == total):
            return v
        raise RequestError(f"{f.name}: expected {n} numbers in [{f.low:g}, {f.high:g}], got a value out of range")
    what = f"{n} numbers in [{f.low:g}, {f.high:g}]"
    if v is None:
        raise RequestError(f"{f.name}: required ({f.doc}: {what})")
    if not isinstance(v, (list, tuple, np.ndarray)) or len(v) != n:
        raise RequestError(f"{f.name}: expected {what}, got {v!r}"[:200])
    if any(isinstance(x, bool) or not isinstance(x, (int, float, np.number)) for x in v):
        raise RequestError(f"{f.name}: expected {what}, got {v!r}"[:200])
    x = np.asarray(v, dtype=np.float64)
    if x.shape != (n,) or not ((x >= f.low) & (x <= f.high)).all():
        raise RequestError(f"{f.name}: expected {what}, got a value out of range")
    return x


_FLAGS = frozenset((0, 1))  #: the entries of an action mask (True, False, 0.0 and 1.0 compare equal to them)


_MASKS: dict[bytes, np.ndarray] = {}  #: valid masks seen (an env has few), as read-only arrays
_MASKS_KEPT = 4096


def _mask_field(request: Mapping[str, Any], n: int) -> np.ndarray | None:
    mask = request.get("action_mask")
    if mask is None:
        return None
    m = None
    if isinstance(mask, list):  # as JSON gives it: checked in Python (numpy is slower on 30 entries)
        try:
            flags = bytes(mask)  # integers (bools included) in [0, 255]; floats and strings raise
        except (TypeError, ValueError):
            flags = None
        if flags is not None:
            if len(flags) != n or flags.translate(None, b"\x00\x01"):  # not n flags of 0 and 1
                raise RequestError(f"action_mask: expected {n} flags (0/1)")
            m = _MASKS.get(flags)
            if m is None:
                if b"\x01" not in flags:
                    raise NothingAllowed("action_mask: allows no action")
                m = np.frombuffer(flags, dtype=bool)  # read-only, no copy
                if len(_MASKS) < _MASKS_KEPT:
                    _MASKS[flags] = m
            return m
        else:
            try:
                ok = len(mask) == n and set(mask) <= _FLAGS  # 0.0 and 1.0 as well
            except TypeError:  # an unhashable entry
                ok = False
            m = np.array(mask, dtype=bool) if ok else None
    else:
        try:
            m = np.asarray(mask)
        except (TypeError, ValueError):
            m = None
        ok = m is not None and m.shape == (n,) and m.dtype.kind in "biu" and bool(((m == 0) | (m == 1)).all())
        m = m.astype(bool) if ok else None
    if m is None:
        raise RequestError(f"action_mask: expected {n} flags (0/1)")
    if not m.any():
        raise NothingAllowed("action_mask: allows no action")
    return m


_BIG = 1e12

#: LayerSplit-v0's request: the raw quantities of ``observations.layer_split_observation``.
LAYER_SPLIT_REQUEST = (
    Field("snr_estimate_db", -300.0, 300.0,
          "uplink SNR estimate in dB (the last request's, or this one's: the scenario's channel_estimate_of)"),
    Field("prompt_tokens", 1.0, 1e7, "prompt length in tokens"),
    Field("expected_output_tokens", 1.0, 1e7, "predicted output length in tokens"),
    Field("deadline_s", 1e-6, 1e6, "the request's deadline in seconds"),
    Field("edge_backlog_s", 0.0, 1e9, "work queued on the edge device, seconds", 0.0),
    Field("server_backlog_s", 0.0, 1e9, "work queued on the server, seconds", 0.0),
    Field("server_load_observed", 0.0, 1.0, "the server's background load at the last offload", 0.0),
    Field("energy_left_j", 0.0, _BIG, "edge energy left in this budget period, joules"),
    Field("requests_served", 0.0, _BIG, "requests served in this budget period", 0.0),
)


def _layer_split(manifest: dict, arrays: Mapping[str, np.ndarray]) -> RequestBuilder:
    layout = manifest["observation"]["router"]
    low, high = (b.tolist() for b in observations.bounds(observations.LAYER_SPLIT_FIELDS))  # floats: fast here
    scales = [float(v) for v in layout["scales"]]
    min_split = int(layout["min_split"])
    fit = arrays["env.fit_by_tokens"]
    n_actions = manifest["action"].get("n")
    n_obs = len(low)

    default_masks: dict[int, np.ndarray] = {}  # deepest fitting split -> the default mask (read-only)

    def default_mask(deepest_fit: int) -> np.ndarray:
        mask = default_masks.get(deepest_fit)
        if mask is None:
            mask = np.empty(n_actions, dtype=bool)
            observations.layer_split_mask(mask, min_split, deepest_fit)
            mask.setflags(write=False)
            default_masks[deepest_fit] = mask
        return mask

    numbers = _number_reader(LAYER_SPLIT_REQUEST)

    def build(request):
        v = numbers(request)
        out = [0.0] * n_obs
        observations.layer_split_observation(out, low, high, scales, *v)
        obs = np.array(out, dtype=np.float32)
        mask = None
        if n_actions is not None:
            mask = _mask_field(request, n_actions)
            if mask is None:  # the deepest split whose weights and KV cache fit, for the expected tokens
                mask = default_mask(int(fit[min(int(v[1] + v[2]), len(fit) - 1)]))
        return obs, mask
    return RequestBuilder(LAYER_SPLIT_REQUEST, build)


ROUTING_REQUEST = (
    Field("snr_estimate_db", -300.0, 300.0, "uplink SNR estimate in dB (the last query's, as measured)"),
    Field("cloud_load_estimate", 0.0, 1.0, "the cloud's background load at the last query", 0.0),
    Field("budget_left", 0.0, 1.0, "share of the budget period's budget left (1 without a budget)", 1.0),
)


def _routing(manifest: dict, arrays: Mapping[str, np.ndarray]) -> RequestBuilder:
    n = int(manifest["observation"]["router"]["n_features"])
    features = Field("features", -_BIG, _BIG, "the query's features (its embedding, as the env's featuriser "
                     "gives them)", size=n)

    numbers = _number_reader(ROUTING_REQUEST)

    def build(request):
        x = _checked_vector(request, features)  # a list of numbers or a float64 array
        return observations.routing_observation(x, *numbers(request)), None
    return RequestBuilder((features, *ROUTING_REQUEST), build)


VEHICULAR_REQUEST = (
    Field("prompt_tokens", 0.0, 1e7, "prompt length in tokens"),
    Field("output_tokens", 0.0, 1e7, "expected output length in tokens"),
    Field("deadline_s", 1e-6, 1e6, "the task's deadline in seconds"),
    Field("own_backlog_s", 0.0, 1e9, "work queued on board, seconds", 0.0),
    Field("cloud_tasks", 0.0, 1e9, "tasks the cloud served last step (broadcast)", 0.0),
)


def _vehicular(manifest: dict, arrays: Mapping[str, np.ndarray]) -> RequestBuilder:
    layout = manifest["observation"]["router"]
    R, scales = int(layout["n_rsus"]), layout["scales"]
    intents = bool(layout.get("intents", False))
    low, high = observations.bounds(observations.vehicular_fields(R, intents))
    n_actions = manifest["action"].get("n")
    vectors = (Field("position_m", -_BIG, _BIG, "the vehicle's position (x, y) in metres", size=2),
               Field("velocity_mps", -1e3, 1e3, "the vehicle's velocity (vx, vy) in m/s", size=2),
               Field("rsu_distance_m", 0.0, _BIG, "distance to each RSU in metres", size=R),
               Field("rsu_snr_db", -300.0, 300.0, "mean uplink SNR to each RSU in dB", size=R),
               Field("rsu_tasks", 0.0, 1e9, "tasks each RSU served last step (broadcast)", size=R),
               Field("rsu_backlog_s", 0.0, 1e9, "each RSU's GPU backlog in seconds (broadcast)", size=R))
    heard = (Field("intent_tasks", 0.0, 1e9, "other vehicles intending each RSU, then the cloud (their broadcast "
                   "intents this step)", size=R + 1),
             Field("intent_work_s", 0.0, 1e9, "their intended compute on each RSU in seconds", size=R))
    heard = heard if intents else ()

    numbers = _number_reader(VEHICULAR_REQUEST)

    def build(request):
        vs = [_vector(request, f)[None] for f in vectors]
        v = numbers(request)
        obs = np.empty((1, len(low)), dtype=np.float32)
        observations.vehicular_observation(obs, low, high, scales, *vs, *v, *[_vector(request, f)[None] for f in heard])
        return obs[0], (_mask_field(request, n_actions) if n_actions is not None else None)
    return RequestBuilder((*vectors, *VEHICULAR_REQUEST, *heard), build)


#: Env builder name (the manifest's ``observation.router.builder``) -> factory(manifest, arrays).
BUILDERS: dict[str, Callable[[dict, Mapping[str, np.ndarray]], RequestBuilder]] = {
    "layer_split": _layer_split, "routing": _routing, "vehicular": _vehicular,
}


def request_builder(manifest: dict, arrays: Mapping[str, np.ndarray]) -> RequestBuilder:
    """The request builder of an artifact's env (raw observations only where the env has none)."""
    n_obs = len(manifest["observation"]["names"])
    n_actions = manifest["action"].get("n")
    low = np.asarray(manifest["observation"]["low"], dtype=np.float64)
    high = np.asarray(manifest["observation"]["high"], dtype=np.float64)
    layout = manifest["observation"].get("router") or {}
    specific = BUILDERS.get(layout.get("builder"))
    env_builder = specific(manifest, arrays) if specific is not None else None
    env_build = env_builder.build if env_builder is not None else None

    def build(request: Mapping[str, Any]):
        if env_build is None or "observation" in request:
            return _raw(request, n_obs, n_actions, low, high)
        return env_build(request)
    return RequestBuilder(env_builder.fields if env_builder is not None else (), build)


def context_reader(manifest: dict, names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], dict]:
    """``reader(request) -> {name: value}`` of the context fields ``names`` a policy reads (RequestError names
    the field): ``topic`` an integer in [0, n_topics - 1] or a topic name of the env, ``cost_weight`` a number
    >= 0 (absent: None, the policy's own)."""
    n_topics = int(manifest["policy"].get("n_topics") or 0)
    topics = list((manifest["observation"].get("router") or {}).get("topics") or [])
    index = {name: k for k, name in enumerate(topics)} if len(topics) == n_topics else {}
    weight = Field("cost_weight", 0.0, _BIG, "the weight of cost at decision time", 0.0)

    def topic(request):
        v = request.get("topic")
        if v.__class__ is str and v in index:
            return index[v]
        if v.__class__ is int and 0 <= v < n_topics:
            return v
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < n_topics:
            return int(v)
        what = f"an integer in [0, {n_topics - 1}]" + (" or a topic name of the env" if index else "")
        if v is None:
            raise RequestError(f"topic: required (the query's topic: {what})")
        raise RequestError(f"topic: expected {what}, got {v!r}"[:200])

    def cost_weight(request):
        return None if request.get("cost_weight") is None else _numbers(request, (weight,))[0]

    readers = {"topic": topic, "cost_weight": cost_weight}
    unknown = [n for n in names if n not in readers]
    if unknown:
        raise ValueError(f"policy context: no request field {unknown[0]!r} (known: {', '.join(readers)})")
    chosen = [(n, readers[n]) for n in names]
    return lambda request: {n: read(request) for n, read in chosen}
