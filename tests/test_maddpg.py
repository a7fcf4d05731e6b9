"""MADDPG on the vehicular env's Box actions: config refusals, decentralised bounded actions, save/load, learning."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.madrl.maddpg import MADDPGAgent, MADDPGConfig  # noqa: E402
from agents.vehicular_baselines import evaluate_vehicular  # noqa: E402
from offload_env import make_parallel  # noqa: E402

#: 4 vehicles, one RSU always in range (the MAPPO tests' contention scenario), continuous actions
CONTENTION = {"num_vehicles": 4, "num_rsus": 1, "road_length_m": 600.0, "rsu_range_m": 1000.0, "max_cycles": 25}
SMALL = {"learning_starts": 50, "batch_size": 32, "buffer_size": 1000, "hidden": [32]}


def make_env(**kw):
    return make_parallel("offload_env/Vehicular-v0", continuous=True, **{**CONTENTION, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)  # float sums in a fixed order: the same trajectory in any test order


class FixedOrRandom:
    """All-local (target logit 0 highest) or, with an rng, uniformly random Box actions."""

    name = "fixed"

    def __init__(self, rng=None):
        self.rng = rng

    def reset(self, env):
        self.shape = env.action_space(env.possible_agents[0]).shape

    def act(self, observations, infos):
        if self.rng is not None:
            return {a: self.rng.uniform(-1, 1, self.shape).astype(np.float32) for a in observations}
        local = -np.ones(self.shape, np.float32)
        local[0] = 1.0
        return {a: local for a in observations}


@pytest.mark.parametrize("key, value, expected", [
    ("tau", 0.0, "a Polyak rate in (0, 1]"), ("gamma", 1.5, "a discount in [0, 1]"),
    ("batch_size", 0, "an integer >= 1"), ("buffer_size", 10, "an integer >= batch_size (256)"),
    ("train_every", 0, "an integer >= 1"), ("noise_std", -0.1, "a std >= 0"),
    ("noise_decay_steps", 1.5, "an integer >= 0"), ("hidden", (0,), "a list of layer sizes >= 1"),
    ("learning_rate", 0.0, "a rate > 0"), ("temperature", 0.0, "a temperature > 0"),
    ("learning_rate", float("inf"), "a rate > 0"), ("noise_std", float("nan"), "a std >= 0"),
    ("tau", "0.1", "a Polyak rate in (0, 1]"), ("targets", "onehot", "'gumbel' or 'logits' or 'softmax'"),
    ("target_epsilon", 1.5, "a probability in [0, 1]"), ("entropy_coef", -1.0, "a weight >= 0")])
def test_config_refusals_name_the_key(key, value, expected):
    with pytest.raises(ValueError, match="^" + re.escape(f"{key}: expected {expected}")):
        MADDPGConfig(**{key: value}).check()
    with pytest.raises(ValueError, match=rf"^{key}: expected"):
        MADDPGAgent(make_env, **{key: value})
    with pytest.raises(ValueError, match=r"^maddpg: needs a 1-d Box action"):
        MADDPGAgent(lambda: make_parallel("offload_env/Vehicular-v0", **CONTENTION))


@pytest.mark.parametrize("settings", [{}, {"share_actor": False, "share_critic": False}, {"targets": "logits"},
                                      {"targets": "softmax"}], ids=["shared", "per-agent", "logits", "softmax"])
def test_actions_are_finite_bounded_and_decentralised(settings):
    """Every live agent gets a finite action in the Box; a vehicle's depends on its own observation only."""
    agent = MADDPGAgent(make_env, seed=4, n_envs=2, **SMALL, **settings)
    agent.learn(None, 200)  # trained a little: actions away from the initial near-zero outputs
    assert agent.updates > 0
    env = make_env()
    observations, infos = env.reset(seed=1)
    space = env.action_space(env.possible_agents[0])
    actions = agent.act(observations, infos)
    assert sorted(actions) == sorted(observations)
    for a in actions.values():
        assert a.shape == space.shape and a.dtype == np.float32 and np.isfinite(a).all() and space.contains(a)
    first = env.possible_agents[0]
    alone = agent.act({first: observations[first]}, {first: infos[first]})[first]
    rng = np.random.default_rng(0)
    noisy = {a: (o if a == first else rng.normal(size=o.shape).astype(np.float32)) for a, o in observations.items()}
    np.testing.assert_array_equal(agent.act(noisy, infos)[first], alone)
    np.testing.assert_array_equal(actions[first], alone)
    assert not np.array_equal(actions[first], actions[env.possible_agents[1]])  # the id tells vehicles apart
    frame = evaluate_vehicular(agent, make_env, episodes=1)
    assert frame["fallback_rate"].max() == 0.0  # never a NaN nor a masked target


