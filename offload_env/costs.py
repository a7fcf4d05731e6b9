"""THE cost model: latency, energy, memory and bytes of LLM inference.

Pure numpy, vectorised over requests and split points; no RL in here. Every
env, baseline and oracle calls this module; none recomputes a cost.

Conventions (DESIGN.md, "The shared physics"):

* A request has ``P`` prompt tokens and ``T`` output tokens. Prefill runs the
  P prompt tokens and yields the first output token; each of the other T-1
  tokens is a decode step, step t (1..T-1) attending to ``P + t`` positions.
* A device runs a model under a *runtime* (llama.cpp, MLC, vLLM, ...) with
  its weights in a *weight format* (f16, q4_k_m, ...): :func:`execution`
  resolves the pair into bytes per weight (the format's definition), the
  dtype the matrix products run in and the efficiencies and fixed overheads
  the runtime reaches on that device (``profiles/runtimes/``). A device's
  profile names the pair it usually runs (``runs``); ``dtype=`` alone asks for
  the ideal roofline of the model before runtimes (the ``roofline`` runtime:
  the device's own efficiencies, no overheads, computed in the storage dtype).
* Time of a layer in one forward pass is the roofline ``max(FLOPs / (peak x
  eff), bytes / (bandwidth x eff))`` plus the runtime's per-layer overhead;
  each forward pass also pays the runtime's forward overhead (with the LM
  head, on the side that runs it). Prefill reads all of a layer's weights once
  and writes P tokens of KV cache; a decode step reads the active weights
  (MoE: routed experts only) and the KV cache it attends to.
* Split k (0..L): the edge runs the embedding and layers 1..k, the server
  runs layers k+1..L, the final norm and the LM head; at k = L the edge runs
  everything and nothing is sent. Split 0 sends the prompt's token ids once
  and receives the generated ids (one round trip). An interior split sends
  the hidden state of the P prompt tokens, then one hidden state per decode
  step, and receives one token id per output token: T round trips.
* Edge energy: compute time x active power + uplink time x radio power +
  the rest of the request (waiting for the server or the link) x idle power.
* Edge memory at split k: weights of the embedding (k >= 1), layers 1..k and
  (k = L, untied) the LM head, plus their KV cache for P + T tokens.
  Activations are not counted.
* A measured profile of (model, device) replaces the roofline time of the
  decoder layers and the LM head when its dtype is the storage dtype of the
  weight format asked for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .profiles import _dir_key
from .profiles import (DTYPE_BYTES, DeviceProfile, MeasuredProfile, ModelProfile, ProfileError, RuntimeProfile,
                       load_measured, load_runtime, load_weight_format)

__all__ = [
    "TOKEN_ID_BYTES",
    "ACTIVATION_DTYPES",
    "Execution",
    "execution",
    "LEGACY_FORMATS",
    "CostEstimate",
    "SplitCosts",
    "estimate",
    "RequestParts",
    "request_parts",
    "SplitModel",
    "link_costs",
    "link_terms",
    "split_costs",
    "layer_times",
    "QueuedCosts",
    "queue_waits",
    "with_queues",
    "ACCURACY_CURVE",
    "erasure_probability",
    "accuracy_penalty",
    "accuracy_loss",
    "accuracy_loss_terms",
    "loss_from_erasure",
    "erasure_from_snr",
    "erasure_terms",
    "penalty_from_loss",
    "depth_sensitivity",
    "penalty_from_sensitivity",
    "api_call_costs",
]

#: Bytes of one token id on the wire.
TOKEN_ID_BYTES = 4
#: Hidden-state compression levels for the uplink, widest first.
ACTIVATION_DTYPES = ("float16", "int8", "int4")


#: The weight format of each storage dtype under the ideal ``roofline`` runtime (``dtype=`` alone).
LEGACY_FORMATS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float8": "fp8", "int8": "int8",
                  "int4": "int4"}


@dataclass(frozen=True)
class Execution:
    """How one device runs a model: one runtime, one weight format, resolved to the numbers the roofline reads."""

    device: str
    runtime: str
    weight_format: str
    dtype: str  #: the format's storage class (a measured profile of this dtype replaces the roofline)
    compute_dtype: str  #: the peak the matrix products run at (the device's own key)
    weight_bytes: float  #: per parameter
    flops_s: float  #: achievable FLOP/s in the compute dtype
    bandwidth_bytes_s: float  #: achievable memory bandwidth
    forward_overhead_s: float  #: per forward pass
    layer_overhead_s: float  #: per decoder layer per forward pass


def execution(device: DeviceProfile, runtime: str | RuntimeProfile | None = None, weight_format: str | None = None,
              *, dtype: str | None = None, profile_dir=None) -> Execution:
    """Resolve how ``device`` runs a model: ``runtime`` x ``weight_format`` (defaults: the device's ``runs``).

    ``dtype`` alone (no runtime or format) is the ideal roofline of that storage dtype.
    An unknown runtime or format, or a format the runtime does not run, is a ValueError naming it.
    """
    _check_profiles(None, device)
    if isinstance(runtime, RuntimeProfile):
        return _execution(device, runtime, weight_format, dtype, profile_dir)
    return _cached_execution(device, runtime, weight_format, dtype, _dir_key(profile_dir))


@functools.lru_cache(maxsize=1024)
def _cached_execution(device, runtime, weight_format, dtype, dir_key) -> Execution:
    """:func:`_execution` of named profiles, once per (device, names, profile directories)."""
    return _execution(device, runtime, weight_format, dtype, dir_key)


def _execution(device, runtime, weight_format, dtype, profile_dir) -> Execution:
    if dtype is not None:
        if runtime is not None or weight_format is not None:
            raise ValueError("dtype: give either dtype (the ideal roofline of that storage dtype) or "
                             f"runtime/weight_format, not both (got dtype={dtype!r}, runtime={_name(runtime)!r}, "
                             f"weight_format={weight_format!r})")
        _check_dtype(dtype, "dtype")
        runtime, weight_format = "roofline", LEGACY_FORMATS[dtype]
    if runtime is None:
        runtime = device.default_runtime
        weight_format = weight_format or device.default_weight_format
    rt = runtime if isinstance(runtime, RuntimeProfile) else _runtime(runtime, profile_dir)
    if weight_format is None:
        weight_format = device.default_weight_format if device.default_weight_format in rt.weight_formats \
            else rt.weight_formats[0]
    if weight_format not in rt.weight_formats:
        raise ValueError(f"weight_format: runtime {rt.name!r} runs {', '.join(rt.weight_formats)}; "
                         f"got {weight_format!r}")
    fmt = _format(weight_format, profile_dir)
    settings = rt.settings(device)
    compute = device.compute_dtype(settings.compute_dtypes[weight_format])
    return Execution(device=device.name, runtime=rt.name, weight_format=fmt.name, dtype=fmt.dtype,
                     compute_dtype=compute, weight_bytes=fmt.bytes_per_weight,
                     flops_s=device.effective_flops(compute, settings.compute_efficiency),
                     bandwidth_bytes_s=device.bandwidth(settings.memory_efficiency),
                     forward_overhead_s=settings.forward_overhead_s, layer_overhead_s=settings.layer_overhead_s)


def _name(runtime) -> str | None:
    return runtime.name if isinstance(runtime, RuntimeProfile) else runtime


def _runtime(name, profile_dir) -> RuntimeProfile:
    if not isinstance(name, str):
        raise TypeError(f"runtime: expected a runtime name or a RuntimeProfile, got {type(name).__name__}")
    try:
        return load_runtime(name, profile_dir)
    except ProfileError as exc:
        raise ValueError(f"runtime: {exc}") from None


def _format(name, profile_dir):
    try:
        return load_weight_format(name, profile_dir)
    except ProfileError as exc:
        raise ValueError(f"weight_format: {exc}") from None


@dataclass(frozen=True)
class CostEstimate:
    """Whole model on one device. Arrays broadcast over the requests given."""

    prefill_s: np.ndarray
    decode_s: np.ndarray
    total_s: np.ndarray
    energy_j: np.ndarray
    peak_memory_bytes: np.ndarray
    feasible: np.ndarray  #: weights + KV cache fit the device's usable memory


@dataclass(frozen=True)
class SplitCosts:
    """Full breakdown for every request (rows) and split point 0..L (columns)."""

    edge_compute_s: np.ndarray
    uplink_s: np.ndarray
    server_compute_s: np.ndarray
    downlink_s: np.ndarray
    round_trip_s: np.ndarray  #: RTTs paid: 1 at split 0, T at interior splits, 0 at L
    total_s: np.ndarray
    edge_energy_j: np.ndarray
    edge_memory_bytes: np.ndarray
    uplink_bytes: np.ndarray
    downlink_bytes: np.ndarray
    feasible: np.ndarray  #: the edge's part fits the edge's usable memory

    @property
    def num_splits(self) -> int:
        return self.total_s.shape[-1]


# --------------------------------------------------------------------------
# Input checks at the boundary


def _as_tokens(value, name: str, minimum: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < minimum) or np.any(arr != np.floor(arr)):
        raise ValueError(f"{name}: expected whole numbers >= {minimum}, got {_show(value)}")
    return arr


def _as_positive(value, name: str, allow_zero: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    bad = arr < 0 if allow_zero else arr <= 0
    if not np.all(np.isfinite(arr)) or np.any(bad):
        raise ValueError(f"{name}: expected finite numbers {'>=' if allow_zero else '>'} 0, got {_show(value)}")
    return arr


def _check_dtype(dtype: str, name: str, allowed=tuple(DTYPE_BYTES)) -> float:
    if dtype not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {dtype!r}")
    return DTYPE_BYTES[dtype]


def _show(value) -> str:
    arr = np.asarray(value)
    return repr(value) if arr.size <= 4 else f"an array with min {np.nanmin(arr):g}"


def _check_profiles(model, *devices) -> None:
    if model is not None and not isinstance(model, ModelProfile):
        raise TypeError(f"model: expected a ModelProfile (offload_env.profiles.load_model), got {type(model).__name__}")
    for d in devices:
        if not isinstance(d, DeviceProfile):
            raise TypeError(f"device: expected a DeviceProfile (offload_env.profiles.load_device), got {type(d).__name__}")


# --------------------------------------------------------------------------
# Per-layer times


def _sum_positive_linear(u: np.ndarray, v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """sum_{t=1..n} max(0, u + v t), elementwise, in closed form."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        root = np.where(v != 0, -u / np.where(v != 0, v, 1.0), 0.0)
    # v > 0: positive for t >= first
    first = np.clip(np.floor(root) + 1.0, 1.0, n + 1.0)
    m_up = n - first + 1.0
    up = m_up * u + v * (n * (n + 1.0) - (first - 1.0) * first) / 2.0
    # v < 0: positive for t <= last
    last = np.clip(np.ceil(root) - 1.0, 0.0, n)
    down = last * u + v * last * (last + 1.0) / 2.0
    flat = n * np.maximum(u, 0.0)
    return np.where(v > 0, up, np.where(v < 0, down, flat))


def _sum_max_linear(a1, b1, a2, b2, n) -> np.ndarray:
    """sum_{t=1..n} max(a1 + b1 t, a2 + b2 t), elementwise."""
    base = n * a1 + b1 * n * (n + 1.0) / 2.0
    return base + _sum_positive_linear(a2 - a1, b2 - b1, n)


def layer_times(model: ModelProfile, device: DeviceProfile, prompt_tokens, output_tokens, *,
                dtype: str | None = None, kv_dtype: str = "float16", runtime: str | RuntimeProfile | None = None,
                weight_format: str | None = None, use_measured: bool = True,
                measured: MeasuredProfile | None = None, run: Execution | None = None):
    """Seconds per layer group on ``device``: (prefill, decode, lm_head).

    ``prefill`` and ``decode`` have shape ``requests.shape + (groups,)`` (time
    of ONE layer of each group for the whole prefill / all T-1 decode steps,
    the runtime's per-layer overhead included); ``lm_head`` has the requests'
    shape (final norm + LM head + the runtime's forward overhead for T forward
    passes). How the device runs the model: ``run`` if given, else
    :func:`execution` of ``runtime``, ``weight_format`` and ``dtype``.
    """
    _check_profiles(model, device)
    run = run or execution(device, runtime, weight_format, dtype=dtype)
    wbytes = run.weight_bytes
    kvbytes = _check_dtype(kv_dtype, "kv_dtype", ("float32", "float16", "bfloat16", "int8", "int4")) / 2.0
    P = _as_tokens(prompt_tokens, "prompt_tokens", 1)[..., None]
    T = _as_tokens(output_tokens, "output_tokens", 1)[..., None]
    n_decode = T - 1.0

    if use_measured and measured is None:
        measured = load_measured(model.name, device.name)
    if measured is not None and measured.dtype == run.dtype:
        a, b, c = measured.prefill_fit
        prefill = np.maximum(a + b * P + c * P * P, 0.0) * np.ones(len(model.layers))
        da, db = measured.decode_fit
        decode = (n_decode * da + db * (n_decode * P + n_decode * (n_decode + 1.0) / 2.0)) * np.ones(len(model.layers))
        lm = measured.lm_head_seconds_per_token * T[..., 0]
        return prefill, np.maximum(decode, 0.0), lm

    flops_s = run.flops_s
    bw = run.bandwidth_bytes_s
    g = model.layers
    F = np.array([x.flops_per_token for x in g])
    A = np.array([x.attention_flops_per_context_token for x in g])
    W = np.array([x.params for x in g]) * wbytes
    Wa = np.array([x.active_params for x in g]) * wbytes
    KV = np.array([x.kv_cache_bytes_per_token for x in g]) * kvbytes

    prefill_compute = (F * P + A * P * (P + 1.0) / 2.0) / flops_s
    prefill_memory = (W + KV * P) / bw
    prefill = np.maximum(prefill_compute, prefill_memory)
    # decode step t: compute (F + A (P+t)) / flops_s, memory (Wa + KV (P+t)) / bw
    decode = _sum_max_linear((F + A * P) / flops_s, A / flops_s, (Wa + KV * P) / bw, KV / bw, n_decode)
    if run.layer_overhead_s:
        prefill = prefill + run.layer_overhead_s
        decode = decode + n_decode * run.layer_overhead_s

    head_params = model.lm_head_params or model.embedding_params
    lm_per_token = max(model.lm_head_flops_per_token / flops_s, (head_params + model.final_norm_params) * wbytes / bw)
    return prefill, decode, (lm_per_token + run.forward_overhead_s) * T[..., 0]


def _memory_per_split(model: ModelProfile, wbytes: float, kvbytes: float):
    """(weights bytes, KV bytes per token) held by the edge at each split 0..L."""
    counts = model.group_counts  # (groups, L+1)
    params = np.array([g.params for g in model.layers], dtype=np.float64)
    kv = np.array([g.kv_cache_bytes_per_token for g in model.layers], dtype=np.float64)
    weights = params @ counts
    weights[1:] += model.embedding_params
    weights[-1] += model.lm_head_params + model.final_norm_params
    return weights * wbytes, (kv @ counts) * kvbytes


# --------------------------------------------------------------------------
# Whole model on one device


def estimate(model: ModelProfile, device: DeviceProfile, prompt_tokens, output_tokens, *,
             dtype: str | None = None, kv_dtype: str = "float16", runtime: str | RuntimeProfile | None = None,
             weight_format: str | None = None, use_measured: bool = True) -> CostEstimate:
    """Latency, energy and memory of running the whole model on ``device``.

    ``prompt_tokens`` and ``output_tokens`` broadcast against each other. How
    the device runs it: ``runtime`` and ``weight_format`` (default: the
    device's ``runs``), or ``dtype`` alone for the ideal roofline (:func:`execution`).
    """
    _check_profiles(model, device)
    run = execution(device, runtime, weight_format, dtype=dtype)
    prefill_g, decode_g, lm = layer_times(model, device, prompt_tokens, output_tokens, kv_dtype=kv_dtype,
                                          use_measured=use_measured, run=run)
    counts = np.array([g.count for g in model.layers], dtype=np.float64)
    prefill_tokens_share = 1.0 / np.asarray(output_tokens, dtype=np.float64)
    prefill = prefill_g @ counts + lm * prefill_tokens_share
    decode = decode_g @ counts + lm * (1.0 - prefill_tokens_share)
    total = prefill + decode
    weights, kv = _memory_per_split(model, run.weight_bytes, DTYPE_BYTES[kv_dtype] / 2.0)
    tokens = np.asarray(prompt_tokens, dtype=np.float64) + np.asarray(output_tokens, dtype=np.float64)
    memory = weights[-1] + kv[-1] * tokens
    return CostEstimate(
        prefill_s=prefill, decode_s=decode, total_s=total,
        energy_j=total * device.power_active_w,
        peak_memory_bytes=memory,
        feasible=memory <= device.usable_memory_bytes,
    )


# --------------------------------------------------------------------------
# Every split point at once


#: The parts of :meth:`SplitModel.token_tables` (what link costs need), in this order.
TABLE_FIELDS = ("edge_compute_s", "server_compute_s", "uplink_token_bytes", "uplink_hidden_bytes", "downlink_bytes",
                "round_trips")


@dataclass(frozen=True)
class RequestParts:
    """What a batch of requests costs at every split before the link and load are known.

    Shapes ``R + (L+1,)``; compute times are at the full server; bytes of
    hidden states at 16-bit (``link_costs`` applies the compression).
    """

    edge_compute_s: np.ndarray
    server_compute_s: np.ndarray
    uplink_token_bytes: np.ndarray  #: prompt token ids (split 0 only)
    uplink_hidden_bytes: np.ndarray  #: hidden states at 16-bit (interior splits only)
    downlink_bytes: np.ndarray
    round_trips: np.ndarray  #: RTTs paid: 1 at split 0, T at interior splits, 0 at L
    edge_memory_bytes: np.ndarray
    feasible: np.ndarray

    def __getitem__(self, index) -> "RequestParts":
        """The parts of a subset of the requests (numpy indexing on the leading axes)."""
        return RequestParts(**{k: v[index] for k, v in vars(self).items()})


def request_parts(model: ModelProfile, edge: DeviceProfile, server: DeviceProfile, prompt_tokens, output_tokens, *,
                  dtype: str | None = None, kv_dtype: str = "float16", edge_dtype: str | None = None,
                  use_measured: bool = True, edge_runtime: str | RuntimeProfile | None = None,
                  edge_weight_format: str | None = None, server_runtime: str | RuntimeProfile | None = None,
                  server_weight_format: str | None = None) -> RequestParts:
    """Per-split compute, bytes, round trips and edge memory of a batch of requests (runs: :class:`SplitModel`)."""
    split_model = SplitModel(model, edge, server, dtype=dtype, kv_dtype=kv_dtype, edge_dtype=edge_dtype,
                             use_measured=use_measured, edge_runtime=edge_runtime,
                             edge_weight_format=edge_weight_format, server_runtime=server_runtime,
                             server_weight_format=server_weight_format)
    return split_model.parts(prompt_tokens, output_tokens)


class SplitModel:
    """:func:`request_parts` of one (model, edge, server) for many calls, in affine split form.

    Every part of a request is, over the splits k = 0..L, a value at k = 0, a
    value at k = L, and between them ``a + sum_g b_g * n_g(k)`` where ``n_g(k)``
    counts the layers of group g among layers 1..k. The *form* axis holds
    ``(at_0, at_L, a, b_1..b_G)``. :func:`link_costs` is linear in the parts, so
    it maps parts in this form to costs in this form (a few numbers per request
    instead of L+1); :meth:`expand` and :meth:`at` read them at splits.

    Each side runs its layers under its own runtime and weight format (default:
    its device's ``runs``); ``dtype`` (the sides given neither) and ``edge_dtype``
    ask for the ideal roofline of those storage dtypes instead (:func:`execution`).
    """

    def __init__(self, model: ModelProfile, edge: DeviceProfile, server: DeviceProfile, *, dtype: str | None = None,
                 kv_dtype: str = "float16", edge_dtype: str | None = None, use_measured: bool = True,
                 edge_runtime: str | RuntimeProfile | None = None, edge_weight_format: str | None = None,
                 server_runtime: str | RuntimeProfile | None = None, server_weight_format: str | None = None):
        _check_profiles(model, edge, server)
        if edge_dtype is None and edge_runtime is None and edge_weight_format is None:
            edge_dtype = dtype
        if edge_dtype is not None:
            _check_dtype(edge_dtype, "edge_dtype")
        server_dtype = dtype if server_runtime is None and server_weight_format is None else None
        self.edge_run = execution(edge, edge_runtime, edge_weight_format, dtype=edge_dtype)
        self.server_run = execution(server, server_runtime, server_weight_format, dtype=server_dtype)
        wbytes = self.edge_run.weight_bytes
        kvbytes = _check_dtype(kv_dtype, "kv_dtype", ("float32", "float16", "bfloat16", "int8", "int4")) / 2.0
        self.model, self.edge, self.server = model, edge, server
        self.num_layers = L = model.num_layers
        self.counts = model.group_counts  # (G, L+1)
        self.form_size = 3 + len(model.layers)
        measured = {d.name: load_measured(model.name, d.name) if use_measured else None for d in (edge, server)}
        self._times = {side: dict(run=run, kv_dtype=kv_dtype, use_measured=False, measured=measured[d.name])
                       for side, d, run in (("edge", edge, self.edge_run), ("server", server, self.server_run))}
        params = np.array([g.params for g in model.layers], dtype=np.float64) * wbytes
        kv = np.array([g.kv_cache_bytes_per_token for g in model.layers], dtype=np.float64) * kvbytes
        weights, kv_split = _memory_per_split(model, wbytes, kvbytes)
        self._layer_weights, self._layer_kv = params, kv
        self._weights_interior = model.embedding_params * wbytes  # the a of the weights
        self._weights_L, self._kv_L = weights[L], kv_split[L]
        self._server_layers = self.counts[:, L]  # layers of each group on the server at k = 0

    def form_parts(self, prompt_tokens, output_tokens) -> RequestParts:
        """The parts of each request in affine split form (last axis: the form)."""
        P = _as_tokens(prompt_tokens, "prompt_tokens", 1)
        T = _as_tokens(output_tokens, "output_tokens", 1)
        P, T = np.broadcast_arrays(P, T)
        e_pre, e_dec, e_lm = layer_times(self.model, self.edge, P, T, **self._times["edge"])
        s_pre, s_dec, s_lm = layer_times(self.model, self.server, P, T, **self._times["server"])
        e_layer, s_layer = e_pre + e_dec, s_pre + s_dec  # (..., G): one layer of each group
        shape = P.shape + (self.form_size,)
        zeros = np.zeros(shape)
        edge = zeros.copy()
        edge[..., 1] = e_layer @ self.counts[:, -1] + e_lm
        edge[..., 3:] = e_layer
        server = zeros.copy()
        server[..., 0] = s_layer @ self._server_layers + s_lm
        server[..., 2] = server[..., 0]
        server[..., 3:] = -s_layer
        token = zeros.copy()
        token[..., 0] = P * TOKEN_ID_BYTES
        hidden = zeros.copy()
        hidden[..., 2] = (P + T - 1.0) * self.model.hidden_size * 2.0
        down = zeros.copy()
        down[..., 0] = down[..., 2] = T * TOKEN_ID_BYTES
        trips = zeros.copy()
        trips[..., 0] = 1.0
        trips[..., 2] = T
        memory = zeros  # at k = 0 the edge holds nothing
        tokens = P + T
        memory[..., 1] = self._weights_L + tokens * self._kv_L
        memory[..., 2] = self._weights_interior
        memory[..., 3:] = self._layer_weights + tokens[..., None] * self._layer_kv
        return RequestParts(edge_compute_s=edge, server_compute_s=server, uplink_token_bytes=token,
                            uplink_hidden_bytes=hidden, downlink_bytes=down, round_trips=trips,
                            edge_memory_bytes=memory, feasible=np.ones(shape, dtype=bool))

    def expand(self, form: np.ndarray) -> np.ndarray:
        """Values at every split 0..L (last axis) of quantities in affine split form."""
        out = form[..., 3:4] * self.counts[0]
        out += form[..., 2:3]
        for g in range(1, self.form_size - 3):
            out += form[..., 3 + g:4 + g] * self.counts[g]
        out[..., 0] = form[..., 0]
        out[..., -1] = form[..., 1]
        return out

    def at(self, form: np.ndarray, split) -> np.ndarray:
        """Values at ``split`` (broadcast against ``form[..., 0]``) of quantities in affine split form.

        The same arithmetic as :meth:`expand`, so the numbers are identical.
        """
        k = np.asarray(split)
        inner = form[..., 3] * self.counts[0, k]
        inner += form[..., 2]
        for g in range(1, self.form_size - 3):
            inner += form[..., 3 + g] * self.counts[g, k]
        return np.where(k == 0, form[..., 0], np.where(k == self.num_layers, form[..., 1], inner))

    def upper_bound(self, form: np.ndarray) -> np.ndarray:
        """An upper bound over all splits of quantities in affine split form (exact for the ends)."""
        inner = form[..., 2] + np.maximum(form[..., 3:], 0.0) @ self.counts[:, -1]
        return np.maximum(np.maximum(form[..., 0], form[..., 1]), inner)

    def last_split_within(self, form: np.ndarray, limit) -> np.ndarray:
        """Largest split k with value <= ``limit`` of a quantity that does not decrease with k (-1 if none).

        For edge memory: the splits that fit are 0..k. Exact: candidates are
        checked with the arithmetic of :meth:`expand`.
        """
        L = self.num_layers
        limit = np.asarray(limit, dtype=np.float64)
        if self.form_size == 4 and L >= 2:  # one layer group: the interior is b k + a
            a, b = form[..., 2], form[..., 3]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                guess = np.where(b > 0, np.floor((limit - a) / np.where(b > 0, b, 1.0)),
                                 np.where(a <= limit, L - 1.0, 0.0))
            k = np.clip(np.nan_to_num(guess, nan=0.0, posinf=L - 1.0, neginf=0.0), 1.0, L - 1.0)
            up = np.minimum(k + 1.0, L - 1.0)
            k = np.where(b * up + a <= limit, up, k)  # one step either way fixes the rounding of the guess
            k = np.where(b * k + a > limit, k - 1.0, k).astype(np.int64)  # 0: no interior split fits
        else:
            k = (self.expand(form)[..., 1:L] <= limit[..., None]).sum(axis=-1)
        k = np.where(form[..., 1] <= limit, L, k)
        return np.where(form[..., 0] <= limit, k, -1)

    def token_tables(self, max_prompt: int, max_output: int) -> tuple[np.ndarray, np.ndarray]:
        """Parts in affine split form of every request up to ``max_prompt`` x ``max_output`` tokens, as two tables.

        Returns ``(by_prompt, by_context)`` of shapes ``(max_prompt + 1, 6, form)``
        and ``(max_prompt + max_output, 6, form)``: row P of ``by_prompt`` holds the
        parts of (P, 1), row c of ``by_context`` those of (1, c); fields in the order
        of :data:`TABLE_FIELDS`. The parts of (P, T) are then ``by_prompt[P] +
        by_context[P + T - 1] - by_context[P]``: each part is a function of P
        (prefill), a sum over the decode contexts P + 1..P + T - 1, and terms
        linear in P and T, for which this identity is exact. Checked here on
        sample requests (ValueError if a profile breaks it).
        """
        if max_prompt < 1 or max_output < 1:
            raise ValueError(f"token_tables: expected max_prompt, max_output >= 1, got {max_prompt}, {max_output}")
        contexts = np.arange(max_prompt + max_output, dtype=np.float64)
        by_prompt = self._table_rows(np.maximum(contexts[:max_prompt + 1], 1.0), np.ones(max_prompt + 1))
        by_context = self._table_rows(np.ones(len(contexts)), np.maximum(contexts, 1.0))
        by_prompt[0] = by_context[0] = 0.0  # no request has 0 tokens
        P = np.unique(np.linspace(1, max_prompt, 7).round())
        T = np.unique(np.linspace(1, max_output, 7).round())
        P, T = (x.ravel() for x in np.meshgrid(P, T))
        pi, ti = P.astype(np.int64), T.astype(np.int64)
        combined = by_prompt[pi] + by_context[pi + ti - 1] - by_context[pi]
        direct = self._table_rows(P, T)
        if not np.allclose(combined, direct, rtol=1e-9, atol=1e-12 * np.abs(direct).max()):
            raise ValueError(f"token_tables: the parts of {self.model.name} on {self.edge.name}/{self.server.name} "
                             "are not a prefill term plus a sum over decode contexts (a measured fit clipped at 0?)")
        return by_prompt, by_context

    def _table_rows(self, prompt_tokens, output_tokens) -> np.ndarray:
        form = self.form_parts(prompt_tokens, output_tokens)
        return np.stack([getattr(form, k) for k in TABLE_FIELDS], axis=-2)

    def memory_fit_by_tokens(self, max_tokens: int) -> np.ndarray:
        """:meth:`last_split_within` the edge's usable memory for requests of 0..max_tokens tokens (P + T).

        Edge memory depends on the request only through P + T (weights + KV cache).
        Rows 0 and 1 (no request has fewer than 2 tokens) repeat row 2.
        """
        tokens = np.arange(max(max_tokens, 2) + 1, dtype=np.float64)
        form = self.form_parts(np.maximum(tokens - 1.0, 1.0), 1.0)
        return self.last_split_within(form.edge_memory_bytes, self.edge.usable_memory_bytes)

    def parts(self, prompt_tokens, output_tokens) -> RequestParts:
        """:func:`request_parts` of these requests (last axis: splits 0..L)."""
        form = self.form_parts(prompt_tokens, output_tokens)
        fields = {k: self.expand(v) for k, v in vars(form).items() if k != "feasible"}
        return RequestParts(**fields, feasible=fields["edge_memory_bytes"] <= self.edge.usable_memory_bytes)


def link_costs(parts: RequestParts, edge: DeviceProfile, uplink_bps, downlink_bps, rtt_s, *, server_share=1.0,
               radio_power_scale=1.0, activation_dtype: str = "float16", check: bool = True) -> SplitCosts:
    """Complete ``parts`` with the link, the server's load and the edge's energy.

    Request arguments broadcast against the requests of ``parts``.
    ``check=False`` skips input validation (for callers that built valid inputs).
    """
    act_scale = _check_dtype(activation_dtype, "activation_dtype", ACTIVATION_DTYPES) / 2.0
    if check:
        uplink_bps = _as_positive(uplink_bps, "uplink_bps")
        downlink_bps = _as_positive(downlink_bps, "downlink_bps")
        rtt_s = _as_positive(rtt_s, "rtt_s", allow_zero=True)
        server_share = _as_positive(server_share, "server_share")
        if np.any(server_share > 1):
            raise ValueError(f"server_share: expected numbers in (0, 1], got {_show(server_share)}")
        radio_power_scale = _as_positive(radio_power_scale, "radio_power_scale", allow_zero=True)
    up = np.asarray(uplink_bps, dtype=np.float64)[..., None]
    down = np.asarray(downlink_bps, dtype=np.float64)[..., None]
    rtt = np.asarray(rtt_s, dtype=np.float64)[..., None]
    share = np.asarray(server_share, dtype=np.float64)[..., None]
    radio = np.asarray(radio_power_scale, dtype=np.float64)[..., None]

    uplink_bytes, uplink, downlink, server_compute, round_trip, total, energy = link_terms(
        parts.edge_compute_s, parts.server_compute_s, parts.uplink_token_bytes, parts.uplink_hidden_bytes,
        parts.downlink_bytes, parts.round_trips, up, down, rtt, share, radio, act_scale,
        edge.power_active_w, edge.power_idle_w, edge.power_radio_tx_w)
    edge_compute = np.broadcast_to(parts.edge_compute_s, uplink.shape)
    return SplitCosts(
        edge_compute_s=edge_compute, uplink_s=uplink, server_compute_s=server_compute, downlink_s=downlink,
        round_trip_s=round_trip, total_s=total, edge_energy_j=energy,
        edge_memory_bytes=np.broadcast_to(parts.edge_memory_bytes, uplink.shape),
        uplink_bytes=uplink_bytes, downlink_bytes=np.broadcast_to(parts.downlink_bytes, uplink.shape),
        feasible=np.broadcast_to(parts.feasible, uplink.shape),
    )


def link_terms(edge_compute_s, server_compute_s, uplink_token_bytes, uplink_hidden_bytes, downlink_bytes,
               round_trips, uplink_bps, downlink_bps, rtt_s, server_share, radio_power_scale, activation_scale,
               power_active_w, power_idle_w, power_radio_tx_w):
    """The arithmetic of :func:`link_costs` on request parts: floats or broadcastable arrays.

    Returns (uplink bytes, uplink s, downlink s, server compute s, round trips s,
    total s, edge energy J). Linear in the parts, so it also maps parts in affine
    split form to costs in that form. Compiled as it is by the envs' kernels.
    """
    uplink_bytes = uplink_token_bytes + uplink_hidden_bytes * activation_scale
    uplink = uplink_bytes * (8.0 / uplink_bps)
    downlink = downlink_bytes * (8.0 / downlink_bps)
    server_compute = server_compute_s / server_share
    round_trip = round_trips * rtt_s
    total = edge_compute_s + uplink + server_compute + downlink + round_trip
    energy = (edge_compute_s * (power_active_w - power_idle_w) + uplink * (power_radio_tx_w * radio_power_scale
                                                                            - power_idle_w)
              + total * power_idle_w)
    return uplink_bytes, uplink, downlink, server_compute, round_trip, total, energy


def split_costs(model: ModelProfile, edge: DeviceProfile, server: DeviceProfile, uplink_bps, downlink_bps,
                rtt_s, prompt_tokens, output_tokens, *, dtype: str | None = None, kv_dtype: str = "float16",
                activation_dtype: str = "float16", server_share=1.0, radio_power_scale=1.0,
                edge_dtype: str | None = None, use_measured: bool = True,
                edge_runtime: str | RuntimeProfile | None = None, edge_weight_format: str | None = None,
                server_runtime: str | RuntimeProfile | None = None,
                server_weight_format: str | None = None) -> SplitCosts:
    """Cost breakdown of every split point 0..L for a batch of requests.

    All request arguments (rates in bit/s, ``rtt_s``, token counts,
    ``server_share`` — the fraction of the server's compute this request gets,
    in (0, 1] — and ``radio_power_scale`` — the edge radio's power relative to
    its profile, e.g. a transmit-power fraction) broadcast to one shape
    ``R``; every output has shape ``R + (L+1,)``, split k in column k.
    ``activation_dtype`` compresses the hidden states sent uplink.
    Each side's runtime and weight format default to its device's ``runs``;
    ``dtype`` / ``edge_dtype`` ask for the ideal roofline instead (:class:`SplitModel`).
    """
    _check_profiles(model, edge, server)
    _check_dtype(activation_dtype, "activation_dtype", ACTIVATION_DTYPES)
    up = _as_positive(uplink_bps, "uplink_bps")
    down = _as_positive(downlink_bps, "downlink_bps")
    rtt = _as_positive(rtt_s, "rtt_s", allow_zero=True)
    P = _as_tokens(prompt_tokens, "prompt_tokens", 1)
    T = _as_tokens(output_tokens, "output_tokens", 1)
    share = _as_positive(server_share, "server_share")
    if np.any(share > 1):
        raise ValueError(f"server_share: expected numbers in (0, 1], got {_show(server_share)}")
    radio = _as_positive(radio_power_scale, "radio_power_scale", allow_zero=True)
    up, down, rtt, P, T, share, radio = np.broadcast_arrays(up, down, rtt, P, T, share, radio)
    parts = request_parts(model, edge, server, P, T, dtype=dtype, kv_dtype=kv_dtype, edge_dtype=edge_dtype,
                          use_measured=use_measured, edge_runtime=edge_runtime, edge_weight_format=edge_weight_format,
                          server_runtime=server_runtime, server_weight_format=server_weight_format)
    return link_costs(parts, edge, up, down, rtt, server_share=share, radio_power_scale=radio,
                      activation_dtype=activation_dtype, check=False)


# --------------------------------------------------------------------------
# Queues: edge and server as a two-stage pipeline


@dataclass(frozen=True)
class QueuedCosts:
    """A request's costs at every split once it waits behind earlier requests."""

    edge_wait_s: np.ndarray  #: waiting for the edge to finish earlier work (splits k >= 1)
    server_wait_s: np.ndarray  #: waiting for the server once the request can reach it (splits k < L)
    latency_s: np.ndarray  #: edge_wait + server_wait + the split's total
    edge_energy_j: np.ndarray  #: the split's edge energy + idle power while waiting
    edge_backlog_s: np.ndarray  #: edge busy time from the arrival on, after taking this request
    server_backlog_s: np.ndarray  #: server busy time from the arrival on, after taking this request


def queue_waits(split, num_layers: int, edge_backlog_s, server_backlog_s):
    """(edge wait, server wait) in seconds of a request at ``split`` given each side's backlog.

    The edge serves its layers first come, first served: a request that runs
    any layer (k >= 1) waits the edge backlog. It reaches the server after its
    edge wait and waits for whatever server backlog is left then (k < L).
    Works on floats and on broadcastable arrays.
    """
    edge_wait = edge_backlog_s * (split >= 1)
    left = server_backlog_s - edge_wait
    server_wait = (left + abs(left)) * 0.5 * (split < num_layers)  # max(left, 0), exact, for floats and arrays
    return edge_wait, server_wait


def with_queues(sc: SplitCosts, edge: DeviceProfile, edge_backlog_s, server_backlog_s, *, split=None,
                num_layers: int | None = None) -> QueuedCosts:
    """Add queueing (:func:`queue_waits`) to every split of ``sc``.

    Each side is then busy for its own compute time; the other side is free
    to serve other requests meanwhile (a pipeline). With ``split`` (integer
    array broadcastable to ``sc``'s shape) and ``num_layers``, the last axis of
    ``sc`` holds those splits' costs (e.g. one chosen split) instead of 0..L.
    """
    eb = _as_positive(edge_backlog_s, "edge_backlog_s", allow_zero=True)[..., None]
    sb = _as_positive(server_backlog_s, "server_backlog_s", allow_zero=True)[..., None]
    if split is None:
        L = sc.num_splits - 1
        k = np.arange(L + 1)
    elif num_layers is None:
        raise ValueError("with_queues: num_layers is required with split")
    else:
        L, k = num_layers, np.asarray(split)
    edge_wait, server_wait = queue_waits(k, L, eb, sb)
    edge_wait = np.broadcast_to(edge_wait, sc.total_s.shape)
    server_wait = np.broadcast_to(server_wait, sc.total_s.shape)
    waits = edge_wait + server_wait
    return QueuedCosts(
        edge_wait_s=edge_wait,
        server_wait_s=server_wait,
        latency_s=sc.total_s + waits,
        edge_energy_j=sc.edge_energy_j + waits * edge.power_idle_w,
        edge_backlog_s=np.where(k >= 1, edge_wait + sc.edge_compute_s, eb),
        server_backlog_s=np.where(k < L, waits + sc.server_compute_s, sb),
    )


# --------------------------------------------------------------------------
# Accuracy: errors and compression of the hidden state sent at a split

#: Parameters of :func:`accuracy_penalty`, with their sources.
ACCURACY_CURVE = {
    # Element erasure probability of the hidden state vs uplink SNR: a logistic
    # block-error curve (the usual link-level abstraction), 50% at -10 dB, 1.5 dB
    # wide. Assumption standing for a low-MCS NR/LTE BLER curve; no retransmission
    # within the deadline. Chen et al. (2024)'s own channel (their code,
    # add_noise.py) erases hidden-state elements with a probability p.
    "erasure_snr50_db": -10.0,
    "erasure_slope_db": 1.5,
    # Relative perplexity increase per unit of erased elements when they miss the
    # outlier dimensions: Dettmers et al. 2022 (LLM.int8(), sec. 4.2) zero 7 random
    # of 4096 dimensions (0.17%) for +0.1% perplexity, about 0.6 per unit.
    "random_erasure_slope": 0.6,
    # Erasing the few outlier dimensions is catastrophic: zeroing 7 outlier
    # dimensions raises perplexity by 600-1000% (Dettmers et al. 2022, sec. 4.2).
    "outlier_dims": 7,
    "outlier_loss": 6.0,
    # Sending the hidden state compressed: SmoothQuant (Xiao et al. 2023, Table 6)
    # W8A8 LLaMA-7B WikiText-2 11.51 -> 11.56 (+0.4%); ~4-bit communicated
    # activations keep 98-99.5% of task performance (Dong et al. 2024,
    # arXiv:2411.07942): 1.5%.
    "compression": {"float16": 0.0, "int8": 0.004, "int4": 0.015},
    # Sensitivity to the split depth x = k / L: s(x) = s_min + (1 - s_min) exp(-x / tau).
    # Chen et al. (2024) find the same channel noise hurts perplexity less when
    # injected deeper, so the best split moves away from the input as the
    # channel worsens. tau and s_min are assumptions (no per-layer numbers are
    # published); calibrate them with a perplexity sweep.
    "depth_tau": 0.3,
    "depth_floor": 0.1,
}


def erasure_probability(snr_db) -> np.ndarray:
    """Probability that a hidden-state element is lost on the uplink at ``snr_db`` (logistic BLER)."""
    return erasure_from_snr(np.asarray(snr_db, dtype=np.float64), *erasure_terms())


def erasure_terms() -> tuple[float, float]:
    """The numbers of :func:`erasure_from_snr` after ``snr_db``, from ``ACCURACY_CURVE``."""
    return float(ACCURACY_CURVE["erasure_snr50_db"]), float(ACCURACY_CURVE["erasure_slope_db"])


def erasure_from_snr(snr_db, snr50_db, slope_db):
    """The logistic of :func:`erasure_probability` with its numbers, unchecked (arrays or compiled)."""
    return 1.0 / (1.0 + np.exp((snr_db - snr50_db) / slope_db))


def accuracy_penalty(split, num_layers: int, snr_db, activation_dtype: str = "float16") -> np.ndarray:
    """Loss of answer quality in [0, 1) from sending the hidden state after layer ``split``.

    ``1 - exp(-s(k / L) * (0.6 p + 6 (1 - (1 - p)^7) + q(dtype)))``: the
    relative perplexity increase ``s * loss`` while it is small, saturating
    towards 1 when the model breaks; ``p`` is the erasure probability at
    ``snr_db`` and ``s`` the depth sensitivity (``ACCURACY_CURVE`` holds the
    parameters and their sources). 0 at split 0 (token ids, sent reliably) and
    at split L (nothing sent). Broadcasts over ``split`` and ``snr_db``.
    """
    return penalty_from_loss(split, num_layers, accuracy_loss(snr_db, activation_dtype))


def accuracy_loss(snr_db, activation_dtype: str = "float16") -> np.ndarray:
    """``0.6 p + 6 (1 - (1 - p)^7) + q(dtype)``: the loss of :func:`accuracy_penalty` before the depth."""
    return loss_from_erasure(erasure_probability(snr_db), *accuracy_loss_terms(activation_dtype))


def accuracy_loss_terms(activation_dtype: str = "float16") -> tuple[float, ...]:
    """The numbers of :func:`loss_from_erasure` after the erasure probability, from ``ACCURACY_CURVE``."""
    c = ACCURACY_CURVE
    if activation_dtype not in c["compression"]:
        raise ValueError(f"activation_dtype: expected one of {', '.join(c['compression'])}, got {activation_dtype!r}")
    return (float(c["random_erasure_slope"]), float(c["outlier_dims"]), float(c["outlier_loss"]),
            float(c["compression"][activation_dtype]))


def loss_from_erasure(p, random_erasure_slope, outlier_dims, outlier_loss, compression):
    """:func:`accuracy_loss` from the erasure probability ``p``, unchecked (arrays or compiled, as are
    :func:`erasure_from_snr` and :func:`penalty_from_sensitivity`, by the envs' kernels)."""
    p = np.minimum(p, 1.0 - 1e-12)
    return random_erasure_slope * p + outlier_loss * -np.expm1(outlier_dims * np.log1p(-p)) + compression


def depth_sensitivity(split, num_layers: int) -> np.ndarray:
    """``s(k / L) = s_min + (1 - s_min) exp(-(k / L) / tau)`` inside, 0 at k = 0 and L (nothing noisy sent)."""
    c = ACCURACY_CURVE
    k = np.asarray(split, dtype=np.float64)
    sensitivity = c["depth_floor"] + (1.0 - c["depth_floor"]) * np.exp(-(k / num_layers) / c["depth_tau"])
    return np.where((k > 0) & (k < num_layers), sensitivity, 0.0)


def penalty_from_sensitivity(sensitivity, loss):
    """``1 - exp(-s loss)``: the penalty at a split of depth sensitivity ``s`` (floats or arrays)."""
    return -np.expm1(-sensitivity * loss)


def penalty_from_loss(split, num_layers: int, loss) -> np.ndarray:
    """:func:`accuracy_penalty` from :func:`accuracy_loss`: ``1 - exp(-s(k / L) loss)``, 0 at k = 0 and L."""
    return penalty_from_sensitivity(depth_sensitivity(split, num_layers), loss)


# --------------------------------------------------------------------------
# Calls to a model billed per token (a hosted API)


def api_call_costs(prompt_tokens, output_tokens, usd_per_million_input: float, usd_per_million_output: float, *,
                   first_token_s: float = 0.0, per_output_token_s: float = 0.0) -> tuple[np.ndarray, RequestParts]:
    """Price and request parts of calls to a model billed per token.

    Returns ``(usd, parts)``: ``usd = (P x input price + T x output price) / 1e6``,
    and the :class:`RequestParts` of one column (split 0: the prompt's token
    ids up, the T generated ids down, one round trip) whose server compute is
    the provider's time ``first_token_s + (T - 1) x per_output_token_s``;
    complete them with :func:`link_costs` for the link and the edge's energy.
    """
    P = _as_tokens(prompt_tokens, "prompt_tokens", 1)
    T = _as_tokens(output_tokens, "output_tokens", 1)
    P, T = np.broadcast_arrays(P, T)
    price_in = float(_as_positive(usd_per_million_input, "usd_per_million_input", allow_zero=True))
    price_out = float(_as_positive(usd_per_million_output, "usd_per_million_output", allow_zero=True))
    ttft = float(_as_positive(first_token_s, "first_token_s", allow_zero=True))
    tpot = float(_as_positive(per_output_token_s, "per_output_token_s", allow_zero=True))
    usd = (P * price_in + T * price_out) / 1e6
    column = P.shape + (1,)
    parts = RequestParts(
        edge_compute_s=np.zeros(column), server_compute_s=(ttft + (T - 1.0) * tpot)[..., None],
        uplink_token_bytes=(P * TOKEN_ID_BYTES)[..., None], uplink_hidden_bytes=np.zeros(column),
        downlink_bytes=(T * TOKEN_ID_BYTES)[..., None], round_trips=np.ones(column),
        edge_memory_bytes=np.zeros(column), feasible=np.ones(column, dtype=bool),
    )
    return usd, parts
