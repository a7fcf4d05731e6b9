"""Routing-v0 through the harness: bandits trained and evaluated online, baselines, the table against hand-runs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import offload_env  # noqa: F401
from agents.bandit_agent import BanditAgent
from agents.routing_policies import AlwaysBest, evaluate_routing
from experiments.compare import compare
from experiments.config import ConfigError, parse_config
from experiments.evaluation import episode_seed_base
from experiments.runner import run_experiment, run_paths

ENV = {"max_episode_steps": 40}


def routing_config(runs_dir) -> dict:
    return {
        "name": "rt", "runs_dir": str(runs_dir), "seeds": [0, 1],
        "env": {"id": "offload_env/Routing-v0", "kwargs": ENV},
        "baselines": ["always-best", "oracle"],
        "evaluation": {"episodes": 2, "curve_episodes": 1},
        "agents": {"linucb": {"algo": "linucb", "budget": 100, "checkpoint_every": 50, "alpha": 0.3},
                   "frozen_lints": {"algo": "lints", "budget": 100, "v": 0.2, "eval_mode": "frozen"}},
    }


def make_env():
    return gym.make("offload_env/Routing-v0", **ENV)


def test_bandit_through_the_harness_is_the_hand_run(tmp_path):
    cfg = parse_config(routing_config(tmp_path / "runs"))
    run_experiment(cfg, progress=False)
    base = episode_seed_base(cfg.evaluation.seed, 1)
    for seed in (0, 1):
        by_hand = BanditAgent("linucb", make_env, seed=seed, alpha=0.3)
        regrets = []  # the same training pass (env seeded with the training seed), its regret step by step
        by_hand.learn(make_env, 100, callback=lambda agent, info: regrets.append(
            info["oracle_reward"] - info["rewards"][info["model"]]))
        trace = pd.read_csv(run_paths(cfg, "linucb", seed).trace)
        assert trace["step"].iloc[-1] == 100 and trace["step"].is_monotonic_increasing
        np.testing.assert_allclose(trace["cumulative_regret"], np.cumsum(regrets)[trace["step"] - 1], rtol=1e-9)
        hand = evaluate_routing(by_hand, make_env, episodes=2, seed=episode_seed_base(cfg.evaluation.seed, seed),
                                online=True)
        table = pd.read_csv(run_paths(cfg, "linucb", seed).eval_table)
        for col in ("return", "regret", "accuracy", "cost", "strong_share"):
            np.testing.assert_allclose(table[col], hand[col], rtol=1e-12, err_msg=col)
    saved = BanditAgent.load(run_paths(cfg, "linucb", 1).agent("linucb"))
    assert saved.num_timesteps == 100  # saved before the online evaluation moved it on
    frozen = pd.read_csv(run_paths(cfg, "frozen_lints", 1).eval_table)
    by_hand = BanditAgent("lints", make_env, seed=1, v=0.2)
    by_hand.learn(make_env, 100)
    hand = evaluate_routing(by_hand, make_env, episodes=2, seed=base)
    np.testing.assert_allclose(frozen["return"], hand["return"], rtol=1e-12)
    best = pd.read_csv(run_paths(cfg, "always-best", 1).eval_table)
    np.testing.assert_allclose(best["return"], evaluate_routing(AlwaysBest(), make_env, episodes=2, seed=base)["return"])
    curve = pd.read_csv(run_paths(cfg, "linucb", 0).curve)
    assert curve["step"].tolist() == [50, 100]
    tidy, summary = compare(tmp_path / "runs" / "rt", echo=False)
    assert set(tidy["agent"]) == {"linucb", "frozen_lints", "always-best", "oracle"} and len(tidy) == 16
    rows = summary.set_index("agent")
    assert rows.loc["oracle", "regret_mean"] == pytest.approx(0.0, abs=1e-9)
    assert rows.loc["linucb", "regret_mean"] > 0 and "accuracy_mean" in rows


def test_routing_config_errors_name_the_key(tmp_path):
    raw = routing_config(tmp_path)
    raw["agents"]["linucb"]["alpah"] = 1.0
    with pytest.raises(ConfigError, match=r"^agents\.linucb\.alpah: unknown key \(did you mean 'alpha'\?\)"):
        parse_config(raw)
    raw = routing_config(tmp_path)
    raw["agents"]["linucb"]["n_envs"] = 4
    with pytest.raises(ConfigError, match=r"^agents\.linucb\.n_envs: expected 1"):
        parse_config(raw)
    raw = routing_config(tmp_path)
    raw["agents"]["ppo"] = {"algo": "maskable_ppo", "budget": 64, "n_steps": 64, "eval_mode": "online"}
    with pytest.raises(ConfigError, match=r"^agents\.ppo\.eval_mode: expected 'frozen'"):
        parse_config(raw)


def test_baseline_names_belong_to_the_env_family(tmp_path):
    raw = routing_config(tmp_path)
    raw["baselines"] = ["always-best", "greedy"]  # greedy is a LayerSplit baseline
    with pytest.raises(ConfigError, match=r"^baselines\[1\]: unknown baseline 'greedy' for offload_env/Routing-v0; "
                                          r"expected one of always-cheapest, always-best, random, threshold, knn, per-subject, oracle"):
        parse_config(raw)
    assert parse_config(routing_config(tmp_path)).evaluation.function == "agents.routing_policies:evaluate_routing"


def test_routing_metrics_per_episode_by_hand():
    from experiments.compare import add_routing_metrics

    frame = pd.DataFrame({"cost": [0.5, 2.0, 1.0], "accuracy": [0.8, 0.9, 0.7], "cost_weak": [0.0, 0.0, 1.0],
                          "cost_strong": [1.0, 1.0, 1.0], "quality_weak": [0.6, 0.6, 0.6],
                          "quality_strong": [0.9, 0.9, 0.9]})
    out = add_routing_metrics(frame)
    # row 0: share 0.5, PGR (0.8 - 0.6) / 0.3 = 2/3; APGR = trapezoids (0,0)-(0.5,2/3)-(1,1) = 0.5 * (1/3 + 5/6)
    assert out["apgr"][0] == pytest.approx(0.5 * (1 / 3 + 5 / 6))
    assert out["cpt_50"][0] == pytest.approx(0.5 * 0.5 / (2 / 3))  # PGR 0.5 reached on the first segment
    assert out["cpt_80"][0] == pytest.approx(0.5 + 0.5 * (0.8 - 2 / 3) / (1 / 3))
    # AIQ over [0, 1] of the hull (0, 0.6), (0.5, 0.8), (1, 0.9): 0.5 * (0.7 + 0.85)
    assert out["aiq"][0] == pytest.approx(0.5 * (0.7 + 0.85))
    # row 1 costs twice the best model: share clipped to 1, PGR 1, so its curve is the diagonal (a random router's)
    assert out["norm_cost"][1] == pytest.approx(2.0) and out["apgr"][1] == pytest.approx(0.5)
    assert np.isnan(out["apgr"][2])  # the best model is no dearer than the cheapest: no cost axis


def test_sb3_ppo_and_dqn_on_routing_through_the_harness(tmp_path):
    from agents.sb3 import SB3Agent

    raw = routing_config(tmp_path / "runs")
    raw["seeds"], raw["baselines"] = [0], ["oracle"]
    raw["agents"] = {
        "default": {"gamma": 0.0, "policy_kwargs": {"net_arch": [16]}},
        "ppo": {"algo": "ppo", "budget": 64, "n_steps": 32, "batch_size": 16, "n_epochs": 1},
        "dqn": {"algo": "dqn", "budget": 60, "learning_starts": 20, "batch_size": 8},
    }
    cfg = parse_config(raw)
    assert cfg.agents["ppo"].eval_mode == "frozen" and cfg.agents["ppo"].checkpoint_every == 32
    run_experiment(cfg, progress=False)
    base = episode_seed_base(cfg.evaluation.seed, 0)
    for name in ("ppo", "dqn"):
        paths = run_paths(cfg, name, 0)
        agent = SB3Agent.load(paths.agent(name))
        assert agent.num_timesteps == cfg.agents[name].budget
        hand = evaluate_routing(agent, make_env, episodes=2, seed=base)
        table = pd.read_csv(paths.eval_table)
        for col in ("return", "regret", "accuracy", "cost"):
            np.testing.assert_allclose(table[col], hand[col], rtol=1e-12, err_msg=f"{name} {col}")
    raw["agents"]["ppo"]["budget"] = 48
    with pytest.raises(ConfigError, match=r"^agents\.ppo\.budget: expected a multiple of n_steps x n_envs = 32"):
        parse_config(raw)
    raw["agents"]["ppo"]["budget"] = 64
    raw["agents"]["dqn"]["action_noise"] = {"kind": "normal"}
    with pytest.raises(ConfigError, match=r"^agents\.dqn\.action_noise: expected null \(dqn has discrete actions"):
        parse_config(raw)


def test_cost_weight_sweep_is_one_agent_per_lambda_and_moves_along_the_curve(tmp_path):
    from experiments.report import write_report

    raw = routing_config(tmp_path / "runs")
    raw["seeds"], raw["baselines"] = [0], ["always-cheapest", "always-best"]
    raw["agents"] = {"linucb": {"algo": "linucb", "budget": 200, "alpha": 0.3, "sweep": {"cost_weight": [0, 3000]}}}
    cfg = parse_config(raw)
    assert list(cfg.agents) == ["linucb@cost_weight=0", "linucb@cost_weight=3000"]
    assert cfg.agents["linucb@cost_weight=3000"].env_kwargs == {"cost_weight": 3000}
    run_experiment(cfg, progress=False)
    _, summary = compare(tmp_path / "runs" / "rt", echo=False)
    cost = summary.set_index("agent")["cost_mean"]
    assert cost["linucb@cost_weight=3000"] < cost["linucb@cost_weight=0"]  # a dearer cost: cheaper routes
    assert "+cost_weight=3000" in summary.set_index("agent").loc["linucb@cost_weight=3000", "scenario"]
    report = write_report(tmp_path / "runs" / "rt")
    assert (report.parent / "routing-v0_cost_quality.png").stat().st_size > 1000
    raw["agents"]["linucb"]["sweep"] = {"cost_weight": [1, 1]}
    with pytest.raises(ConfigError, match=r"^agents\.linucb\.sweep\.cost_weight: expected a non-empty list of distinct"):
        parse_config(raw)


MMLU = {"scenario": "mmlu-mixtral-gpt4", "workload": "routellm-mmlu", "features": "hashed",
        "table_rows": [0.0, 0.02], "cost_weight": 30, "max_episode_steps": 20000}


def test_real_mmlu_through_the_harness_trains_and_evaluates_on_disjoint_questions(tmp_path):
    from offload_env.workload import WORKLOADS, data_dir, load_routellm_dir

    folder = data_dir() / WORKLOADS["routellm-mmlu"].folder
    if not folder.is_dir():
        pytest.skip(f"RouteLLM MMLU data not found at {folder}")
    raw = {"name": "mmlu", "runs_dir": str(tmp_path / "runs"), "seeds": [0],
           "env": {"id": "offload_env/Routing-v0", "kwargs": MMLU}, "baselines": ["always-best", "oracle"],
           "evaluation": {"episodes": 1, "curve_episodes": 1, "env_kwargs": {"table_rows": [0.02, 0.06]}},
           "agents": {"linucb": {"algo": "linucb", "budget": 281, "alpha": 0.3}}}
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    train = gym.make("offload_env/Routing-v0", **MMLU).unwrapped.table
    held_out = {**MMLU, "table_rows": [0.02, 0.06]}
    test = gym.make("offload_env/Routing-v0", **held_out).unwrapped.table
    assert len(train) == 281 and len(test) == 562 and not set(train.prompts) & set(test.prompts)
    with pytest.raises(ValueError, match=r"^table_rows: expected \(start, stop\) fractions with 0 <= start < stop"):
        gym.make("offload_env/Routing-v0", **{**MMLU, "table_rows": [0.5, 0.2]})
    best = pd.read_csv(run_paths(cfg, "always-best", 0).eval_table)
    assert best["steps"].tolist() == [562]  # one whole pass over the held-out questions
    gpt4 = load_routellm_dir(folder, WORKLOADS["routellm-mmlu"].model_map, "mmlu_*.csv")
    right = dict(zip(gpt4.prompts, gpt4.quality[:, gpt4.models.index("gpt-4-1106-preview")]))
    assert best["accuracy"].iloc[0] == pytest.approx(np.mean([right[p] for p in test.prompts]))  # the CSV by hand

    def make_train():
        return gym.make("offload_env/Routing-v0", **MMLU)

    by_hand = BanditAgent("linucb", make_train, seed=0, alpha=0.3)
    by_hand.learn(make_train, 281)
    hand = evaluate_routing(by_hand, lambda: gym.make("offload_env/Routing-v0", **held_out), episodes=1,
                            seed=episode_seed_base(cfg.evaluation.seed, 0), online=True)
    table = pd.read_csv(run_paths(cfg, "linucb", 0).eval_table)
    for col in ("return", "regret", "accuracy", "cost", "strong_share"):
        np.testing.assert_allclose(table[col], hand[col], rtol=1e-12, err_msg=col)


def test_a_missing_real_workload_is_named_with_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_ENV_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"workload 'routellm-mmlu': its data is not at .*routellm_mmlu"):
        gym.make("offload_env/Routing-v0", **MMLU)
    with pytest.raises(ValueError, match=r"^workload: expected an OutcomeTable, None or one of routellm-mmlu"):
        gym.make("offload_env/Routing-v0", workload="mmlu")
    with pytest.raises(ValueError, match=r"^table_rows: applies to a real workload only"):
        gym.make("offload_env/Routing-v0", table_rows=[0, 0.5])
