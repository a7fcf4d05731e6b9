"""The decision rules an exported policy runs on the edge, in numpy only.

An artifact's ``manifest.json`` describes its policy as data, never as
code; this module turns that description and the arrays of ``params.npz``
into a callable. These policy types cover every agent the project exports:

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
``ensemble_efe`` (deep active inference, discrete actions)
    every allowed action's expected free energy under the agent's ensemble
    (its members' batched weights, the input and target statistics, the
    preference and the information floor), summed over ``horizon`` steps of
    the action repeated (each member's predicted observation change carries
    its rollout on, clipped to the env's bounds), the least taken.
``pomdp_efe`` (the pymdp agent, ``pymdp_aif``)
    the observation binned into context factors (:mod:`offload_env.router.bins`,
    the agent's own rule), the state posterior by pymdp's fixed-point
    iteration under ``A`` and ``D``, each policy's expected free energy
    (utility under ``C``, information gain about the states and about ``A``),
    the least taken; its choice is the allowed action nearest its target.
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

import threading
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

try:  # numpy's clip as one ufunc (np.clip wraps it in Python)
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy 1.x
    try:
        from numpy.core.umath import clip as _clip
    except ImportError:
        def _clip(x, low, high, out):
            np.minimum(x, high, out=out)
            return np.maximum(out, low, out=out)

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
    scores: Callable[[np.ndarray], np.ndarray] | None = None  #: obs -> what the decision ranks (pomdp_efe: -EFE)
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
    return _mlp_rule(spec, steps, (mean, scale, clip) if norm is not None else None, obs_dim, n_ids, n_agents,
                     width)


def _apply(code: int, fn, x: np.ndarray, agent: int) -> np.ndarray:
    """One non-linear step of an MLP on ``x``."""
    return np.tanh(x) if code == _TANH else np.maximum(x, 0.0) if code == _RELU else fn(x, agent)


_MASKS_KEPT = 4096  #: action masks whose allowed actions (and last-layer columns) a policy keeps
_BIG_LAYER = 32768  #: weights in a layer above which the network computes in float32 (memory), else float64


def _mlp_rule(spec: Mapping, steps: list, norm, obs_dim: int, n_ids: int, n_agents: int, width: int) -> Policy:
    """The fast forward of :func:`_mlp`'s checked layers, then its output head.

    Every linear layer reads a per-thread buffer whose last entry is 1, so its bias is one more row of its
    weight (one ``dot`` per layer); activations write into the next layer's buffer. Where the first step is
    linear, the input normalisation and the agent id fold into it: ``clip((x - mean) * scale, -c, c) @ W + b``
    is ``clip(x, mean - c / scale, mean + c / scale) @ (scale W) + (b - (mean scale) @ W)``, in float64
    (the clip is still applied, in the observation's units). Small networks compute in float64, those with
    a layer over :data:`_BIG_LAYER` weights in float32 after the first layer.
    """
    linears = [i for i, st in enumerate(steps) if st[0] in (_LINEAR, _GROUPED)]
    fold = linears[0] == 0
    big = any(steps[i][1].shape[-2] * steps[i][1].shape[-1] > _BIG_LAYER for i in linears)
    f64 = np.float64
    later = np.float32 if big else f64
    layers = []  # (shared weight (in + 1, out) or None, per-agent weights (G, in + 1, out) or None, between)
    for j, i in enumerate(linears):
        code, w, b = steps[i]
        dtype = f64 if j == 0 else later
        w3 = (w if code == _GROUPED else w[None]).astype(f64)
        b3 = (b if code == _GROUPED else b[None]).astype(f64)
        if j == 0 and fold:
            if n_ids:  # the agent id's one-hot row of the weight is a per-agent bias
                ids = np.arange(n_ids)
                if code == _GROUPED:  # as many groups as ids (checked by _mlp): agent a's own weights
                    b3 = b3 + w3[ids, obs_dim + ids]
                else:
                    b3 = b3 + w3[0, obs_dim:]
                    w3 = np.broadcast_to(w3, (n_ids, *w3.shape[1:]))
                w3 = w3[:, :obs_dim]
            if norm:
                mean, scale, _ = norm
                b3 = b3 - np.einsum("i,gio->go", mean * scale, w3)
                w3 = w3 * scale[:, None]
        aug = np.concatenate([w3, b3[:, None, :]], axis=1).astype(dtype)
        shared = aug.shape[0] == 1
        nxt = linears[j + 1] if j + 1 < len(linears) else len(steps)
        layers.append((aug[0] if shared else None, None if shared else aug, steps[i + 1:nxt], dtype))
    if not fold:  # what comes before the first linear layer runs as the generic forward
        prefix = steps[:linears[0]]
    if norm:
        mean, scale, clip = norm
        low_clip, high_clip = mean - clip / scale, mean + clip / scale  # (x - mean) * scale in [-clip, clip]
    eye = np.eye(n_ids, dtype=np.float32) if n_ids else None
    sizes = [(layers[0][0] if layers[0][0] is not None else layers[0][1][0]).shape[0] - 1] + \
        [(lw if lw is not None else gw[0]).shape[0] - 1 for lw, gw, _, _ in layers[1:]]
    dtypes = [d for _, _, _, d in layers]
    local = threading.local()

    def buffers() -> list:
        """This thread's input buffers (each ends in 1) and views of all but their last entry."""
        out = []
        for n, dtype in zip(sizes, dtypes):
            buf = np.ones(n + 1, dtype=dtype)
            out += (buf, buf[:n])
        local.buffers = out
        return out

    minimum, maximum, tanh, copyto, zero = np.minimum, np.maximum, np.tanh, np.copyto, 0.0

    last_shared, last_grouped, last_between, _ = layers[-1]

    def hidden(obs: np.ndarray, agent: int) -> np.ndarray:
        """The last linear layer's input buffer (ending in 1), filled from ``obs``."""
        try:
            bufs = local.buffers
        except AttributeError:
            bufs = buffers()
        if fold:
            x = bufs[1]
            x[...] = obs  # into float64 first: a clip of float32 into float64 is twice as slow
            if norm:
                _clip(x, low_clip, high_clip, out=x)
        else:
            x = obs
            if norm:
                x = x - mean
                x *= scale
                minimum(x, clip, out=x)
                maximum(x, -clip, out=x)
            x = x.astype(np.float32)
            if eye is not None:
                x = np.concatenate([x, eye[agent]])
            for code, fn, _ in prefix:
                x = _apply(code, fn, x, agent)
            copyto(bufs[1], x)
        k = 0
        for shared, grouped, between, _ in layers[:-1]:
            x = bufs[k].dot(shared if grouped is None else grouped[agent])
            k += 2
            if len(between) == 1 and between[0][0] == _TANH:
                tanh(x, out=bufs[k + 1])
            elif len(between) == 1 and between[0][0] == _RELU:
                maximum(x, zero, out=bufs[k + 1])
            else:
                for code, fn, _ in between:
                    x = _apply(code, fn, x, agent)
                copyto(bufs[k + 1], x)
        return bufs[k]

    def forward(obs: np.ndarray, agent: int) -> np.ndarray:
        x = hidden(obs, agent).dot(last_shared if last_grouped is None else last_grouped[agent])
        for code, fn, _ in last_between:
            x = _apply(code, fn, x, agent)
        return x

    out = spec.get("output") or {}
    kind = out.get("type")
    if kind == "argmax":
        masked = out.get("mask", False)
        if not isinstance(masked, bool):
            raise PolicyError(f"policy.output.mask: expected true or false, got {masked!r}")
        # a mask keeps the columns of the last layer it allows (when that layer ends the network and is shared):
        # the argmax of the allowed logits alone, in the allowed actions' order (ties: the lowest index, as
        # numpy's argmax over all logits with the barred ones at -inf)
        columns = last_grouped is None and not last_between
        allowed_columns: dict[bytes, tuple] = {}  # a mask's bytes -> (allowed actions, as an array, columns)

        def decide(obs, mask, agent):
            if not (masked and mask is not None):
                return int(forward(obs, agent).argmax())
            key = mask.tobytes()
            entry = allowed_columns.get(key)
            if entry is None:
                allowed = np.flatnonzero(mask)
                if not len(allowed):
                    raise ValueError("mask: allows no action")
                entry = (tuple(allowed.tolist()), allowed,
                         np.ascontiguousarray(last_shared[:, allowed]) if columns else None)
                if len(allowed_columns) < _MASKS_KEPT:
                    allowed_columns[key] = entry
            actions, allowed, weight = entry  # actions: the allowed ones as ints, returned without a conversion
            if weight is not None:
                return actions[hidden(obs, agent).dot(weight).argmax()]
            return actions[forward(obs, agent)[allowed].argmax()]
        return Policy("mlp", obs_dim, width, None, masked, n_agents, decide)
    if kind == "box":
        low = np.asarray(out.get("low"), dtype=np.float32)
        high = np.asarray(out.get("high"), dtype=np.float32)
        if low.shape != (width,) or high.shape != (width,) or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise PolicyError(f"policy.output: expected finite low and high of {width} entries")
        if out.get("squash") != "tanh":
            raise PolicyError(f"policy.output.squash: expected 'tanh', got {out.get('squash')!r}")
        half = (high - low) / 2
        one, f32 = np.float32(1), np.float32
        unit = bool((low == -1).all() and (high == 1).all())  # tanh's own range: unscaling and clip do nothing

        def decide_box(obs, mask, agent):
            a = forward(obs, agent).astype(f32, copy=False)  # forward's own array: float32, as the agent's
            tanh(a, out=a)
            if unit:
                return a
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
    # alpha sqrt(x A x) is sqrt(x (alpha^2 A) x): alpha folded into the matrix, one multiplication less per call
    flat = (alpha * alpha * a_inv).reshape(k * d, d) if a_inv is not None else None
    shape = (k, d)

    maximum, sqrt, zeros = np.maximum, np.sqrt, np.zeros(k)

    def decide(obs, mask, agent):
        x = obs.astype(np.float64)
        s = theta.dot(x)
        if flat is not None:
            width = flat.dot(x).reshape(shape).dot(x)
            s += sqrt(maximum(width, zeros, out=width), out=width)
        if theta_cost is not None:
            s -= price * maximum(theta_cost.dot(x), zeros)
        return int(s.argmax())
    return Policy("linear_scores", d, k, None, False, 1, decide)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x, 0.0)


