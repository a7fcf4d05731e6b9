"""Export of every agent family to a pickle-free artifact, and the router's decisions on it.

Parity: the artifact decides as the trained agent does (``act``, deterministic)
on 10,000 observations of the env, for every family.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import offload_env
from agents.export import export
from agents.protocol import ExportNotAvailable
from agents.registry import AGENTS
from experiments.config import AgentConfig
from offload_env.router import ArtifactError, Router, read_artifact

torch = pytest.importorskip("torch")

LAYER_SPLIT, ROUTING, VEHICULAR = "offload_env/LayerSplit-v0", "offload_env/Routing-v0", "offload_env/Vehicular-v0"
PARITY_STEPS = 10_000


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(algo: str, make_env, budget: int, **hyper):
    agent = AGENTS[algo].build(make_env, seed=0, name=algo,
                               settings=AgentConfig(algo=algo, budget=budget, hyperparams=hyper))
    agent.learn(make_env if AGENTS[algo].kind in ("bandit", "aif") else None, budget)
    return agent


def _greedy(agent):
    """The agent's deterministic decision rule (bandits: LinTS and epsilon-greedy without exploration)."""
    if AGENTS[agent.algo].kind != "bandit" or agent.algo in ("linucb", "cost_aware_linucb"):
        return lambda obs, info: agent.act(obs, info)
    return lambda obs, info: int(np.argmax(agent.router.theta @ np.asarray(obs, dtype=np.float64)))


def _parity(agent, router: Router, make_env, steps: int = PARITY_STEPS):
    """Drive the env by the agent; return (mismatches, largest continuous error, distinct decisions)."""
    env = make_env()
    obs, info = env.reset(seed=11)
    act = _greedy(agent)
    mismatches, err, seen = 0, 0.0, set()
    for _ in range(steps):
        a = act(obs, info)
        d = router.decide_observation(obs, info.get("action_mask"))
        assert d.ok, d.reason
        if isinstance(a, np.ndarray):
            err = max(err, float(np.abs(a - d.action).max()))
            seen.add(tuple(np.round(a, 4)))
        else:
            mismatches += int(a != d.action)
            seen.add(a)
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            obs, info = env.reset()
    env.close()
    return mismatches, err, len(seen)


