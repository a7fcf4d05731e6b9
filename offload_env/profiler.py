"""Per-layer profiler: time real decoder layers on this machine.

Builds Llama-style decoder layers (and the final norm + LM head) in plain
PyTorch from a Hugging Face style ``config.json`` mapping, with random
weights, and times prefill and decode per layer. Nothing is downloaded and
``transformers`` is not needed: only the architecture matters for time.

Supported ``model_type`` values: ``llama``, ``mistral``, ``qwen2`` (q/k/v
biases), ``phi3`` (fused qkv and gate/up projections), ``gemma``/``gemma2``
(``1 + w`` RMSNorm, GELU-tanh gated MLP; gemma2 adds the sandwich norms and
attention logit soft-capping), ``gptj`` (LayerNorm, parallel attention + MLP,
plain GELU MLP with biases, partial rotary) and ``mixtral`` (top-k routed
experts: a token only runs its ``num_experts_per_tok`` experts, so the time
measured is that of the active experts). Unknown types with Llama keys are
built as Llama. Sliding-window attention and RoPE scaling are not modelled
(they do not change the cost at the contexts profiled).

A layer is: pre-norm, attention with grouped-query heads (K/V heads repeated
to the query heads), rotary position embedding, a KV cache and a causal mask,
then a gated SiLU (or plain GELU) MLP, each with a residual connection.

``import offload_env.profiler`` works without PyTorch; the functions that need
it raise an :class:`ImportError` that says ``pip install 'offload-env[profile]'``.

Typical use (what ``offload-env profile measure`` does)::

    from offload_env import profiler, profiles
    model = profiles.load_model("qwen2.5-0.5b")
    m = profiler.measure(model.hf_config, threads=1)
    profiler.write_measured("profiles/measured/my-box/qwen2.5-0.5b.yaml",
                            model=model.name, device="my-box", measurement=m,
                            measured_on="2026-11-24")
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .atomic import write_text
from .profiles import _NAME_RE, DTYPE_BYTES, NAME_PATTERN_TEXT, SCHEMA_VERSION, ProfileError, read_architecture

__all__ = [
    "LayerSpec",
    "layer_spec",
    "build_layers",
    "build_lm_head",
    "make_kv_cache",
    "run_layers",
    "measure",
    "measure_host_peaks",
    "host_info",
    "write_measured",
    "read_measured",
    "COMPUTE_DTYPES",
]

#: dtypes the profiler can build layers in.
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")

_INSTALL_HINT = ("the offload-env profiler needs PyTorch: pip install 'offload-env[profile]' "
                 "(install the CPU build of torch first, e.g. "
                 "pip install torch --index-url https://download.pytorch.org/whl/cpu)")

_MISSING = object()


def _torch():
    """Import torch lazily, with an actionable error when it is absent."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(_INSTALL_HINT) from exc
    return torch


# --------------------------------------------------------------------------
# Architecture from a Hugging Face config (pure Python, no torch)

