"""MADRL benchmark: MAPPO and IPPO against the vehicular baselines and the full-information references.

    python benchmarks/madrl.py                      # both settings, 3 seeds (the configs' budgets; long)
    python benchmarks/madrl.py --settings 8 --seeds 1 --budget 8000   # a quick look
    python benchmarks/madrl.py --settings contention --no-speed       # where coordination matters
    python benchmarks/madrl.py --settings 8_team --no-speed           # 8 vehicles paid the team's reward
    python benchmarks/madrl.py --settings 8_maddpg --no-speed         # MADDPG, Box actions, 8 vehicles
    python benchmarks/madrl.py --settings 8_intents --no-speed        # 8_team, vehicles broadcast intents
    python benchmarks/madrl.py --settings 8_difference --no-speed     # intents, difference rewards

Runs ``experiments/configs/vehicular_<N>.yaml`` through the harness (finished
runs are reused; runs land in ``runs/``), then prints per setting, for every
learner and baseline: the per-vehicle cost (minus the episode return) as a
ratio to the coordinated best response's on the same episodes and to the best
simple (deployable) baseline's, with 95% bootstrap CIs over seeds then
episodes; the deadline-miss rate, latency and training time. Last, the
training speed at 20 vehicles on one core (rollout and updates) against the
env's own step rate with random allowed actions, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.compare import gather  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.runner import experiment_dir, run_experiment  # noqa: E402
from experiments.stats import seed_bootstrap_ci  # noqa: E402

SIMPLE = ("all-local", "nearest-rsu", "least-loaded-rsu", "all-cloud", "random", "greedy")
REFERENCE = "best-response"


def episode_costs(tidy):
    """Per (agent, seed, episode_seed): the mean per-vehicle cost, miss rate and latency."""
    per = tidy.assign(cost=-tidy["return"]).groupby(["agent", "kind", "seed", "episode_seed"], as_index=False)[
        ["cost", "deadline_miss_rate", "mean_latency_s"]].mean()
    return per


def ratio_row(per, agent, reference):
    """Mean and 95% CI of agent's cost / reference's cost, paired by episode."""
    a = per[per["agent"] == agent].set_index(["seed", "episode_seed"])["cost"]
    r = per[per["agent"] == reference].set_index(["seed", "episode_seed"])["cost"]
    ratio = (a / r).dropna()
    groups = [g.to_numpy() for _, g in ratio.groupby(level="seed")]
    lo, hi = seed_bootstrap_ci(groups)
    return float(ratio.mean()), lo, hi


def table(cfg) -> None:
    tidy = gather(experiment_dir(cfg))
    per = episode_costs(tidy)
    means = per.groupby("agent")["cost"].mean()
    simple = min((a for a in SIMPLE if a in means), key=lambda a: means[a])
    print(f"\n## {cfg.name}: {cfg.env.kwargs}, {tidy['seed'].nunique()} seed(s) x {cfg.evaluation.episodes} episodes; "
          f"best simple baseline: {simple}\n")
    print(f"| agent | cost / vehicle | / {REFERENCE} [95% CI] | / {simple} [95% CI] | deadline miss | latency (s) "
          "| training (s) |")
    print("|---|---|---|---|---|---|---|")
    for agent in means.sort_values().index:
        rows = per[per["agent"] == agent]
        r1, r2 = ratio_row(per, agent, REFERENCE), ratio_row(per, agent, simple)
        wall = [json.loads(p.read_text()).get("train_wall_s") for p in
                (experiment_dir(cfg) / agent).glob("seed_*/done.json")]
        wall = [w for w in wall if w is not None]
        train = f"{np.mean(wall):.0f}" if wall else "-"
        print(f"| {agent} | {means[agent]:.1f} | {r1[0]:.3f} [{r1[1]:.3f}, {r1[2]:.3f}] | {r2[0]:.3f} [{r2[1]:.3f}, "
              f"{r2[2]:.3f}] | {rows['deadline_miss_rate'].mean():.3f} | {rows['mean_latency_s'].mean():.2f} | "
              f"{train} |")


def speed(n_vehicles: int = 20, seconds: float = 5.0) -> None:
    import torch

    from agents.madrl import MAPPOAgent
    from offload_env import make_parallel

    torch.set_num_threads(1)

    def make_env():
        return make_parallel("offload_env/Vehicular-v0", num_vehicles=n_vehicles, road="grid")

    env, rng = make_env(), np.random.default_rng(0)
    observations, infos = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        masks = env.action_masks()
        pick = (rng.random(masks.shape) * masks).argmax(axis=1)  # a random allowed action per vehicle
        observations, _, _, _, infos = env.step(dict(zip(env.possible_agents, pick.tolist())))
        steps += 1
        if not env.agents:
            env.reset()
    env_rate = steps * n_vehicles / (time.perf_counter() - start)
    agent = MAPPOAgent(make_env, seed=0, n_envs=4, n_steps=100)
    agent.learn(None, 400)  # warm-up
    start = time.perf_counter()
    agent.learn(None, 400 + 2000)
    learn_rate = 2000 * n_vehicles / (time.perf_counter() - start)
    print(f"\n## Training speed, {n_vehicles} vehicles on the grid, one core\n")
    print(f"env alone (random allowed actions): {env_rate:,.0f} agent-steps/s")
    print(f"MAPPO (rollout + updates, 4 copies x 100 steps, 10 epochs): {learn_rate:,.0f} agent-steps/s "
          f"({learn_rate / env_rate:.2f} of the env's rate; target >= 10,000: "
          f"{'MET' if learn_rate >= 10_000 else 'NOT MET'})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["8", "20"],
                        choices=["8", "20", "50", "contention", "8_team", "20_team", "8_maddpg", "8_intents",
                                 "8_difference", "20_difference"],
                        help="experiments/configs/vehicular_<SETTING>.yaml: 8, 20 or 50 vehicles, contention "
                             "(16 vehicles where coordination matters, benchmarks/coordination.py), 8_team or "
                             "20_team (paid the team's mean reward), 8_maddpg (MADDPG on the Box actions of "
                             "8 vehicles), 8_intents (8_team where vehicles broadcast intents) or 8_difference "
                             "(intents, each vehicle paid its difference reward; 20_difference: the same at 20 "
                             "vehicles)")
    parser.add_argument("--seeds", type=int, help="first K seeds of the config")
    parser.add_argument("--budget", type=int, help="env steps per learner (default: the config's)")
    parser.add_argument("--no-speed", action="store_true", help="skip the training-speed measurement")
    args = parser.parse_args(argv)
    for n in args.settings:
        overrides = [f"agent.budget={args.budget}", f"agent.checkpoint_every={args.budget // 5}"] if args.budget else []
        cfg = load_config(ROOT / "experiments" / "configs" / f"vehicular_{n}.yaml", overrides)
        seeds = cfg.seeds[: args.seeds] if args.seeds else cfg.seeds
        run_experiment(cfg, seeds=seeds, progress=False)
        table(cfg)
    if not args.no_speed:
        speed()


if __name__ == "__main__":
    main()
