"""MAPPO / IPPO on the vehicular env: masks, save/load, learning on a contention scenario, through the harness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from agents.madrl import MAPPOAgent  # noqa: E402
from agents.madrl.common import EnvCopies, gae, mlp, shared_input_mlp  # noqa: E402
from agents.vehicular_baselines import VehicularGreedy, evaluate_vehicular  # noqa: E402
from experiments.config import ConfigError, parse_config  # noqa: E402
from experiments.evaluation import episode_seed_base  # noqa: E402
from experiments.runner import run_experiment, run_paths  # noqa: E402
from offload_env import make_parallel  # noqa: E402

#: 4 vehicles, one RSU always in range: greedy (each alone against last step's load) piles onto it, then off it
CONTENTION = {"num_vehicles": 4, "num_rsus": 1, "road_length_m": 600.0, "rsu_range_m": 1000.0, "max_cycles": 25}


def make_env(**kw):
    return make_parallel("offload_env/Vehicular-v0", **{**CONTENTION, **kw})


def test_sampled_and_chosen_actions_respect_the_masks():
    agent = MAPPOAgent(lambda: make_env(num_rsus=3, rsu_range_m=300.0, num_vehicles=6), seed=1, n_envs=2,
                       n_steps=30)
    copies = EnvCopies(lambda: make_env(num_rsus=3, rsu_range_m=300.0, num_vehicles=6), 2, seed=5)
    buf, _ = agent._collect(copies, copies.reset())
    allowed = np.take_along_axis(buf["masks"], buf["actions"][..., None], axis=-1)[..., 0]
    assert allowed.all() and (~buf["masks"]).any()  # some actions were masked, none was sampled
    frame = evaluate_vehicular(agent, lambda: make_env(num_rsus=3, rsu_range_m=300.0, num_vehicles=6), episodes=1)
    assert frame["fallback_rate"].max() == 0.0  # the deterministic actions of a whole episode too


def test_gae_bootstraps_truncated_episodes_and_stops_at_their_end():
    rewards = np.ones((3, 1, 1), np.float32)
    values = np.zeros((3, 1, 1), np.float32)
    next_values = np.array([0.0, 10.0, 0.0], np.float32).reshape(3, 1, 1)  # the episode ends at t = 1
    done = np.array([[0.0], [1.0], [0.0]], np.float32)
    adv, ret = gae(rewards, values, next_values, done, gamma=0.5, lam=1.0)
    assert adv[:, 0, 0].tolist() == pytest.approx([1 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10, 1.0])
    np.testing.assert_allclose(ret, adv + values)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_shared_input_mlp_equals_the_mlp_on_the_concatenated_input(layer_norm):
    """The centralised critic's factored first layer (state once per row) is the plain MLP on [state, own]."""
    torch.manual_seed(0)
    net = mlp(30 + 7, (16, 16), 1, 1.0, layer_norm)
    if layer_norm:  # trained-looking norm parameters, not the identity they start as
        with torch.no_grad():
            net[0].weight.uniform_(0.5, 2.0)
            net[0].bias.uniform_(-0.5, 0.5)
    state = torch.rand(5, 3, 30) * 4 - 1  # (rows..., S)
    own = torch.randn(5, 3, 6, 7) * 2 + 1  # (rows..., N agents, K)
    plain = net(torch.cat([state[..., None, :].expand(5, 3, 6, 30), own], dim=-1))
    factored = shared_input_mlp(net, state, own)
    assert factored.shape == plain.shape == (5, 3, 6, 1)
    torch.testing.assert_close(factored, plain, rtol=1e-5, atol=1e-5)
    plain.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    factored.sum().backward()  # the same gradients reach every parameter
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-4)


