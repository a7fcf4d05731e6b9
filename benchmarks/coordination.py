"""How much coordination is worth on Vehicular-v0: selfish against team best response, per scenario.

    python benchmarks/coordination.py [--episodes 4] [--vehicles 8]

Both references see the true state and the others' choices (two rounds of
best replies, ``agents/vehicular_baselines.py``); they differ only in what
each vehicle maximises: its own reward (selfish) or the team's mean. Their
cost ratio is the price of anarchy of the scenario as far as one-step
replies measure it: what a centralised critic could at most add over
independent learners that already reach the selfish equilibrium. Printed per
scenario (the default, one field changed at a time, then the contention
scenario of ``experiments/configs/vehicular_contention.yaml``): per-vehicle cost
(minus the episode return) of the team best response, of the selfish one and
of all-local, on the same episodes, with the selfish / team ratio and its 95%
bootstrap CI over episodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.vehicular_baselines import (VehicularAllLocal, VehicularBestResponse,  # noqa: E402
                                        VehicularSelfishBestResponse, evaluate_vehicular)
from experiments.config import load_config  # noqa: E402
from experiments.stats import bootstrap_ci  # noqa: E402
from offload_env import make_parallel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Where coordination matters (its own vehicle count): 16 vehicles on 3 RSUs, a task every 2 s (local alone
#: cannot keep up), a missed deadline costs 10 and the cloud is cheap (0.1) but narrow (one task at full
#: speed, shared by all). Each vehicle does best in the cloud, but each cloud task slows every other one and
#: pushes some past their deadlines: the team keeps some tasks local, selfish vehicles do not.
CONTENTION = load_config(ROOT / "experiments" / "configs" / "vehicular_contention.yaml", check_envs=False).env.kwargs

#: The default scenario, then one field changed at a time (the knobs that shape congestion and its price).
SCENARIOS = {
    "default": {},
    "half the RSU GPU capacity": {"rsu_capacity_tasks": 0.5},
    "missed deadline costs 10 (not 2)": {"w_deadline_miss": 10.0},
    "one cloud task at full speed, cloud 5x cheaper": {"cloud_capacity_tasks": 1.0, "w_cloud": 0.2},
    "a task every 2 s (not 5)": {"step_s": 2.0},
    "energy 6x dearer": {"w_energy": 3.0},
    "contention (vehicular_contention.yaml: 16 vehicles, its own fields)": CONTENTION,
}


def episode_costs(policy, make_env, episodes: int) -> np.ndarray:
    """Per-episode mean per-vehicle cost (minus the return) of ``policy``."""
    frame = evaluate_vehicular(policy, make_env, episodes=episodes)
    return -frame.groupby("episode")["return"].mean().to_numpy()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="evaluation episodes per scenario")
    parser.add_argument("--vehicles", type=int, default=8, help="vehicles of the default scenario")
    args = parser.parse_args(argv)
    if args.episodes < 2 or args.vehicles < 2:
        parser.error("--episodes and --vehicles: expected integers >= 2")
    print(f"| scenario ({args.vehicles} vehicles, highway) | team best response | selfish best response | "
          "all-local | selfish / team | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, change in {**SCENARIOS, "twice the vehicles": {"num_vehicles": 2 * args.vehicles}}.items():
        kwargs = {"num_vehicles": args.vehicles, **change}

        def make_env(kwargs=kwargs):
            return make_parallel("offload_env/Vehicular-v0", **kwargs)

        start = time.perf_counter()
        team, selfish, local = (episode_costs(p, make_env, args.episodes) for p in (
            VehicularBestResponse(), VehicularSelfishBestResponse(), VehicularAllLocal()))
        ratio = selfish / team  # paired: the same episodes
        low, high = bootstrap_ci(ratio)
        print(f"| {name} | {team.mean():.1f} | {selfish.mean():.1f} | {local.mean():.1f} | "
              f"{ratio.mean():.3f} [{low:.3f}, {high:.3f}] | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
