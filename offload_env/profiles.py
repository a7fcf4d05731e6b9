"""Typed, validated loading of the model, device, link and measured profiles.

Profiles are YAML files (schema in ``profiles/README.md``). Shipped profiles
live in the package; users add their own from a directory of their own
(``profile_dir=`` or the ``OFFLOAD_ENV_PROFILES`` environment variable, a
``os.pathsep``-separated list), which take precedence over shipped files of
the same name. Every problem raises one :class:`ProfileError` that names the
file, the field and what was expected; nothing half-loads.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from . import channel as _channel

__all__ = [
    "SCHEMA_VERSION",
    "DTYPE_BYTES",
    "ProfileError",
    "LayerGroup",
    "ModelProfile",
    "DeviceProfile",
    "LinkProfile",
    "MeasuredProfile",
    "WeightFormat",
    "RuntimeSettings",
    "RuntimeProfile",
    "DEVICE_CLASSES",
    "load_model",
    "load_runtime",
    "load_weight_format",
    "list_runtimes",
    "list_weight_formats",
    "load_device",
    "load_link",
    "load_measured",
    "list_models",
    "list_devices",
    "list_links",
    "from_hf_config",
    "Architecture",
    "read_architecture",
    "model_to_dict",
    "profile_dirs",
    "check_name",
]

SCHEMA_VERSION = 1

#: Bytes per element of each storage dtype the cost model knows.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4.0,
    "float16": 2.0,
    "bfloat16": 2.0,
    "float8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}

#: What a device class is: the key by which a runtime profile's settings are chosen.
DEVICE_CLASSES = ("datacenter-gpu", "desktop-gpu", "embedded-gpu", "cpu", "mobile-soc")
#: The runtime and weight format a device runs when its profile names none (by category).
CATEGORY_RUNS = {"edge": ("llama.cpp", "q4_k_m"), "server": ("vllm", "f16")}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
#: what a profile name may hold (the file stem; also what the CLI accepts before it writes a file)
NAME_PATTERN_TEXT = "lower-case letters, digits, '.' and '-', starting with a letter or digit"
_ENV_VAR = "OFFLOAD_ENV_PROFILES"
#: integers above this lose precision as float64 (the cost model computes in floats)
_MAX_INT = 2**53


class ProfileError(ValueError):
    """A profile or model config is missing a field or holds a bad value."""


# --------------------------------------------------------------------------
# Field reading with context-rich errors


class _Fields:
    """Reads typed fields of one mapping; errors name the file and field path."""

    def __init__(self, data: Any, where: str, prefix: str = ""):
        if not isinstance(data, Mapping):
            raise ProfileError(f"{where}: field '{prefix or '<root>'}': expected a mapping, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.prefix = prefix

    def _path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, expected: str, got: Any = None) -> ProfileError:
        shown = "missing" if got is _MISSING else f"got {got!r}"
        return ProfileError(f"{self.where}: field '{self._path(key)}': expected {expected}, {shown}")

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def sub(self, key: str, optional: bool = False) -> "_Fields | None":
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise self.fail(key, "a mapping", _MISSING)
        return _Fields(value, self.where, self._path(key))

    def number(self, key: str, *, default: float | None = None, low: float | None = None,
               high: float | None = None, low_open: bool = False, required: bool = True) -> float | None:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if not required:
                return default
            raise self.fail(key, _range_text("a number", low, high, low_open), _MISSING)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise self.fail(key, _range_text("a finite number", low, high, low_open), value)
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            raise self.fail(key, _range_text("a number", low, high, low_open), value)
        return float(value)

    def integer(self, key: str, *, low: int | None = None, required: bool = True, default: int | None = None,
                high: int = _MAX_INT) -> int | None:
        value = self.data.get(key, _MISSING)
        expected = _range_text("an integer", low, high, False)
        if value is _MISSING or value is None:
            if not required:
                return default
            raise self.fail(key, expected, _MISSING)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(key, expected, value)
        if (low is not None and value < low) or value > high:
            raise self.fail(key, expected, value)
        return int(value)

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Refuse a key outside ``allowed``, naming it and the nearest valid key."""
        allowed = tuple(allowed)
        for key in self.data:
            if isinstance(key, str) and key in allowed:
                continue
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {near[0]!r}?" if near else "valid keys: " + ", ".join(allowed)
            raise ProfileError(f"{self.where}: field '{self._path(str(key))}': unknown key; {hint}")

    def string(self, key: str, *, choices: Iterable[str] | None = None, required: bool = True,
               default: str | None = None) -> str | None:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if not required:
                return default
            raise self.fail(key, _choice_text(choices), _MISSING)
        if not isinstance(value, str) or not value:
            raise self.fail(key, _choice_text(choices), value)
        if choices is not None and value not in choices:
            raise self.fail(key, _choice_text(choices), value)
        return value

    def boolean(self, key: str, *, default: bool | None = None) -> bool:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is None:
                raise self.fail(key, "true or false", _MISSING)
            return default
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value