def test_save_load_round_trip_gives_identical_actions_and_training_continues(tmp_path):
    agent = MADDPGAgent(make_env, seed=2, n_envs=2, **SMALL)
    agent.learn(None, 200)
    path = agent.save(tmp_path / "agent")
    assert sorted(p.name for p in path.iterdir()) == ["agent.json", "weights.npz"]  # no pickle, no temporaries
    loaded = MADDPGAgent.load(path)
    assert loaded.num_timesteps == 200 and loaded.algo == "maddpg" and loaded.updates == agent.updates
    assert loaded.config == agent.config
    for name, net in agent._networks().items():  # targets too
        for (k, v), w in zip(net.state_dict().items(), loaded._networks()[name].state_dict().values()):
            torch.testing.assert_close(w, v, rtol=0, atol=0, msg=f"{name}.{k}")
    for name, opt in agent._optimizers().items():
        st, st2 = opt.state_dict()["state"], loaded._optimizers()[name].state_dict()["state"]
        assert st.keys() == st2.keys() and len(st) > 0
        torch.testing.assert_close(st2[0]["exp_avg"], st[0]["exp_avg"], rtol=0, atol=0)
    env = make_env()
    observations, infos = env.reset(seed=9)
    while env.agents:
        actions = agent.act(observations, infos)
        for a, x in loaded.act(observations, infos).items():
            np.testing.assert_array_equal(x, actions[a])
        observations, _, _, _, infos = env.step(actions)
    with pytest.raises(RuntimeError, match="loaded without make_env"):
        loaded.learn(None, 300)
    resumed = MADDPGAgent.load(path, make_env)
    before = resumed.updates
    resumed.learn(None, 400)  # a fresh buffer fills, then updates resume on the restored nets and optimizers
    assert resumed.num_timesteps == 400 and resumed.updates > before
    artifact = resumed.export(tmp_path / "artifact", env_id="offload_env/Vehicular-v0",
                              env_kwargs={"continuous": True, **CONTENTION})  # tests/test_export.py: parity
    assert (artifact / "params.npz").is_file()
    with pytest.raises(ValueError, match="not a saved agent folder"):
        MADDPGAgent.load(tmp_path / "missing")


def test_learn_counts_env_steps_over_copies_and_stops_on_callback():
    agent = MADDPGAgent(make_env, seed=3, n_envs=2, train_every=5, **SMALL)
    seen = []
    agent.learn(None, 100, lambda a, stats: seen.append((a.num_timesteps, stats)))
    assert agent.num_timesteps == 100 and [s for s, _ in seen] == list(range(10, 101, 10))
    assert "critic_loss" in seen[-1][1] and "critic_loss" not in seen[0][1]  # updates after learning_starts
    assert np.isfinite(seen[-1][1]["critic_loss"])
    agent.learn(None, 200, lambda a, stats: False)  # stops after the first round
    assert agent.num_timesteps == 110
    assert agent.noise_std() == pytest.approx(0.2 + 110 / 10_000 * (0.05 - 0.2))


