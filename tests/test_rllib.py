"""RLlib PPO (agents.rllib) in the harness: each env family, masks, resume, export, settings, loopback-only sockets,
a 2-node cluster, a Tune sweep.

Runs in the 'ray' venv (``make test-ray``); skipped where Ray is not installed. Ray binds to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray.rllib")
torch = pytest.importorskip("torch")

from agents.rllib.agent import RLlibAgent  # noqa: E402
from agents.rllib.cluster import init_ray  # noqa: E402
from experiments.config import ConfigError, parse_config  # noqa: E402
from experiments.registry import env_factory  # noqa: E402
from experiments.runner import RunError, run_experiment, run_paths, train_agent  # noqa: E402
from offload_env.router import read_artifact  # noqa: E402
from offload_env.router.policy import build_policy  # noqa: E402

LAYER_SPLIT, ROUTING, VEHICULAR = "offload_env/LayerSplit-v0", "offload_env/Routing-v0", "offload_env/Vehicular-v0"
SMALL = {"train_batch_size": 200, "minibatch_size": 100, "num_epochs": 2, "hidden": [16], "torch_threads": 1,
         "normalize_obs": False}


@pytest.fixture(scope="module", autouse=True)
def ray_on_loopback():
    import ray

    if not ray.is_initialized():
        os.environ.pop("RAY_ADDRESS", None)
        init_ray(num_cpus=2)
    yield
    ray.shutdown()


def config(tmp_path, env_id, budget=200, checkpoint_every=200, **agent):
    raw = {"name": "rl", "runs_dir": str(tmp_path / "runs"), "seeds": [0], "env": {"id": env_id, "kwargs": {}},
           "baselines": [], "evaluation": {"episodes": 1, "curve_episodes": 1},
           "agents": {"ppo": {"algo": "rllib_ppo", "budget": budget, "checkpoint_every": checkpoint_every,
                              **SMALL, **agent}}}
    return parse_config(raw)


def scalars(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return set(events.Tags()["scalars"])


@pytest.mark.parametrize("env_id", [LAYER_SPLIT, ROUTING, VEHICULAR], ids=["layer_split", "routing", "vehicular"])
def test_one_iteration_of_each_env_family_through_the_harness(tmp_path, env_id):
    cfg = config(tmp_path, env_id)
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "ppo", 0)
    done = json.loads(paths.done.read_text())
    assert done["kind"] == "learned" and done["total_steps"] == 200
    saved = paths.agent("rllib_ppo")
    assert {"weights.npz", "agent.json", "rllib"} <= {p.name for p in saved.iterdir()}
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "eval/episodic_return"} <= \
        scalars(paths.tensorboard)
    agent = RLlibAgent.load(saved)  # no Ray needed to act: the numpy actor
    assert agent.num_timesteps == 200 and agent.env_steps_sampled >= 200
    assert agent.multi_agent == (env_id == VEHICULAR)
    # the exported artifact decides as the agent does, masks included
    artifact = read_artifact(agent.export(tmp_path / "artifact", env_id=env_id))
    policy = build_policy(artifact.manifest["policy"], artifact.arrays)
    env = env_factory(env_id, {})()
    if agent.multi_agent:
        observations, infos = env.reset(seed=3)
        for _ in range(5):
            actions = agent.act(observations, infos)
            for i, a in enumerate(env.possible_agents):
                mask = np.asarray(infos[a]["action_mask"], bool)
                assert mask[actions[a]]
                assert policy.decide(np.asarray(observations[a], np.float32), mask, i) == actions[a]
            observations, _, _, _, infos = env.step(actions)
    else:
        obs, info = env.reset(seed=3)
        for _ in range(20):
            action = agent.act(obs, info)
            mask = np.asarray(info["action_mask"], bool) if "action_mask" in info else None
            assert mask is None or mask[action]
            assert policy.decide(np.asarray(obs, np.float32), mask) == action
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, info = env.reset()


def test_the_module_never_samples_a_masked_action():
    from ray.rllib.core.columns import Columns

    make_env = env_factory(VEHICULAR, {})
    agent = RLlibAgent(make_env, seed=0, train_batch_size=200, minibatch_size=100, num_epochs=1, hidden=(8,))
    module = agent.algorithm.get_module(agent.policy_id)
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (64, agent.obs_dim)).astype(np.float32)
    mask = (rng.uniform(size=(64, agent.n_actions)) < 0.3).astype(np.float32)
    mask[:, 0] = 1.0
    batch = {Columns.OBS: torch.as_tensor(np.concatenate([obs, mask], axis=1))}
    for forward in (module.forward_exploration, module.forward_inference, module.forward_train):
        logits = forward(dict(batch))[Columns.ACTION_DIST_INPUTS]
        draws = torch.distributions.Categorical(logits=logits).sample((50,))
        assert mask[np.arange(64), draws.numpy()].all()
    values = module.compute_values(dict(batch))
    assert values.shape == (64,) and torch.isfinite(values).all()
    agent.close()


def test_a_killed_run_resumes_from_its_checkpoint_with_the_trained_weights(tmp_path):
    cfg = config(tmp_path, LAYER_SPLIT, budget=400, checkpoint_every=200)
    paths = run_paths(cfg, "ppo", 0)

    class Killed(Exception):
        pass

    import experiments.checkpoints as checkpoints
    save = checkpoints.save_checkpoint

    def save_then_die(agent, *args, **kwargs):
        folder = save(agent, *args, **kwargs)
        raise Killed
    checkpoints.save_checkpoint = save_then_die
    try:
        with pytest.raises(Killed):
            train_agent(cfg, "ppo", 0, progress=False)
    finally:
        checkpoints.save_checkpoint = save
    first = RLlibAgent.load(paths.checkpoints / "step_0000000200" / "agent")
    with pytest.raises(RunError, match="pass --resume"):
        train_agent(cfg, "ppo", 0, progress=False)
    # the RLlib checkpoint restores the trained module: before any more training it acts as the saved actor
    probe = RLlibAgent.load(paths.checkpoints / "step_0000000200" / "agent", env_factory(LAYER_SPLIT, {}))
    probe.algorithm
    probe._refresh()
    for key, value in first.policy_arrays.items():
        np.testing.assert_array_equal(probe.policy_arrays[key], value)
    probe.close()
    train_agent(cfg, "ppo", 0, resume=True, progress=False)
    final = RLlibAgent.load(paths.agent("rllib_ppo"))
    assert final.num_timesteps == 400 and final.updates == 2
    assert any(not np.array_equal(final.policy_arrays[k], v) for k, v in first.policy_arrays.items())


def test_bad_settings_are_refused_at_config_load_with_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"agents\.ppo\.train_batch_size: expected a multiple of "
                                          r"max\(num_env_runners, 1\) x n_envs = 3"):
        config(tmp_path, LAYER_SPLIT, n_envs=3)
    with pytest.raises(ConfigError, match=r"agents\.ppo\.minibatch_size: expected at most train_batch_size"):
        config(tmp_path, LAYER_SPLIT, minibatch_size=400)
    with pytest.raises(ConfigError, match=r"agents\.ppo\.activation: expected 'tanh' or 'relu'"):
        config(tmp_path, LAYER_SPLIT, activation="gelu")
    with pytest.raises(ConfigError, match=r"agents\.ppo\.normalize_obs: expected false"):
        config(tmp_path, LAYER_SPLIT, normalize_obs=True)
    with pytest.raises(ConfigError, match=r"rllib_ppo needs discrete actions"):
        config(tmp_path, LAYER_SPLIT, env_kwargs={"continuous": True})
    with pytest.raises(ConfigError, match=r"budget"):
        config(tmp_path, LAYER_SPLIT, budget=300)  # not a multiple of train_batch_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def off_loopback() -> list[str]:
    """Sockets of this machine's Ray processes (this one included) on any address but 127.0.0.1."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] != os.getpid() and not (proc.info["name"] in ("raylet", "gcs_server")
                                                    or "ray::" in command or "/ray/" in command):
            continue
        try:
            sockets = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for sock in sockets:
            for addr in (sock.laddr, sock.raddr):
                if addr and addr.ip not in ("127.0.0.1", "::ffff:127.0.0.1"):
                    found.append(f"{proc.info['name']} ({proc.info['pid']}): {addr.ip}:{addr.port}")
    return found


