"""The decision rules an exported policy runs on the edge, in numpy only.

An artifact's ``manifest.json`` describes its policy as data, never as
code; this module turns that description and the arrays of ``params.npz``
into a callable. These policy types cover every agent the project trains:

``mlp`` (SB3 DDPG/TD3/PPO/MaskablePPO/DQN, the MADRL actors)
    ``input``: optional observation normalisation (``clip((x - mean) /
    sqrt(var + epsilon), -clip, clip)``, SB3's VecNormalize frozen at the end
    of training) and an optional one-hot agent id appended to the
    observation; ``layers``: ``linear`` (``x @ weight + bias``; with
    ``groups`` set, one weight per agent, ``weight[agent]``), ``layer_norm``
    and the activations of :data:`ACTIVATIONS`; ``output``: ``argmax``
    (``mask: true`` applies the action mask first) or ``box`` (``tanh``
    squashing and unscaling to ``[low, high]``, then clipping, as SB3's
    ``predict`` does).
``ensemble_efe`` (deep active inference, horizon 1, discrete actions)
    every allowed action's expected free energy under the agent's ensemble
    (its members' batched weights, the input and target statistics, the
    preference and the information floor), the least taken.
``linear_scores`` (the contextual bandits)
    ``argmax_a x . theta_a + alpha sqrt(x A_a^-1 x) - price max(0, x .
    theta_cost_a)``: LinUCB, cost-aware LinUCB, and the greedy rule of LinTS
    and epsilon-greedy (``alpha = 0``, their exploration switched off).
``quality_router`` (``agents.quality_router``, its deterministic rule)
    ``argmax_a q_a - price c_a`` with the score ``s_a = topic_term[a, topic] +
    theta_a . [x, 1]`` (the last column of ``topic_term``: a query with no
    topic), ``q_a = s_a`` (``link: identity``) or ``1 / (1 + exp(-s_a))``
    (``logistic``), ``c_a = max(0, mean_cost_a + theta_cost_a . [x, 1])`` and
    ``price = cost_weight + pacing_price``. It reads two request fields
    besides the observation (:attr:`Policy.context`): ``topic`` (required
    when ``n_topics > 0``) and ``cost_weight`` (default: the manifest's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["ACTIVATIONS", "PolicyError", "Policy", "build_policy"]


_LINEAR, _GROUPED, _TANH, _RELU, _CALL = range(5)  # the layer codes of an MLP's forward loop


class PolicyError(ValueError):
    """The policy description of an artifact is malformed (names the field)."""


def _leaky_relu(x: np.ndarray, slope: float = 0.01) -> np.ndarray:
    return np.where(x > 0, x, slope * x)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


#: Activation name (as in the manifest) -> numpy function.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": _elu,
    "leaky_relu": _leaky_relu,
    "silu": _silu,
    "identity": lambda x: x,
}


@dataclass(frozen=True)
class Policy:
    """A decision rule: ``decide(obs, mask=None, agent=0)`` -> int (discrete) or float32 array (box)."""

    type: str
    obs_dim: int
    n_actions: int | None  #: discrete actions, or None for a box
    action_dim: int | None  #: box dimensions, or None
    uses_mask: bool  #: whether the action mask changes the decision
    n_agents: int  #: 1, or the agents an agent index selects among
    _decide: Callable[..., object]
    #: request fields the rule reads besides the observation, passed to it by keyword (validated by the router)
    context: tuple[str, ...] = ()

    def decide(self, obs: np.ndarray, mask: np.ndarray | None = None, agent: int = 0, **context):
        return self._decide(obs, mask, agent, **context)


def _array(arrays: Mapping[str, np.ndarray], spec: Mapping, key: str, where: str) -> np.ndarray:
    name = spec.get(key)
    if not isinstance(name, str) or name not in arrays:
        raise PolicyError(f"{where}.{key}: expected the name of an array in params.npz, got {name!r}")
    return arrays[name]


def _number(spec: Mapping, key: str, where: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise PolicyError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def _mlp(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    inp = spec.get("input") or {}
    groups = spec.get("groups")
    if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int) or groups < 1):
        raise PolicyError(f"policy.groups: expected null or an integer >= 1, got {groups!r}")
    norm = inp.get("normalize")
    if norm is not None:
        mean = _array(arrays, norm, "mean", "policy.input.normalize").astype(np.float64)
        scale = 1.0 / np.sqrt(_array(arrays, norm, "var", "policy.input.normalize").astype(np.float64)
                              + _number(norm, "epsilon", "policy.input.normalize", 1e-8))
        clip = _number(norm, "clip", "policy.input.normalize", 10.0)
        obs_dim = mean.shape[0]
    agent_id = inp.get("agent_id")
    n_ids = 0
    if agent_id is not None:
        n_ids = agent_id.get("n_agents") if isinstance(agent_id, Mapping) else None
        if isinstance(n_ids, bool) or not isinstance(n_ids, int) or n_ids < 1:
            raise PolicyError(f"policy.input.agent_id.n_agents: expected an integer >= 1, got {n_ids!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise PolicyError("policy.layers: expected a non-empty list of layers")
    steps: list[tuple] = []  # (code, array or function, bias): run by forward's loop, no call per layer
    width = None
    first_in = None
    for i, layer in enumerate(layers):
        where = f"policy.layers[{i}]"
        op = layer.get("op") if isinstance(layer, Mapping) else None
        if op == "linear":
            w = _array(arrays, layer, "weight", where).astype(np.float32)
            b = _array(arrays, layer, "bias", where).astype(np.float32)
            if groups:
                if w.ndim != 3 or w.shape[0] != groups or b.shape != (groups, w.shape[2]):
                    raise PolicyError(f"{where}: expected weight ({groups}, in, out) and bias ({groups}, out), "
                                      f"got {w.shape} and {b.shape}")
                steps.append((_GROUPED, w, b))
            else:
                if w.ndim != 2 or b.shape != (w.shape[1],):
                    raise PolicyError(f"{where}: expected weight (in, out) and bias (out,), got {w.shape} and "
                                      f"{b.shape}")
                steps.append((_LINEAR, w, b))
            n_in = w.shape[-2]
            if width is not None and n_in != width:
                raise PolicyError(f"{where}: takes {n_in} inputs, the layer before gives {width}")
            first_in = n_in if first_in is None else first_in
            width = w.shape[-1]
        elif op == "layer_norm":
            g = _array(arrays, layer, "weight", where).astype(np.float32)
            beta = _array(arrays, layer, "bias", where).astype(np.float32)
            eps = np.float32(_number(layer, "eps", where, 1e-5))

            def norm_step(x, a, g=g, beta=beta, eps=eps):
                mu = x.mean(axis=-1, keepdims=True)
                var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
                return (x - mu) / np.sqrt(var + eps) * g + beta
            steps.append((_CALL, norm_step, None))
            first_in = g.shape[0] if first_in is None else first_in
        elif op in ACTIVATIONS:
            steps.append((_TANH, None, None) if op == "tanh" else (_RELU, None, None) if op == "relu"
                         else (_CALL, lambda x, a, fn=ACTIVATIONS[op]: fn(x), None))
        else:
            raise PolicyError(f"{where}.op: expected linear, layer_norm or one of {', '.join(ACTIVATIONS)}, "
                              f"got {op!r}")
    if width is None:
        raise PolicyError("policy.layers: expected at least one linear layer")
    if norm is None:
        obs_dim = first_in - n_ids
    if obs_dim + n_ids != first_in:
        raise PolicyError(f"policy: the first layer takes {first_in} inputs, the observation gives {obs_dim} "
                          f"(+{n_ids} agent id)")
    n_agents = groups or n_ids or 1
    if groups and n_ids and groups != n_ids:
        raise PolicyError(f"policy: {groups} groups of weights but {n_ids} agent ids")
    eye = np.eye(n_ids, dtype=np.float32) if n_ids else None

    minimum, maximum, tanh, zero, f32 = np.minimum, np.maximum, np.tanh, np.float32(0), np.float32
    if norm is not None:  # bounds as arrays: no scalar conversion per call
        low_clip, high_clip = np.full(obs_dim, -clip), np.full(obs_dim, clip)
    # On arrays this small the call overhead is the cost: x.dot and x.argmax dispatch in a third of the time
    # of np.matmul and np.argmax, minimum/maximum against arrays in half the time of np.clip.

    def forward(obs: np.ndarray, agent: int) -> np.ndarray:
        x = obs
        if norm is not None:  # obs is clipped to the layout's bounds by the request builders: no overflow
            x = x - mean
            x *= scale
            minimum(x, high_clip, out=x)
            maximum(x, low_clip, out=x)
        x = x.astype(f32)
        if eye is not None:
            x = np.concatenate([x, eye[agent]])
        for code, w, b in steps:
            if code == _LINEAR:
                x = x.dot(w)
                x += b
            elif code == _TANH:
                tanh(x, out=x)
            elif code == _RELU:
                maximum(x, zero, out=x)
            elif code == _GROUPED:
                x = x.dot(w[agent])
                x += b[agent]
            else:
                x = w(x, agent)
        return x

    out = spec.get("output") or {}
    kind = out.get("type")
    if kind == "argmax":
        masked = out.get("mask", False)
        if not isinstance(masked, bool):
            raise PolicyError(f"policy.output.mask: expected true or false, got {masked!r}")
        lowest = np.float32(np.finfo(np.float32).min)

        def decide(obs, mask, agent):
            logits = forward(obs, agent)
            if masked and mask is not None:
                logits[~mask] = lowest  # logits is forward's own array
            return int(logits.argmax())
        return Policy("mlp", obs_dim, width, None, masked, n_agents, decide)
    if kind == "box":
        low = np.asarray(out.get("low"), dtype=np.float32)
        high = np.asarray(out.get("high"), dtype=np.float32)
        if low.shape != (width,) or high.shape != (width,) or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise PolicyError(f"policy.output: expected finite low and high of {width} entries")
        if out.get("squash") != "tanh":
            raise PolicyError(f"policy.output.squash: expected 'tanh', got {out.get('squash')!r}")
        half = (high - low) / 2
        one = np.float32(1)

        def decide_box(obs, mask, agent):
            a = forward(obs, agent)  # forward's own array
            tanh(a, out=a)
            a += one
            a *= half
            a += low
            minimum(a, high, out=a)
            return maximum(a, low, out=a)
        return Policy("mlp", obs_dim, None, width, False, n_agents, decide_box)
    raise PolicyError(f"policy.output.type: expected 'argmax' or 'box', got {kind!r}")


def _linear_scores(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    theta = _array(arrays, spec, "theta", "policy").astype(np.float64)
    if theta.ndim != 2:
        raise PolicyError(f"policy.theta: expected a (arms, features) matrix, got shape {theta.shape}")
    k, d = theta.shape
    alpha = _number(spec, "alpha", "policy", 0.0)
    price = _number(spec, "price", "policy", 0.0)
    a_inv = _array(arrays, spec, "A_inv", "policy").astype(np.float64) if alpha else None
    if a_inv is not None and a_inv.shape != (k, d, d):
        raise PolicyError(f"policy.A_inv: expected shape {(k, d, d)}, got {a_inv.shape}")
    theta_cost = _array(arrays, spec, "theta_cost", "policy").astype(np.float64) if price else None
    if theta_cost is not None and theta_cost.shape != (k, d):
        raise PolicyError(f"policy.theta_cost: expected shape {(k, d)}, got {theta_cost.shape}")
    flat = a_inv.reshape(k * d, d) if a_inv is not None else None

    maximum, sqrt, zeros = np.maximum, np.sqrt, np.zeros(k)

    def decide(obs, mask, agent):
        x = obs.astype(np.float64)
        s = theta.dot(x)
        if flat is not None:
            width = flat.dot(x).reshape(k, d).dot(x)
            s += alpha * sqrt(maximum(width, zeros, out=width), out=width)
        if theta_cost is not None:
            s -= price * maximum(theta_cost.dot(x), zeros)
        return int(s.argmax())
    return Policy("linear_scores", d, k, None, False, 1, decide)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x, 0.0)


def _ensemble_efe(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The deep active-inference agent's rule at horizon 1 (``agents.active_inference.deep``): every allowed
    action scored by its expected free energy under the ensemble, the least taken."""
    where = "policy"
    weights = spec.get("layers")
    if not isinstance(weights, list) or not weights:
        raise PolicyError(f"{where}.layers: expected a non-empty list of {{weight, bias}}")
    layers = [(_array(arrays, l, "weight", f"{where}.layers[{i}]").astype(np.float32),
               _array(arrays, l, "bias", f"{where}.layers[{i}]").astype(np.float32)) for i, l in enumerate(weights)]
    head_w, head_b = _array(arrays, spec, "head_weight", where), _array(arrays, spec, "head_bias", where)
    x_mean, x_std = _array(arrays, spec, "x_mean", where), _array(arrays, spec, "x_std", where)
    y_mean, y_std = _array(arrays, spec, "y_mean", where), _array(arrays, spec, "y_std", where)
    max_lv, min_lv = _array(arrays, spec, "max_logvar", where), _array(arrays, spec, "min_logvar", where)
    preference, floor = _array(arrays, spec, "preference", where), _array(arrays, spec, "floor", where)
    beta = _number(spec, "epistemic_weight", where)
    k, n_in = preference.shape[0], x_mean.shape[0]
    n = spec.get("n_actions")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n >= n_in:
        raise PolicyError(f"{where}.n_actions: expected an integer in [1, {n_in - 1}], got {n!r}")
    members = layers[0][0].shape[0]
    width = n_in
    for i, (w, b) in enumerate(layers):
        if w.ndim != 3 or w.shape[0] != members or w.shape[1] != width or b.shape != (members, 1, w.shape[2]):
            raise PolicyError(f"{where}.layers[{i}]: expected weight ({members}, {width}, out) and bias "
                              f"({members}, 1, out), got {w.shape} and {b.shape}")
        width = w.shape[2]
    if head_w.shape != (members, width, 2 * k) or head_b.shape != (members, 1, 2 * k):
        raise PolicyError(f"{where}.head_weight: expected ({members}, {width}, {2 * k}), got {head_w.shape}")
    for name, arr in (("y_mean", y_mean), ("y_std", y_std), ("max_logvar", max_lv), ("min_logvar", min_lv),
                      ("floor", floor)):
        if arr.shape != (k,):
            raise PolicyError(f"{where}.{name}: expected {k} entries, got shape {arr.shape}")
    obs_dim = n_in - n
    eye = np.eye(n, dtype=np.float32)
    all_actions = np.arange(n)

    def decide(obs, mask, agent):
        allowed = all_actions if mask is None else np.flatnonzero(mask)
        x = np.concatenate([np.broadcast_to(obs.astype(np.float32), (allowed.size, obs_dim)), eye[allowed]], 1)
        h = ((x - x_mean) / x_std).astype(np.float32)[None]  # [1, C, in] -> [E, C, out] below
        for w, b in layers:
            h = h @ w + b
            h *= 0.5 * (1.0 + np.tanh(0.5 * h))  # SiLU: h * sigmoid(h), with no overflow
        out = h @ head_w + head_b
        mu, logvar = out[..., :k], out[..., k:]
        logvar = max_lv - _softplus(max_lv - logvar)
        logvar = min_lv + _softplus(logvar - min_lv)
        mu = mu * y_std + y_mean
        var = np.exp(logvar) * y_std ** 2 + floor
        total = var.mean(axis=0) + mu.var(axis=0)
        gain = 0.5 * (np.log(total) - np.log(var).mean(axis=0)).sum(axis=-1)
        g = (mu.mean(axis=0) * preference).sum(axis=-1) - beta * gain
        return int(allowed[int(np.argmin(g))])
    return Policy("ensemble_efe", obs_dim, n, None, True, 1, decide)


