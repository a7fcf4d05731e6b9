"""The router's MLP rule against the plain formula: normalisation (its clip binding), agent ids, groups,
layer norm first, masks, box heads, and concurrent callers. Numpy only: no training."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from offload_env.router.policy import build_policy

OBS, HIDDEN, OUT = 6, 16, 7


def _reference(spec, arrays, obs, mask=None, agent=0):
    """The MLP of a policy spec, computed the plain way in float64 (what the fast path must equal)."""
    x = obs.astype(np.float64)
    norm = spec["input"].get("normalize")
    if norm:
        std = np.sqrt(arrays["mean_var"][1] + 1e-8)
        x = np.clip((x - arrays["mean_var"][0]) / std, -norm["clip"], norm["clip"])
    if spec["input"].get("agent_id"):
        x = np.concatenate([x, np.eye(spec["input"]["agent_id"]["n_agents"])[agent]])
    for layer in spec["layers"]:
        if layer["op"] == "linear":
            w, b = arrays[layer["weight"]], arrays[layer["bias"]]
            x = x @ (w[agent] if w.ndim == 3 else w) + (b[agent] if b.ndim == 2 else b)
        elif layer["op"] == "layer_norm":
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-5) * arrays[layer["weight"]] + arrays[layer["bias"]]
        else:
            x = np.tanh(x) if layer["op"] == "tanh" else np.maximum(x, 0.0)
    if spec["output"]["type"] == "box":
        low, high = np.array(spec["output"]["low"]), np.array(spec["output"]["high"])
        return np.clip(low + (np.tanh(x) + 1) * (high - low) / 2, low, high)
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    return int(np.argmax(x))


def _spec(rng, *, normalize=True, ids=0, groups=None, layer_norm=False, box=False, hidden=HIDDEN):
    arrays, layers = {}, []
    n_in = OBS + ids
    if layer_norm:
        arrays["ln.w"], arrays["ln.b"] = rng.normal(1, 0.1, n_in), rng.normal(0, 0.1, n_in)
        layers.append({"op": "layer_norm", "weight": "ln.w", "bias": "ln.b", "eps": 1e-5})
    sizes = (n_in, hidden, hidden, OUT)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lead = (groups,) if groups else ()
        arrays[f"w{i}"] = rng.normal(0, 1 / np.sqrt(a), (*lead, a, b)).astype(np.float32)
        arrays[f"b{i}"] = rng.normal(0, 0.1, (*lead, b)).astype(np.float32)
        layers.append({"op": "linear", "weight": f"w{i}", "bias": f"b{i}"})
        if i < 2:
            layers.append({"op": "tanh" if i == 0 else "relu"})
    inp = {}
    if normalize:  # a mean and variance under which the clip binds for part of the inputs below
        arrays["mean_var"] = np.stack([rng.normal(0, 1, OBS), rng.uniform(0.01, 1, OBS)])
        arrays["mean"], arrays["var"] = arrays["mean_var"]
        inp["normalize"] = {"mean": "mean", "var": "var", "clip": 3.0, "epsilon": 1e-8}
    if ids:
        inp["agent_id"] = {"n_agents": ids}
    out = {"type": "box", "squash": "tanh", "low": [-2.0] * OUT, "high": [0.5] * OUT} if box else \
        {"type": "argmax", "mask": True}
    spec = {"type": "mlp", "input": inp, "layers": layers, "output": out}
    if groups:
        spec["groups"] = groups
    return spec, arrays


CASES = {
    "normalised": {}, "plain": dict(normalize=False), "agent-ids": dict(ids=3), "groups": dict(groups=3),
    "groups-and-ids": dict(groups=3, ids=3), "layer-norm-first": dict(layer_norm=True, ids=3),
    "box": dict(box=True), "big-layer-float32": dict(hidden=200, box=True),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_fast_mlp_equals_the_formula(case):
    rng = np.random.default_rng(len(case))
    spec, arrays = _spec(rng, **CASES[case])
    policy = build_policy(spec, arrays)
    obs = (rng.normal(0, 3, (2000, OBS))).astype(np.float32)  # wide: the clip binds on many entries
    agents = policy.n_agents
    clipped = 0
    if "normalize" in spec["input"]:
        z = np.abs((obs - arrays["mean"]) / np.sqrt(arrays["var"] + 1e-8))
        clipped = int((z > 3.0).any(axis=1).sum())
        assert clipped > 200  # the clip matters on these inputs
    err, decisions = 0.0, set()
    for i, x in enumerate(obs):
        agent = i % agents
        mask = rng.random(OUT) < 0.6
        mask[rng.integers(OUT)] = True
        got = policy.decide(x, mask, agent)
        want = _reference(spec, arrays, x, mask, agent)
        if spec["output"]["type"] == "box":
            assert got.dtype == np.float32 and got.shape == (OUT,)
            err = max(err, float(np.abs(got - want).max()))
        else:
            assert mask[got] and got == want, (i, got, want)
            decisions.add(got)
    assert err <= 1e-5
    assert spec["output"]["type"] == "box" or len(decisions) == OUT


def test_concurrent_callers_get_their_own_decisions():
    """The per-thread buffers: four threads deciding at once decide as one thread does."""
    rng = np.random.default_rng(1)
    spec, arrays = _spec(rng, ids=3)
    policy = build_policy(spec, arrays)
    obs = rng.normal(0, 3, (3000, OBS)).astype(np.float32)
    want = [policy.decide(x, None, i % 3) for i, x in enumerate(obs)]
    results: dict[int, list] = {}

    def run(k):
        results[k] = [policy.decide(x, None, i % 3) for i, x in enumerate(obs)]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == want for k in range(4))
    assert len(set(want)) > 1
