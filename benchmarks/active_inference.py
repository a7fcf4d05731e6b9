"""Active inference against DRL and bandits: sample efficiency, adaptation to a load change, decision time.

    python benchmarks/active_inference.py [--runs-dir /tmp/aif_runs] [--seeds 3]
    python benchmarks/active_inference.py --quick     # a smoke run (small budgets, one seed)

1. **Sample efficiency.** Runs ``experiments/configs/active_inference.yaml``
   (LayerSplit-v0: deep_aif, MaskablePPO; DDPG and TD3 on the continuous
   actions) and ``active_inference_routing.yaml`` (Routing-v0: deep_aif,
   PPO, LinUCB), with ``pymdp_aif`` added to both when the ``aif`` extra is
   installed (``pip install -e ".[rl,aif]"``), through the experiments harness (finished runs are reused:
   ``--resume``), and reads each run's frozen evaluations at 2k, 10k and 50k
   steps (``curve.csv``: the same episodes as the baselines'). Per agent and
   budget, the mean over seeds with a 95% bootstrap CI over seeds of the cost
   per request over the myopic oracle's and over the best simple baseline's
   (LayerSplit; Routing: the return and the accuracy against always-best's),
   and the deadline-completion rate, latency and energy.
2. **Adaptation.** Each agent trains ``--adapt-before`` steps on the default
   scenario; then the requests' arrival rate triples (``arrival_rate_hz`` 0.2
   -> 0.6, queues build up; the agent is not told) and it trains
   ``--adapt-after`` more. The cost per request under the new load is not
   comparable with the cost before it (every policy pays more queueing), so
   recovery is measured against the agent's own settled cost under the new
   load (the mean of its last 5 episodes): the steps after the change until
   the mean cost per request of 3 consecutive episodes is within 10% of it.
   Reported beside it: the cost per request before the change (last 5
   episodes), in the first episode after it, and settled.
3. **Decision time** per step, planning included, on one core (one thread),
   for each trained agent on 1,000 observations of its env.

Targets (issue 18): at 10k steps deep_aif's cost below DDPG's and TD3's; it
recovers from the load change faster than MaskablePPO. The table says
whether they hold; nothing in the envs is tuned to make them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402

import offload_env  # noqa: E402,F401
from experiments.config import apply_overrides, parse_config  # noqa: E402
from experiments.runner import experiment_dir, run_experiment, run_paths  # noqa: E402
from experiments.stats import bootstrap_ci  # noqa: E402

import yaml  # noqa: E402

CONFIGS = {"LayerSplit-v0": ROOT / "experiments/configs/active_inference.yaml",
           "Routing-v0": ROOT / "experiments/configs/active_inference_routing.yaml"}
MILESTONES = (2000, 10000, 50000)
RECOVERY = 1.10


def build_config(path: Path, runs_dir: str, seeds: int, budget: int | None):
    raw = yaml.safe_load(path.read_text())
    if importlib.util.find_spec("pymdp") is not None:  # the 'aif' extra: the discrete agent joins
        raw["agents"]["pymdp_aif"] = {"algo": "pymdp_aif", "normalize_obs": False}
    overrides = [f"runs_dir={runs_dir}", f"seeds={list(range(seeds))}"]
    if budget:
        overrides.append(f"agents.default.budget={budget}")
    return parse_config(apply_overrides(raw, overrides))


def _ci(values) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.3f}"
    lo, hi = bootstrap_ci(values)
    return f"{values.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def sample_efficiency(cfg, milestones) -> pd.DataFrame:
    """One row per (agent, budget): the curve's evaluation at that step against the baselines' on the same
    episodes."""
    root = experiment_dir(cfg)
    layer_split = cfg.env.id.endswith("LayerSplit-v0")
    base = {}
    for b in cfg.baselines:
        frames = [pd.read_csv(run_paths(cfg, b, s).eval_table) for s in cfg.seeds if run_paths(cfg, b, s).eval_table.exists()]
        if frames:
            base[b] = pd.concat(frames)
    if layer_split:
        per_request = {b: float(f["cost_per_request"].mean()) for b, f in base.items()}
        oracle = per_request.pop("myopic-oracle" if "myopic-oracle" in per_request else "oracle")
        best_name = min(per_request, key=per_request.get)
        best = per_request[best_name]
    else:
        returns = {b: float(f["return"].mean()) for b, f in base.items()}
        oracle_return = returns.pop("oracle")  # Routing's per-query oracle
        best_name = max(returns, key=returns.get)
        best = returns[best_name]
    rows = []
    for agent in cfg.agents:
        curves = []
        for s in cfg.seeds:
            path = run_paths(cfg, agent, s).curve
            if path.exists():
                curves.append(pd.read_csv(path).assign(seed=s))
        if not curves:
            continue
        curve = pd.concat(curves)
        for m in milestones:
            at = curve[curve["step"] == m]
            if at.empty:
                continue
            row = {"env": cfg.env.id.split("/")[-1], "agent": agent, "steps": m, "seeds": len(at)}
            if layer_split:
                row["cost / oracle"] = _ci(at["cost_per_request"] / oracle)
                row[f"cost / {best_name}"] = _ci(at["cost_per_request"] / best)
                row["deadline met"] = _ci(1 - at["deadline_miss_rate"])
                row["latency (s)"] = _ci(at["latency_s"])
                row["edge energy (J)"] = _ci(at["edge_energy_j"])
            else:
                row["return"] = _ci(at["episodic_return"])
                row[f"return / {best_name}"] = _ci(at["episodic_return"] / best)
                row["return / oracle"] = _ci(at["episodic_return"] / oracle_return)
                row["accuracy"] = _ci(at["accuracy"])
                row["latency (s)"] = _ci(at["latency_s"])
            rows.append(row)
    ref = {"env": cfg.env.id.split("/")[-1], "agent": f"(best simple: {best_name})", "steps": 0}
    if layer_split:
        ref.update({"cost / oracle": f"{best / oracle:.3f}", f"cost / {best_name}": "1.000"})
    else:
        ref.update({"return": f"{best:.3f}", f"return / {best_name}": "1.000", "return / oracle":
                    f"{best / oracle_return:.3f}"})
    return pd.DataFrame([ref, *rows])


# ---------------------------------------------------------------------- adaptation


class EpisodeCosts(gym.Wrapper):
    """Records each finished episode's (global step, cost per request, after the switch?); switches to the
    ``after`` kwargs of the env at ``switch_at`` global steps (at the next reset: the agent is not told)."""

    def __init__(self, env_id: str, before: dict, after: dict, switch_at: int, log: list):
        self._envs = (gym.make(env_id, **before), gym.make(env_id, **after))
        super().__init__(self._envs[0])
        self.switch_at, self.log = switch_at, log
        self.steps = 0
        self._cost, self._requests = 0.0, 0

    def reset(self, **kwargs):
        if self.steps >= self.switch_at and self.env is self._envs[0]:
            self.env = self._envs[1]
        self._cost, self._requests = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        self._cost -= reward
        self._requests += 1 + int(info.get("dropped_requests", 0))
        if terminated or truncated:
            self.log.append((self.steps, self._cost / self._requests, self.env is self._envs[1]))
        return obs, reward, terminated, truncated, info


def adaptation(cfg, agent_names, seeds, before_steps: int, after_steps: int) -> pd.DataFrame:
    from agents.registry import AGENTS

    rows = []
    for name in agent_names:
        spec = cfg.agents[name]
        for seed in seeds:
            log: list = []
            kwargs = cfg.agent_env_kwargs(name)

            def make_env(kwargs=kwargs, log=log):
                return EpisodeCosts(cfg.env.id, kwargs, {**kwargs, "arrival_rate_hz": 0.6}, before_steps, log)
            agent = AGENTS[spec.algo].build(make_env, seed=seed, name=name, settings=spec)
            agent.learn(make_env, before_steps + after_steps)
            frame = pd.DataFrame(log, columns=["step", "cost", "after"])
            post = frame[frame["after"]].reset_index(drop=True)
            settled = post["cost"].tail(5).mean()
            rolling = post["cost"].rolling(3).mean()
            back = post[rolling <= RECOVERY * settled]
            rows.append({"agent": name, "seed": seed, "before": frame[~frame["after"]]["cost"].tail(5).mean(),
                         "first after": float(post["cost"].iloc[0]) if len(post) else np.nan, "settled": settled,
                         "steps to recover": float(back["step"].iloc[0] - before_steps) if len(back) else np.nan})
    frame = pd.DataFrame(rows)
    out = []
    for name, group in frame.groupby("agent", sort=False):
        recovered = group["steps to recover"].dropna()
        out.append({"agent": name, "seeds": len(group), "cost/request before": _ci(group["before"]),
                    "first episode after": _ci(group["first after"]), "settled after": _ci(group["settled"]),
                    "steps to recover": (_ci(recovered) if len(recovered) else "never")
                    + (f" ({len(group) - len(recovered)} never)" if 0 < len(recovered) < len(group) else "")})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------- decision time


def decision_times(cfg, n: int = 1000) -> pd.DataFrame:
    import torch

    from agents.registry import AGENTS
    from experiments.registry import env_factory

    torch.set_num_threads(1)
    rows = []
    for name, spec in cfg.agents.items():
        path = run_paths(cfg, name, cfg.seeds[0]).agent(spec.algo)
        if not path.exists():
            continue
        make_env = env_factory(cfg.env.id, cfg.agent_env_kwargs(name))
        agent = AGENTS[spec.algo].load(path, make_env, seed=cfg.seeds[0])
        env = make_env()
        obs, info = env.reset(seed=7)
        pairs = []
        for _ in range(n):
            pairs.append((obs, info))
            obs, _, terminated, truncated, info = env.step(env.action_space.sample(mask=info.get("action_mask"))
                                                           if "action_mask" in info and not spec.env_kwargs
                                                           else env.action_space.sample())
            if terminated or truncated:
                obs, info = env.reset()
        for o, i in pairs[:20]:  # warm-up: first calls allocate
            agent.act(o, i)
        times = []
        for o, i in pairs:
            t0 = time.perf_counter()
            agent.act(o, i)
            times.append(time.perf_counter() - t0)
        rows.append({"env": cfg.env.id.split("/")[-1], "agent": name,
                     "decision p50 (ms)": f"{np.percentile(times, 50) * 1e3:.3f}",
                     "decision p99 (ms)": f"{np.percentile(times, 99) * 1e3:.3f}"})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", default="/tmp/aif_runs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="budgets of 2,000 steps, one seed (a smoke run)")
    p.add_argument("--adapt-before", type=int, default=10000)
    p.add_argument("--adapt-after", type=int, default=10000)
    p.add_argument("--skip-adaptation", action="store_true")
    p.add_argument("--only-adaptation", action="store_true", help="the adaptation study alone")
    p.add_argument("--adapt-agents", default="deep_aif,pymdp_aif,maskable_ppo",
                   help="comma-separated agents of the adaptation study (those in the config)")
    args = p.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    budget = 2000 if args.quick else None
    milestones = (2000,) if args.quick else MILESTONES
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    layer_cfg = build_config(CONFIGS["LayerSplit-v0"], args.runs_dir, seeds, budget)
    for env, path in CONFIGS.items():
        if args.only_adaptation:
            break
        cfg = build_config(path, args.runs_dir, seeds, budget)
        run_experiment(cfg, resume=True, progress=False)
        print(f"\n## {env}: cost after 2k / 10k / 50k steps (mean [95% CI over seeds])\n")
        print(sample_efficiency(cfg, milestones).to_string(index=False))
        print(f"\n## {env}: decision time per step, one core\n")
        print(decision_times(cfg, 200 if args.quick else 1000).to_string(index=False))
    if not args.skip_adaptation:
        before, after = (1000, 1000) if args.quick else (args.adapt_before, args.adapt_after)
        print(f"\n## LayerSplit-v0: adaptation (arrival rate 0.2 -> 0.6 /s after {before} steps, unannounced)\n")
        names = [n for n in args.adapt_agents.split(",") if n in layer_cfg.agents]
        print(adaptation(layer_cfg, names, list(range(seeds)), before, after)
              .to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
