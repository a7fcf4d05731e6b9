"""Deep active inference: the expected-free-energy terms by hand, the ensemble on a known model, the agent on a
toy problem with a known answer, on the project's envs, saved and loaded, and through the harness."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import offload_env  # noqa: E402,F401
from agents.active_inference import DeepAIFAgent  # noqa: E402
from agents.active_inference import outcomes as outcomes_module  # noqa: E402
from agents.active_inference.efe import expected_free_energy, extrinsic_value, information_gain  # noqa: E402
from agents.active_inference.ensemble import GaussianEnsemble  # noqa: E402
from agents.active_inference.outcomes import OutcomeSpec, outcome_spec  # noqa: E402
from experiments.config import ConfigError, parse_config  # noqa: E402
from toy_envs import register_context_toy  # noqa: E402
from experiments.runner import run_experiment, run_paths  # noqa: E402

LAYER_SPLIT, ROUTING = "offload_env/LayerSplit-v0", "offload_env/Routing-v0"
SMALL = dict(members=3, hidden=(32, 32), learning_starts=50, train_every=50, gradient_steps=20, batch_size=64)


# ---------------------------------------------------------------------- expected free energy


def test_free_energy_terms_of_a_hand_computed_case():
    # two members predict one outcome: N(0, 1) and N(2, 1). Mixture moments: mean 1, variance 1 + 1 = 2.
    mu, var = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    assert float(information_gain(mu, var)) == pytest.approx(0.5 * math.log(2.0))
    assert float(extrinsic_value(mu, torch.tensor([0.5]))) == pytest.approx(-0.5)  # -w * mean outcome
    g = expected_free_energy(mu, var, torch.tensor([0.5]), epistemic_weight=2.0)
    assert float(g) == pytest.approx(0.5 - 2.0 * 0.5 * math.log(2.0))
    # a variance floor of 1: each member N(., 2), the mixture's variance 2 + 1
    assert float(information_gain(mu, var, floor=1.0)) == pytest.approx(0.5 * math.log(3.0 / 2.0))
    # two outcomes, the second sought (weight -1): members N(1, 4) and N(1, 1) agree on its mean
    mu2, var2 = torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([[1.0, 4.0], [1.0, 1.0]])
    ig2 = 0.5 * math.log(2.0) + 0.5 * (math.log(2.5) - 0.5 * (math.log(4.0) + math.log(1.0)))
    assert float(information_gain(mu2, var2)) == pytest.approx(ig2)
    g2 = expected_free_energy(mu2, var2, torch.tensor([0.5, -1.0]), 1.0)
    assert float(g2) == pytest.approx(-(-0.5 * 1.0 + 1.0 * 1.0) - ig2)


def test_information_gain_is_zero_when_members_agree_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 5, 3, generator=g)
    var = torch.rand(7, 5, 3, generator=g) + 0.1
    same = mu[:, :1].expand(-1, 5, -1)
    assert torch.allclose(information_gain(same, var[:, :1].expand(-1, 5, -1)), torch.zeros(7), atol=1e-6)
    assert (information_gain(mu, var) > 0).all()


# ---------------------------------------------------------------------- the ensemble


def test_ensemble_fits_a_known_linear_gaussian_model():
    rng = np.random.default_rng(0)
    w, b, noise = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]]), np.array([0.3, -1.0]), np.array([0.1, 0.3])
    x = rng.normal(size=(4000, 3)).astype(np.float32)
    y = (x @ w + b + noise * rng.normal(size=(4000, 2))).astype(np.float32)
    model = GaussianEnsemble(3, 2, members=3, hidden=(64, 64), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.fit(x, y, opt, steps=1500, batch_size=256, rng=rng)
    test = rng.normal(size=(500, 3)).astype(np.float32)
    with torch.no_grad():
        mu, var = model(torch.as_tensor(test))
    truth = test @ w + b
    rmse = np.sqrt(((mu.numpy() - truth) ** 2).mean(axis=(0, 1)))
    assert (rmse < 0.6 * noise).all(), rmse  # the mean is learned well within the noise
    std = np.sqrt(var.numpy().mean(axis=(0, 1)))
    np.testing.assert_allclose(std, noise, rtol=0.35)  # and the noise itself


def test_ensemble_members_disagree_away_from_the_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(2000, 1)).astype(np.float32)
    y = (np.sin(3 * x) + 0.05 * rng.normal(size=x.shape)).astype(np.float32)
    model = GaussianEnsemble(1, 1, members=5, hidden=(64, 64), seed=1)
    model.fit(x, y, torch.optim.Adam(model.parameters(), lr=3e-3), steps=800, batch_size=128, rng=rng)
    with torch.no_grad():
        mu_in, var_in = model(torch.tensor([[0.2]]))
        mu_out, var_out = model(torch.tensor([[6.0]]))
    gain_in = information_gain(mu_in.transpose(0, 1), var_in.transpose(0, 1))
    gain_out = information_gain(mu_out.transpose(0, 1), var_out.transpose(0, 1))
    assert float(gain_out) > 5 * float(gain_in)


# ---------------------------------------------------------------------- the agent on a known problem


@pytest.fixture
def toy(monkeypatch):
    env_id = register_context_toy()
    monkeypatch.setitem(outcomes_module.OUTCOMES, env_id,
                        lambda env: OutcomeSpec(("cost",), lambda info: [info["cost"]], (1.0,)))
    return lambda: gym.make(env_id)


def test_agent_learns_the_best_action_of_a_contextual_problem_from_outcomes_alone(toy):
    agent = DeepAIFAgent(toy, seed=0, **SMALL)
    agent.learn(toy, 1000)
    env = toy().unwrapped
    rng = np.random.default_rng(5)
    contexts = rng.uniform(-1, 1, (200, 2)).astype(np.float32)
    right = np.mean([agent.act(o) == env.best(o) for o in contexts])
    assert right > 0.9


def test_untrained_agent_acts_uniformly_and_information_gain_drives_it_to_the_unknown(toy):
    agent = DeepAIFAgent(toy, seed=0, **SMALL)
    actions = [agent.act(np.zeros(2, np.float32)) for _ in range(300)]
    counts = np.bincount(actions, minlength=3)
    assert (counts > 60).all()  # uniform before the first fit
    # fitted only on action 0: with the preference off, the information gain alone picks an unseen action
    curious = DeepAIFAgent(toy, seed=0, **{**SMALL, "preference": {"cost": 0.0}, "learning_starts": 0})
    env = toy()
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        nxt, _, _, _, info = env.step(0)
        curious._store(obs, 0, [info["cost"]], nxt, True)
        obs = nxt
    curious.fit()
    assert curious.act(obs) != 0


# ---------------------------------------------------------------------- the project's envs


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True}], ids=["discrete", "continuous"])
def test_agent_acts_in_layer_split_within_the_mask_and_the_box(kwargs):
    make_env = lambda: gym.make(LAYER_SPLIT, **kwargs)  # noqa: E731
    agent = DeepAIFAgent(make_env, seed=0, **{**SMALL, "cem_population": 32, "cem_elites": 4, "horizon": 2})
    agent.learn(make_env, 150)
    assert agent.num_timesteps == 150 and agent._fitted
    env = make_env()
    obs, info = env.reset(seed=3)
    for _ in range(30):
        action = agent.act(obs, info)
        if kwargs:
            assert env.action_space.contains(action)
        else:
            assert info["action_mask"][action] == 1
        obs, _, terminated, truncated, info = env.step(action)
        assert kwargs or not info["fallback"]  # a Box action may land on a masked split (an outcome it learns)
        if terminated or truncated:
            obs, info = env.reset()


def test_outcomes_are_the_reward_when_the_preference_is_the_default():
    for env_id, kwargs in ((LAYER_SPLIT, {}), (ROUTING, {"max_episode_steps": 50})):
        env = gym.make(env_id, **kwargs)
        spec = outcome_spec(env)
        w = spec.preference()
        env.reset(seed=0)
        rewards, preferred = [], []
        for _ in range(50):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            rewards.append(reward)
            preferred.append(-float(np.dot(w, spec.read(info))))
            if terminated or truncated:
                env.reset()
        # LayerSplit's reward also charges idle energy while queued (a few per cent); Routing's is exact
        np.testing.assert_allclose(preferred, rewards, rtol=0.05 if env_id == LAYER_SPLIT else 1e-6, atol=0.05)
        with pytest.raises(ValueError, match=r"^preference\.nope: expected one of"):
            spec.preference({"nope": 1.0})


def test_agent_refuses_envs_it_has_no_outcomes_for():
    with pytest.raises(ValueError, match="active inference needs the outcomes of its env"):
        DeepAIFAgent(lambda: gym.make("CartPole-v1"), seed=0)
    with pytest.raises(ValueError, match=r"^horizon: expected an integer >= 1"):
        DeepAIFAgent(lambda: gym.make(ROUTING), seed=0, horizon=0)


def test_save_and_load_give_the_same_decisions_and_learning_continues(tmp_path):
    make_env = lambda: gym.make(ROUTING, max_episode_steps=60)  # noqa: E731
    agent = DeepAIFAgent(make_env, seed=2, **SMALL)
    agent.learn(make_env, 120)
    agent.save(tmp_path / "a")
    loaded = DeepAIFAgent.load(tmp_path / "a", make_env)
    env = make_env()
    obs, info = env.reset(seed=9)
    for _ in range(40):
        assert loaded.act(obs, info) == agent.act(obs, info)
        obs, *_, info = env.step(agent.act(obs, info))
    assert loaded.num_timesteps == 120
    np.testing.assert_array_equal(loaded._x[:120], agent._x[:120])
    # a resumed agent continues from the saved state alone (generator, buffer, optimiser): two resumes agree
    again = DeepAIFAgent.load(tmp_path / "a", make_env)
    loaded.learn(make_env, 200)
    again.learn(make_env, 200)
    assert loaded.num_timesteps == 200 and loaded._stored == 200
    np.testing.assert_array_equal(loaded._y[:200], again._y[:200])
    np.testing.assert_array_equal(loaded._x[:120], agent._x[:120])  # what was learned from is kept
    for p, q in zip(again.model.parameters(), loaded.model.parameters()):
        torch.testing.assert_close(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(agent.model.parameters(), loaded.model.parameters()))


# ---------------------------------------------------------------------- the harness


def aif_config(runs_dir) -> dict:
    return {
        "name": "aif", "runs_dir": str(runs_dir), "seeds": [0],
        "env": {"id": LAYER_SPLIT, "kwargs": {"episode_requests": 40}},
        "baselines": ["all-server"],
        "evaluation": {"episodes": 2, "curve_episodes": 1},
        "agents": {"deep_aif": {"algo": "deep_aif", "budget": 120, "checkpoint_every": 60, **SMALL,
                                "hidden": [32, 32]}},
    }


def test_deep_aif_trains_resumes_and_evaluates_through_the_harness(tmp_path):
    cfg = parse_config(aif_config(tmp_path / "runs"))
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "deep_aif", 0)
    table = pd.read_csv(paths.eval_table)
    assert len(table) == 2 and np.isfinite(table["return"]).all()
    curve = pd.read_csv(paths.curve)
    assert curve["step"].tolist() == [60, 120]
    saved = DeepAIFAgent.load(paths.agent("deep_aif"), lambda: gym.make(LAYER_SPLIT, episode_requests=40))
    assert saved.num_timesteps == 120


@pytest.mark.parametrize("key, value, message", [
    ("horizon", 0, r"agents\.deep_aif\.horizon: expected an integer >= 1"),
    ("epistemic_weight", -1.0, r"agents\.deep_aif\.epistemic_weight: expected a finite number >= 0"),
    ("preference", {"latency": 1.0}, r"agents\.deep_aif\.preference\.latency: expected one of latency_per_deadline"),
    ("n_envs", 4, r"agents\.deep_aif\.n_envs: expected 1"),
    ("normalize_reward", True, r"agents\.deep_aif\.normalize_reward: expected false"),
])
def test_deep_aif_config_errors_name_the_key(tmp_path, key, value, message):
    raw = aif_config(tmp_path)
    raw["agents"]["deep_aif"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)
