"""The envs' observation layouts and the functions that fill them, defined once.

Each env builds its observations with these functions (LayerSplit-v0's
compiled kernels compile them with numba, unchanged), and the edge router
(:mod:`offload_env.router`) builds the same observation from a request with
the same function. Numpy and ``math`` only: the router imports this module.

A layout is a tuple of ``(name, low, high)``; every entry is clipped to its
bounds. The ``*_scales`` of each env are the divisors its scenario sets;
an exported artifact records them, so the router needs no scenario.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYER_SPLIT_FIELDS", "layer_split_scales", "layer_split_observation", "layer_split_mask",
           "ROUTING_CONTEXT_FIELDS", "FEATURE_BOUND", "routing_observation", "vehicular_fields",
           "vehicular_scales", "vehicular_observation", "bounds"]


def bounds(fields) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 arrays of a layout."""
    return (np.array([f[1] for f in fields], dtype=np.float32), np.array([f[2] for f in fields], dtype=np.float32))


# ---------------------------------------------------------------------- LayerSplit-v0

#: LayerSplit-v0's observation: (name, low, high). Documented in LayerSplitEnv's docstring.
LAYER_SPLIT_FIELDS = (
    ("snr_estimate", -2.0, 3.0),  # uplink SNR estimate (dB, one request old, noisy) / 30
    ("prompt_tokens", 0.0, 1.0),  # / the scenario's maximum prompt
    ("expected_output_tokens", 0.0, 4.0),  # / the maximum output
    ("edge_backlog", 0.0, 10.0),  # edge queue (s) / the request's deadline
    ("server_backlog", 0.0, 10.0),  # server queue (s) / the request's deadline
    ("server_load_observed", 0.0, 1.0),  # the server's load at the last offloaded request
    ("energy_left", 0.0, 1.0),  # / the episode's energy budget
    ("deadline", 0.0, 1.0),  # / the maximum deadline
    ("episode_progress", 0.0, 1.0),  # requests served / requests per episode
)


def layer_split_scales(prompt_max: float, output_max: float, deadline_max: float, energy_budget_j: float,
                       episode_requests: float) -> np.ndarray:
    """The divisors of :func:`layer_split_observation` for a scenario."""
    return np.array([30.0, prompt_max, output_max, deadline_max, energy_budget_j, episode_requests])


def layer_split_observation(out, low, high, scales, snr_estimate_db, prompt_tokens, expected_output_tokens,
                            deadline_s, edge_backlog_s, server_backlog_s, server_load_observed, energy_left_j,
                            requests_served):
    """Fill ``out`` (9 entries, float32) with the LayerSplit observation of one request."""
    values = (snr_estimate_db / scales[0], prompt_tokens / scales[1], expected_output_tokens / scales[2],
              edge_backlog_s / deadline_s, server_backlog_s / deadline_s, server_load_observed,
              energy_left_j / scales[4], deadline_s / scales[3], requests_served / scales[5])
    for k in range(9):  # clipped to [low, high] (comparisons, not min/max: a third of the time in Python)
        x = values[k]
        out[k] = low[k] if x < low[k] else high[k] if x > high[k] else x


def layer_split_mask(out, min_split, deepest_fit):
    """Fill ``out`` (L+1 flags) with the allowed splits: ``min_split`` to ``max(deepest_fit, min_split)``."""
    hi = max(deepest_fit, min_split)
    for k in range(out.shape[0]):
        out[k] = min_split <= k <= hi


# ---------------------------------------------------------------------- Routing-v0

FEATURE_BOUND = 10.0  #: query features are clipped to [-FEATURE_BOUND, FEATURE_BOUND]
#: Live context appended to the query features: (name, low, high).
ROUTING_CONTEXT_FIELDS = (
    ("snr_estimate", -2.0, 3.0),  # uplink SNR of the previous query (dB) + noise, / 30
    ("cloud_load_estimate", 0.0, 1.0),  # cloud background load at the previous query (a heartbeat)
    ("budget_left", 0.0, 1.0),  # share of the episode budget left (1 without a budget)
)


def _routing_bounds(n: int, kept: dict = {}) -> tuple[np.ndarray, np.ndarray]:  # noqa: B006 - the cache
    """(low, high) float32 arrays of the Routing observation with ``n`` features."""
    low_high = kept.get(n)
    if low_high is None:
        low_high = kept[n] = bounds((("feature", -FEATURE_BOUND, FEATURE_BOUND),) * n + ROUTING_CONTEXT_FIELDS)
        for b in low_high:
            b.setflags(write=False)
    return low_high