DEVICES = ["cpu", "auto"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_trains_saves_and_loads_on_its_device(tmp_path, device):
    """``device`` puts the networks there ('auto': CUDA when present); weights come back to the CPU in files."""
    agent = MAPPOAgent(make_env, seed=3, n_envs=2, n_steps=25, device=device)
    expected = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    assert {p.device.type for p in [*agent.actor.parameters(), *agent.critic.parameters()]} == {expected}
    agent.learn(None, 100)
    loaded = MAPPOAgent.load(agent.save(tmp_path / "agent"), device=device)
    assert loaded.device.type == expected
    from experiments.registry import load_agent  # the harness's resume path: registry -> kind -> agent

    assert load_agent("mappo", tmp_path / "agent", make_env, device=device).device.type == expected
    env = make_env()
    observations, infos = env.reset(seed=4)
    assert agent.act(observations, infos) == loaded.act(observations, infos)
    with pytest.raises(ValueError, match=r"^device: expected 'cpu', 'auto'.*got 'tpu'"):
        MAPPOAgent(make_env, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: .*got 'cuda:1' \(torch sees 0 CUDA device"):
            MAPPOAgent(make_env, device="cuda:1")


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    agent = MAPPOAgent(make_env, seed=2, n_envs=2, n_steps=25)
    agent.learn(None, 100)
    path = agent.save(tmp_path / "agent")
    assert sorted(p.name for p in path.iterdir()) == ["agent.json", "weights.npz"]  # no pickle, no temporaries
    loaded = MAPPOAgent.load(path)
    assert loaded.num_timesteps == 100 and loaded.algo == "mappo"
    env = make_env()
    observations, infos = env.reset(seed=9)
    while env.agents:
        actions = agent.act(observations, infos)
        assert loaded.act(observations, infos) == actions
        observations, _, _, _, infos = env.step(actions)
    resumed = MAPPOAgent.load(path, make_env)
    resumed.learn(None, 150)  # optimizer and value normalisation restored: training continues
    assert resumed.num_timesteps == 150


@pytest.mark.parametrize("centralised", [True, False], ids=["mappo", "ippo"])
def test_learns_to_share_the_rsu_better_than_greedy(centralised):
    torch.set_num_threads(1)  # float sums in a fixed order: the same trajectory in any test order
    agent = MAPPOAgent(make_env, seed=0, centralised=centralised, n_envs=4, n_steps=25)
    agent.learn(None, 8000)  # 32k agent-steps
    learned = evaluate_vehicular(agent, make_env, episodes=10, seed=100)
    greedy = evaluate_vehicular(VehicularGreedy(), make_env, episodes=10, seed=100)
    assert learned["return"].mean() > greedy["return"].mean() + 3.0  # measured: -16.8 / -16.4 against -24.7
    assert 0.3 < learned["share_rsu"].mean() < 0.95  # it shares the RSU: neither all on it nor none


def test_mappo_through_the_harness_is_the_hand_run(tmp_path):
    raw = {"name": "veh", "runs_dir": str(tmp_path / "runs"), "seeds": [0],
           "env": {"id": "offload_env/Vehicular-v0", "kwargs": CONTENTION},
           "baselines": ["greedy"], "evaluation": {"episodes": 2, "curve_episodes": 1},
           "agents": {"mappo": {"algo": "mappo", "budget": 100, "n_envs": 2, "n_steps": 25, "hidden": [32]}}}
    cfg = parse_config(raw)
    assert cfg.agents["mappo"].checkpoint_every == 50
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "mappo", 0)
    agent = MAPPOAgent.load(paths.agent("mappo"))
    assert agent.num_timesteps == 100 and agent.config.hidden == (32,)
    hand = evaluate_vehicular(agent, make_env, episodes=2, seed=episode_seed_base(cfg.evaluation.seed, 0))
    table = pd.read_csv(paths.eval_table)
    for col in ("return", "team_return", "mean_latency_s", "share_rsu"):
        np.testing.assert_allclose(table[col], hand[col], rtol=1e-12, err_msg=col)
    assert pd.read_csv(paths.curve)["step"].tolist() == [50, 100]
    tb = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = tb.EventAccumulator(str(paths.tensorboard))
    events.Reload()
    losses = {k: [e.step for e in events.Scalars(k)] for k in events.Tags()["scalars"] if k.startswith("losses/")}
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/clipfrac"} <= set(losses)
    assert losses["losses/policy_loss"] == [50, 100]  # one point per update, at its env step
    raw["agents"]["mappo"]["budget"] = 70
    with pytest.raises(ConfigError, match=r"^agents\.mappo\.budget: expected a multiple of n_steps x n_envs = 50"):
        parse_config(raw)
    raw["agents"]["mappo"].update(budget=100, clip_range=-1)
    with pytest.raises(ConfigError, match=r"^agents\.mappo\.clip_range: expected a value > 0, got -1"):
        parse_config(raw)


def test_grouped_mlp_is_one_mlp_per_group_and_fedavg_averages_them():
    from agents.madrl.common import GroupedMLP

    net = GroupedMLP(3, 5, (4,), 2, 1.0, layer_norm=False)
    x = torch.randn(7, 3, 5)
    out = net(x)
    for g in range(3):  # group g by hand: relu(x W0 + b0) W1 + b1
        h = torch.relu(x[:, g] @ net.weights[0][g] + net.biases[0][g])
        torch.testing.assert_close(out[:, g], h @ net.weights[1][g] + net.biases[1][g])
    before = net.weights[0].detach().clone()
    net.average_groups(torch.tensor([1.0, 1.0, 2.0]))
    expected = (before[0] + before[1] + 2 * before[2]) / 4
    for g in range(3):
        torch.testing.assert_close(net.weights[0][g], expected)
    assert net.group_parameters() == 5 * 4 + 4 + 4 * 2 + 2


@pytest.mark.parametrize("settings", [{}, {"share_actor": False}], ids=["shared", "per-agent"])
def test_execution_is_decentralised(settings):
    """A vehicle's action depends on its own observation only, whatever the others see."""
    agent = MAPPOAgent(make_env, seed=4, n_envs=1, n_steps=25, **settings)
    env = make_env()
    observations, infos = env.reset(seed=1)
    first = env.possible_agents[0]
    alone = agent.act({first: observations[first]}, {first: infos[first]})
    rng = np.random.default_rng(0)
    noisy = {a: (o if a == first else rng.normal(size=o.shape).astype(np.float32)) for a, o in observations.items()}
    assert agent.act(noisy, infos)[first] == alone[first] == agent.act(observations, infos)[first]


def test_federated_training_averages_the_actors_and_counts_the_bytes(tmp_path):
    agent = MAPPOAgent(make_env, seed=0, centralised=False, n_envs=2, n_steps=25, share_actor=False,
                       federated_every=2)
    assert agent.algo == "fedppo"
    for net in (agent.actor, agent.critic):  # FedAvg starts every agent from the same model
        for p in [*net.weights, *net.biases]:
            torch.testing.assert_close(p, p[:1].expand_as(p))
    agent.learn(None, 50)  # 1 update, no round yet: each agent's actor moved on its own data
    assert not torch.equal(agent.actor.weights[0][0], agent.actor.weights[0][1])
    agent.learn(None, 200)  # 4 updates: 2 averaging rounds
    assert agent.updates == 4
    per_agent = agent.actor.group_parameters() + agent.critic.group_parameters()
    assert agent.federated_bytes == 2 * (2 * agent.n_agents * per_agent * 4)
    w = agent.actor.weights[0]
    torch.testing.assert_close(w[0], w[-1])  # the last update was followed by a round: all actors equal
    loaded = MAPPOAgent.load(agent.save(tmp_path / "fed"))
    assert loaded.federated_bytes == agent.federated_bytes and loaded.algo == "fedppo"
    with pytest.raises(ValueError, match=r"^federated_every: federated training keeps each agent's data local"):
        MAPPOAgent(make_env, centralised=True, share_actor=False, federated_every=2)
    with pytest.raises(ValueError, match=r"^share_actor: expected false with federated_every > 0"):
        MAPPOAgent(make_env, centralised=False, federated_every=2)
    raw = {"name": "f", "env": {"id": "offload_env/Vehicular-v0"},
           "agents": {"fed": {"algo": "fedppo", "budget": 800, "federated_every": 0}}}
    with pytest.raises(ConfigError, match=r"^agents\.fed\.federated_every: expected an integer >= 1 for fedppo"):
        parse_config(raw)
    raw["agents"]["fed"]["federated_every"] = 3
    assert parse_config(raw).agents["fed"].algo == "fedppo"