AIF_SMALL = dict(members=3, hidden=(32, 32), learning_starts=100, train_every=100, gradient_steps=30)
SINGLE_AGENT_CASES = [
    ("maskable_ppo", LAYER_SPLIT, {}, 512, dict(n_steps=256, batch_size=64)),
    ("ddpg", LAYER_SPLIT, {"continuous": True}, 400, dict(learning_starts=100)),
    ("td3", LAYER_SPLIT, {"continuous": True}, 400, dict(learning_starts=100)),
    ("ppo", ROUTING, {}, 512, dict(n_steps=256, batch_size=64)),
    ("dqn", ROUTING, {}, 600, dict(learning_starts=100)),
    ("linucb", ROUTING, {}, 1000, {}),
    ("lints", ROUTING, {}, 1000, {}),
    ("epsilon_greedy", ROUTING, {}, 1000, {}),
    ("cost_aware_linucb", ROUTING, {}, 1000, dict(budget_per_step=1e-4)),
    ("deep_aif", LAYER_SPLIT, {}, 300, AIF_SMALL),
    ("deep_aif", ROUTING, {}, 300, AIF_SMALL),
    pytest.param("deep_aif", LAYER_SPLIT, {}, 300, dict(AIF_SMALL, horizon=3),  # 3 steps of rollout per decision
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("algo, env_id, kwargs, budget, hyper", SINGLE_AGENT_CASES,
                         ids=[f"{c[0]}-{c[1].split('/')[-1]}" for c in SINGLE_AGENT_CASES[:-1]] +
                         ["deep_aif-LayerSplit-v0-horizon3"])
def test_artifact_decides_as_the_agent(tmp_path, algo, env_id, kwargs, budget, hyper):
    make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = _train(algo, make_env, budget, **hyper)
    path = export(agent, tmp_path / "artifact", env_id=env_id, env_kwargs=kwargs)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "params.npz"]
    router = Router.from_artifact(path)
    mismatches, err, distinct = _parity(agent, router, make_env)
    assert mismatches == 0
    assert err <= 1e-5
    assert distinct > 1  # the policy is not constant, so agreement means something
    manifest = router.manifest
    assert manifest["agent"]["algo"] == algo and manifest["env"]["id"] == env_id
    if algo == "cost_aware_linucb":
        assert manifest["policy"]["price"] > 0  # the multiplier moved, and is exported


@pytest.mark.parametrize("share_actor", [True, False], ids=["shared-actor", "per-agent-actors"])
def test_madrl_artifact_decides_as_the_agent(tmp_path, share_actor):
    make_env = lambda: offload_env.make_parallel(VEHICULAR)  # noqa: E731
    agent = _train("mappo", make_env, 400, n_steps=50, share_actor=share_actor)
    router = Router.from_artifact(export(agent, tmp_path / "artifact", env_id=VEHICULAR))
    assert router.agents == agent.agent_names
    env = make_env()
    observations, infos = env.reset(seed=5)
    mismatches, decisions = 0, []
    while len(decisions) < PARITY_STEPS:
        actions = agent.act(observations, infos)
        for name, a in actions.items():
            d = router.decide_observation(observations[name], infos[name]["action_mask"], agent=name)
            assert d.ok, d.reason
            mismatches += int(d.action != a)
            decisions.append(a)
        observations, _, _, _, infos = env.step(actions)
        if not env.agents:
            observations, infos = env.reset()
    assert mismatches == 0
    assert len(set(decisions)) > 1


@pytest.fixture(scope="module")
def linucb_artifact(tmp_path_factory):
    make_env = lambda: gym.make(ROUTING)  # noqa: E731
    agent = _train("linucb", make_env, 300)
    return export(agent, tmp_path_factory.mktemp("art") / "linucb", env_id=ROUTING)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_tampered_artifact_is_refused_with_the_file_named(linucb_artifact, tmp_path):
    art = _copy(linucb_artifact, tmp_path / "a")
    data = bytearray((art / "params.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (art / "params.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="params.npz: sha256"):
        Router.from_artifact(art)


def test_unlisted_or_missing_files_are_refused(linucb_artifact, tmp_path):
    art = _copy(linucb_artifact, tmp_path / "a")
    (art / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ArtifactError, match="not in the manifest: extra.pkl"):
        read_artifact(art)
    art = _copy(linucb_artifact, tmp_path / "b")
    (art / "params.npz").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        read_artifact(art)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_artifact(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="other"), "format: expected"),
    (lambda m: m.update(format_version=99), "format_version"),
    (lambda m: m.pop("policy"), "missing key"),
    (lambda m: m["policy"].update(type="eval"), "policy.type: expected"),
    (lambda m: m["policy"].update(theta="nope"), "policy.theta: expected the name of an array"),
    (lambda m: m["files"].update({"../x": "0"}), "not a plain file name|not in the manifest|missing"),
])
def test_malformed_manifest_is_refused_with_the_key_named(linucb_artifact, tmp_path, edit, message):
    art = _copy(linucb_artifact, tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=message):
        Router.from_artifact(art)


def test_params_with_a_pickled_object_are_refused(linucb_artifact, tmp_path):
    """An object array in params.npz would need pickle to load: refused, never unpickled."""
    from agents.export import policy_of  # noqa: F401 - the exporter itself never writes one
    from offload_env.router.artifact import sha256_file

    art = _copy(linucb_artifact, tmp_path / "a")
    np.savez(art / "params.npz", theta=np.array([{"evil": 1}], dtype=object))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["params.npz"] = sha256_file(art / "params.npz")
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unreadable"):
        read_artifact(art)


