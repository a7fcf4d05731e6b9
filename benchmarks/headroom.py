"""Headroom of every LayerSplit preset: the simple baselines and the references, and the gap each policy closes.

Per preset, on the same evaluation seeds: mean return with a 95% bootstrap CI
for all-local, all-server, best-fixed, greedy, the myopic oracle, pacing
(observation only) and the reference (full information, energy priced per
episode in hindsight). The headroom is the best fixed policy's cost (the
better of all-server and best-fixed) over the reference's (target: >= 1.2);
a policy's gap closed is (its return - the best simple baseline's) /
(the reference's - the best simple baseline's), where the best simple
baseline is the best of all-local, all-server, best-fixed and greedy (0: no
better than it, 1: as good as the reference). The oracle's split histogram
(share of requests per split) shows whether the decision is degenerate.

    python benchmarks/headroom.py [--episodes 20] [--presets NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agents.baselines import (AllLocal, AllServer, BestFixedSplit, BudgetReference, Greedy, Oracle,  # noqa: E402
                              Pacing, evaluate)
from offload_env.envs.layer_split import PRESETS, LayerSplitEnv  # noqa: E402

SIMPLE = ("all-local", "all-server", "best-fixed", "greedy")
TARGET_HEADROOM = 1.2


def _ci(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = rng.choice(values, size=(2000, len(values))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _oracle_histogram(make_env, episodes: int, seed: int) -> str:
    env, policy, splits = make_env(), Oracle(), []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        policy.reset(env)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
            splits.append(info["oracle_split"])
            done = terminated or truncated
    counts = np.bincount(splits)
    top = np.argsort(counts)[::-1][:3]
    return ", ".join(f"{k}: {counts[k] / len(splits):.0%}" for k in top if counts[k])


def preset_rows(preset: str, episodes: int, seed: int, rng) -> list[dict]:
    def make_env():
        return LayerSplitEnv(scenario=preset)
    policies = [AllLocal(), AllServer(), BestFixedSplit(make_env, episodes=5), Greedy(), Oracle(),
                Pacing(make_env, episodes=5), BudgetReference()]
    rows = []
    for policy in policies:
        start = time.perf_counter()
        frame = evaluate(policy, make_env, episodes=episodes, seed=seed)
        returns = frame["return"].to_numpy()
        low, high = _ci(returns, rng)
        rows.append({"preset": preset, "policy": policy.name, "return": returns.mean(), "ci_low": low, "ci_high": high,
                     "dropped": float((frame["requests"] - frame["steps"]).mean()),
                     "energy_j": frame["edge_energy_j"].mean(), "seconds": time.perf_counter() - start})
    by = {r["policy"]: r["return"] for r in rows}
    best_simple = max(by[k] for k in SIMPLE)
    span = by["reference"] - best_simple
    for r in rows:
        r["gap_closed"] = (r["return"] - best_simple) / span if span > 0 else np.nan
    rows[0]["headroom"] = max(by["all-server"], by["best-fixed"]) / by["reference"]
    rows[0]["oracle_splits"] = _oracle_histogram(make_env, min(episodes, 5), seed)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = [r for p in args.presets for r in preset_rows(p, args.episodes, args.seed, rng)]
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    show = table[["preset", "policy", "return", "ci_low", "ci_high", "gap_closed", "dropped", "energy_j", "seconds"]]
    print(show.round(3).to_string(index=False))
    print()
    for _, r in table.dropna(subset=["headroom"]).iterrows():
        verdict = "OK" if r["headroom"] >= TARGET_HEADROOM else f"below the {TARGET_HEADROOM:g} target"
        print(f"{r['preset']}: best fixed policy's cost / reference's = {r['headroom']:.3f} ({verdict}); "
              f"oracle's splits {r['oracle_splits']}")
    print(f"\n{args.episodes} episodes per policy from seed {args.seed}; 95% bootstrap CIs over episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