def test_explored_targets_are_one_hot_allowed_targets_and_the_split_learns_for_every_target():
    """"gumbel": each explored target entry block is +1 at one allowed target, -1 elsewhere (uniform before
    learning_starts, then drawn from the actor); the actor's loss reaches the split entry even where every
    vehicle's target is local."""
    agent = MADDPGAgent(make_env, seed=1, n_envs=2, **SMALL)
    K = agent.n_targets
    obs = np.random.default_rng(0).normal(size=(2, agent.n_agents, agent.obs_dim)).astype(np.float32)
    masks = np.ones((2, agent.n_agents, K), bool)
    masks[0, :, 1] = False  # the RSU barred in copy 0
    masks[1, 0, :] = [False, False, True]  # vehicle 0 of copy 1: the cloud only
    for steps in (0, 10_000):  # random actions, then the actor's
        agent._steps = steps
        for _ in range(20):
            actions = agent._explore(obs, masks)
            targets = actions[..., :K]
            assert np.isin(targets, (-1.0, 1.0)).all() and ((targets == 1.0).sum(-1) == 1).all()
            assert masks[np.arange(2)[:, None], np.arange(agent.n_agents), targets.argmax(-1)].all()
            assert (np.abs(actions) <= 1.0).all()
    agent._steps = 0
    agent.learn(None, 100)  # a filled buffer
    b = agent._replay.sample(32, np.random.default_rng(0))
    b["actions"][..., :K] = agent._targets_one_hot(torch.zeros(b["actions"].shape[:-1], dtype=torch.long))
    agent.actor.zero_grad()
    mu, pre = agent._actions(agent.actor, b["obs"], b["masks"])
    as_if_rsu = torch.cat([agent._targets_one_hot(torch.ones(mu.shape[:-1], dtype=torch.long)), mu[..., K:]], -1)
    agent._q(agent.critic, b["states"], agent._same_joint(as_if_rsu)).sum().backward()
    last = agent.actor[-1].weight.grad  # the output layer's rows: targets, then split and power
    assert last[K:].abs().sum() > 0


@pytest.mark.slow  # about 90 s on one core
def test_learns_better_than_all_local_on_the_contention_scenario():
    agent = MADDPGAgent(make_env, seed=0, n_envs=4)
    agent.learn(None, 20_000)  # 80k agent-steps
    learned = evaluate_vehicular(agent, make_env, episodes=10, seed=100)["return"].mean()
    local = evaluate_vehicular(FixedOrRandom(), make_env, episodes=10, seed=100)["return"].mean()
    rand = evaluate_vehicular(FixedOrRandom(np.random.default_rng(0)), make_env, episodes=10, seed=100)["return"].mean()
    # measured: MADDPG -17.6 (seeds 1, 2: -16.6, -18.1; "logits": -19.7, -20.4, -19.0), all-local -21.4, random
    # -47.6, team best response -12.2
    assert learned > rand + 20.0
    assert learned > local + 2.0


def test_an_agent_saved_before_targets_had_modes_loads_with_its_old_behaviour(tmp_path):
    """Format 1 had ``soft_targets`` (true: the critics' softmax) where format 2 has ``targets``."""
    import json

    agent = MADDPGAgent(make_env, seed=2, n_envs=2, targets="softmax", **SMALL)
    agent.learn(None, 100)
    path = agent.save(tmp_path / "agent")
    meta = json.loads((path / "agent.json").read_text())
    for soft, mode in ((True, "softmax"), (False, "logits")):
        config = {k: v for k, v in meta["config"].items() if k not in ("targets", "target_epsilon", "entropy_coef")}
        (path / "agent.json").write_text(json.dumps({**meta, "format": 1, "config": {**config, "soft_targets": soft}}))
        loaded = MADDPGAgent.load(path)
        assert loaded.config.targets == mode and loaded.config.noise_std == agent.config.noise_std
    env = make_env()
    observations, infos = env.reset(seed=3)
    for a, x in loaded.act(observations, infos).items():
        np.testing.assert_array_equal(x, agent.act(observations, infos)[a])