def test_bad_observations_get_the_safe_default_with_the_reason(linucb_artifact):
    router = Router.from_artifact(linucb_artifact)
    n = router.policy.obs_dim
    safe = router.safe_default
    for obs, field in [(np.zeros(n - 1), "observation"), (np.full(n, np.nan), "observation"),
                       ("text", "observation"), (None, "observation")]:
        d = router.decide_observation(obs)
        assert not d.ok and d.action == safe and d.error == "request" and d.field == field
    d = router.decide({"observation": [0.0] * n, "agent": "vehicle_0"})
    assert not d.ok and d.field == "agent"
    assert not router.decide("not a mapping").ok
    assert router.decide({"observation": [0.1] * n}).ok


def test_export_of_an_unknown_agent_says_so(tmp_path):
    class Stub:
        name, algo, num_timesteps = "stub", "nope", 0

    with pytest.raises(ExportNotAvailable, match="no export"):
        export(Stub(), tmp_path / "x", env_id=ROUTING)


def test_a_rewritten_artifact_replaces_the_old_one_whole(tmp_path):
    make_env = lambda: gym.make(ROUTING)  # noqa: E731
    first = export(_train("linucb", make_env, 50), tmp_path / "art", env_id=ROUTING)
    before = read_artifact(first).manifest["agent"]["num_timesteps"]
    export(_train("linucb", make_env, 120), tmp_path / "art", env_id=ROUTING)
    assert read_artifact(first).manifest["agent"]["num_timesteps"] == 120 != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary folder left behind


_LIGHT = textwrap.dedent("""
    import sys, importlib.abc
    BANNED = {"torch", "stable_baselines3", "sb3_contrib", "numba", "pandas", "matplotlib", "pickle_loader", "jax",
              "pymdp"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BANNED:
                raise ImportError(f"the router must not import {name}")
    sys.meta_path.insert(0, Block())
    from offload_env.router import Router
    router = Router.from_artifact(sys.argv[1])
    d = router.decide({"observation": [0.1] * router.policy.obs_dim})
    assert d.ok, d.reason
    print("decided", d.action)
""")


