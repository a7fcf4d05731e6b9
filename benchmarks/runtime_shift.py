"""How the envs' results move from the ideal roofline to the fitted runtimes (issue 17's re-measurement).

For every LayerSplit preset, the Routing presets and the vehicular default,
the env's baselines are evaluated on the same seeds twice: under the ideal
roofline of float16 (``dtype="float16"``: the cost model the results
published before runtimes used) and under the presets' runtimes and formats
(the default now). Prints, per env and policy, mean return, latency and
edge energy under each, and for LayerSplit the split the oracle picks most.

    python benchmarks/runtime_shift.py [--episodes 10] [--only layer_split|routing|vehicular]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from gymnasium.wrappers import TimeLimit  # noqa: E402
import pandas as pd  # noqa: E402

from agents.baselines import evaluate, layer_split_baselines  # noqa: E402
from agents.routing_policies import evaluate_routing, routing_baselines  # noqa: E402
from agents.vehicular_baselines import evaluate_vehicular, per_episode, vehicular_baselines  # noqa: E402
from offload_env import vehicular  # noqa: E402
from offload_env.envs import layer_split, routing  # noqa: E402

MODES = {"roofline f16": {"dtype": "float16"}, "runtimes": {}}


def _roofline_pool(scenario: routing.RoutingScenario) -> routing.RoutingScenario:
    """The Routing scenario with every profiled member at the ideal roofline of its old dtype."""
    pool = tuple(m if m.device is None else dataclasses.replace(
        m, runtime=None, weight_format=None, dtype="int8" if m.weight_format == "int8" else "float16")
        for m in scenario.pool)
    return dataclasses.replace(scenario, pool=pool)


def layer_split_rows(episodes: int) -> list[dict]:
    rows = []
    for preset in layer_split.PRESETS:
        for mode, overrides in MODES.items():
            def make_env(preset=preset, overrides=overrides):
                return layer_split.LayerSplitEnv(scenario=preset, **overrides)
            for policy in layer_split_baselines(make_env, seed=0):
                frame = evaluate(policy, make_env, episodes=episodes, seed=1000)
                rows.append({"env": f"LayerSplit {preset}", "mode": mode, "policy": policy.name,
                             "return": frame["return"].mean(), "latency_s": frame["mean_latency_s"].mean(),
                             "edge_energy_j": frame["edge_energy_j"].mean()})
            env = make_env()
            rows[-1]["oracle_mode_split"] = _oracle_mode_split(env)
    return rows


def _oracle_mode_split(env, requests: int = 200) -> int:
    from agents.baselines import Oracle
    policy, splits = Oracle(), []
    obs, info = env.reset(seed=1000)
    policy.reset(env)
    for _ in range(requests):
        obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
        splits.append(info["split"])
        if terminated or truncated:
            obs, info = env.reset()
            policy.reset(env)
    return int(np.bincount(splits).argmax())


def routing_rows(episodes: int) -> list[dict]:
    rows = []
    for preset in routing.PRESETS:
        base = routing.RoutingScenario.preset(preset)
        for mode in MODES:
            scenario = _roofline_pool(base) if mode == "roofline f16" else base

            def make_env(scenario=scenario):  # the registered env's 1,000 queries per episode
                return TimeLimit(routing.RoutingEnv(scenario=scenario), 1000)
            for policy in routing_baselines(make_env, seed=0):
                frame = evaluate_routing(policy, make_env, episodes=episodes, seed=1000)
                rows.append({"env": f"Routing {preset}", "mode": mode, "policy": policy.name,
                             "return": frame["return"].mean(), "latency_s": frame["mean_latency_s"].mean(),
                             "edge_energy_j": frame["edge_energy_j"].mean()})
    return rows


def vehicular_rows(episodes: int) -> list[dict]:
    rows = []
    for mode, overrides in MODES.items():
        def make_env(overrides=overrides):
            return vehicular.parallel_env(**overrides)
        for policy in vehicular_baselines(seed=0):
            frame = per_episode(evaluate_vehicular(policy, make_env, episodes=max(1, episodes // 2), seed=1000))
            rows.append({"env": "Vehicular default", "mode": mode, "policy": policy.name,
                         "return": frame["team_return"].mean(), "latency_s": frame["mean_latency_s"].mean(),
                         "edge_energy_j": frame["energy_j"].mean() if "energy_j" in frame else np.nan})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--only", choices=["layer_split", "routing", "vehicular"], default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for name, fn in (("layer_split", layer_split_rows), ("routing", routing_rows), ("vehicular", vehicular_rows)):
        if args.only in (None, name):
            rows += fn(args.episodes)
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["env", "policy"], columns="mode", values=["return", "latency_s", "edge_energy_j"],
                             sort=False)
    wide.columns = [f"{v} ({m})" for v, m in wide.columns]
    pd.set_option("display.width", 200)
    print(wide.round(3).to_string())
    if "oracle_mode_split" in table:
        print("\nthe oracle's most frequent split over 200 requests:")
        print(table.dropna(subset=["oracle_mode_split"])[["env", "mode", "oracle_mode_split"]].to_string(index=False))
    print(f"\n{args.episodes} episodes per policy (vehicular: half), seeds from 1000; "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
