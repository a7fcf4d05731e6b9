"""Learning quality: DDPG, TD3 and MaskablePPO on the default LayerSplit scenario, against greedy and the oracle.

Trains the agents with the full config's hyper-parameters through the
experiments harness (same runs, same evaluation path), then prints per agent
the mean cost ratio to the oracle and to greedy with 95% bootstrap CIs, and
the training wall-clock time. Target: a learned agent within 10% of the
oracle's cost and cheaper than greedy, at the stated budget.

    python benchmarks/learning.py [--budget 100000] [--seeds 3] [--runs-dir /tmp/offload_learning]

Two readings of "cost ratio to the oracle" are shown: ``per state`` is the
env's ``cost_ratio_to_oracle`` (each request against the myopic oracle's
choice in the agent's own state); ``policy`` is the agent's cost per request
over the oracle policy's on the same evaluation episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.compare import gather, summarize  # noqa: E402
from experiments.config import apply_overrides, parse_config  # noqa: E402
from experiments.runner import experiment_dir, run_experiment  # noqa: E402

import yaml  # noqa: E402

CONFIG = ROOT / "experiments" / "configs" / "layer_split_full.yaml"
AGENTS = ("ddpg", "td3", "maskable_ppo")
TARGET_RATIO = 1.10


def build_config(budget: int | None, seeds: int, runs_dir: str, episodes: int):
    raw = yaml.safe_load(CONFIG.read_text())
    raw["name"] = "learning_benchmark"
    raw["agents"] = {k: v for k, v in raw["agents"].items() if k in ("default", *AGENTS)}
    raw["baselines"] = ["greedy", "oracle"]
    overrides = [f"runs_dir={runs_dir}", f"seeds={list(range(seeds))}", f"evaluation.episodes={episodes}"]
    if budget:
        rollout = raw["agents"]["maskable_ppo"]["n_steps"] * raw["agents"]["maskable_ppo"].get("n_envs", 1)
        ppo_budget = max(rollout, round(budget / rollout) * rollout)
        overrides += [f"agents.ddpg.budget={budget}", f"agents.maskable_ppo.budget={ppo_budget}",
                      f"agents.td3.budget={budget}", f"agents.td3.checkpoint_every={max(budget // 10, 1)}",
                      f"agents.ddpg.checkpoint_every={max(budget // 10, 1)}",
                      f"agents.maskable_ppo.checkpoint_every={max(ppo_budget // 10, rollout)}"]
    return parse_config(apply_overrides(raw, overrides))


def train_seconds(root: Path, agent: str) -> float:
    times = [json.loads(p.read_text()).get("train_wall_s", float("nan")) for p in root.glob(f"{agent}/seed_*/done.json")]
    return sum(times) / len(times) if times else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, help="training steps per agent (default: the full config's)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run")
    p.add_argument("--runs-dir", default="/tmp/offload_learning")
    p.add_argument("--force", action="store_true", help="retrain runs already finished")
    args = p.parse_args(argv)
    cfg = build_config(args.budget, args.seeds, args.runs_dir, args.episodes)
    started = time.perf_counter()
    run_experiment(cfg, force=args.force, resume=True)
    root = experiment_dir(cfg)
    summary = summarize(gather(root)).set_index("agent")
    rows = []
    for agent in AGENTS:
        s = summary.loc[agent]
        rows.append({
            "agent": agent, "budget (steps)": cfg.agents[agent].budget, "seeds": int(s["seeds"]),
            "cost/oracle per state": f"{s['cost_ratio_to_oracle_mean']:.3f} [{s['cost_ratio_to_oracle_ci_low']:.3f}, "
                                     f"{s['cost_ratio_to_oracle_ci_high']:.3f}]",
            "cost/oracle policy": f"{s['cost_ratio_to_oracle_policy_mean']:.3f} "
                                  f"[{s['cost_ratio_to_oracle_policy_ci_low']:.3f}, "
                                  f"{s['cost_ratio_to_oracle_policy_ci_high']:.3f}]",
            "cost/greedy": f"{s['cost_ratio_to_greedy_mean']:.3f} [{s['cost_ratio_to_greedy_ci_low']:.3f}, "
                           f"{s['cost_ratio_to_greedy_ci_high']:.3f}]",
            "train s/seed": f"{train_seconds(root, agent):.0f}",
        })
    print(f"\nLayerSplit-v0 default scenario, {args.seeds} seeds, {args.episodes} evaluation episodes "
          f"(mean [95% bootstrap CI]); wall {time.perf_counter() - started:.0f} s")
    print(pd.DataFrame(rows).to_string(index=False))
    greedy = summary.loc["greedy"]
    print(f"greedy: cost/oracle per state {greedy['cost_ratio_to_oracle_mean']:.3f}, "
          f"cost/oracle policy {greedy['cost_ratio_to_oracle_policy_mean']:.3f}")
    for column, label in (("cost_ratio_to_oracle", "per state"), ("cost_ratio_to_oracle_policy", "policy")):
        best = min(AGENTS, key=lambda a: summary.loc[a, f"{column}_mean"])
        ratio = summary.loc[best, f"{column}_mean"]
        cheaper = summary.loc[best, "cost_ratio_to_greedy_mean"] < 1.0
        ok = ratio <= TARGET_RATIO and cheaper
        print(f"{'OK' if ok else 'MISSED'}: target cost/oracle ({label}) <= {TARGET_RATIO} and cost/greedy < 1: "
              f"best {best} at {ratio:.3f}, cost/greedy {summary.loc[best, 'cost_ratio_to_greedy_mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