def _quality_router(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The quality router's deterministic rule (see the module's docstring)."""
    where = "policy"
    table = _array(arrays, spec, "topic_term", where).astype(np.float64)
    theta = _array(arrays, spec, "theta", where).astype(np.float64)
    theta_cost = _array(arrays, spec, "theta_cost", where).astype(np.float64)
    mean_cost = _array(arrays, spec, "mean_cost", where).astype(np.float64)
    if theta.ndim != 2 or theta.shape[1] < 2:
        raise PolicyError(f"{where}.theta: expected an (arms, features + 1) matrix, got shape {theta.shape}")
    k, d1 = theta.shape
    n_topics = spec.get("n_topics")
    if isinstance(n_topics, bool) or not isinstance(n_topics, int) or n_topics < 0:
        raise PolicyError(f"{where}.n_topics: expected an integer >= 0, got {n_topics!r}")
    link = spec.get("link")
    if link not in ("logistic", "identity"):
        raise PolicyError(f"{where}.link: expected 'logistic' or 'identity', got {link!r}")
    logistic = link == "logistic"
    for name, arr, shape in (("topic_term", table, (k, n_topics + 1)), ("theta_cost", theta_cost, (k, d1)),
                             ("mean_cost", mean_cost, (k,))):
        if arr.shape != shape:
            raise PolicyError(f"{where}.{name}: expected shape {shape}, got {arr.shape}")
    default_weight = _number(spec, "cost_weight", where)
    pacing = _number(spec, "pacing_price", where, 0.0)
    if default_weight < 0 or pacing < 0:
        raise PolicyError(f"{where}.cost_weight, pacing_price: expected numbers >= 0, got {default_weight!r}, "
                          f"{pacing!r}")

    def decide(obs, mask, agent, topic=None, cost_weight=None):
        z = np.append(obs.astype(np.float64), 1.0)
        quality = table[:, n_topics if topic is None else topic] + theta @ z
        if logistic:
            quality = 1.0 / (1.0 + np.exp(-quality))
        cost = np.maximum(mean_cost + theta_cost @ z, 0.0)
        price = (default_weight if cost_weight is None else cost_weight) + pacing
        return int(np.argmax(quality - price * cost))
    return Policy("quality_router", d1 - 1, k, None, False, 1, decide,
                  ("topic", "cost_weight") if n_topics else ("cost_weight",))


_BUILDERS = {"mlp": _mlp, "linear_scores": _linear_scores, "ensemble_efe": _ensemble_efe,
             "quality_router": _quality_router}


def build_policy(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The :class:`Policy` of a manifest's ``policy`` section and its arrays; PolicyError names a bad field."""
    if not isinstance(spec, Mapping) or spec.get("type") not in _BUILDERS:
        got = spec.get("type") if isinstance(spec, Mapping) else spec
        raise PolicyError(f"policy.type: expected one of {', '.join(_BUILDERS)}, got {got!r}")
    try:
        return _BUILDERS[spec["type"]](spec, arrays)
    except (AttributeError, TypeError) as err:  # a section of the wrong JSON type
        raise PolicyError(f"policy: malformed description ({err})") from None