_ACTIVATIONS = ("silu", "swish", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu")


@dataclass(frozen=True)
class LayerSpec:
    """The architecture of one decoder layer (and the LM head), read from an HF config."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    num_layers: int | None
    rotary_dim: int
    rope_theta: float
    norm_eps: float
    norm: str                   # "rms" | "rms_offset" (gemma: x * (1 + w)) | "layernorm"
    activation: str
    gated: bool                 # gated MLP (3 matrices) or plain (2)
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    parallel: bool              # GPT-J: x + attn(ln(x)) + mlp(ln(x))
    sandwich_norms: bool        # Gemma-2: 4 norms per layer
    fused: bool                 # Phi-3: qkv_proj and gate_up_proj
    num_experts: int
    experts_per_token: int
    attn_softcap: float | None
    attn_scale: float
    lm_head_bias: bool

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1


def layer_spec(hf_config: Mapping) -> LayerSpec:
    """Read the architecture of a decoder layer from an HF ``config.json`` mapping.

    Raises :class:`~offload_env.profiles.ProfileError` (a ``ValueError``)
    naming the field on a missing or bad key.
    """
    where = "hf_config"
    if not isinstance(hf_config, Mapping):
        raise ProfileError(f"{where}: expected a mapping of config keys, got {type(hf_config).__name__}")
    cfg = hf_config

    def fail(key: str, expected: str, got: Any = _MISSING) -> ProfileError:
        shown = "missing" if got is _MISSING else f"got {got!r}"
        return ProfileError(f"{where}: field '{key}': expected {expected}, {shown}")

    def integer(*keys: str, default: Any = _MISSING, low: int = 1) -> Any:
        for key in keys:
            value = cfg.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(key, f"an integer >= {low}", value)
            return value
        if default is _MISSING:
            alt = f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""
            raise fail(keys[0], f"an integer >= {low}{alt}")
        return default

    def number(*keys: str, default: float) -> float:
        for key in keys:
            value = cfg.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise fail(key, "a positive, finite number", value)
            return float(value)
        return default

    arch = read_architecture(cfg, where, need_layers=False)
    family = arch.family
    gptj = family == "gptj"
    gemma = family in ("gemma", "gemma2")
    h, head_dim = arch.hidden_size, arch.head_dim

    if cfg.get("rotary_dim") is not None:
        rotary_dim = integer("rotary_dim")
    else:
        factor = number("partial_rotary_factor", default=1.0)
        rotary_dim = int(head_dim * min(factor, 1.0))
    rotary_dim -= rotary_dim % 2
    if not 2 <= rotary_dim <= head_dim:
        raise fail("rotary_dim", f"an even number in [2, head_dim={head_dim}]", rotary_dim)

    if gptj:
        act = cfg.get("activation_function") or "gelu_new"
        act_key = "activation_function"
    elif gemma:
        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
        act_key = "hidden_activation"
    else:
        act = cfg.get("hidden_act") or "silu"
        act_key = "hidden_act"
    if act not in _ACTIVATIONS:
        raise fail(act_key, "one of " + ", ".join(_ACTIVATIONS), act)

    softcap = cfg.get("attn_logit_softcapping") if family == "gemma2" else None
    if softcap is not None:
        softcap = number("attn_logit_softcapping", default=0.0)
    scalar = cfg.get("query_pre_attn_scalar") if family == "gemma2" else None
    scale = (number("query_pre_attn_scalar", default=1.0) if scalar is not None else float(head_dim)) ** -0.5

    return LayerSpec(
        model_type=arch.model_type,
        hidden_size=h,
        intermediate_size=arch.intermediate_size,
        num_heads=arch.num_heads,
        num_kv_heads=arch.num_kv_heads,
        head_dim=head_dim,
        vocab_size=arch.vocab_size,
        num_layers=arch.num_layers,
        rotary_dim=rotary_dim,
        rope_theta=number("rope_theta", default=10000.0),
        norm_eps=number("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps",
                        default=1e-5 if gptj else 1e-6),
        norm="layernorm" if gptj else ("rms_offset" if gemma else "rms"),
        activation=act,
        gated=arch.gated_mlp,
        qkv_bias=arch.qkv_bias,
        o_bias=arch.o_bias,
        mlp_bias=arch.mlp_bias,
        parallel=gptj,
        sandwich_norms=family == "gemma2",
        fused=family == "phi3",
        num_experts=arch.num_experts,
        experts_per_token=arch.experts_per_token,
        attn_softcap=softcap,
        attn_scale=scale,
        lm_head_bias=gptj,
    )


# --------------------------------------------------------------------------
# The torch modules (defined on first use, so that torch stays optional)


def _torch_dtype(dtype: Any):
    torch = _torch()
    if isinstance(dtype, torch.dtype):
        for name in COMPUTE_DTYPES:
            if getattr(torch, name) == dtype:
                return dtype
    elif dtype in COMPUTE_DTYPES:
        return getattr(torch, dtype)
    raise ValueError(f"dtype: expected one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")


def _dtype_name(dtype: Any) -> str:
    torch = _torch()
    return str(_torch_dtype(dtype)).replace("torch.", "") if isinstance(dtype, torch.dtype) else str(dtype)


@functools.lru_cache(maxsize=None)
def _nn():
    """The module classes, built once torch is importable."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    def activation(name: str) -> Callable:
        if name in ("silu", "swish"):
            return F.silu
        if name == "gelu":
            return F.gelu
        if name in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
            return functools.partial(F.gelu, approximate="tanh")
        return F.relu

    class RMSNorm(nn.Module):
        def __init__(self, size: int, eps: float, offset: bool, dtype):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(size, dtype=dtype))
            self.eps = eps
            self.offset = offset  # Gemma: x * (1 + w), w initialised to 0

        def reset_parameters(self) -> None:
            with torch.no_grad():
                self.weight.fill_(0.0 if self.offset else 1.0)

        def forward(self, x):
            x32 = x.float()
            x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
            if self.offset:
                return (x32 * (1.0 + self.weight.float())).to(x.dtype)
            return self.weight * x32.to(x.dtype)

    def norm(spec: LayerSpec, dtype):
        if spec.norm == "layernorm":
            return nn.LayerNorm(spec.hidden_size, eps=spec.norm_eps, dtype=dtype)
        return RMSNorm(spec.hidden_size, spec.norm_eps, spec.norm == "rms_offset", dtype)

    class MLP(nn.Module):
        """Gated (down(act(gate x) * up x)) or plain (fc_out(act(fc_in x))) MLP."""

        def __init__(self, spec: LayerSpec, dtype):
            super().__init__()
            h, f, bias = spec.hidden_size, spec.intermediate_size, spec.mlp_bias
            self.gated, self.fused = spec.gated, spec.fused
            self.act = activation(spec.activation)
            if spec.gated and spec.fused:
                self.gate_up_proj = nn.Linear(h, 2 * f, bias=bias, dtype=dtype)
            elif spec.gated:
                self.gate_proj = nn.Linear(h, f, bias=bias, dtype=dtype)
                self.up_proj = nn.Linear(h, f, bias=bias, dtype=dtype)
            else:
                self.fc_in = nn.Linear(h, f, bias=bias, dtype=dtype)
            self.down_proj = nn.Linear(f, h, bias=bias, dtype=dtype)

        def forward(self, x):
            if not self.gated:
                return self.down_proj(self.act(self.fc_in(x)))
            if self.fused:
                gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
            else:
                gate, up = self.gate_proj(x), self.up_proj(x)
            return self.down_proj(self.act(gate) * up)

    class MoE(nn.Module):
        """Top-k routed experts (Mixtral): each token runs only its k experts."""

        def __init__(self, spec: LayerSpec, dtype):
            super().__init__()
            self.k = spec.experts_per_token
            self.gate = nn.Linear(spec.hidden_size, spec.num_experts, bias=False, dtype=dtype)
            self.experts = nn.ModuleList(MLP(spec, dtype) for _ in range(spec.num_experts))

        def forward(self, x):
            shape = x.shape
            flat = x.reshape(-1, shape[-1])
            probs = torch.softmax(self.gate(flat).float(), dim=-1)
            weights, chosen = torch.topk(probs, self.k, dim=-1)
            weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
            out = torch.zeros_like(flat)
            for e in torch.unique(chosen).tolist():
                token, slot = torch.where(chosen == e)
                y = self.experts[e](flat[token]) * weights[token, slot, None]
                out.index_add_(0, token, y)
            return out.reshape(shape)

    class Attention(nn.Module):
        def __init__(self, spec: LayerSpec, dtype):
            super().__init__()
            self.spec = spec
            h, d = spec.hidden_size, spec.head_dim
            self.q_out, self.kv_out = spec.num_heads * d, spec.num_kv_heads * d
            if spec.fused:
                self.qkv_proj = nn.Linear(h, self.q_out + 2 * self.kv_out, bias=spec.qkv_bias, dtype=dtype)
            else:
                self.q_proj = nn.Linear(h, self.q_out, bias=spec.qkv_bias, dtype=dtype)
                self.k_proj = nn.Linear(h, self.kv_out, bias=spec.qkv_bias, dtype=dtype)
                self.v_proj = nn.Linear(h, self.kv_out, bias=spec.qkv_bias, dtype=dtype)
            self.o_proj = nn.Linear(self.q_out, h, bias=spec.o_bias, dtype=dtype)

        def forward(self, x, cos, sin, cache=None):
            s = self.spec
            b, t, _ = x.shape
            if s.fused:
                q, k, v = self.qkv_proj(x).split([self.q_out, self.kv_out, self.kv_out], dim=-1)
            else:
                q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
            q = q.view(b, t, s.num_heads, s.head_dim).transpose(1, 2)
            k = k.view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
            v = v.view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
            q = _apply_rope(torch, q, cos, sin, s.rotary_dim)
            k = _apply_rope(torch, k, cos, sin, s.rotary_dim)
            past = 0
            if cache is not None:
                past = cache.length
                k, v = cache.append(k, v)
            rep = s.num_heads // s.num_kv_heads
            if rep > 1:  # grouped-query attention: repeat each K/V head for its query heads
                total = k.shape[2]
                k = k[:, :, None].expand(b, s.num_kv_heads, rep, total, s.head_dim).reshape(
                    b, s.num_heads, total, s.head_dim)
                v = v[:, :, None].expand(b, s.num_kv_heads, rep, total, s.head_dim).reshape(
                    b, s.num_heads, total, s.head_dim)
            mask = None
            if t > 1 and past > 0:  # query i sits at position past + i
                mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            if s.attn_softcap is None:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                     is_causal=t > 1 and past == 0, scale=s.attn_scale)
            else:  # Gemma-2 soft-capping is not in SDPA: eager attention
                scores = torch.matmul(q, k.transpose(-1, -2)) * s.attn_scale
                scores = torch.tanh(scores / s.attn_softcap) * s.attn_softcap
                if t > 1:
                    if mask is None:
                        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
                    scores = scores.masked_fill(~mask, float("-inf"))
                out = torch.matmul(torch.softmax(scores.float(), dim=-1).to(q.dtype), v)
            return self.o_proj(out.transpose(1, 2).reshape(b, t, self.q_out))

    class DecoderLayer(nn.Module):
        """One pre-norm decoder layer; ``forward(x, cos, sin, cache=None)``."""

        def __init__(self, spec: LayerSpec, dtype):
            super().__init__()
            self.spec = spec
            self.input_layernorm = norm(spec, dtype)
            self.self_attn = Attention(spec, dtype)
            self.mlp = MoE(spec, dtype) if spec.is_moe else MLP(spec, dtype)
            if not spec.parallel:
                self.post_attention_layernorm = norm(spec, dtype)
            if spec.sandwich_norms:
                self.pre_feedforward_layernorm = norm(spec, dtype)
                self.post_feedforward_layernorm = norm(spec, dtype)

        def forward(self, x, cos, sin, cache=None):
            s = self.spec
            if s.parallel:
                normed = self.input_layernorm(x)
                return x + self.self_attn(normed, cos, sin, cache) + self.mlp(normed)
            attn = self.self_attn(self.input_layernorm(x), cos, sin, cache)
            if s.sandwich_norms:
                x = x + self.post_attention_layernorm(attn)
                return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
            x = x + attn
            return x + self.mlp(self.post_attention_layernorm(x))

    class KVCache:
        """Preallocated K/V of one layer: ``(batch, kv_heads, capacity, head_dim)``.

        ``length`` tokens are held; :meth:`append` writes new ones after them,
        :meth:`reset` forgets all but the first ``length`` (untimed bookkeeping
        between timed repeats), :meth:`fill_random` pretends a context was
        already processed.
        """

        def __init__(self, spec: LayerSpec, capacity: int, batch: int, dtype):
            shape = (batch, spec.num_kv_heads, capacity, spec.head_dim)
            self.k = torch.zeros(shape, dtype=dtype)
            self.v = torch.zeros(shape, dtype=dtype)
            self.capacity = capacity
            self.length = 0

        def append(self, k, v):
            end = self.length + k.shape[2]
            if end > self.capacity:
                raise ValueError(f"KV cache overflow: {end} tokens > capacity {self.capacity}")
            self.k[:, :, self.length:end] = k
            self.v[:, :, self.length:end] = v
            self.length = end
            return self.k[:, :, :end], self.v[:, :, :end]

        def reset(self, length: int = 0) -> None:
            if not 0 <= length <= self.capacity:
                raise ValueError(f"KV cache length {length} outside [0, {self.capacity}]")
            self.length = length

        def fill_random(self, length: int, generator=None) -> None:
            self.reset(length)
            for buf in (self.k, self.v):
                buf[:, :, :length] = torch.randn(buf[:, :, :length].shape, generator=generator).to(buf.dtype)

    def init_weights(module, std_scale: float = 1.0) -> None:
        """Random weights N(0, 1/fan_in) for linears, identity for norms."""
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, std_scale / math.sqrt(m.in_features))
                    if m.bias is not None:
                        m.bias.normal_(0.0, 0.02)
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.fill_(0.0)
                elif isinstance(m, RMSNorm):
                    m.reset_parameters()

    return dict(RMSNorm=RMSNorm, MLP=MLP, MoE=MoE, Attention=Attention, DecoderLayer=DecoderLayer,
                KVCache=KVCache, norm=norm, init_weights=init_weights)