def routing_observation(features, snr_estimate_db, cloud_load_estimate, budget_left_share) -> np.ndarray:
    """The Routing observation of one query: its features (an array, or a list of numbers), then the live
    context (float32, clipped)."""
    n = len(features)
    context = (snr_estimate_db / 30.0, cloud_load_estimate, budget_left_share)
    if features.__class__ is list:  # as a request gives it: one conversion
        obs = np.array(features + list(context), dtype=np.float32)
    else:
        obs = np.empty(n + 3, dtype=np.float32)
        obs[:n] = features
        obs[n:] = context
    # clipped in float32: the same as clipping first, the bounds are exact in float32 (and rounding is monotone)
    low, high = _routing_bounds(n)
    np.minimum(obs, high, out=obs)
    np.maximum(obs, low, out=obs)
    return obs


# ---------------------------------------------------------------------- Vehicular-v0

SPEED_SCALE_MPS = 40.0  #: velocities are divided by this


def vehicular_fields(n_rsus: int, intents: bool = False) -> tuple:
    """Vehicular-v0's per-vehicle observation for ``n_rsus`` RSUs: (name, low, high); ``intents``: with the
    others' broadcast intents (scenario field ``broadcast_intents``) at the end."""
    R = range(n_rsus)
    base = (("x", 0.0, 1.0), ("y", 0.0, 1.0), ("vx", -2.0, 2.0), ("vy", -2.0, 2.0),
            *[(f"rsu_{j}_distance", 0.0, 10.0) for j in R], *[(f"rsu_{j}_snr", -2.0, 3.0) for j in R],
            *[(f"rsu_{j}_load", 0.0, 1.0) for j in R], *[(f"rsu_{j}_backlog", 0.0, 10.0) for j in R],
            ("prompt_tokens", 0.0, 1.0), ("output_tokens", 0.0, 1.0), ("deadline", 0.0, 1.0),
            ("own_backlog", 0.0, 10.0), ("cloud_load", 0.0, 1.0))
    if not intents:
        return base
    return (*base, *[(f"rsu_{j}_intents", 0.0, 1.0) for j in R], ("cloud_intents", 0.0, 1.0),
            *[(f"rsu_{j}_intent_work", 0.0, 10.0) for j in R])


def vehicular_scales(area_lo, area_span, rsu_range_m: float, n_vehicles: int, prompt_max: float,
                     output_max: float, deadline_max: float) -> dict:
    """The divisors of :func:`vehicular_observation` for a scenario (JSON-ready)."""
    return {"area_lo": [float(v) for v in area_lo], "area_span": [float(v) for v in area_span],
            "rsu_range_m": float(rsu_range_m), "n_vehicles": float(n_vehicles), "prompt_max": float(prompt_max),
            "output_max": float(output_max), "deadline_max": float(deadline_max)}


def vehicular_observation(out, low, high, scales: dict, positions, velocities, rsu_distance_m, rsu_snr_db,
                          rsu_tasks, rsu_backlog_s, prompt_tokens, output_tokens, deadline_s, own_backlog_s,
                          cloud_tasks, intent_tasks=None, intent_work_s=None) -> np.ndarray:
    """Fill ``out`` (N, 9 + 4R, or 10 + 6R with intents) with the observations of N vehicles (per-vehicle
    arrays; RSU ones (N, R)); ``intent_tasks`` (N, R + 1: the other vehicles intending each RSU, then the
    cloud) and ``intent_work_s`` (N, R: their intended RSU compute seconds) fill the intents' columns."""
    R = rsu_distance_m.shape[-1]
    n, deadline_max = scales["n_vehicles"], scales["deadline_max"]
    out[:, 0:2] = (positions - np.asarray(scales["area_lo"])) / np.asarray(scales["area_span"])
    out[:, 2:4] = velocities / SPEED_SCALE_MPS
    out[:, 4:4 + R] = rsu_distance_m / scales["rsu_range_m"]
    out[:, 4 + R:4 + 2 * R] = rsu_snr_db / 30.0
    out[:, 4 + 2 * R:4 + 3 * R] = rsu_tasks / n
    out[:, 4 + 3 * R:4 + 4 * R] = rsu_backlog_s / deadline_max
    out[:, 4 + 4 * R] = prompt_tokens / scales["prompt_max"]
    out[:, 5 + 4 * R] = output_tokens / scales["output_max"]
    out[:, 6 + 4 * R] = deadline_s / deadline_max
    out[:, 7 + 4 * R] = own_backlog_s / deadline_max
    out[:, 8 + 4 * R] = cloud_tasks / n
    if intent_tasks is not None:
        out[:, 9 + 4 * R:10 + 5 * R] = intent_tasks / n
        out[:, 10 + 5 * R:10 + 6 * R] = intent_work_s / deadline_max
    np.clip(out, low, high, out=out)
    return out
