"""The vehicular PettingZoo env through the harness: config, baselines, per-vehicle and team table, report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents import registry as agent_registry
from agents.vehicular_baselines import VehicularGreedy, VehicularRandomValid, evaluate_vehicular
from experiments.compare import compare
from experiments.config import ConfigError, parse_config
from experiments.evaluation import episode_seed_base
from experiments.report import write_report
from experiments.runner import run_experiment, run_paths
from offload_env import make_parallel

ENV = {"num_vehicles": 3, "max_cycles": 12}


def vehicular_config(runs_dir) -> dict:
    return {"name": "veh", "runs_dir": str(runs_dir), "seeds": [0, 1],
            "env": {"id": "offload_env/Vehicular-v0", "kwargs": ENV},
            "baselines": ["all-local", "greedy", "random"],
            "evaluation": {"episodes": 2}}


def make_env():
    return make_parallel("offload_env/Vehicular-v0", **ENV)


def test_vehicular_table_is_the_hand_run(tmp_path):
    cfg = parse_config(vehicular_config(tmp_path / "runs"))
    assert cfg.evaluation.breakdown_keys == []  # the LayerSplit latency parts are not the vehicular env's
    run_experiment(cfg, progress=False)
    for seed in (0, 1):
        base = episode_seed_base(cfg.evaluation.seed, seed)
        for name, policy in (("greedy", VehicularGreedy()), ("random", VehicularRandomValid(seed))):
            hand = evaluate_vehicular(policy, make_env, episodes=2, seed=base)
            table = pd.read_csv(run_paths(cfg, name, seed).eval_table)
            assert len(table) == 2 * ENV["num_vehicles"]
            assert table["vehicle"].tolist() == hand["vehicle"].tolist()
            for col in ("return", "team_return", "mean_latency_s", "energy_j", "deadline_miss_rate",
                        "handover_rate", "share_rsu"):
                np.testing.assert_allclose(table[col], hand[col], rtol=1e-12, err_msg=f"{name} {col}")
    tidy, summary = compare(tmp_path / "runs" / "veh", echo=False)
    assert set(tidy["env"]) == {"Vehicular-v0"} and len(tidy) == 3 * 2 * 2 * ENV["num_vehicles"]
    rows = summary.set_index("agent")
    for agent in ("all-local", "greedy", "random"):
        mine = tidy[tidy["agent"] == agent]
        episodes = mine.groupby(["seed", "episode_seed"])["return"].sum()  # team return by hand
        assert rows.loc[agent, "team_return_mean"] == pytest.approx(episodes.mean())
        assert rows.loc[agent, "return_mean"] == pytest.approx(mine["return"].mean())
        assert rows.loc[agent, "episodes"] == 4 and rows.loc[agent, "vehicles"] == ENV["num_vehicles"]
    assert rows.loc["all-local", "share_local_mean"] == pytest.approx(1.0)
    assert list(summary["team_return_mean"]) == sorted(summary["team_return_mean"], reverse=True)
    report = write_report(tmp_path / "runs" / "veh")
    text = report.read_text()
    assert "## Vehicular-v0" in text and "team return" in text
    for png in ("per_vehicle_return.png", "latency_by_target.png"):
        assert (report.parent / f"vehicular-v0_{png}").stat().st_size > 1000, png


def test_vehicular_config_errors_name_the_key(tmp_path):
    raw = vehicular_config(tmp_path)
    raw["baselines"] = ["all-local", "oracle"]  # a LayerSplit baseline
    with pytest.raises(ConfigError, match=r"^baselines\[1\]: unknown baseline 'oracle' for offload_env/Vehicular-v0"):
        parse_config(raw)
    raw = vehicular_config(tmp_path)
    raw["agents"] = {"ppo": {"algo": "maskable_ppo", "budget": 64, "n_steps": 64}}
    with pytest.raises(ConfigError, match=r"^agents\.ppo\.algo: 'maskable_ppo' is a single-agent algorithm and "
                                          r"offload_env/Vehicular-v0 is a multi-agent env"):
        parse_config(raw)
    raw = vehicular_config(tmp_path)
    raw["env"]["id"] = "offload_env/Vehicular-v1"
    with pytest.raises(ConfigError, match=r"^env\.id: 'offload_env/Vehicular-v1': .*PettingZoo id "
                                          r".*\(offload_env/Vehicular-v0\)"):
        parse_config(raw)


def test_device_is_checked_at_config_load(tmp_path):
    """'auto' loads anywhere; a bad name, CUDA where torch sees none, or a CPU-only kind name the key."""
    import torch

    raw = vehicular_config(tmp_path)
    raw["agents"] = {"mappo": {"algo": "mappo", "budget": 800, "device": "auto"}}
    assert parse_config(raw).agents["mappo"].device == "auto"
    raw["agents"]["mappo"]["device"] = "gpu"
    with pytest.raises(ConfigError, match=r"^agents\.mappo\.device: expected 'cpu', 'auto' .*got 'gpu'"):
        parse_config(raw)
    if not torch.cuda.is_available():
        raw["agents"]["mappo"]["device"] = "cuda"
        with pytest.raises(ConfigError, match=r"^agents\.mappo\.device: .*got 'cuda' \(torch sees 0 CUDA device"):
            parse_config(raw)
    raw = {"name": "r", "runs_dir": str(tmp_path), "env": {"id": "offload_env/Routing-v0"},
           "agents": {"bandit": {"algo": "linucb", "budget": 10, "device": "cuda"}}}
    with pytest.raises(ConfigError, match=r"^agents\.bandit\.device: expected 'cpu' \(linucb trains on the CPU\)"):
        parse_config(raw)


def test_multi_agent_algo_on_a_single_agent_env_is_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(agent_registry.AGENTS, "linucb_team",
                        agent_registry.AgentFamily("linucb_team", "bandit", multi_agent=True, online=True))
    raw = {"name": "r", "runs_dir": str(tmp_path), "env": {"id": "offload_env/Routing-v0"},
           "agents": {"team": {"algo": "linucb_team", "budget": 10}}}
    with pytest.raises(ConfigError, match=r"^agents\.team\.algo: 'linucb_team' is a multi-agent algorithm and "
                                          r"offload_env/Routing-v0 is a single-agent env"):
        parse_config(raw)