def test_ray_binds_and_talks_on_loopback_only():
    import ray

    make_env = env_factory(LAYER_SPLIT, {})
    agent = RLlibAgent(make_env, seed=0, train_batch_size=200, minibatch_size=100, num_epochs=1, hidden=(8,),
                       num_env_runners=1)
    agent.learn(None, 200)  # a remote env runner sampled and sent its batch
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert off_loopback() == []
    agent.close()


# ``ray start`` for a worker node resolves 127.0.0.1 to the machine's address, and refuses to start one under
# the one-machine switch its processes need to stay on loopback (agents.rllib.cluster); the test's worker runs
# Ray's own CLI with those two checks lifted, so that the "cluster" never leaves 127.0.0.1.
WORKER_NODE = """
import sys
from ray._private import ray_constants, services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv[0] = "ray"
main()
"""


def test_a_two_node_loopback_cluster_runs_one_env_runner_on_each_node():
    """A head and a worker started with ``ray start`` (one CPU each, 127.0.0.1), then one iteration."""
    import ray

    from agents.rllib.cluster import LOOPBACK_ONLY

    ray.shutdown()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {**os.environ, **LOOPBACK_ONLY, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    common = ["--num-cpus=1", "--disable-usage-stats"]
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    saved = {k: os.environ.get(k) for k in env if os.environ.get(k) != env[k]}
    try:
        subprocess.run([ray_bin, "start", "--node-ip-address=127.0.0.1", "--head", f"--port={port}",
                        "--include-dashboard=false", f"--temp-dir={temp}", *common], check=True, env=env,
                       capture_output=True, timeout=120)
        subprocess.run([sys.executable, "-c", WORKER_NODE, "start", "--node-ip-address=127.0.0.1",
                        f"--address=127.0.0.1:{port}", *common], check=True, env=env, capture_output=True,
                       timeout=120)
        os.environ.update({k: env[k] for k in saved})
        init_ray(address=f"127.0.0.1:{port}")
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
        make_env = env_factory(LAYER_SPLIT, {})
        agent = RLlibAgent(make_env, seed=0, train_batch_size=200, minibatch_size=100, num_epochs=1, hidden=(8,),
                           num_env_runners=2)
        where = agent.algorithm.env_runner_group.foreach_env_runner(
            lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False)
        assert len(set(where)) == 2  # one runner on each node
        agent.learn(None, 200)
        assert agent.num_timesteps == 200 and agent.env_steps_sampled >= 200
        assert off_loopback() == []
        agent.close()
    finally:
        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        init_ray(num_cpus=2)


def test_a_sweep_runs_each_point_on_each_seed_as_a_normal_run_and_summarises(tmp_path, capsys):
    """Tune runs 2 points x 2 seeds of a bandit, and one RLlib PPO point (RLlib inside a Tune trial)."""
    import yaml

    from experiments.cli import main
    from experiments.config import load_config
    from experiments.sweep import sweep_dir

    raw = {"name": "sw", "runs_dir": str(tmp_path / "runs"), "seeds": [0, 1], "env": {"id": ROUTING, "kwargs": {}},
           "evaluation": {"episodes": 2, "curve_episodes": 1},
           "agents": {"linucb": {"algo": "linucb", "budget": 100}},
           "tune": {"space": {"alpha": {"grid": [0.05, 2.0]}}, "metric": "cost_per_request"}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path), "--quiet"]) == 0
    cfg = load_config(path)
    summary = pd.read_csv(sweep_dir(cfg) / "summary.csv")
    assert list(summary["agent"]) and set(summary["agent"]) == {"linucb@alpha=0.05", "linucb@alpha=2"}
    assert list(summary["seeds"]) == [2, 2]
    assert summary["cost_per_request"].is_monotonic_increasing  # best (cheapest) first
    for name in summary["agent"]:
        for seed in (0, 1):
            paths = run_paths(cfg, name, seed)
            frame = pd.read_csv(paths.eval_table)
            assert json.loads(paths.done.read_text())["total_steps"] == 100 and len(frame) == 2
    mean = {n: float(pd.concat(
        [pd.read_csv(run_paths(cfg, n, s).eval_table) for s in (0, 1)]).groupby("seed")
        ["cost_per_request"].mean().mean()) for n in summary["agent"]}
    for row in summary.to_dict("records"):
        assert row["cost_per_request"] == pytest.approx(mean[row["agent"]])
    out = capsys.readouterr().out
    assert "| linucb@alpha=0.05 | 0.05 | 2 |" in out and "summary.md" in out
    # a second sweep finds every trial finished: nothing is retrained, the summary is the same
    stamp = run_paths(cfg, "linucb@alpha=2", 1).done.stat().st_mtime_ns
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert run_paths(cfg, "linucb@alpha=2", 1).done.stat().st_mtime_ns == stamp
    again = pd.read_csv(sweep_dir(cfg) / "summary.csv")
    np.testing.assert_allclose(again["cost_per_request"], summary["cost_per_request"])

    raw = {"name": "swp", "runs_dir": str(tmp_path / "runs"), "seeds": [0], "env": {"id": LAYER_SPLIT},
           "evaluation": {"episodes": 1, "curve_episodes": 1},
           "agents": {"ppo": {"algo": "rllib_ppo", "budget": 200, **SMALL}},
           "tune": {"space": {"learning_rate": {"grid": [0.001]}}}}
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path), "--quiet"]) == 0
    cfg = load_config(path)
    assert json.loads(run_paths(cfg, "ppo@learning_rate=0.001", 0).done.read_text())["total_steps"] == 200
