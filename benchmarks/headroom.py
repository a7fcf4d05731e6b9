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

With ``--learners``, every finished run of the experiment configs of each
preset (``experiments/configs/layer_split_*.yaml`` whose scenario is that
preset; the default's is ``layer_split_full.yaml``) is loaded from
``--runs-dir`` and evaluated on the same episodes: one row per agent, its
CI over seeds and episodes. Train them first (``python -m experiments run
experiments/configs/layer_split_presets.yaml``); SB3 checkpoints are pickled
zips, so load only runs you made.

With ``--information``, two privileged diagnostics show where the
reference's edge comes from: the reference with one calibrated price
instead of one per episode in hindsight, and pacing (its calibrated price)
with the observation's SNR estimate (noisy, and one request old unless
the preset observes the current one) replaced by the current true SNR.

    python benchmarks/headroom.py [--episodes 20] [--presets NAME ...] [--learners] [--runs-dir runs] [--information]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agents.baselines import (AllLocal, AllServer, BestFixedSplit, BudgetReference, Greedy, Oracle,  # noqa: E402
                              Pacing, evaluate)
from offload_env.envs.layer_split import DEFAULT_PRESET, PRESETS, LayerSplitEnv  # noqa: E402
from offload_env.observations import LAYER_SPLIT_FIELDS  # noqa: E402

SIMPLE = ("all-local", "all-server", "best-fixed", "greedy")
TARGET_HEADROOM = 1.2
CONFIGS = Path(__file__).resolve().parent.parent / "experiments" / "configs"


class PacingWithCurrentSnr(Pacing):
    """Diagnostic (privileged, reads the simulator): pacing's choice with the observation's SNR estimate
    replaced by the current true SNR."""

    name = "pacing + current SNR"

    def act(self, obs, info):
        sim = self.env._sim
        low, high = LAYER_SPLIT_FIELDS[0][1:]
        seen = np.array(obs, dtype=np.float32)
        seen[0] = np.clip(sim.buf["snr_db"][0] / sim.obs_scales[0], low, high)
        return super().act(seen, info)


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


def learned_policies(preset: str, runs_dir: str | None) -> list[tuple[str, list]]:
    """(agent name, one loaded agent per finished seed) of every LayerSplit config of ``preset``."""
    from experiments.config import load_config
    from experiments.registry import agent_file, load_agent
    from experiments.runner import is_finished, run_paths

    out = []
    for path in sorted(CONFIGS.glob("layer_split_*.yaml")):
        if path.name == "layer_split_presets.yaml":
            continue
        cfg = load_config(path)
        if runs_dir is not None:
            cfg = dataclasses.replace(cfg, runs_dir=runs_dir)
        for name, agent_cfg in cfg.agents.items():
            kwargs = cfg.agent_env_kwargs(name)
            if kwargs.get("scenario", DEFAULT_PRESET) != preset or set(kwargs) - {"scenario"}:
                continue  # another preset, or another env (the continuous one draws other episodes)
            runs = [(s, run_paths(cfg, name, s)) for s in cfg.seeds]
            agents = [load_agent(agent_cfg.algo, p.root / agent_file(agent_cfg.algo), None, seed=s)
                      for s, p in runs if is_finished(p)]
            if agents:
                out.append((name, agents))
    return out


def _row(preset, name, frames, started, rng) -> dict:
    returns = np.concatenate([f["return"].to_numpy() for f in frames])
    low, high = _ci(returns, rng)
    frame = pd.concat(frames)
    return {"preset": preset, "policy": name, "return": returns.mean(), "ci_low": low, "ci_high": high,
            "dropped": float((frame["requests"] - frame["steps"]).mean()), "energy_j": frame["edge_energy_j"].mean(),
            "seconds": time.perf_counter() - started}


def preset_rows(preset: str, episodes: int, seed: int, rng, learners: bool = False,
                runs_dir: str | None = None, information: bool = False) -> list[dict]:
    def make_env():
        return LayerSplitEnv(scenario=preset)
    pacing = Pacing(make_env, episodes=5)
    policies = [AllLocal(), AllServer(), BestFixedSplit(make_env, episodes=5), Greedy(), Oracle(), pacing,
                BudgetReference()]
    if information:
        one_price = BudgetReference(make_env, hindsight=False, episodes=5)
        one_price.name = "reference, one price"
        policies += [one_price, PacingWithCurrentSnr(price=pacing.price)]
    rows = []
    for policy in policies:
        start = time.perf_counter()
        rows.append(_row(preset, policy.name, [evaluate(policy, make_env, episodes=episodes, seed=seed)], start, rng))
    for name, agents in learned_policies(preset, runs_dir) if learners else ():
        start = time.perf_counter()
        frames = [evaluate(agent, make_env, episodes=episodes, seed=seed) for agent in agents]
        rows.append(_row(preset, f"{name} ({len(agents)} seeds)", frames, start, rng))
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
    parser.add_argument("--learners", action="store_true", help="also evaluate the trained runs of each preset")
    parser.add_argument("--runs-dir", default=None, help="where the runs are (default: the configs' runs_dir)")
    parser.add_argument("--information", action="store_true",
                        help="add the reference with one price and pacing with the current true SNR (diagnostics)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = [r for p in args.presets
            for r in preset_rows(p, args.episodes, args.seed, rng, args.learners, args.runs_dir, args.information)]
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