def test_the_router_imports_no_heavy_stack(linucb_artifact, tmp_path):
    script = tmp_path / "light.py"
    script.write_text(_LIGHT)
    out = subprocess.run([sys.executable, str(script), str(linucb_artifact)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "decided" in out.stdout


def _episode_returns(env, decide, seeds) -> list[float]:
    out = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(decide(env, obs, info))
            total += reward
            done = terminated or truncated
        out.append(total)
    return out


@pytest.mark.parametrize("algo, env_id, kwargs, budget, hyper", [
    ("maskable_ppo", LAYER_SPLIT, {"episode_requests": 100}, 512, dict(n_steps=256, batch_size=64)),
    ("ddpg", LAYER_SPLIT, {"continuous": True, "episode_requests": 100}, 300, dict(learning_starts=100)),
    ("linucb", ROUTING, {}, 500, {}),
    ("deep_aif", LAYER_SPLIT, {"episode_requests": 100}, 300, AIF_SMALL),
], ids=["layer-split", "layer-split-continuous", "routing", "layer-split-deep-aif"])
def test_router_driven_by_requests_matches_the_agent(tmp_path, algo, env_id, kwargs, budget, hyper):
    """Requests built from the env's state give the env's own observation, and the agent's returns."""
    make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = _train(algo, make_env, budget, **hyper)
    router = Router.from_artifact(export(agent, tmp_path / "artifact", env_id=env_id, env_kwargs=kwargs))
    assert router.builder.fields  # the env's own request fields, not raw vectors

    def by_router(env, obs, info):
        request = json.loads(json.dumps(env.unwrapped.router_request()))  # as it would arrive over HTTP
        built, _ = router.builder(request)
        np.testing.assert_array_equal(built, obs)  # the env's observation function, bit for bit
        d = router.decide(request)
        assert d.ok, d.reason
        return d.action

    act = _greedy(agent)
    seeds = [3, 4]
    expected = _episode_returns(make_env(), lambda env, obs, info: act(obs, info), seeds)
    assert _episode_returns(make_env(), by_router, seeds) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kwargs", [{"max_cycles": 30}, {"max_cycles": 30, "broadcast_intents": True}])
def test_vehicular_router_driven_by_requests_matches_the_agent(tmp_path, kwargs):
    make_env = lambda: offload_env.make_parallel(VEHICULAR, **kwargs)  # noqa: E731
    agent = _train("mappo", make_env, 300, n_steps=30)
    router = Router.from_artifact(export(agent, tmp_path / "artifact", env_id=VEHICULAR, env_kwargs=kwargs))
    heard = {"intent_tasks", "intent_work_s"}
    assert heard <= {f.name for f in router.builder.fields} if kwargs.get("broadcast_intents") else \
        not heard & {f.name for f in router.builder.fields}
    totals = []
    for drive in ("agent", "router"):
        env = make_env()
        observations, infos = env.reset(seed=9)
        total = 0.0
        while env.agents:
            if drive == "agent":
                actions = agent.act(observations, infos)
            else:
                actions = {}
                for a in env.agents:
                    request = env.router_request(a)
                    built, _ = router.builder(request)
                    np.testing.assert_array_equal(built, observations[a])
                    d = router.decide(request)
                    assert d.ok, d.reason
                    actions[a] = d.action
            observations, rewards, _, _, infos = env.step(actions)
            total += sum(rewards.values())
        totals.append(total)
    assert totals[0] == pytest.approx(totals[1], rel=1e-9)
    if kwargs.get("broadcast_intents"):  # what the vehicle heard is required, and checked
        env = make_env()
        env.reset(seed=9)
        request = env.router_request("vehicle_0")
        for edit in (lambda r: r.pop("intent_tasks"), lambda r: r.update(intent_work_s=[1.0])):
            bad = dict(request)
            edit(bad)
            d = router.decide(bad)
            assert not d.ok and d.action == env.safe_action
            assert "intent_tasks" in d.reason or "intent_work_s" in d.reason


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.pop("prompt_tokens"), "prompt_tokens"),
    (lambda r: r.update(prompt_tokens="many"), "prompt_tokens"),
    (lambda r: r.update(deadline_s=0.0), "deadline_s"),
    (lambda r: r.update(snr_estimate_db=float("nan")), "snr_estimate_db"),
    (lambda r: r.update(server_load_observed=1.5), "server_load_observed"),
    (lambda r: r.update(energy_left_j=True), "energy_left_j"),
    (lambda r: r.update(action_mask=[1, 0]), "action_mask"),
])
def test_bad_requests_get_the_safe_default_naming_the_field(tmp_path, edit, field):
    make_env = lambda: gym.make(LAYER_SPLIT)  # noqa: E731
    agent = _train("maskable_ppo", make_env, 64, n_steps=64, batch_size=64)
    router = Router.from_artifact(export(agent, tmp_path / "artifact", env_id=LAYER_SPLIT))
    env = make_env()
    env.reset(seed=0)
    request = env.unwrapped.router_request()
    assert router.decide(request).ok
    edit(request)
    d = router.decide(request)
    assert not d.ok and d.error == "request" and d.field == field
    assert d.action == env.unwrapped.safe_action == env.unwrapped.num_layers  # run on the edge
    assert field in d.reason


def test_deep_aif_exports_only_what_the_router_can_serve(tmp_path):
    make_env = lambda: gym.make(LAYER_SPLIT, continuous=True)  # noqa: E731
    with pytest.raises(ExportNotAvailable, match="cross-entropy method.*random generator"):
        _train("deep_aif", make_env, 150, **AIF_SMALL).export(tmp_path / "box", env_id=LAYER_SPLIT,
                                                                env_kwargs={"continuous": True})
    make_env = lambda: gym.make(LAYER_SPLIT)  # noqa: E731
    with pytest.raises(ExportNotAvailable, match="not fitted"):
        _train("deep_aif", make_env, 50, **AIF_SMALL).export(tmp_path / "unfitted", env_id=LAYER_SPLIT)
    for name in ("box", "unfitted"):
        assert not (tmp_path / name).exists()  # nothing half-written


def test_deep_aif_horizon_artifact_needs_its_rollout_arrays(tmp_path):
    """At horizon > 1 the rollout's arrays are part of the rule: a manifest without them is refused by name."""
    make_env = lambda: gym.make(LAYER_SPLIT)  # noqa: E731
    art = export(_train("deep_aif", make_env, 150, **AIF_SMALL, horizon=2), tmp_path / "a", env_id=LAYER_SPLIT)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["policy"]["horizon"] == 2
    manifest["policy"].pop("delta_weight")
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="policy.delta_weight: expected the name of an array"):
        Router.from_artifact(art)


