"""Runs: files written, kill -9 then --resume, finished runs skipped, compare's aggregates by hand."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.compare import add_gap_closed, compare, gather, summarize
from experiments.config import parse_config
from experiments.report import write_report
from experiments.runner import RunError, run_experiment, run_paths

ROOT = Path(__file__).resolve().parents[1]
SHORT_ENV = {"max_episode_steps": 20}
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def tiny_config(runs_dir: Path, **ddpg) -> dict:
    return {
        "name": "tiny", "runs_dir": str(runs_dir), "seeds": [0],
        "env": {"id": "offload_env/LayerSplit-v0", "kwargs": SHORT_ENV},
        "baselines": ["greedy", "oracle"],
        "evaluation": {"episodes": 2, "curve_episodes": 1},
        "agents": {
            "default": {"policy_kwargs": {"net_arch": [16]}},
            "ddpg": {"algo": "ddpg", "env_kwargs": {"continuous": True}, "budget": 60, "checkpoint_every": 20,
                     "learning_starts": 10, "batch_size": 8, "action_noise": {"kind": "ornstein-uhlenbeck"},
                     **ddpg},
            "ppo": {"algo": "maskable_ppo", "budget": 64, "n_steps": 32, "batch_size": 16, "n_epochs": 1},
        },
    }


def test_run_writes_every_file(tmp_path):
    cfg = parse_config(tiny_config(tmp_path / "runs"))
    run_experiment(cfg, progress=False)
    for agent in ("ddpg", "ppo"):
        paths = run_paths(cfg, agent, 0)
        assert json.loads(paths.done.read_text())["total_steps"] == cfg.agents[agent].budget
        assert yaml.safe_load(paths.config.read_text())["run"] == {"agent": agent, "seed": 0}
        assert paths.model.exists() and (paths.checkpoints / "latest.json").exists()
        if HAS_TENSORBOARD:
            assert list(paths.tensorboard.glob("events.out.tfevents.*"))
        table = pd.read_csv(paths.eval_table)
        assert len(table) == 2 and table["cost_ratio_to_oracle"].notna().all()
        curve = pd.read_csv(paths.curve)
        assert curve["step"].tolist()[-1] == cfg.agents[agent].budget
    for baseline in ("greedy", "oracle"):
        assert run_paths(cfg, baseline, 0).done.exists()
    oracle = pd.read_csv(run_paths(cfg, "oracle", 0).eval_table)
    assert np.allclose(oracle["cost_ratio_to_oracle"], 1.0)
    # the table is a hand-run of the same policy on the same episode seeds
    import gymnasium as gym

    from agents.baselines import Greedy, evaluate
    from agents.sb3 import SB3Agent
    from experiments.evaluation import episode_seed_base

    base = episode_seed_base(cfg.evaluation.seed, 0)
    for name, policy, kwargs in (("ppo", SB3Agent.load(run_paths(cfg, "ppo", 0).model), SHORT_ENV),
                                 ("greedy", Greedy(), SHORT_ENV)):
        hand = evaluate(policy, lambda: gym.make("offload_env/LayerSplit-v0", **kwargs), episodes=2, seed=base)
        table = pd.read_csv(run_paths(cfg, name, 0).eval_table)
        for col in ("return", "mean_latency_s", "cost_ratio_to_oracle"):
            np.testing.assert_allclose(table[col], hand[col], rtol=1e-9, err_msg=f"{name} {col}")
    tidy, summary = compare(tmp_path / "runs" / "tiny", echo=False)
    assert set(tidy["agent"]) == {"ddpg", "ppo", "greedy", "oracle"} and len(tidy) == 8
    assert {"env", "scenario", "agent", "seed", "return", "mean_latency_s", "edge_energy_j",
            "deadline_miss_rate", "cost_ratio_to_oracle"} <= set(tidy.columns)
    assert (tmp_path / "runs" / "tiny" / "summary" / "results.csv").exists()
    report = write_report(tmp_path / "runs" / "tiny")
    text = report.read_text()
    for png in ("layersplit-v0_learning_curves.png", "layersplit-v0_cost_vs_oracle.png",
                "layersplit-v0_latency_breakdown.png"):
        assert f"]({png})" in text and (report.parent / png).stat().st_size > 1000


def test_finished_run_is_skipped_unless_forced(tmp_path):
    cfg = parse_config(tiny_config(tmp_path / "runs"))
    run_experiment(cfg, agents=["ppo"], progress=False)
    done = run_paths(cfg, "ppo", 0).done
    first = done.read_text()
    os.utime(done, (0, 0))
    run_experiment(cfg, agents=["ppo"], progress=False)
    assert done.stat().st_mtime == 0 and done.read_text() == first
    run_experiment(cfg, agents=["ppo"], progress=False, force=True)
    assert done.stat().st_mtime > 0


def test_finished_run_is_redone_when_its_config_changed(tmp_path):
    raw = tiny_config(tmp_path / "runs")
    run_experiment(parse_config(raw), agents=["ppo"], baselines=False, progress=False)
    raw["agents"]["ppo"]["learning_rate"] = 1e-3
    cfg = parse_config(raw)
    done = run_paths(cfg, "ppo", 0).done
    os.utime(done, (0, 0))
    run_experiment(cfg, agents=["ppo"], baselines=False, progress=False)
    assert done.stat().st_mtime > 0
    saved = yaml.safe_load(run_paths(cfg, "ppo", 0).config.read_text())
    assert saved["agents"]["ppo"]["learning_rate"] == 1e-3


def _train(config: Path, *extra: str, crash_at: int | None = None) -> subprocess.Popen:
    """``experiments train`` in a subprocess; ``crash_at``: it kills itself at that commit point
    (``OFFLOAD_ENV_CRASH_AT``)."""
    env = {**os.environ, **({"OFFLOAD_ENV_CRASH_AT": str(crash_at)} if crash_at else {})}
    return subprocess.Popen([sys.executable, "-m", "experiments", "train", str(config), "--agent", "ddpg",
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def test_sigkill_then_resume_reaches_the_budget(tmp_path):
    raw = tiny_config(tmp_path / "runs", budget=3000, checkpoint_every=100)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    paths = run_paths(parse_config(raw), "ddpg", 0)
    proc = _train(config, crash_at=10)  # its 10th commit point: a few checkpoints in, long before the budget
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not paths.done.exists()
    killed_at = json.loads((paths.checkpoints / "latest.json").read_text())["step"]
    assert 0 < killed_at < 3000

    again = _train(config)  # a partial run needs --resume (or --force)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 2 and "--resume" in err

    resumed = _train(config, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads(paths.done.read_text())["total_steps"] == 3000
    table = pd.read_csv(paths.eval_table)
    assert len(table) == 2 and table[["return", "cost_ratio_to_oracle"]].notna().all().all()
    steps = pd.read_csv(paths.curve)["step"].tolist()
    assert steps == list(range(100, 3001, 100))  # no step lost or logged twice


def test_partial_run_without_resume_is_refused(tmp_path):
    cfg = parse_config(tiny_config(tmp_path / "runs"))
    paths = run_paths(cfg, "ddpg", 0)
    (paths.checkpoints / "step_1").mkdir(parents=True)
    (paths.checkpoints / "latest.json").write_text('{"step": 1, "folder": "step_1"}')
    with pytest.raises(RunError, match="--resume"):
        run_experiment(cfg, agents=["ddpg"], progress=False)


def _fake_run(root: Path, agent: str, seed: int, ratios: list[float], costs: list[float], kind: str) -> None:
    folder = root / agent / f"seed_{seed}"
    folder.mkdir(parents=True)
    n = len(ratios)
    pd.DataFrame({"env": "LayerSplit-v0", "scenario": "default", "action_space": "discrete", "agent": agent,
                  "seed": seed, "episode": range(n), "episode_seed": [1000 * seed + i for i in range(n)],
                  "steps": 10, "return": [-10 * c for c in costs], "mean_latency_s": 1.0, "edge_energy_j": 2.0,
                  "deadline_miss_rate": 0.0, "cost_ratio_to_oracle": ratios,
                  "cost_per_request": costs}).to_csv(folder / "eval.csv", index=False)
    (folder / "done.json").write_text(json.dumps({"kind": kind}))


def test_compare_aggregates_by_hand(tmp_path):
    root = tmp_path / "exp"
    _fake_run(root, "agent", 0, [1.0, 1.2, 1.4, 3.0], [2.0, 2.0, 2.0, 2.0], "learned")
    _fake_run(root, "agent", 1, [1.1, 1.3, 1.5, 0.9], [3.0, 3.0, 3.0, 3.0], "learned")
    _fake_run(root, "greedy", 0, [1.5] * 4, [4.0] * 4, "baseline")
    _fake_run(root, "greedy", 1, [1.5] * 4, [6.0] * 4, "baseline")
    tidy = gather(root)
    assert len(tidy) == 16
    row = summarize(tidy).set_index("agent").loc["agent"]
    assert row["seeds"] == 2 and row["episodes"] == 8
    values = [1.0, 1.2, 1.4, 3.0, 1.1, 1.3, 1.5, 0.9]
    assert row["cost_ratio_to_oracle_mean"] == pytest.approx(sum(values) / 8)  # 1.425
    # IQM: sorted 0.9 1.0 1.1 1.2 1.3 1.4 1.5 3.0, drop two each end -> mean(1.1, 1.2, 1.3, 1.4) = 1.25
    assert row["cost_ratio_to_oracle_iqm"] == pytest.approx(1.25)
    assert row["cost_ratio_to_oracle_ci_low"] <= 1.425 <= row["cost_ratio_to_oracle_ci_high"]
    assert row["cost_ratio_to_oracle_ci_low"] < row["cost_ratio_to_oracle_ci_high"]
    # cost / greedy pairs episodes: seed 0 is 2/4, seed 1 is 3/6 -> 0.5 everywhere
    assert row["cost_ratio_to_greedy_mean"] == pytest.approx(0.5)
    assert row["cost_ratio_to_greedy_ci_low"] == pytest.approx(0.5)
    assert row["cost_ratio_to_greedy_ci_high"] == pytest.approx(0.5)


def test_gap_closed_runs_from_the_best_simple_baseline_to_the_reference(tmp_path):
    root = tmp_path / "exp"
    _fake_run(root, "all-server", 0, [1.0] * 4, [8.0, 8.0, 6.0, 6.0], "baseline")  # the best simple: -70
    _fake_run(root, "greedy", 0, [1.0] * 4, [9.0] * 4, "baseline")  # -90
    _fake_run(root, "reference", 0, [1.0] * 4, [4.0, 4.0, 4.0, 4.0], "baseline")  # -40: the gap is 30
    _fake_run(root, "agent", 0, [1.0] * 4, [6.0, 6.0, 6.0, 6.0], "learned")  # -60: closes 10 of 30
    tidy = gather(root)
    rows = summarize(tidy).set_index("agent")
    assert rows.loc["agent", "gap_closed_mean"] == pytest.approx(1 / 3)
    assert rows.loc["reference", "gap_closed_mean"] == pytest.approx(1.0)
    assert rows.loc["all-server", "gap_closed_mean"] == pytest.approx(0.0)
    assert rows.loc["greedy", "gap_closed_mean"] == pytest.approx(-2 / 3)
    per_episode = tidy[tidy["agent"] == "agent"].sort_values("episode")["gap_closed"].to_numpy()
    np.testing.assert_allclose(per_episode, [2 / 3, 2 / 3, 0.0, 0.0])  # paired with all-server's episodes
    # without the reference there is no gap to close
    assert add_gap_closed(tidy[tidy["agent"] != "reference"])["gap_closed"].isna().all()


def test_baseline_labels_are_spread_apart():
    from experiments.report import spread_labels

    values = np.array([1.0, 1.001, 1.002, 2.0])
    y = spread_labels(values, 0.1)
    assert np.all(np.diff(y) >= 0.1 - 1e-12)  # labels of close values no longer overlap
    assert abs(np.mean(y - values)) < 1e-12  # and stay centred on their lines
    np.testing.assert_array_equal(spread_labels(np.array([0.0, 1.0, 2.0]), 0.1), [0.0, 1.0, 2.0])