def _apply_rope(torch, x, cos, sin, rotary_dim: int):
    """Rotary embedding (rotate-half form) on the first ``rotary_dim`` dims of each head."""
    if rotary_dim == x.shape[-1]:
        rot, rest = x, None
    else:
        rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    x1, x2 = rot.chunk(2, dim=-1)
    rot = rot * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rot if rest is None else torch.cat((rot, rest), dim=-1)


def _rope_tables(spec: LayerSpec, start: int, length: int, dtype):
    torch = _torch()
    inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, spec.rotary_dim, 2, dtype=torch.float32)
                                          / spec.rotary_dim))
    positions = torch.arange(start, start + length, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _materialise(build: Callable, seed: int):
    """Build modules on the meta device, allocate them, and fill in seeded random weights."""
    torch = _torch()
    with torch.device("meta"):
        module = build()
    module = module.to_empty(device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _nn()["init_weights"](module)
    module.requires_grad_(False)
    return module.eval()


def build_layers(hf_config: Mapping, num_layers: int, dtype: Any = "float32", *, seed: int = 0):
    """``num_layers`` identical decoder layers with random weights, as a ``torch.nn.ModuleList``.

    Weights are seeded (``torch.manual_seed(seed)``, without disturbing the
    global RNG state) and the modules are in eval mode with gradients off.
    Run them with :func:`run_layers`.
    """
    spec = layer_spec(hf_config)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers: expected an integer >= 1, got {num_layers!r}")
    torch = _torch()
    tdtype = _torch_dtype(dtype)
    layer_cls = _nn()["DecoderLayer"]
    return _materialise(lambda: torch.nn.ModuleList(layer_cls(spec, tdtype) for _ in range(num_layers)), seed)


def build_lm_head(hf_config: Mapping, dtype: Any = "float32", *, seed: int = 1):
    """The final norm + ``Linear(hidden, vocab)`` (with a bias for GPT-J), random weights.

    Returns a ``torch.nn.Sequential``: ``head(hidden_states) -> logits``.
    """
    spec = layer_spec(hf_config)
    torch = _torch()
    tdtype = _torch_dtype(dtype)
    norm = _nn()["norm"]
    return _materialise(lambda: torch.nn.Sequential(
        norm(spec, tdtype),
        torch.nn.Linear(spec.hidden_size, spec.vocab_size, bias=spec.lm_head_bias, dtype=tdtype)), seed)


def make_kv_cache(layers, capacity: int, *, batch: int = 1) -> list:
    """One empty preallocated KV cache per layer, holding up to ``capacity`` tokens."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity: expected an integer >= 1, got {capacity!r}")
    cls = _nn()["KVCache"]
    first = layers[0]
    dtype = first.input_layernorm.weight.dtype
    return [cls(layer.spec, capacity, batch, dtype) for layer in layers]


def run_layers(layers, hidden, caches: Sequence | None = None):
    """Run ``hidden`` (``batch x tokens x hidden_size``) through ``layers``.

    With ``caches`` (from :func:`make_kv_cache`) the new tokens continue the
    sequence held in the caches: their positions start at the cache length,
    they attend to the cached tokens and to earlier new tokens only, and their
    K/V are appended. Without, the tokens form a whole causal sequence.
    """
    if caches is not None:
        if len(caches) != len(layers):
            raise ValueError(f"caches: expected one per layer ({len(layers)}), got {len(caches)}")
        lengths = {c.length for c in caches}
        if len(lengths) != 1:
            raise ValueError(f"caches: all layers must hold the same number of tokens, got {sorted(lengths)}")
        start = lengths.pop()
    else:
        start = 0
    cos, sin = _rope_tables(layers[0].spec, start, hidden.shape[1], hidden.dtype)
    for i, layer in enumerate(layers):
        hidden = layer(hidden, cos, sin, None if caches is None else caches[i])
    return hidden


# --------------------------------------------------------------------------
# Measuring


def host_info(threads: int, dtype: str) -> dict:
    """The ``host`` mapping of a measured profile: CPU model, threads, torch version, dtype."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine() or "unknown"
    return {"cpu_model": cpu, "threads": int(threads), "torch": str(_torch().__version__), "dtype": dtype}


def _check_grid(name: str, values: Sequence, minimum: int) -> tuple[int, ...]:
    values = tuple(values)
    ok = len(values) >= minimum and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    if ok and any(b <= a for a, b in zip(values, values[1:])):
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected at least {minimum} strictly increasing positive integers, got {values!r}")
    return values


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _median_time(fn: Callable[[], Any], before: Callable[[], None], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` untimed runs.

    ``before()`` runs untimed before each run (e.g. resetting a KV cache).
    """
    for _ in range(warmup):
        before()
        fn()
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _Threads:
    """Set torch's intra-op threads and pause the garbage collector; restore both on exit."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        torch = _torch()
        self.old = torch.get_num_threads()
        self.gc = gc.isenabled()
        torch.set_num_threads(self.threads)
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc):
        _torch().set_num_threads(self.old)
        if self.gc:
            gc.enable()
        return False


def measure(hf_config: Mapping, *, prefill_tokens: Sequence[int] = (16, 64, 256),
            decode_contexts: Sequence[int] = (64, 256, 1024), layers_built: int = 2, repeats: int = 5,
            warmup: int = 2, threads: int = 1, dtype: str = "float32", seed: int = 0) -> dict:
    """Time decoder layers of ``hf_config`` on this machine (CPU); the ``measured`` schema's numbers.

    Builds ``layers_built`` decoder layers with random weights and times, per
    layer (time of all built layers / ``layers_built``, median over
    ``repeats`` after ``warmup`` untimed runs):

    * prefill: one sequence of P tokens through the layers (writing a KV cache);
    * decode: one new token with a KV cache already holding c tokens (filled
      with random K/V, untimed);
    * the final norm + LM head on one token (built after the layers are freed,
      so peak memory is that of the larger of the two).

    Returns ``{"layers_built", "prefill": {"tokens", "seconds_per_layer"},
    "decode": {"context", "seconds_per_layer"}, "lm_head": {"seconds_per_token"},
    "host": {"cpu_model", "threads", "torch", "dtype"}}``, ready for
    :func:`write_measured`. Times are rounded to 6 significant digits.
    """
    spec = layer_spec(hf_config)
    prefill_tokens = _check_grid("prefill_tokens", prefill_tokens, 3)
    decode_contexts = _check_grid("decode_contexts", decode_contexts, 2)
    _check_count("layers_built", layers_built, 1)
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    _check_count("threads", threads, 1)
    torch = _torch()
    tdtype = _torch_dtype(dtype)
    dtype_name = _dtype_name(dtype)
    h = spec.hidden_size
    gen = torch.Generator().manual_seed(seed)

    def hidden(tokens: int):
        return torch.randn(1, tokens, h, generator=gen).to(tdtype)

    prefill, decode = [], []
    with _Threads(threads), torch.inference_mode():
        layers = build_layers(hf_config, layers_built, tdtype, seed=seed)

        caches = make_kv_cache(layers, max(prefill_tokens))
        for P in prefill_tokens:
            x = hidden(P)
            t = _median_time(lambda: run_layers(layers, x, caches),
                             lambda: [c.reset(0) for c in caches], repeats, warmup)
            prefill.append(_sig(t / layers_built))
        del caches

        caches = make_kv_cache(layers, max(decode_contexts) + 1)
        for c in decode_contexts:
            for cache in caches:
                cache.fill_random(c, gen)
            x = hidden(1)
            t = _median_time(lambda: run_layers(layers, x, caches),
                             lambda: [cache.reset(c) for cache in caches], repeats, warmup)
            decode.append(_sig(t / layers_built))
        del caches, layers
        gc.collect()

        head = build_lm_head(hf_config, tdtype, seed=seed + 1)
        x = hidden(1)
        lm_head = _sig(_median_time(lambda: head(x), lambda: None, repeats, warmup))
        del head

    return {
        "layers_built": layers_built,
        "prefill": {"tokens": list(prefill_tokens), "seconds_per_layer": prefill},
        "decode": {"context": list(decode_contexts), "seconds_per_layer": decode},
        "lm_head": {"seconds_per_token": lm_head},
        "host": host_info(threads, dtype_name),
    }


def _timed_until(fn: Callable[[], Any], seconds: float, min_repeats: int, max_repeats: int = 1000) -> float:
    """Median time of ``fn()``: repeat until ``seconds`` spent (at least ``min_repeats`` times)."""
    fn()  # warm-up: page faults, kernel selection
    times: list[float] = []
    while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_host_peaks(*, threads: int = 1, seconds: float = 1.0, matmul_size: int = 2048,
                       copy_bytes: int = 256 * 2**20, dtypes: Sequence[str] = ("float32", "bfloat16"),
                       min_repeats: int = 3) -> dict:
    """Achieved peak FLOP/s and memory bandwidth of this machine, for a measured device profile.

    * ``matmul_flops_per_s[dtype]``: ``2 n^3`` / median time of an ``n x n``
      matmul (``n = matmul_size``), for each dtype in ``dtypes`` that torch
      can multiply here (a dtype that fails is left out);
    * ``memory_bandwidth_bytes_per_s``: bytes read + written / median time of
      copying a ``copy_bytes`` float32 tensor into another.

    Each quantity is repeated for about ``seconds`` (at least ``min_repeats``
    times, after one untimed run) with ``threads`` torch threads.
    """
    _check_count("threads", threads, 1)
    _check_count("matmul_size", matmul_size, 1)
    _check_count("copy_bytes", copy_bytes, 4)
    _check_count("min_repeats", min_repeats, 1)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"seconds: expected a non-negative number, got {seconds!r}")
    torch = _torch()
    n = matmul_size
    flops: dict[str, float] = {}
    with _Threads(threads), torch.inference_mode():
        gen = torch.Generator().manual_seed(0)
        for name in dtypes:
            tdtype = _torch_dtype(name)
            try:
                a = torch.randn(n, n, generator=gen).to(tdtype)
                b = torch.randn(n, n, generator=gen).to(tdtype)
                out = torch.empty(n, n, dtype=tdtype)
                t = _timed_until(lambda: torch.matmul(a, b, out=out), seconds, min_repeats)
            except RuntimeError:  # dtype not supported by this build/CPU
                continue
            finally:
                a = b = out = None
            flops[_dtype_name(name)] = _sig(2.0 * n**3 / t)
        src = torch.ones(copy_bytes // 4, dtype=torch.float32)
        dst = torch.empty_like(src)
        t = _timed_until(lambda: dst.copy_(src), seconds, min_repeats)
        bandwidth = _sig(2.0 * src.numel() * 4 / t)
        del src, dst
    return {"matmul_flops_per_s": flops, "memory_bandwidth_bytes_per_s": bandwidth}


# --------------------------------------------------------------------------
# measured/DEVICE/MODEL.yaml

_TOP_KEYS = ("schema_version", "kind", "model", "device", "measured_on", "host", "layers_built",
             "prefill", "decode", "lm_head")
_MEASUREMENT_KEYS = ("layers_built", "prefill", "decode", "lm_head", "host")
_HOST_KEYS = ("cpu_model", "threads", "torch", "dtype")


def _validate(doc: Any, where: str) -> dict:
    """Check a measured-profile mapping; return it normalised, in the README's key order."""

    def fail(field: str, expected: str, got: Any = _MISSING) -> ProfileError:
        shown = "missing" if got is _MISSING else f"got {got!r}"
        return ProfileError(f"{where}: field '{field}': expected {expected}, {shown}")

    def get(mapping: Mapping, key: str, prefix: str = "") -> Any:
        if key not in mapping or mapping[key] is None:
            raise fail(prefix + key, "a value")
        return mapping[key]

    def mapping(value: Any, field: str) -> Mapping:
        if not isinstance(value, Mapping):
            raise fail(field, "a mapping", value)
        return value

    def string(value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(field, "a non-empty string", value)
        return value

    def name(value: Any, field: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise fail(field, f"a profile name ({NAME_PATTERN_TEXT})", value)
        return value

    def integer(value: Any, field: str, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise fail(field, f"an integer >= {low}", value)
        return value

    def seconds(value: Any, field: str) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value <= 0):
            raise fail(field, "a positive, finite number of seconds", value)
        return value

    def series(section: str, x_key: str, minimum: int) -> dict:
        s = mapping(get(doc, section), section)
        xs, ts = get(s, x_key, f"{section}."), get(s, "seconds_per_layer", f"{section}.")
        if not isinstance(xs, list) or len(xs) < minimum:
            raise fail(f"{section}.{x_key}", f"a list of at least {minimum} increasing positive numbers", xs)
        if not isinstance(ts, list):
            raise fail(f"{section}.seconds_per_layer", f"a list of {len(xs)} numbers", ts)
        if len(ts) != len(xs):
            raise fail(f"{section}.seconds_per_layer",
                       f"a list of {len(xs)} numbers (one per {section}.{x_key}), not {len(ts)}", ts)
        for i, x in enumerate(xs):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
                raise fail(f"{section}.{x_key}[{i}]", "a positive number", x)
            if i and x <= xs[i - 1]:
                raise fail(f"{section}.{x_key}[{i}]", f"greater than the previous value {xs[i - 1]!r} "
                           "(strictly increasing)", x)
        for i, t in enumerate(ts):
            seconds(t, f"{section}.seconds_per_layer[{i}]")
        return {x_key: list(xs), "seconds_per_layer": list(ts)}

    doc = mapping(doc, "<root>")
    version = get(doc, "schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise fail("schema_version", str(SCHEMA_VERSION), version)
    if get(doc, "kind") != "measured":
        raise fail("kind", "'measured'", doc["kind"])
    measured_on = get(doc, "measured_on")
    if isinstance(measured_on, (_dt.date, _dt.datetime)):
        measured_on = measured_on.isoformat()
    host = mapping(get(doc, "host"), "host")
    for key in _HOST_KEYS:
        get(host, key, "host.")
    string(host["cpu_model"], "host.cpu_model")
    integer(host["threads"], "host.threads", 1)
    string(host["torch"], "host.torch")
    if host["dtype"] not in DTYPE_BYTES:
        raise fail("host.dtype", "one of " + ", ".join(DTYPE_BYTES), host["dtype"])
    lm_head = mapping(get(doc, "lm_head"), "lm_head")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "measured",
        "model": name(get(doc, "model"), "model"),
        "device": name(get(doc, "device"), "device"),
        "measured_on": string(measured_on, "measured_on"),
        "host": {**{k: host[k] for k in _HOST_KEYS}, **{k: v for k, v in host.items() if k not in _HOST_KEYS}},
        "layers_built": integer(get(doc, "layers_built"), "layers_built", 1),
        "prefill": series("prefill", "tokens", 3),
        "decode": series("decode", "context", 2),
        "lm_head": {"seconds_per_token": seconds(get(lm_head, "seconds_per_token", "lm_head."),
                                                 "lm_head.seconds_per_token")},
    }


class _Flow(dict):
    """A mapping written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))
_Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                   flow_style=True))

_HEADER = ("# Per-layer times measured by offload_env.profiler (`offload-env profile measure`):\n"
           "# decoder layers built from the model's hf_config with random weights, timed on this host.\n"
           "# They override the roofline estimate of this model on this device.\n")


def write_measured(path: str | os.PathLike, *, model: str, device: str, measurement: Mapping,
                   measured_on: str) -> Path:
    """Write a ``measured/DEVICE/MODEL.yaml`` profile atomically; return its path.

    ``measurement`` is what :func:`measure` returns. The document is validated
    first (nothing is written when it is bad), then written to a temporary
    file in the same directory, fsynced and renamed over ``path``, so a
    reader sees the old file or the new one, never half of one.
    """
    path = Path(path)
    if not isinstance(measurement, Mapping):
        raise ProfileError(f"{path}: measurement: expected a mapping (what measure() returns), "
                           f"got {type(measurement).__name__}")
    extra = sorted(set(measurement) - set(_MEASUREMENT_KEYS))
    if extra:
        raise ProfileError(f"{path}: measurement: unexpected keys {extra}; expected {list(_MEASUREMENT_KEYS)}")
    if isinstance(measured_on, (_dt.date, _dt.datetime)):
        measured_on = measured_on.isoformat()
    doc = _validate({"schema_version": SCHEMA_VERSION, "kind": "measured", "model": model, "device": device,
                     "measured_on": measured_on, **measurement}, str(path))
    doc["host"] = _Flow(doc["host"])
    text = _HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)

    write_text(path, text)
    return path


def read_measured(path: str | os.PathLike) -> dict:
    """Read and validate a measured profile; return it as a dict in the README's key order.

    Raises :class:`~offload_env.profiles.ProfileError` (a ``ValueError``)
    naming the file and the field: a missing key, lists of different lengths,
    a non-positive time, a grid that does not increase.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    return _validate(data, str(path))