def test_action_masks_are_read_exactly_in_every_form():
    from offload_env.router.requests import _mask_field
    from offload_env.router.router import NothingAllowed, RequestError

    want = np.array([0, 1, 1, 0], dtype=bool)
    for mask in ([0, 1, 1, 0], [False, True, True, False], [0.0, 1.0, 1.0, 0.0], np.array([0, 1, 1, 0], np.int8),
                 want):
        got = _mask_field({"action_mask": mask}, 4)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == bool
    assert _mask_field({"action_mask": [0, 1, 1, 0]}, 4) is _mask_field({"action_mask": [0, 1, 1, 0]}, 4)  # kept
    with pytest.raises(ValueError):
        _mask_field({"action_mask": [0, 1, 1, 0]}, 4)[0] = True  # a kept mask cannot be changed by a caller
    for bad, n in (([0, 1, 1], 4), ([0, 1, 1, 0], 3), ([0, 1, 2, 0], 4), ([0, 1, "1", 0], 4), ([0, 0.5, 1, 0], 4),
                   ([[1], 1, 1, 1], 4), ("0110", 4), (np.array([0.0, 1.0, 1.0, 0.0]), 4)):
        with pytest.raises(RequestError, match=r"^action_mask: expected \d flags"):
            _mask_field({"action_mask": bad}, n)
    for nothing in ([0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], np.zeros(4, np.int8)):
        with pytest.raises(NothingAllowed):
            _mask_field({"action_mask": nothing}, 4)


def test_vectors_are_checked_exactly_in_every_form():
    from offload_env.router.requests import Field, _vector
    from offload_env.router.router import RequestError

    f = Field("features", -10.0, 10.0, "the query's features", size=3)
    for ok in ([1.0, -2, 3.5], (1.0, -2, 3.5), np.array([1.0, -2, 3.5])):
        np.testing.assert_array_equal(_vector({"features": ok}, f), [1.0, -2.0, 3.5])
    for bad in ([1.0, 2.0], [1.0, True, 2.0], [1.0, "2", 3.0], [1.0, float("nan"), 2.0], [float("nan"), 1.0, 2.0],
                [1.0, float("inf"), 2.0], [1.0, 11.0, 2.0], [-10.5, 1.0, 2.0], [10 ** 400, 1.0, 2.0], None, 5.0):
        with pytest.raises(RequestError, match=r"^features: "):
            _vector({"features": bad}, f)


def test_maddpg_artifact_decides_as_the_agent(tmp_path):
    make_env = lambda: offload_env.make_parallel(VEHICULAR, continuous=True)  # noqa: E731
    agent = _train("maddpg", make_env, 300, learning_starts=100)
    router = Router.from_artifact(export(agent, tmp_path / "artifact", env_id=VEHICULAR,
                                         env_kwargs={"continuous": True}))
    env = make_env()
    observations, infos = env.reset(seed=5)
    err, n = 0.0, 0
    while n < PARITY_STEPS:
        actions = agent.act(observations, infos)
        for name, a in actions.items():
            d = router.decide_observation(observations[name], agent=name)
            assert d.ok, d.reason
            err = max(err, float(np.abs(d.action - a).max()))
            n += 1
        observations, _, _, _, infos = env.step(actions)
        if not env.agents:
            observations, infos = env.reset()
    assert err <= 1e-5


def test_the_edge_install_is_the_light_core():
    """``pip install offload-env[edge]`` brings numpy and YAML only: what the router and ``serve`` import."""
    from importlib.metadata import requires

    reqs = requires("offload-env") or []
    base = sorted(r.split(">")[0].split("=")[0].strip() for r in reqs if "extra ==" not in r)
    edge = [r for r in reqs if "extra == 'edge'" in r.replace('"', "'")]
    assert base == ["numpy", "pyyaml"] and edge == []
