"""Discrete active inference with pymdp: posterior and choice against a hand computation, learning on a toy with
a known answer, the project's envs, save/load, the harness. Needs the 'aif' extra (CI: its own venv)."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymdp")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import offload_env  # noqa: E402,F401
from agents.active_inference import discrete  # noqa: E402
from agents.active_inference.discrete import DiscreteModel, Modality, PymdpAIFAgent, _bin  # noqa: E402
from experiments.config import ConfigError, parse_config  # noqa: E402
from offload_env.router import ArtifactError, Router  # noqa: E402
from offload_env.router.artifact import sha256_file  # noqa: E402
from experiments.runner import run_experiment, run_paths  # noqa: E402
from toy_envs import register_context_toy  # noqa: E402

LAYER_SPLIT, ROUTING = "offload_env/LayerSplit-v0", "offload_env/Routing-v0"


@pytest.fixture
def toy(monkeypatch):
    """ContextToy with a model: one context factor (obs[0] > 0), 3 choices, the cost in 3 bins (0, 0.5, 1)."""
    env_id = register_context_toy()
    model = DiscreteModel(context=(("sign", lambda o: _bin(o[0], (0.0,)), 2),), choices=3,
                          choose=lambda c, info: int(c),
                          outcomes=(Modality("cost", lambda i: i["cost"], (0.25, 0.75), (0.0, 0.5, 1.0), 4.0),))
    monkeypatch.setitem(discrete.MODELS, env_id, lambda env: model)
    return lambda: gym.make(env_id)


def _entropy(p):
    p = np.asarray(p, dtype=np.float64)
    return float(-(p[p > 0] * np.log(p[p > 0])).sum())


def test_posterior_and_choice_match_a_hand_computation(toy):
    agent = PymdpAIFAgent(toy, seed=0, novelty=False, context_noise=0.1)
    # a known outcome likelihood: P(cost bin | sign, choice); choice 0 is cheap when sign = 0, choice 2 when 1
    likelihood = np.zeros((4, 2, 4), dtype=np.float32)  # (none + 3 bins, sign, start + 3 choices)
    likelihood[0, :, 0] = 1.0
    likelihood[1:, 0, 1], likelihood[1:, 1, 1] = (0.8, 0.1, 0.1), (0.1, 0.1, 0.8)
    likelihood[1:, 0, 2], likelihood[1:, 1, 2] = (0.1, 0.8, 0.1), (0.1, 0.8, 0.1)
    likelihood[1:, 0, 3], likelihood[1:, 1, 3] = (0.1, 0.1, 0.8), (0.8, 0.1, 0.1)
    A = list(agent._agent.A)
    A[1] = jnp.asarray(likelihood[None])
    agent._agent = eqx.tree_at(lambda a: a.A, agent._agent, A)

    obs = np.array([-0.5, 0.0], dtype=np.float32)  # sign bin 0
    posterior, neg_efe = agent.posterior(obs)
    # by hand: uniform prior, the sign read with probability 0.9 (the "none" outcome is certain under start)
    q = np.array([0.9, 0.1])
    np.testing.assert_allclose(posterior[0], q, atol=1e-5)
    np.testing.assert_allclose(posterior[1], [1, 0, 0, 0], atol=1e-5)
    C = np.array([0.0, -0.0, -2.0, -4.0])  # -4 x (0, 0.5, 1); "none" 0
    a_sign = np.array([[0.9, 0.1], [0.1, 0.9]])
    hand = []
    for c in range(3):
        qo = likelihood[:, :, c + 1] @ q
        utility = qo @ C
        gain = _entropy(qo) - sum(q[s] * _entropy(likelihood[:, s, c + 1]) for s in range(2))
        gain += _entropy(a_sign @ q) - sum(q[s] * _entropy(a_sign[:, s]) for s in range(2))
        hand.append(utility + gain)
    np.testing.assert_allclose(neg_efe, hand, atol=1e-4)
    assert agent.act(obs) == int(np.argmax(hand)) == 0
    assert agent.act(np.array([0.5, 0.0], dtype=np.float32)) == 2  # the other sign: the other cheap choice


def test_pymdp_agent_learns_the_best_action_of_a_contextual_problem(toy):
    agent = PymdpAIFAgent(toy, seed=0)
    agent.learn(toy, 400)
    env = toy().unwrapped
    contexts = np.random.default_rng(5).uniform(-1, 1, (200, 2)).astype(np.float32)
    right = np.mean([agent.act(o) == env.best(o) for o in contexts])
    assert right > 0.95


def test_layer_split_choices_are_the_nearest_allowed_splits():
    env = gym.make(LAYER_SPLIT)
    model = discrete.MODELS[LAYER_SPLIT](env)
    L = env.unwrapped.num_layers
    mask = np.zeros(L + 1, dtype=np.int8)
    mask[3:L - 2] = 1
    assert [model.choose(c, {"action_mask": mask}) for c in range(5)] == [3, round(L / 4), L // 2, round(3 * L / 4),
                                                                          L - 3]
    assert model.choose(0, None) == 0 and model.choose(4, None) == L


@pytest.mark.parametrize("env_id, kwargs", [(LAYER_SPLIT, {}), (ROUTING, {"max_episode_steps": 50})])
def test_pymdp_agent_acts_in_the_envs_and_saves_without_pickle(tmp_path, env_id, kwargs):
    make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = PymdpAIFAgent(make_env, seed=1)
    agent.learn(make_env, 120)
    agent.save(tmp_path / "a")
    loaded = PymdpAIFAgent.load(tmp_path / "a", make_env)
    assert loaded.num_timesteps == 120
    env = make_env()
    obs, info = env.reset(seed=4)
    for _ in range(40):
        action = agent.act(obs, info)
        assert loaded.act(obs, info) == action
        if "action_mask" in info:
            assert info["action_mask"][action] == 1
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()


def test_pymdp_agent_refuses_what_it_has_no_model_of():
    with pytest.raises(ValueError, match="pymdp_aif has a discretisation for"):
        PymdpAIFAgent(lambda: gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        PymdpAIFAgent(lambda: gym.make(LAYER_SPLIT, continuous=True))
    with pytest.raises(ValueError, match=r"^preference\.latency: expected one of latency_per_deadline"):
        PymdpAIFAgent(lambda: gym.make(LAYER_SPLIT), preference={"latency": [0, 0, 0]})
    with pytest.raises(ValueError, match=r"^preference\.energy_share: expected 3 finite numbers"):
        PymdpAIFAgent(lambda: gym.make(LAYER_SPLIT), preference={"energy_share": [0, 1]})
    with pytest.raises(ValueError, match=r"^context_noise: expected a finite number in \[0.0, 0.5\]"):
        PymdpAIFAgent(lambda: gym.make(LAYER_SPLIT), context_noise=0.9)


def test_pymdp_aif_through_the_harness(tmp_path):
    raw = {"name": "pymdp", "runs_dir": str(tmp_path / "runs"), "seeds": [0],
           "env": {"id": LAYER_SPLIT, "kwargs": {"episode_requests": 40}}, "baselines": ["all-server"],
           "evaluation": {"episodes": 2, "curve_episodes": 1},
           "agents": {"pymdp_aif": {"algo": "pymdp_aif", "budget": 80, "checkpoint_every": 40}}}
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    table = pd.read_csv(run_paths(cfg, "pymdp_aif", 0).eval_table)
    assert len(table) == 2 and np.isfinite(table["return"]).all()
    raw["agents"]["pymdp_aif"]["gamma"] = -1.0
    with pytest.raises(ConfigError, match=r"agents\.pymdp_aif\.gamma: expected a finite number in \(0.0"):
        parse_config(raw)
    raw["agents"]["pymdp_aif"].update(gamma=16.0)
    raw["env"]["kwargs"]["continuous"] = True
    with pytest.raises(ConfigError, match=r"agents\.pymdp_aif\.algo: expected an algorithm for this env"):
        parse_config(raw)


# ---------------------------------------------------------------------------- export: the router's pomdp_efe

EXPORT_CASES = {LAYER_SPLIT: ({}, 300), ROUTING: ({}, 200)}  # (env kwargs, training steps)


@pytest.fixture(scope="module", params=list(EXPORT_CASES), ids=["layer-split", "routing"])
def exported(request, tmp_path_factory):
    """(agent, artifact path, make_env) of a small trained pymdp agent."""
    env_id = request.param
    kwargs, budget = EXPORT_CASES[env_id]
    make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = PymdpAIFAgent(make_env, seed=0).learn(make_env, budget)
    return agent, agent.export(tmp_path_factory.mktemp("pymdp") / "artifact", env_id=env_id, env_kwargs=kwargs), \
        make_env


def test_pymdp_artifact_decides_as_the_agent_on_env_requests(exported):
    """2,000 requests from the env's state: the router's decision is the agent's act, and its -EFE is pymdp's."""
    agent, path, make_env = exported
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "params.npz"]
    router = Router.from_artifact(path)
    arrays = router.artifact.arrays
    for m, p in enumerate(agent._agent.pA):  # A as the agent uses it: its Dirichlet counts normalised
        p = np.asarray(p[0], dtype=np.float64)
        np.testing.assert_allclose(arrays[f"pomdp.A.{m}"], p / p.sum(axis=0), rtol=1e-5, atol=1e-7)
    env = make_env()
    obs, info = env.reset(seed=11)
    mismatches, actions, contexts, err, gap = 0, set(), set(), 0.0, np.inf
    for _ in range(2000):
        request = json.loads(json.dumps(env.unwrapped.router_request()))  # as it would arrive over HTTP
        built, _ = router.builder(request)
        np.testing.assert_array_equal(built, obs)
        a = agent.act(obs, info)
        d = router.decide(request)
        assert d.ok, d.reason
        mismatches += int(d.action != a)
        actions.add(a)
        bins = tuple(read(obs) for _, read, _ in agent.model.context)
        if bins not in contexts:  # the rule reads only the bins: its numbers once per context
            contexts.add(bins)
            _, neg_efe = agent.posterior(obs)
            err = max(err, float(np.abs(router.policy.scores(obs) - neg_efe).max()))
            top = np.sort(neg_efe)[::-1]
            gap = min(gap, float(top[0] - top[1]))
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            obs, info = env.reset()
    assert mismatches == 0
    assert len(actions) > 1 and len(contexts) > 3  # not a constant rule, and more than one context read
    assert err < 1e-4 < gap  # numpy's -EFE is pymdp's, closer than any two choices the agent told apart


def test_pymdp_artifact_breaks_ties_as_the_agent(tmp_path):
    """Untrained, every choice scores exactly the same (in pymdp and in numpy): both take the first."""
    make_env = lambda: gym.make(ROUTING)  # noqa: E731
    agent = PymdpAIFAgent(make_env, seed=0)
    router = Router.from_artifact(agent.export(tmp_path / "artifact", env_id=ROUTING))
    env = make_env()
    obs, info = env.reset(seed=3)
    for _ in range(50):
        _, neg_efe = agent.posterior(obs)
        assert np.ptp(neg_efe) == 0 and np.ptp(router.policy.scores(obs)) == 0
        assert router.decide(env.unwrapped.router_request()).action == agent.act(obs, info) == 0
        obs, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize("edit, field", [
    (lambda m, a: m["policy"]["A"].__setitem__(3, m["policy"]["A"][0]), r"policy\.A\[3\]: expected shape"),
    (lambda m, a: a.__setitem__("pomdp.C.3", a["pomdp.C.3"][:-1]), r"policy\.C\[3\]: expected shape"),
    (lambda m, a: a.__setitem__("pomdp.targets", a["pomdp.targets"][:2]), r"policy\.targets: expected"),
    (lambda m, a: a.__setitem__("pomdp.policies", a["pomdp.policies"] + 7), r"policy\.policies: expected"),
    (lambda m, a: a.__setitem__("pomdp.wA.4", a["pomdp.wA.4"][:, :1]), r"policy\.wA\[4\]: expected shape"),
    (lambda m, a: m["policy"]["context"][-1].update(edges=[0.5, 0.1]), r"policy\.context\[\d\]\.edges"),
    (lambda m, a: m["policy"].update(pending=99), r"policy\.pending"),
])
def test_pymdp_artifact_with_a_wrong_array_is_refused_naming_the_field(exported, tmp_path, edit, field):
    _, path, _ = exported
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / "params.npz", allow_pickle=False) as f:
        arrays = dict(f)
    edit(manifest, arrays)
    np.savez(tmp_path / "params.npz", **arrays)
    manifest["files"]["params.npz"] = sha256_file(tmp_path / "params.npz")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=field):
        Router.from_artifact(tmp_path)
