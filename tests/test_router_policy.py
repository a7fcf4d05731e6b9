"""The router's MLP rule against the plain formula: normalisation (its clip binding), agent ids, groups,
layer norm first, masks, box heads, and concurrent callers; the pomdp_efe rule against a hand computation.
Numpy only: no training."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from offload_env.router.policy import PolicyError, build_policy

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


def _pomdp_toy() -> tuple[dict, dict]:
    """A pomdp_efe rule with a hand-computable answer: the sign of obs[0] read with probability 0.9, three
    choices whose cost (none, 0, 0.5, 1; C = 0, 0, -2, -4) depends on the sign; choice 0 cheap when the sign is
    0, choice 2 when it is 1 (tests/test_pymdp_agent.py computes the same agent's numbers with pymdp)."""
    cost = np.zeros((4, 2, 4))
    cost[0, :, 0] = 1.0
    cost[1:, 0, 1], cost[1:, 1, 1] = (0.8, 0.1, 0.1), (0.1, 0.1, 0.8)
    cost[1:, :, 2] = np.array([0.1, 0.8, 0.1])[:, None]
    cost[1:, 0, 3], cost[1:, 1, 3] = (0.1, 0.1, 0.8), (0.8, 0.1, 0.1)
    choice = np.zeros((4, 4, 3))
    for c in range(3):
        choice[c + 1, :, c] = 1.0
    arrays = {"A0": np.array([[0.9, 0.1], [0.1, 0.9]]), "A1": cost, "B0": np.eye(2)[:, :, None], "B1": choice,
              "C0": np.zeros(2), "C1": np.array([0.0, 0.0, -2.0, -4.0]), "D0": np.full(2, 0.5),
              "D1": np.eye(4)[0], "policies": np.array([[[0, c]] for c in range(3)]), "targets": np.array([0., 1, 2])}
    spec = {"type": "pomdp_efe", "obs_dim": 2, "n_actions": 3, "context": [{"read": "bins", "index": 0,
            "edges": [0.0]}], "A": ["A0", "A1"], "A_dependencies": [[0], [0, 1]], "B": ["B0", "B1"],
            "B_dependencies": [[0], [1]], "C": ["C0", "C1"], "D": ["D0", "D1"], "policies": "policies",
            "targets": "targets", "pending": 0, "num_iter": 16, "wA": None}
    return spec, arrays


def _entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_pomdp_efe_equals_a_hand_computation():
    spec, arrays = _pomdp_toy()
    policy = build_policy(spec, arrays)
    q, a_sign = np.array([0.9, 0.1]), arrays["A0"]
    hand = []
    for c in range(3):  # utility + information gain about the sign, through both modalities
        qo = arrays["A1"][:, :, c + 1] @ q
        gain = _entropy(qo) - sum(q[s] * _entropy(arrays["A1"][:, s, c + 1]) for s in range(2))
        gain += _entropy(a_sign @ q) - sum(q[s] * _entropy(a_sign[:, s]) for s in range(2))
        hand.append(qo @ arrays["C1"] + gain)
    np.testing.assert_allclose(policy.scores(np.array([-0.5, 0.0])), hand, atol=1e-9)
    assert policy.decide(np.array([-0.5, 0.0])) == 0 and policy.decide(np.array([0.5, 0.0])) == 2
    assert policy.decide(np.array([0.0, 0.0])) == 2  # an edge opens the bin above it
    assert policy.decide(np.array([-0.5, 0.0]), np.array([False, True, True])) == 1  # the nearest allowed


@pytest.mark.parametrize("edit, field", [
    (lambda s, a: a.update(A1=a["A1"][:, :, :3]), r"policy\.A\[1\]: expected shape"),
    (lambda s, a: a.update(B1=a["B1"][:3]), r"policy\.B\[1\]: expected shape"),
    (lambda s, a: a.update(D1=np.ones((2, 2))), r"policy\.D\[1\]: expected a vector"),
    (lambda s, a: a.update(policies=a["policies"].astype(float)), r"policy\.policies: expected integers"),
    (lambda s, a: s.update(A_dependencies=[[0], [0, 5]]), r"policy\.A_dependencies: expected"),
    (lambda s, a: s["context"][0].update(index=2), r"policy\.context\[0\]\.index"),
    (lambda s, a: s["context"][0].update(read="eval"), r"policy\.context\[0\]\.read"),
    (lambda s, a: s.update(num_iter=0), r"policy\.num_iter"),
])
def test_pomdp_efe_refuses_a_malformed_model_naming_the_field(edit, field):
    spec, arrays = _pomdp_toy()
    edit(spec, arrays)
    with pytest.raises(PolicyError, match=field):
        build_policy(spec, arrays)


def test_pomdp_efe_imports_neither_jax_nor_pymdp(tmp_path):
    """The rule and its binning are numpy only (the light router)."""
    script = tmp_path / "light.py"
    script.write_text(textwrap.dedent("""
        import sys, importlib.abc
        BANNED = {"jax", "jaxlib", "pymdp", "equinox", "torch", "gymnasium", "pandas", "scipy"}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BANNED:
                    raise ImportError(f"the router must not import {name}")
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from test_router_policy import _pomdp_toy
        from offload_env.router.policy import build_policy
        print("decided", build_policy(*_pomdp_toy()).decide(np.array([0.5, 0.0])))
    """))
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "decided 2" in out.stdout


def test_a_mask_that_allows_nothing_is_refused_by_the_policy():
    rng = np.random.default_rng(2)
    for case in ("plain", "groups"):  # the last layer's columns kept per mask, and the grouped fallback
        policy = build_policy(*_spec(rng, **CASES[case]))
        with pytest.raises(ValueError, match="mask: allows no action"):
            policy.decide(np.zeros(OBS, np.float32), np.zeros(OUT, bool), 0)
