"""Suites: several experiments (one env each) as one command, one summary per env, one report, its path last."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from experiments.cli import main
from experiments.config import ConfigError
from experiments.suite import load_suite


def write_suite(folder, runs_dir) -> str:
    routing = {"name": "s_routing", "runs_dir": str(runs_dir), "seeds": [0],
               "env": {"id": "offload_env/Routing-v0", "kwargs": {"max_episode_steps": 30}},
               "baselines": ["always-cheapest", "always-best", "oracle"], "evaluation": {"episodes": 1},
               "agents": {"linucb": {"algo": "linucb", "budget": 60}}}
    vehicular = {"name": "s_vehicular", "runs_dir": str(runs_dir), "seeds": [0],
                 "env": {"id": "offload_env/Vehicular-v0", "kwargs": {"num_vehicles": 2, "max_cycles": 8}},
                 "baselines": ["all-local", "greedy"], "evaluation": {"episodes": 1}}
    for cfg in (routing, vehicular):
        (folder / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "suite.yaml").write_text(yaml.safe_dump({"name": "s", "suite": ["s_routing.yaml", "s_vehicular.yaml"]}))
    return str(folder / "suite.yaml")


def test_suite_runs_every_member_and_reports_last(tmp_path, capsys):
    suite = write_suite(tmp_path, tmp_path / "runs")
    assert main(["run", suite, "--quiet", "--set", "agent.alpha=0.5"]) == 0  # agent.* only where agents are
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("s_routing (Routing-v0):") for line in out)
    assert any(line.startswith("s_vehicular (Vehicular-v0):") for line in out)
    report = tmp_path / "runs" / "s" / "report.md"
    assert out[-1] == f"report: {report}"
    text = report.read_text()
    assert "### Routing-v0" in text and "### Vehicular-v0" in text and "APGR" in text and "team return" in text
    for png in ("s_routing_routing-v0_cost_quality.png", "s_routing_routing-v0_regret.png",
                "s_vehicular_vehicular-v0_latency_by_target.png"):
        assert f"]({png})" in text and (report.parent / png).stat().st_size > 1000, png
    saved = yaml.safe_load((tmp_path / "runs" / "s_routing" / "linucb" / "seed_0" / "config.yaml").read_text())
    assert saved["agents"]["linucb"]["alpha"] == 0.5
    table = pd.read_csv(tmp_path / "runs" / "s_vehicular" / "summary" / "results.csv")
    assert set(table["agent"]) == {"all-local", "greedy"} and len(table) == 4  # 2 vehicles x 1 episode x 2
    report.unlink()
    assert main(["report", suite]) == 0 and capsys.readouterr().out.strip() == f"report: {report}"
    assert report.exists()
    assert main(["evaluate", suite, "--quiet", "--agent", "linucb", "--episodes", "2"]) == 0
    again = pd.read_csv(tmp_path / "runs" / "s_routing" / "linucb" / "seed_0" / "eval.csv")
    assert len(again) == 2  # re-evaluated from the saved agent; the other member has no linucb and is left alone
    assert main(["compare", suite]) == 0
    assert "s_vehicular (Vehicular-v0)" in capsys.readouterr().out


def test_suite_errors_name_the_member_and_key(tmp_path):
    suite = write_suite(tmp_path, tmp_path / "runs")
    body = yaml.safe_load((tmp_path / "s_vehicular.yaml").read_text())
    body["baselines"] = ["oracle"]
    (tmp_path / "s_vehicular.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=r"s_vehicular\.yaml: baselines\[0\]: unknown baseline 'oracle' for "
                                          r"offload_env/Vehicular-v0"):
        load_suite(suite)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "s", "suite": ["s_routing.yaml", "nope.yaml"]}))
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "same.yaml").write_text(yaml.safe_dump({"name": "s_routing", "suite": ["s_routing.yaml"]}))
    with pytest.raises(ConfigError, match=r"suite: member experiment names must differ"):
        load_suite(tmp_path / "same.yaml")