def _ensemble_efe(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The deep active-inference agent's rule on discrete actions (``agents.active_inference.deep``): every
    allowed action, repeated over the horizon, scored by its expected free energy under the ensemble, the least
    taken."""
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
    horizon = spec.get("horizon", 1)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise PolicyError(f"{where}.horizon: expected an integer >= 1, got {horizon!r}")
    if horizon > 1:  # the rollout: each member's next observation, clipped to the env's bounds
        delta_w, delta_b = _array(arrays, spec, "delta_weight", where), _array(arrays, spec, "delta_bias", where)
        if delta_w.shape != (members, width, obs_dim) or delta_b.shape != (members, 1, obs_dim):
            raise PolicyError(f"{where}.delta_weight: expected ({members}, {width}, {obs_dim}) and delta_bias "
                              f"({members}, 1, {obs_dim}), got {delta_w.shape} and {delta_b.shape}")
        head_w, head_b = np.concatenate([head_w, delta_w], -1), np.concatenate([head_b, delta_b], -1)
        delta = [_array(arrays, spec, name, where) for name in ("delta_mean", "delta_std", "state_low", "state_high")]
        for name, arr in zip(("delta_mean", "delta_std", "state_low", "state_high"), delta):
            if arr.shape != (obs_dim,):
                raise PolicyError(f"{where}.{name}: expected {obs_dim} entries, got shape {arr.shape}")
        delta_mean, delta_std, state_low, state_high = delta
    eye = np.eye(n, dtype=np.float32)
    all_actions = np.arange(n)

    def decide(obs, mask, agent):
        allowed = all_actions if mask is None else np.flatnonzero(mask)
        ids = eye[allowed][None]  # each candidate repeats its action over the horizon
        state = np.broadcast_to(obs.astype(np.float32), (1, allowed.size, obs_dim))  # [1 or E, C, D]
        g = 0.0
        for t in range(horizon):
            x = np.concatenate([state, np.broadcast_to(ids, (*state.shape[:2], n))], -1)
            h = ((x - x_mean) / x_std).astype(np.float32)  # [1 or E, C, in] -> [E, C, out] below
            for w, b in layers:
                h = h @ w + b
                h *= 0.5 * (1.0 + np.tanh(0.5 * h))  # SiLU: h * sigmoid(h), with no overflow
            out = h @ head_w + head_b
            mu, logvar = out[..., :k], out[..., k:2 * k]
            logvar = max_lv - _softplus(max_lv - logvar)
            logvar = min_lv + _softplus(logvar - min_lv)
            mu = mu * y_std + y_mean
            var = np.exp(logvar) * y_std ** 2 + floor
            total = var.mean(axis=0) + mu.var(axis=0)
            gain = 0.5 * (np.log(total) - np.log(var).mean(axis=0)).sum(axis=-1)
            g = g + ((mu.mean(axis=0) * preference).sum(axis=-1) - beta * gain)
            if t + 1 < horizon:
                state = np.clip(state + (out[..., 2 * k:] * delta_std + delta_mean), state_low, state_high)
        return int(allowed[int(np.argmin(g))])
    return Policy("ensemble_efe", obs_dim, n, None, True, 1, decide)


_MINVAL = float(np.finfo(np.float64).eps)  #: pymdp's floor under probabilities before a log (its MINVAL)


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(x, _MINVAL))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _contract(t: np.ndarray, qs: list[np.ndarray], keep: int | None = None) -> np.ndarray:
    """``t`` (a lead axis, then one axis per factor of ``qs``) summed against every ``qs[i]`` but ``qs[keep]``;
    the lead axis (and that factor's) kept: pymdp's ``factor_dot``."""
    operands: list = [t, list(range(len(qs) + 1))]
    for i, q in enumerate(qs):
        if i != keep:
            operands += [q, [i + 1]]
    return np.einsum(*operands, [0] if keep is None else [0, keep + 1])


def _int_lists(spec: Mapping, key: str, where: str, n: int, high: int) -> list[list[int]]:
    value = spec.get(key)
    ok = isinstance(value, list) and len(value) == n and all(
        isinstance(d, list) and d and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < high
                                          for i in d) and len(set(d)) == len(d) for d in value)
    if not ok:
        raise PolicyError(f"{where}.{key}: expected {n} lists of distinct factor indices in [0, {high - 1}], "
                          f"got {value!r}")
    return value


def _arrays(arrays: Mapping[str, np.ndarray], spec: Mapping, key: str, where: str, n: int | None = None
            ) -> list[np.ndarray]:
    names = spec.get(key)
    if not isinstance(names, list) or not names or (n is not None and len(names) != n):
        raise PolicyError(f"{where}.{key}: expected a list of {n or 'one or more'} array names, got {names!r}")
    out = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in arrays:
            raise PolicyError(f"{where}.{key}[{i}]: expected the name of an array in params.npz, got {name!r}")
        a = np.asarray(arrays[name], dtype=np.float64)
        if not np.isfinite(a).all():
            raise PolicyError(f"{where}.{key}[{i}]: expected finite numbers")
        out.append(a)
    return out


def _pomdp_efe(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The pymdp agent's rule (``agents.active_inference.discrete``): the observation binned into the context
    modalities (the outcome modalities at their ``pending`` bin), the state posterior by pymdp's fixed-point
    iteration (``num_iter`` rounds) from the prior ``D``, each policy's negative expected free energy (utility
    under ``C``, the information gain about the states and, where ``wA`` is given, about ``A``), the greatest
    taken (the first on ties); its choice is the allowed action nearest the choice's ``target``."""
    from .bins import nearest_allowed, reader_from_spec

    where = "policy"
    obs_dim, n = spec.get("obs_dim"), spec.get("n_actions")
    for key, v in (("obs_dim", obs_dim), ("n_actions", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PolicyError(f"{where}.{key}: expected an integer >= 1, got {v!r}")
    context = spec.get("context")
    if not isinstance(context, list) or not context:
        raise PolicyError(f"{where}.context: expected a non-empty list of context readers")
    try:
        readers = [reader_from_spec(c, f"{where}.context[{i}]", obs_dim) for i, c in enumerate(context)]
    except ValueError as err:
        raise PolicyError(str(err)) from None
    D = _arrays(arrays, spec, "D", where)
    for f, d in enumerate(D):
        if d.ndim != 1 or d.shape[0] < 1:
            raise PolicyError(f"{where}.D[{f}]: expected a vector, got shape {d.shape}")
    sizes, F = [d.shape[0] for d in D], len(D)
    A = _arrays(arrays, spec, "A", where)
    M = len(A)
    if M <= len(readers):
        raise PolicyError(f"{where}.A: expected more modalities than the {len(readers)} context readers, got {M}")
    A_deps = _int_lists(spec, "A_dependencies", where, M, F)
    C = _arrays(arrays, spec, "C", where, M)
    for m, (a, deps) in enumerate(zip(A, A_deps)):
        want = (a.shape[0], *[sizes[f] for f in deps])
        if a.shape != want or (a < 0).any():
            raise PolicyError(f"{where}.A[{m}]: expected shape (outcomes, *factor sizes) = {want} of probabilities, "
                              f"got {a.shape}")
        if C[m].shape != (a.shape[0],):
            raise PolicyError(f"{where}.C[{m}]: expected shape {(a.shape[0],)}, got {C[m].shape}")
        if m < len(readers) and readers[m].size != a.shape[0]:
            raise PolicyError(f"{where}.context[{m}]: reads {readers[m].size} bins, A[{m}] has {a.shape[0]} outcomes")
    pending = spec.get("pending")
    ok = isinstance(pending, int) and not isinstance(pending, bool) and all(
        0 <= pending < a.shape[0] for a in A[len(readers):])
    if not ok:
        raise PolicyError(f"{where}.pending: expected the outcome bin observed before the outcome, an integer "
                          f"below every outcome modality's size, got {pending!r}")
    B = _arrays(arrays, spec, "B", where, F)
    B_deps = _int_lists(spec, "B_dependencies", where, F, F)
    for f, (b, deps) in enumerate(zip(B, B_deps)):
        want = (sizes[f], *[sizes[d] for d in deps])
        if b.ndim != len(want) + 1 or b.shape[:-1] != want:
            raise PolicyError(f"{where}.B[{f}]: expected shape {want} + (controls,), got {b.shape}")
    policies = _array(arrays, spec, "policies", where)
    controls = np.array([b.shape[-1] for b in B])
    if policies.ndim != 3 or policies.shape[0] < 1 or policies.shape[1] < 1 or policies.shape[2] != F or \
            policies.dtype.kind not in "iu" or (policies < 0).any() or (policies >= controls).any():
        raise PolicyError(f"{where}.policies: expected integers of shape (policies, steps, {F}), each below its "
                          f"factor's controls {controls.tolist()}, got {policies.dtype} {policies.shape}")
    P = policies.shape[0]
    targets = _array(arrays, spec, "targets", where).astype(np.float64)
    if targets.shape != (P,) or not np.isfinite(targets).all():
        raise PolicyError(f"{where}.targets: expected {P} finite numbers, got shape {targets.shape}")
    wA = None
    if spec.get("wA") is not None:
        wA = _arrays(arrays, spec, "wA", where, M)
        for m, (w, a) in enumerate(zip(wA, A)):
            if w.shape != a.shape:
                raise PolicyError(f"{where}.wA[{m}]: expected shape {a.shape}, got {w.shape}")
    states_gain = spec.get("states_info_gain", True)
    if not isinstance(states_gain, bool):
        raise PolicyError(f"{where}.states_info_gain: expected true or false, got {states_gain!r}")
    num_iter = spec.get("num_iter")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
        raise PolicyError(f"{where}.num_iter: expected an integer >= 1, got {num_iter!r}")

    log_A = [_log(a) for a in A]
    log_D = [_log(d) for d in D]
    H_A = [-(a * _log(a)).sum(axis=0) for a in A]  # each state's outcome entropy
    n_ctx = len(readers)
    all_actions = np.arange(n)
    chosen: dict[tuple, int] = {}  # context bins -> the policy taken (the rule reads nothing else)

    def posterior(obs_bins: list[int]) -> list[np.ndarray]:
        ll = [la[o] for la, o in zip(log_A, obs_bins)]
        log_q = [np.zeros(s) for s in sizes]
        for _ in range(num_iter):
            q = [_softmax(x) for x in log_q]
            total = [np.zeros(1)] * F
            for m, deps in enumerate(A_deps):
                local = [q[f] for f in deps]
                for j, f in enumerate(deps):
                    total[f] = total[f] + _contract(ll[m][None], local, keep=j)[0]
            log_q = [t + lp for t, lp in zip(total, log_D)]
        return [_softmax(x) for x in log_q]

    def neg_efe(qs: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(P)
        for p in range(P):
            q = qs
            for u in policies[p]:
                q = [_contract(b[..., u_f], [q[d] for d in deps]) for b, u_f, deps in zip(B, u, B_deps)]
                for m, deps in enumerate(A_deps):
                    local = [q[f] for f in deps]
                    qo = _contract(A[m], local)
                    out[p] += qo @ C[m]
                    if states_gain:
                        out[p] += -(qo * _log(qo)).sum() - _contract(H_A[m][None], local)[0]
                    if wA is not None:
                        out[p] -= qo @ _contract(wA[m], local)
        return out

    def decide(obs, mask, agent):
        bins = tuple(r(obs) for r in readers)
        p = chosen.get(bins)
        if p is None:
            p = chosen[bins] = int(np.argmax(scores(obs)))
        return nearest_allowed(targets[p], all_actions if mask is None else np.flatnonzero(mask))

    def scores(obs) -> np.ndarray:
        bins = [r(obs) for r in readers]
        return neg_efe(posterior(bins + [pending] * (M - n_ctx)))

    return Policy("pomdp_efe", obs_dim, n, None, True, 1, decide, scores)


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
                  context=("topic", "cost_weight") if n_topics else ("cost_weight",))


_BUILDERS = {"mlp": _mlp, "linear_scores": _linear_scores, "ensemble_efe": _ensemble_efe,
             "pomdp_efe": _pomdp_efe, "quality_router": _quality_router}


def build_policy(spec: Mapping, arrays: Mapping[str, np.ndarray]) -> Policy:
    """The :class:`Policy` of a manifest's ``policy`` section and its arrays; PolicyError names a bad field."""
    if not isinstance(spec, Mapping) or spec.get("type") not in _BUILDERS:
        got = spec.get("type") if isinstance(spec, Mapping) else spec
        raise PolicyError(f"policy.type: expected one of {', '.join(_BUILDERS)}, got {got!r}")
    try:
        return _BUILDERS[spec["type"]](spec, arrays)
    except (AttributeError, TypeError) as err:  # a section of the wrong JSON type
        raise PolicyError(f"policy: malformed description ({err})") from None