def _finite(value: int | float) -> bool:
    """Whether a number is finite as a float (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _range_text(what: str, low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        if high == _MAX_INT:
            return f"{what} in {'(' if low_open else '['}{low:g}, 2^53]"
        return f"{what} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if high == _MAX_INT:
        return f"{what} <= 2^53"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{what} <= {high:g}"
    return what


def _choice_text(choices: Iterable[str] | None) -> str:
    return "a non-empty string" if choices is None else "one of " + ", ".join(repr(c) for c in choices)


def _document(data: Any, path: Path, kind: str) -> _Fields:
    """The fields of a profile document: finite everywhere, this schema version, this ``kind``."""
    f = _Fields(data, str(path))
    _check_finite(data, str(path))
    version = f.integer("schema_version", low=1)
    if version != SCHEMA_VERSION:
        raise f.fail("schema_version", f"{SCHEMA_VERSION} (this offload-env reads schema {SCHEMA_VERSION})", version)
    f.string("kind", choices=[kind])
    return f


def _named_document(data: Any, path: Path, kind: str) -> tuple[_Fields, str]:
    """:func:`_document` of a profile named by its file (models, devices, links, runtimes), and that name."""
    path = Path(path)
    f = _document(data, path, kind)
    name = f.string("name")
    if name != path.stem:
        raise f.fail("name", f"the file name stem {path.stem!r}", name)
    if not _NAME_RE.match(name):
        raise f.fail("name", NAME_PATTERN_TEXT, name)
    return f, name


def _check_finite(data: Any, where: str, prefix: str = "") -> None:
    """Refuse nan and inf anywhere in a document (free-form mappings included), naming the field."""
    seen: set[int] = set()
    stack = [(prefix, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ProfileError(f"{where}: field '{path or '<root>'}': expected a finite number, got {value!r}")
        if isinstance(value, (Mapping, list)):
            if id(value) in seen:  # YAML aliases can make a structure refer to itself
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                sub = f"{path}[{key}]" if isinstance(value, list) else (f"{path}.{key}" if path else str(key))
                stack.append((sub, item))


def check_name(name: Any, what: str = "name") -> str:
    """``name`` lower-cased if it is a valid profile name; else a :class:`ProfileError` naming ``what``."""
    if not isinstance(name, str) or not _NAME_RE.match(name.lower()):
        raise ProfileError(f"{what}: expected a profile name ({NAME_PATTERN_TEXT}), got {name!r}")
    return name.lower()


def _sources(f: _Fields) -> dict[str, str]:
    sub = f.sub("sources")
    out = {}
    for key, value in sub.data.items():
        if not isinstance(value, str) or not value.strip():
            raise sub.fail(str(key), "a source (URL, document, or 'assumption: why')", value)
        out[str(key)] = value
    return out


# --------------------------------------------------------------------------
# Profile types


@dataclass(frozen=True)
class LayerGroup:
    """A run of ``count`` identical decoder layers; all numbers are per layer."""

    count: int
    params: int  #: all weights (all experts of an MoE layer)
    active_params: int  #: weights read for one token (MoE: routed experts only)
    flops_per_token: float  #: 2 x active matmul parameters
    attention_flops_per_context_token: float  #: 4 x n_heads x head_dim, per position attended
    kv_cache_bytes_per_token: float  #: at 16-bit
    hidden_state_bytes_per_token: float  #: at 16-bit


@dataclass(frozen=True)
class ModelProfile:
    """Per-layer costs of a decoder-only transformer (analytical, from its config)."""

    name: str
    display_name: str
    role: str
    weights_dtype: str
    hidden_size: int
    vocab_size: int
    tie_word_embeddings: bool
    embedding_params: int
    lm_head_params: int
    final_norm_params: int
    lm_head_flops_per_token: float
    layers: tuple[LayerGroup, ...]
    published_params: int | None = None
    hf_config: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    sources: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    path: str | None = field(default=None, compare=False, repr=False)
    #: published benchmark accuracies in [0, 1], e.g. {"mmlu": 0.667} (optional; sources under quality.<name>)
    quality: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    #: hosted-API price, {"input": usd, "output": usd} per million tokens, or None (optional)
    api_price_usd_per_million_tokens: dict | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def num_layers(self) -> int:
        """Number of decoder layers (the split points are 0..num_layers)."""
        return sum(g.count for g in self.layers)

    @property
    def num_params(self) -> int:
        """Total parameters: decoder layers, embedding, final norm and LM head."""
        return (sum(g.count * g.params for g in self.layers) + self.embedding_params
                + self.lm_head_params + self.final_norm_params)

    @property
    def is_moe(self) -> bool:
        return any(g.active_params != g.params for g in self.layers)

    @functools.cached_property
    def group_counts(self) -> np.ndarray:
        """Matrix (groups, L+1): layers of each group among layers 1..k."""
        counts = np.array([g.count for g in self.layers])
        ends = np.cumsum(counts)
        starts = ends - counts
        k = np.arange(self.num_layers + 1)
        out = np.clip(k[None, :] - starts[:, None], 0, counts[:, None]).astype(np.float64)
        out.setflags(write=False)
        return out

    def layer_array(self, attribute: str) -> np.ndarray:
        """One LayerGroup attribute expanded to one value per layer, shape (L,)."""
        return np.repeat([float(getattr(g, attribute)) for g in self.layers], [g.count for g in self.layers])


@dataclass(frozen=True)
class DeviceProfile:
    """Compute, memory and power of one device (roofline inputs)."""

    name: str
    display_name: str
    category: str
    peak_flops: Mapping[str, float] = field(hash=False)
    memory_bandwidth_bytes_per_s: float
    memory_bytes: float
    usable_memory_fraction: float
    power_active_w: float
    power_idle_w: float
    power_radio_tx_w: float
    compute_efficiency: float
    memory_efficiency: float
    sources: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    path: str | None = field(default=None, compare=False, repr=False)
    device_class: str | None = None  #: one of DEVICE_CLASSES: which settings of a runtime apply
    default_runtime: str = ""  #: the runtime this device is usually run with (``runs.runtime``)
    default_weight_format: str = ""  #: and the weight format (``runs.weight_format``)

    def __post_init__(self):
        runtime, weight_format = CATEGORY_RUNS.get(self.category, ("llama.cpp", "q4_k_m"))
        if not self.default_runtime:
            object.__setattr__(self, "default_runtime", runtime)
        if not self.default_weight_format:
            object.__setattr__(self, "default_weight_format", weight_format)

    @property
    def usable_memory_bytes(self) -> float:
        return self.memory_bytes * self.usable_memory_fraction

    def compute_dtype(self, dtype: str) -> str:
        """The dtype this device computes ``dtype`` in (its own, or the nearest wider one it lists)."""
        chain = {"int4": ("int4", "int8", "float16", "bfloat16", "float32"),
                 "int8": ("int8", "float16", "bfloat16", "float32"),
                 "float8": ("float8", "float16", "bfloat16", "float32"),
                 "float16": ("float16", "bfloat16", "float32"),
                 "bfloat16": ("bfloat16", "float16", "float32"),
                 "float32": ("float32",)}
        if dtype not in chain:
            raise ValueError(f"dtype: expected one of {', '.join(chain)}, got {dtype!r}")
        for candidate in chain[dtype]:
            if candidate in self.peak_flops:
                return candidate
        raise ValueError(f"device {self.name!r} lists no peak FLOP/s usable for dtype {dtype!r}")

    def effective_flops(self, dtype: str, efficiency: float | None = None) -> float:
        """Achievable FLOP/s for ``dtype``: peak x ``efficiency`` (default: the profile's compute efficiency)."""
        return self.peak_flops[self.compute_dtype(dtype)] * (
            self.compute_efficiency if efficiency is None else efficiency)

    def bandwidth(self, efficiency: float | None = None) -> float:
        """Achievable memory bandwidth in bytes/s: peak x ``efficiency`` (default: the profile's)."""
        return self.memory_bandwidth_bytes_per_s * (self.memory_efficiency if efficiency is None else efficiency)

    @property
    def effective_bandwidth(self) -> float:
        """Achievable memory bandwidth in bytes/s at the profile's memory efficiency."""
        return self.bandwidth()


@dataclass(frozen=True)
class LinkProfile:
    """Radio (or wired) link parameters; formulas live in ``channel.py``."""

    name: str
    display_name: str
    medium: str
    base_rtt_s: float
    bandwidth_hz: float | None = None
    carrier_hz: float | None = None
    tx_power_dbm: float | None = None
    downlink_tx_power_dbm: float | None = None
    noise_psd_dbm_per_hz: float | None = None
    noise_figure_db: float | None = None
    path_loss: dict = field(default_factory=dict, hash=False)
    fading: dict = field(default_factory=dict, hash=False)
    default_distance_m: float | None = None
    rate_bps: float | None = None
    sources: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    path: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MeasuredProfile:
    """Per-layer times of one model measured on one device by the profiler."""

    model: str
    device: str
    measured_on: str
    dtype: str
    layers_built: int
    prefill_tokens: tuple[float, ...]
    prefill_seconds_per_layer: tuple[float, ...]
    decode_context: tuple[float, ...]
    decode_seconds_per_layer: tuple[float, ...]
    lm_head_seconds_per_token: float
    host: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    path: str | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def prefill_fit(self) -> tuple[float, float, float]:
        """(a, b, c) of the least-squares fit t(P) = a + b P + c P^2, seconds per layer."""
        p = np.asarray(self.prefill_tokens)
        design = np.stack([np.ones_like(p), p, p * p], axis=1)
        coef = np.linalg.lstsq(design, np.asarray(self.prefill_seconds_per_layer), rcond=None)[0]
        return tuple(float(c) for c in coef)

    @functools.cached_property
    def decode_fit(self) -> tuple[float, float]:
        """(a, b) of the least-squares fit t(c) = a + b c, seconds per layer per token."""
        c = np.asarray(self.decode_context)
        design = np.stack([np.ones_like(c), c], axis=1)
        coef = np.linalg.lstsq(design, np.asarray(self.decode_seconds_per_layer), rcond=None)[0]
        return tuple(float(x) for x in coef)


# --------------------------------------------------------------------------
# Finding files


def _shipped_dir() -> Path:
    installed = importlib.resources.files("offload_env") / "_profiles"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "profiles"  # source checkout


def profile_dirs(profile_dir: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> tuple[Path, ...]:
    """Directories searched, highest precedence first: ``profile_dir``, ``$OFFLOAD_ENV_PROFILES``, shipped."""
    dirs: list[Path] = []
    if profile_dir is not None:
        items = [profile_dir] if isinstance(profile_dir, (str, os.PathLike)) else list(profile_dir)
        dirs += [Path(d) for d in items]
    env = os.environ.get(_ENV_VAR, "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    for d in dirs:
        if not d.is_dir():
            raise ProfileError(f"profile directory {str(d)!r} does not exist")
    dirs.append(_shipped_dir())
    return tuple(dirs)


def _find(kind_dir: str, name: str, profile_dir) -> Path:
    key = check_name(name, f"{kind_dir[:-1]} name")
    for d in profile_dirs(profile_dir):
        path = d / kind_dir / f"{key}.yaml"
        if path.is_file():
            return path
    known = _list(kind_dir, profile_dir)
    raise ProfileError(f"unknown {kind_dir[:-1]} {name!r}; known: {', '.join(known)}")


def _list(kind_dir: str, profile_dir) -> list[str]:
    names: set[str] = set()
    for d in profile_dirs(profile_dir):
        names.update(p.stem for p in (d / kind_dir).glob("*.yaml"))
    return sorted(names)


def list_models(profile_dir=None) -> list[str]:
    """Names of every model profile (shipped and user)."""
    return _list("models", profile_dir)


def list_devices(profile_dir=None) -> list[str]:
    """Names of every device profile."""
    return _list("devices", profile_dir)


def list_links(profile_dir=None) -> list[str]:
    """Names of every link profile."""
    return _list("links", profile_dir)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``3.12e14`` as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read: {exc}") from None


def _dir_key(profile_dir) -> tuple:
    return tuple(str(d) for d in profile_dirs(profile_dir))


# --------------------------------------------------------------------------
# Models


def load_model(name: str, profile_dir=None) -> ModelProfile:
    """Load the model profile ``name`` (e.g. ``"llama-3.1-8b"``)."""
    return _load_model_file(_find("models", name, profile_dir))


@functools.lru_cache(maxsize=256)
def _load_model_file(path: Path) -> ModelProfile:
    return _parse_model(_read_yaml(path), path)


#: keys of a model profile (profiles/README.md)
_MODEL_KEYS = ("schema_version", "kind", "name", "display_name", "role", "weights_dtype", "published_params",
               "quality", "api_price_usd_per_million_tokens", "sources", "hf_config", "num_layers", "hidden_size",
               "vocab_size", "tie_word_embeddings", "embedding_params", "lm_head_params", "final_norm_params",
               "lm_head_flops_per_token", "layers")
#: per-layer keys of one layer group
_LAYER_KEYS = ("count", "params", "active_params", "flops_per_token", "attention_flops_per_context_token",
               "kv_cache_bytes_per_token", "hidden_state_bytes_per_token")
#: model-level numbers that from_hf_config derives (besides num_layers and layers)
_DERIVED_KEYS = ("hidden_size", "vocab_size", "tie_word_embeddings", "embedding_params", "lm_head_params",
                 "final_norm_params", "lm_head_flops_per_token")


def _parse_model(data: Any, path: Path) -> ModelProfile:
    where = str(path)
    f, name = _named_document(data, path, "model")
    f.check_keys(_MODEL_KEYS)
    display = f.string("display_name")
    role = f.string("role", choices=["slm", "llm"])
    weights_dtype = f.string("weights_dtype", choices=list(DTYPE_BYTES))
    published = f.integer("published_params", low=1, required=False)
    sources = _sources(f)
    hf_config = f.raw("hf_config") or {}
    if not isinstance(hf_config, Mapping):
        raise f.fail("hf_config", "a mapping of config.json keys", hf_config)
    optional = dict(quality=_quality(f, sources), api_price_usd_per_million_tokens=_api_price(f, sources))
    derived = _derive(hf_config, f"{where}: hf_config") if hf_config else None

    if f.has("layers"):
        groups = []
        layer_list = f.raw("layers")
        if not isinstance(layer_list, list) or not layer_list:
            raise f.fail("layers", "a non-empty list of layer groups", layer_list)
        for i, item in enumerate(layer_list):
            g = _Fields(item, where, f"layers[{i}]")
            g.check_keys(_LAYER_KEYS)
            groups.append(LayerGroup(
                count=g.integer("count", low=1),
                params=g.integer("params", low=1),
                active_params=g.integer("active_params", low=1),
                flops_per_token=g.number("flops_per_token", low=0, low_open=True),
                attention_flops_per_context_token=g.number("attention_flops_per_context_token", low=0),
                kv_cache_bytes_per_token=g.number("kv_cache_bytes_per_token", low=0),
                hidden_state_bytes_per_token=g.number("hidden_state_bytes_per_token", low=0, low_open=True),
            ))
            if groups[-1].active_params > groups[-1].params:
                raise g.fail("active_params", f"<= params ({groups[-1].params})", groups[-1].active_params)
        profile = ModelProfile(
            name=name, display_name=display, role=role, weights_dtype=weights_dtype,
            hidden_size=f.integer("hidden_size", low=1),
            vocab_size=f.integer("vocab_size", low=1),
            tie_word_embeddings=f.boolean("tie_word_embeddings"),
            embedding_params=f.integer("embedding_params", low=0),
            lm_head_params=f.integer("lm_head_params", low=0),
            final_norm_params=f.integer("final_norm_params", low=0),
            lm_head_flops_per_token=f.number("lm_head_flops_per_token", low=0),
            layers=tuple(groups), published_params=published,
            hf_config=dict(hf_config), sources=sources, path=where, **optional,
        )
        n_layers = f.integer("num_layers", low=1, required=False)
        if n_layers is not None and n_layers != profile.num_layers:
            raise f.fail("num_layers", f"the sum of layers[].count ({profile.num_layers})", n_layers)
    elif derived is not None:
        profile = ModelProfile(name=name, display_name=display, role=role, weights_dtype=weights_dtype,
                               published_params=published, hf_config=dict(hf_config), sources=sources,
                               path=where, **derived, **optional)
    else:
        raise f.fail("layers", "a list of layer groups (or an hf_config to derive them from)", _MISSING)
    if derived is not None:
        _check_derived(f, derived)
    return profile


def _same(value: float, derived: float) -> bool:
    """Equal up to rounding (integers written as floats, a last digit)."""
    return abs(float(value) - float(derived)) <= max(1.0, 1e-6 * abs(float(derived)))


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_derived(f: _Fields, derived: Mapping) -> None:
    """The numbers a profile states must be what its hf_config implies (from_hf_config's formulas)."""
    implied = "(what its hf_config implies: from_hf_config)"
    for key in _DERIVED_KEYS:
        if not f.has(key):
            continue
        want = derived[key]
        if isinstance(want, bool):
            if f.boolean(key) != want:
                raise f.fail(key, f"{str(want).lower()} {implied}", f.raw(key))
        elif not _same(f.number(key), want):
            raise f.fail(key, f"{_shown(want)} {implied}", f.raw(key))
    group = derived["layers"][0]
    if f.has("num_layers") and f.integer("num_layers", low=1) != group.count:
        raise f.fail("num_layers", f"{group.count} {implied}", f.raw("num_layers"))
    if not f.has("layers"):
        return
    total = 0
    for i, item in enumerate(f.raw("layers")):
        g = _Fields(item, f.where, f"layers[{i}]")
        total += g.integer("count", low=1)
        for key in _LAYER_KEYS[1:]:
            want = getattr(group, key)
            if not _same(g.number(key), want):
                raise g.fail(key, f"{_shown(want)} {implied}", g.raw(key))
    if total != group.count:
        raise f.fail("layers", f"layer groups whose counts sum to {group.count} {implied}", total)


def _quality(f: _Fields, sources: Mapping[str, str]) -> dict[str, float]:
    """Optional ``quality: {benchmark: accuracy}``; each needs a ``quality.<benchmark>`` source."""
    sub = f.sub("quality", optional=True)
    if sub is None:
        return {}
    out = {}
    for key in sub.data:
        out[str(key)] = sub.number(key, low=0, high=1)
        if f"quality.{key}" not in sources:
            raise f.fail(f"sources.quality.{key}", "a source for this published score (paper, model card)", _MISSING)
    return out


def _api_price(f: _Fields, sources: Mapping[str, str]) -> dict[str, float] | None:
    """Optional ``api_price_usd_per_million_tokens: {input, output}`` with its source."""
    sub = f.sub("api_price_usd_per_million_tokens", optional=True)
    if sub is None:
        return None
    unknown = set(sub.data) - {"input", "output"}
    if unknown:
        raise sub.fail(sorted(map(str, unknown))[0], "only the keys 'input' and 'output'", "an unknown key")
    price = {"input": sub.number("input", low=0), "output": sub.number("output", low=0)}
    if "api_price_usd_per_million_tokens" not in sources:
        raise f.fail("sources.api_price_usd_per_million_tokens", "a source for the price (provider page, date)",
                     _MISSING)
    return price


# Architecture families from_hf_config understands, and their defaults.
_FAMILIES = {
    # model_type: (gated MLP, norms per layer (in units of hidden), tie default, layernorm)
    "llama": (True, 2, False, False),
    "mistral": (True, 2, False, False),
    "mixtral": (True, 2, False, False),
    "qwen2": (True, 2, False, False),
    "phi3": (True, 2, False, False),
    "gemma": (True, 2, True, False),
    "gemma2": (True, 4, True, False),
    "gptj": (False, 1, False, True),
}


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, read from an HF ``config.json`` mapping."""

    model_type: str  #: as given (absent: llama, or gptj for GPT-J keys); unsupported types are refused
    family: str  #: the family whose conventions apply (a key of the supported types; = model_type)
    hidden_size: int
    intermediate_size: int
    num_layers: int | None
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    gated_mlp: bool
    layernorm: bool  #: LayerNorm (weight + bias) instead of RMSNorm
    norms_per_layer: int
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    num_experts: int
    experts_per_token: int


def read_architecture(cfg: Mapping, where: str = "config", *, need_layers: bool = True) -> Architecture:
    """Read an HF config mapping: Llama, Mistral, Qwen2, Phi-3, Gemma(-2), GPT-J and Mixtral keys.

    Raises :class:`ProfileError` naming ``where`` and the field on a missing or bad key, and on a
    ``model_type`` outside those families (its message lists the supported ones).
    ``need_layers=False`` accepts a config without a layer count (``num_layers`` is then None).
    """
    c = _Fields(cfg, where)

    def first(*keys, low=1, required=True, default=None):
        for key in keys:
            if c.has(key):
                return c.integer(key, low=low)
        if required:
            raise c.fail(keys[0], f"an integer >= {low}" + (f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""),
                         _MISSING)
        return default

    model_type = cfg.get("model_type")
    if model_type is None:
        model_type = "gptj" if "n_embd" in cfg else "llama"
    if not isinstance(model_type, str) or model_type not in _FAMILIES:
        raise c.fail("model_type", "a supported model type, one of " + ", ".join(_FAMILIES)
                     + " (other architectures are not modelled)", model_type)
    family = model_type
    gated, norms_per_layer, tie_default, layernorm = _FAMILIES[family]

    h = first("hidden_size", "n_embd", "d_model")
    n_layers = first("num_hidden_layers", "n_layer", "num_layers", required=need_layers)
    n_heads = first("num_attention_heads", "n_head")
    n_kv = first("num_key_value_heads", required=False, default=n_heads)
    if n_heads % n_kv:
        raise c.fail("num_key_value_heads", f"a divisor of num_attention_heads ({n_heads})", n_kv)
    head_dim = first("head_dim", required=False, default=None)
    if head_dim is None:
        if h % n_heads:
            raise c.fail("head_dim", f"given, since hidden_size {h} is not divisible by {n_heads} heads", _MISSING)
        head_dim = h // n_heads
    vocab = first("vocab_size")
    ffn = first("intermediate_size", "n_inner", "ffn_dim", required=False, default=None)
    if ffn is None:
        if family != "gptj":
            raise c.fail("intermediate_size", "an integer >= 1", _MISSING)
        ffn = 4 * h
    attention_bias = c.boolean("attention_bias", default=False)
    n_experts = first("num_local_experts", required=False, default=1)
    experts_per_token = first("num_experts_per_tok", required=False, default=1)
    if experts_per_token > n_experts:
        raise c.fail("num_experts_per_tok", f"<= num_local_experts ({n_experts})", experts_per_token)
    return Architecture(
        model_type=model_type, family=family, hidden_size=h, intermediate_size=ffn, num_layers=n_layers,
        num_heads=n_heads, num_kv_heads=n_kv, head_dim=head_dim, vocab_size=vocab,
        tie_word_embeddings=c.boolean("tie_word_embeddings", default=tie_default), gated_mlp=gated,
        layernorm=layernorm, norms_per_layer=norms_per_layer,
        # Qwen2 always has q/k/v biases and no o_proj bias; others follow attention_bias (all four).
        qkv_bias=family == "qwen2" or attention_bias, o_bias=attention_bias and family != "qwen2",
        mlp_bias=c.boolean("mlp_bias", default=family == "gptj"),
        num_experts=n_experts, experts_per_token=experts_per_token,
    )


def _derive(cfg: Mapping, where: str) -> dict:
    """Per-layer numbers of DESIGN.md's formulas from an HF config mapping."""
    a = read_architecture(cfg, where)
    h, ffn = a.hidden_size, a.intermediate_size
    q_out, kv_out = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    attn_matmul = h * q_out + 2 * h * kv_out + q_out * h
    attn_bias = (q_out + 2 * kv_out if a.qkv_bias else 0) + (h if a.o_bias else 0)
    expert_matmul = (3 if a.gated_mlp else 2) * h * ffn
    expert_bias = ((2 * ffn if a.gated_mlp else ffn) + h) if a.mlp_bias else 0
    router = h * a.num_experts if a.num_experts > 1 else 0
    norm_params = 2 * h if a.layernorm else a.norms_per_layer * h

    params = attn_matmul + attn_bias + a.num_experts * (expert_matmul + expert_bias) + router + norm_params
    active = attn_matmul + attn_bias + a.experts_per_token * (expert_matmul + expert_bias) + router + norm_params
    active_matmul = attn_matmul + a.experts_per_token * expert_matmul + router
    group = LayerGroup(
        count=a.num_layers,
        params=params,
        active_params=active,
        flops_per_token=2.0 * active_matmul,
        attention_flops_per_context_token=4.0 * a.num_heads * a.head_dim,
        kv_cache_bytes_per_token=2.0 * kv_out * 2,
        hidden_state_bytes_per_token=2.0 * h,
    )
    vocab = a.vocab_size
    lm_bias = vocab if a.family == "gptj" else 0
    return dict(
        hidden_size=h,
        vocab_size=vocab,
        tie_word_embeddings=a.tie_word_embeddings,
        embedding_params=vocab * h,
        lm_head_params=0 if a.tie_word_embeddings else vocab * h + lm_bias,
        final_norm_params=2 * h if a.layernorm else h,
        lm_head_flops_per_token=2.0 * vocab * h,
        layers=(group,),
    )


def from_hf_config(config: Mapping | str | os.PathLike, name: str | None = None, *,
                   role: str = "slm", weights_dtype: str | None = None) -> ModelProfile:
    """Build a :class:`ModelProfile` from a Hugging Face ``config.json`` (a dict or a path).

    Understands Llama, Mistral, Qwen2, Phi-3, Gemma(-2), GPT-J and Mixtral keys,
    honouring ``head_dim``, ``tie_word_embeddings``, biases and MoE fields.
    No network access.
    """
    where = "config"
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        where = str(path)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{where}: cannot read a JSON config: {exc}") from None
        name = name or (path.parent.name if path.name == "config.json" else path.stem)
    if not isinstance(config, Mapping):
        raise ProfileError(f"{where}: expected a mapping of config keys, got {type(config).__name__}")
    if name is None:
        name = str(config.get("_name_or_path") or config.get("model_type") or "model").split("/")[-1]
    if not isinstance(name, str) or not _NAME_RE.match(name.lower()):
        raise ProfileError(f"{where}: field 'name': expected a profile name ({NAME_PATTERN_TEXT}; give one with "
                           f"--name or name=), got {name!r}")
    name = name.lower()
    if role not in ("slm", "llm"):
        raise ProfileError(f"{where}: field 'role': expected 'slm' or 'llm', got {role!r}")
    torch_dtype = config.get("torch_dtype") or config.get("dtype")
    dtype = weights_dtype or (torch_dtype if isinstance(torch_dtype, str) and torch_dtype in DTYPE_BYTES
                              else "float16")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise ProfileError(f"{where}: field 'weights_dtype': expected one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    _check_finite(config, where)
    derived = _derive(config, where)
    return ModelProfile(name=name, display_name=name, role=role, weights_dtype=dtype,
                        hf_config=dict(config), **derived)


def model_to_dict(model: ModelProfile) -> dict:
    """The derived part of a model profile, in the YAML schema's key order."""
    return {
        "num_layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "vocab_size": model.vocab_size,
        "tie_word_embeddings": model.tie_word_embeddings,
        "embedding_params": model.embedding_params,
        "lm_head_params": model.lm_head_params,
        "final_norm_params": model.final_norm_params,
        "lm_head_flops_per_token": int(model.lm_head_flops_per_token),
        "layers": [
            {
                "count": g.count,
                "params": g.params,
                "active_params": g.active_params,
                "flops_per_token": int(g.flops_per_token),
                "attention_flops_per_context_token": int(g.attention_flops_per_context_token),
                "kv_cache_bytes_per_token": int(g.kv_cache_bytes_per_token),
                "hidden_state_bytes_per_token": int(g.hidden_state_bytes_per_token),
            }
            for g in model.layers
        ],
    }


# --------------------------------------------------------------------------
# Devices and links


def load_device(name: str, profile_dir=None) -> DeviceProfile:
    """Load the device profile ``name`` (e.g. ``"jetson-orin-nano-8gb"``)."""
    return _load_device_file(_find("devices", name, profile_dir))


@functools.lru_cache(maxsize=256)
def _load_device_file(path: Path) -> DeviceProfile:
    return _parse_device(_read_yaml(path), path)


_DEVICE_KEYS = ("schema_version", "kind", "name", "display_name", "category", "device_class", "runs", "peak_flops",
                "memory_bandwidth_bytes_per_s", "memory_bytes", "usable_memory_fraction", "power_w", "efficiency",
                "sources")


def _parse_device(data: Any, path: Path) -> DeviceProfile:
    """A device profile from its YAML mapping (``path`` names the file in errors and gives the name)."""
    path = Path(path)
    f, name = _named_document(data, path, "device")
    f.check_keys(_DEVICE_KEYS)
    peaks_f = f.sub("peak_flops")
    peaks = {}
    for key in peaks_f.data:
        if key not in DTYPE_BYTES:
            raise peaks_f.fail(str(key), "a dtype key: " + ", ".join(DTYPE_BYTES), key)
        peaks[key] = peaks_f.number(key, low=0, low_open=True)
    if not peaks:
        raise f.fail("peak_flops", "at least one dtype with its FLOP/s", {})
    power = f.sub("power_w")
    power.check_keys(("active", "idle", "radio_tx"))
    eff = f.sub("efficiency")
    eff.check_keys(("compute", "memory"))
    runs = f.sub("runs", optional=True)
    if runs is not None:
        runs.check_keys(("runtime", "weight_format"))
    return DeviceProfile(
        name=name,
        display_name=f.string("display_name"),
        category=f.string("category", choices=["edge", "server"]),
        peak_flops=peaks,
        memory_bandwidth_bytes_per_s=f.number("memory_bandwidth_bytes_per_s", low=0, low_open=True),
        memory_bytes=f.number("memory_bytes", low=0, low_open=True),
        usable_memory_fraction=f.number("usable_memory_fraction", low=0, high=1, low_open=True),
        power_active_w=power.number("active", low=0),
        power_idle_w=power.number("idle", low=0),
        power_radio_tx_w=power.number("radio_tx", low=0, required=False, default=0.0),
        compute_efficiency=eff.number("compute", low=0, high=1, low_open=True),
        memory_efficiency=eff.number("memory", low=0, high=1, low_open=True),
        sources=_sources(f),
        path=str(path),
        device_class=f.string("device_class", choices=DEVICE_CLASSES, required=False),
        default_runtime=runs.string("runtime", required=False, default="") if runs else "",
        default_weight_format=runs.string("weight_format", required=False, default="") if runs else "",
    )


_PATH_LOSS_MODELS = _channel.PATH_LOSS_MODELS
_FADING_MODELS = _channel.FADING_MODELS
#: path-loss parameters of each model (channel.path_loss_db), besides 'model' and 'shadowing_std_db'
_PATH_LOSS_PARAMS = _channel._PATH_LOSS_PARAMS
#: fading parameters of each model, besides 'model' and 'coherence_time_s'
_FADING_PARAMS = {"none": (), "rayleigh": (), "rician": ("k_factor_db",), "nakagami": ("m",)}
_LINK_KEYS = ("schema_version", "kind", "name", "display_name", "medium", "base_rtt_s", "sources")
_WIRELESS_KEYS = ("bandwidth_hz", "carrier_hz", "tx_power_dbm", "downlink_tx_power_dbm", "noise_psd_dbm_per_hz",
                  "noise_figure_db", "path_loss", "fading", "default_distance_m")
# Physical bounds that keep dBm -> W, the noise power and the channel gain finite (10^(dB/10) overflows
# past ~3000 dB): frequencies from 1 Hz (bandwidth) or 1 kHz (carrier) to 10 THz, levels within +-300 dB.
_MAX_HZ = 1e13
_MIN_CARRIER_HZ = 1e3
_DBM_RANGE = (-300.0, 300.0)
_MAX_DISTANCE_M = 1e7  # 10,000 km; the 3GPP formulas square the distance


def load_link(name: str, profile_dir=None) -> LinkProfile:
    """Load the link profile ``name`` (e.g. ``"5g-nr"``)."""
    return _load_link_file(_find("links", name, profile_dir))


@functools.lru_cache(maxsize=256)
def _load_link_file(path: Path) -> LinkProfile:
    return _parse_link(_read_yaml(path), path)


def _parse_link(data: Any, path: Path) -> LinkProfile:
    path = Path(path)
    f, name = _named_document(data, path, "link")
    medium = f.string("medium", choices=["wireless", "wired"])
    f.check_keys(_LINK_KEYS + (("rate_bps",) if medium == "wired" else _WIRELESS_KEYS))
    common = dict(name=name, display_name=f.string("display_name"), medium=medium,
                  base_rtt_s=f.number("base_rtt_s", low=0), sources=_sources(f), path=str(path))
    if medium == "wired":
        return LinkProfile(rate_bps=f.number("rate_bps", low=0, low_open=True), **common)
    pl = f.sub("path_loss")
    pl_model = pl.string("model", choices=_PATH_LOSS_MODELS)
    pl.check_keys(("model", "shadowing_std_db") + _PATH_LOSS_PARAMS[pl_model])
    pl.number("shadowing_std_db", low=0, required=False)
    if pl_model == "log_distance":
        pl.number("exponent", low=0, low_open=True, high=20)
        pl.number("reference_distance_m", low=1e-3, required=False)
        pl.number("reference_loss_db", low=_DBM_RANGE[0], high=_DBM_RANGE[1], required=False)
    if "los" in pl.data:
        pl.boolean("los", default=False)
    fading = f.sub("fading")
    fading_model = fading.string("model", choices=_FADING_MODELS)
    fading.check_keys(("model", "coherence_time_s") + _FADING_PARAMS[fading_model])
    fading.number("coherence_time_s", low=0, low_open=True, required=False)
    if fading_model == "rician":
        fading.number("k_factor_db", low=-100, high=100)
    if fading_model == "nakagami":
        fading.number("m", low=0.5, high=1e6)
    tx = f.number("tx_power_dbm", low=_DBM_RANGE[0], high=_DBM_RANGE[1])
    return LinkProfile(
        bandwidth_hz=f.number("bandwidth_hz", low=1, high=_MAX_HZ),
        carrier_hz=f.number("carrier_hz", low=_MIN_CARRIER_HZ, high=_MAX_HZ),
        tx_power_dbm=tx,
        downlink_tx_power_dbm=f.number("downlink_tx_power_dbm", low=_DBM_RANGE[0], high=_DBM_RANGE[1],
                                       required=False, default=None),
        noise_psd_dbm_per_hz=f.number("noise_psd_dbm_per_hz", low=_DBM_RANGE[0], high=_DBM_RANGE[1]),
        noise_figure_db=f.number("noise_figure_db", low=0, high=_DBM_RANGE[1], required=False, default=0.0),
        path_loss={k: v for k, v in pl.data.items() if v is not None},  # None: absent, the default
        fading={k: v for k, v in fading.data.items() if v is not None},
        default_distance_m=f.number("default_distance_m", low=0, low_open=True, high=_MAX_DISTANCE_M),
        **common,
    )


# --------------------------------------------------------------------------
# Measured profiles


def load_measured(model: str, device: str, profile_dir=None) -> MeasuredProfile | None:
    """The measured profile of ``model`` on ``device``, or None when none was measured."""
    model, device = check_name(model, "model name"), check_name(device, "device name")
    for d in profile_dirs(profile_dir):
        path = d / "measured" / device / f"{model}.yaml"
        if path.is_file():
            return _load_measured_file(path)
    return None


_MEASURED_KEYS = ("schema_version", "kind", "model", "device", "measured_on", "host", "layers_built", "prefill",
                  "decode", "lm_head")


@functools.lru_cache(maxsize=256)
def _load_measured_file(path: Path) -> MeasuredProfile:
    f = _document(_read_yaml(path), path, "measured")
    f.check_keys(_MEASURED_KEYS)
    host = f.sub("host")

    def series(section: str, x_key: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        s = f.sub(section)
        s.check_keys((x_key, "seconds_per_layer"))
        xs, ts = s.raw(x_key), s.raw("seconds_per_layer")
        if not isinstance(xs, list) or len(xs) < 2:
            raise s.fail(x_key, "a list of at least 2 increasing numbers", xs)
        if not isinstance(ts, list) or len(ts) != len(xs):
            raise s.fail("seconds_per_layer", f"a list of {len(xs)} numbers (one per {x_key})", ts)
        for i, (x, t) in enumerate(zip(xs, ts)):
            if (isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= _MAX_TOKENS
                    or (i and x <= xs[i - 1])):
                raise s.fail(f"{x_key}[{i}]", f"positive (<= {_MAX_TOKENS:g}) and increasing", x)
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= _MAX_SECONDS:
                raise s.fail(f"seconds_per_layer[{i}]", f"a positive number of seconds (<= {_MAX_SECONDS:g})", t)
        return tuple(float(x) for x in xs), tuple(float(t) for t in ts)

    p_tokens, p_secs = series("prefill", "tokens")
    if len(p_tokens) < 3:
        raise f.fail("prefill.tokens", "at least 3 token counts (a quadratic is fitted)", list(p_tokens))
    d_ctx, d_secs = series("decode", "context")
    model, device = f.string("model"), f.string("device")
    if model != path.stem:
        raise f.fail("model", f"the file name stem {path.stem!r}", model)
    if device != path.parent.name:
        raise f.fail("device", f"the folder name {path.parent.name!r} (measured/DEVICE/MODEL.yaml)", device)
    measured_on = f.raw("measured_on")
    if hasattr(measured_on, "isoformat"):  # YAML reads an unquoted 2026-11-24 as a date
        measured_on = measured_on.isoformat()
    if measured_on is not None and not isinstance(measured_on, str):
        raise f.fail("measured_on", "a date (YYYY-MM-DD)", measured_on)
    lm_head = f.sub("lm_head")
    lm_head.check_keys(("seconds_per_token",))
    return MeasuredProfile(
        model=model,
        device=device,
        measured_on=measured_on or "",
        dtype=host.string("dtype", choices=list(DTYPE_BYTES)),
        layers_built=f.integer("layers_built", low=1),
        prefill_tokens=p_tokens,
        prefill_seconds_per_layer=p_secs,
        decode_context=d_ctx,
        decode_seconds_per_layer=d_secs,
        lm_head_seconds_per_token=lm_head.number("seconds_per_token", low=0, low_open=True, high=_MAX_SECONDS),
        host=dict(host.data),
        path=str(path),
    )


#: bounds of a measured grid and its times (a fit over them stays finite)
_MAX_TOKENS = 1e9
_MAX_SECONDS = 1e6


# --------------------------------------------------------------------------
# Weight formats and runtimes


@dataclass(frozen=True)
class WeightFormat:
    """How one parameter is stored: bits per weight from the format's definition."""

    name: str
    display_name: str
    bits_per_weight: float
    dtype: str  #: the nearest storage class of DTYPE_BYTES (what measured profiles and the ideal roofline read)
    source: str = field(default="", compare=False)

    @property
    def bytes_per_weight(self) -> float:
        return self.bits_per_weight / 8.0


#: The numbers a runtime profile gives per device, and their bounds (efficiency may also be "device").
RUNTIME_NUMBERS = {"memory_efficiency": (0.0, 1.0), "compute_efficiency": (0.0, 1.0),
                   "forward_overhead_s": (0.0, 10.0), "layer_overhead_s": (0.0, 1.0)}


@dataclass(frozen=True)
class RuntimeSettings:
    """One runtime on one device: what the cost model reads."""

    memory_efficiency: float | None  #: fraction of peak bandwidth reached; None: the device profile's own
    compute_efficiency: float | None  #: fraction of the compute dtype's peak reached; None: the device's own
    forward_overhead_s: float  #: fixed time per forward pass (framework, final norm dispatch, sampling)
    layer_overhead_s: float  #: fixed time per decoder layer per forward pass (kernel launches)
    compute_dtypes: Mapping[str, str] = field(hash=False)  #: weight format -> dtype its matrix products run in


@dataclass(frozen=True)
class RuntimeProfile:
    """An inference runtime: the formats it runs and its settings per device class or device."""

    name: str
    display_name: str
    weight_formats: tuple[str, ...]
    defaults: Mapping[str, Any] = field(hash=False)
    classes: Mapping[str, Mapping[str, Any]] = field(hash=False)
    devices: Mapping[str, Mapping[str, Any]] = field(hash=False)
    fit: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    sources: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    path: str | None = field(default=None, compare=False, repr=False)

    def settings(self, device: DeviceProfile) -> RuntimeSettings:
        """The settings on ``device``: its own entry, else its class's, else the defaults (field by field)."""
        merged = dict(self.defaults)
        dtypes = dict(self.defaults["compute_dtypes"])
        for entry in (self.classes.get(device.device_class or "", {}), self.devices.get(device.name, {})):
            merged.update({k: v for k, v in entry.items() if k != "compute_dtypes"})
            dtypes.update(entry.get("compute_dtypes", {}))
        merged["compute_dtypes"] = dtypes
        eff = {k: None if merged[k] == "device" else merged[k] for k in ("memory_efficiency", "compute_efficiency")}
        return RuntimeSettings(forward_overhead_s=merged["forward_overhead_s"],
                               layer_overhead_s=merged["layer_overhead_s"], compute_dtypes=dtypes, **eff)


def list_weight_formats(profile_dir=None) -> list[str]:
    """Names of every weight format (``weight_formats.yaml``, shipped and user)."""
    return sorted(_weight_formats(_dir_key(profile_dir)))


def load_weight_format(name: str, profile_dir=None) -> WeightFormat:
    """The weight format ``name`` (e.g. ``"q4_k_m"``)."""
    formats = _weight_formats(_dir_key(profile_dir))
    if name not in formats:
        raise ProfileError(f"unknown weight format {name!r}; known: {', '.join(sorted(formats))}")
    return formats[name]


@functools.lru_cache(maxsize=32)
def _weight_formats(dir_key: tuple) -> dict[str, WeightFormat]:
    formats: dict[str, WeightFormat] = {}
    for d in reversed(dir_key):  # shipped first, so that user files override
        path = Path(d) / "weight_formats.yaml"
        if path.is_file():
            formats.update(_parse_weight_formats(_read_yaml(path), path))
    return formats


_FORMAT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def _parse_weight_formats(data: Any, path: Path) -> dict[str, WeightFormat]:
    f = _document(data, path, "weight_formats")
    f.check_keys(("schema_version", "kind", "formats", "sources"))
    sources = _sources(f)
    table = f.sub("formats")
    out = {}
    for name in table.data:
        if not isinstance(name, str) or not _FORMAT_NAME_RE.match(name):
            raise table.fail(str(name), "a format name (lower-case letters, digits, '_', '.', '-')", name)
        entry = table.sub(name)
        entry.check_keys(("display_name", "bits_per_weight", "dtype"))
        if name not in sources:
            raise f.fail(f"sources.{name}", "the format's definition (where its bits per weight come from)", _MISSING)
        out[name] = WeightFormat(name=name, display_name=entry.string("display_name"),
                                 bits_per_weight=entry.number("bits_per_weight", low=1, high=64),
                                 dtype=entry.string("dtype", choices=list(DTYPE_BYTES)), source=sources[name])
    return out


def list_runtimes(profile_dir=None) -> list[str]:
    """Names of every runtime profile."""
    return _list("runtimes", profile_dir)


def load_runtime(name: str, profile_dir=None) -> RuntimeProfile:
    """Load the runtime profile ``name`` (e.g. ``"llama.cpp"``)."""
    path = _find("runtimes", name, profile_dir)
    return _load_runtime_file(path, _dir_key(profile_dir))


_RUNTIME_KEYS = ("schema_version", "kind", "name", "display_name", "weight_formats", "defaults", "classes", "devices",
                 "fit", "sources")


@functools.lru_cache(maxsize=64)
def _load_runtime_file(path: Path, dir_key: tuple) -> RuntimeProfile:
    f, name = _named_document(_read_yaml(path), path, "runtime")
    f.check_keys(_RUNTIME_KEYS)
    known = _weight_formats(dir_key)
    formats = f.raw("weight_formats")
    if not isinstance(formats, list) or not formats or any(x not in known for x in formats):
        raise f.fail("weight_formats", "a list of weight formats from weight_formats.yaml: " + ", ".join(sorted(known)),
                     formats)

    def settings(sub: _Fields, complete: bool) -> dict:
        sub.check_keys(tuple(RUNTIME_NUMBERS) + ("compute_dtypes",))
        out: dict[str, Any] = {}
        for key, (low, high) in RUNTIME_NUMBERS.items():
            if key.endswith("efficiency") and sub.raw(key) == "device":
                out[key] = "device"
            elif sub.has(key) or complete:
                out[key] = sub.number(key, low=low, high=high, low_open=key.endswith("efficiency"))
        dtypes = sub.sub("compute_dtypes", optional=not complete)
        if dtypes is not None:
            dtypes.check_keys(formats)
            out["compute_dtypes"] = {k: dtypes.string(k, choices=list(DTYPE_BYTES)) for k in dtypes.data}
            missing = [x for x in formats if complete and x not in out["compute_dtypes"]]
            if missing:
                raise dtypes.fail(missing[0], "the dtype this runtime computes the format in", _MISSING)
        return out

    def per_key(key: str, choices=None) -> dict:
        sub = f.sub(key, optional=True)
        if sub is None:
            return {}
        out = {}
        for k in sub.data:
            if choices is not None and k not in choices:
                raise sub.fail(str(k), "one of " + ", ".join(choices), k)
            out[str(k)] = settings(sub.sub(k), complete=False)
        return out

    fit = f.raw("fit", {}) or {}
    if not isinstance(fit, Mapping):
        raise f.fail("fit", "a mapping (what the numbers were fitted on and what was held out)", fit)
    return RuntimeProfile(
        name=name, display_name=f.string("display_name"), weight_formats=tuple(formats),
        defaults=settings(f.sub("defaults"), complete=True), classes=per_key("classes", DEVICE_CLASSES),
        devices=per_key("devices"), fit=dict(fit), sources=_sources(f), path=str(path))
