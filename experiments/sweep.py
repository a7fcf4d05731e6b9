"""``python -m experiments sweep CONFIG``: the config's ``tune`` search, each trial a normal run, on Ray Tune.

The points are drawn here, before Tune starts, from ``tune.search_seed``: the
grid keys crossed with ``num_samples`` draws of the others, floats rounded to
four significant digits (the value a trial trains with is the value its name
shows). Each point on each seed is one Tune trial, which trains the agent
``<agent>@<key>=<value>,...`` with :func:`experiments.runner.train_agent` into
``runs/<exp>/<that agent>/seed_<k>/`` like any run (``--resume`` and
``--force`` as for ``train``; a finished trial is not redone). Tune schedules
the trials on the Ray that :func:`agents.rllib.cluster.init_ray` starts or
joins (``--address`` / ``RAY_ADDRESS``), one trial per ``cpus_per_trial``
CPUs (plus an RLlib agent's env runners). Its own state goes to
``runs/<exp>/sweeps/<agent>/tune/`` (Tune's files, pickles among them: read
them only from sweeps you ran). The summary, one row per point with the
metric's mean over seeds and a 95% bootstrap CI, best first, is printed and
written to ``runs/<exp>/sweeps/<agent>/summary.csv`` and ``summary.md``.

On a cluster every node needs the project installed and ``runs_dir`` on a
filesystem that all nodes share; the summary needs neither (Tune returns
each trial's numbers to the driver).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import atomic
from .config import ConfigError, ExperimentConfig, TuneConfig, parse_config, set_setting, space_values, to_dict
from .stats import bootstrap_ci

__all__ = ["sweep_points", "trial_name", "trial_config", "run_sweep", "summarize_trials", "sweep_dir"]


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def sweep_points(tune: TuneConfig) -> list[dict[str, Any]]:
    """Every point of the search, in order: the grid crossed with ``num_samples`` draws of the other keys."""
    rng = np.random.default_rng(tune.search_seed)
    grid_keys, draw_keys = [], []
    specs = {key: space_values(spec, f"tune.space.{key}") for key, spec in tune.space.items()}
    for key, (kind, _) in specs.items():
        (grid_keys if kind == "grid" else draw_keys).append(key)
    points = []
    for combo in itertools.product(*(specs[k][1] for k in grid_keys)):
        for _ in range(tune.num_samples):
            point = dict(zip(grid_keys, combo))
            for key in draw_keys:
                kind, values = specs[key]
                if kind == "choice":
                    point[key] = values[int(rng.integers(len(values)))]
                elif kind == "uniform":
                    point[key] = float(rng.uniform(*values))
                elif kind == "loguniform":
                    point[key] = float(math.exp(rng.uniform(math.log(values[0]), math.log(values[1]))))
                else:
                    point[key] = int(rng.integers(values[0], values[1] + 1))
            points.append({k: _rounded(point[k]) for k in tune.space})
    unique = {json.dumps(p, sort_keys=True, default=str): p for p in points}  # repeated draws train once
    return list(unique.values())


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_shown(v) for v in value)
    return str(value).replace(" ", "").replace("/", "_")


def trial_name(agent: str, point: dict[str, Any]) -> str:
    """The agent name of one point: ``ppo@learning_rate=0.0003,clip_range=0.2`` (a key shows its last part)."""
    return f"{agent}@" + ",".join(f"{key.split('.')[-1]}={_shown(value)}" for key, value in point.items())


def trial_config(cfg: ExperimentConfig, point: dict[str, Any]) -> tuple[ExperimentConfig, str]:
    """The experiment with one agent, the searched one with ``point`` set, and that agent's name."""
    raw = to_dict(cfg)
    body = raw["agents"][cfg.tune.agent]
    for key, value in point.items():
        body = set_setting(body, key, value)
    name = trial_name(cfg.tune.agent, point)
    raw.update(agents={name: body}, tune=None)
    return parse_config(raw, f"tune trial {name}"), name


def sweep_dir(cfg: ExperimentConfig) -> Path:
    from .runner import experiment_dir

    return experiment_dir(cfg) / "sweeps" / cfg.tune.agent


def _run_trial(params: dict) -> None:
    """One Tune trial: train (or find finished) one point on one seed, then report its final evaluation."""
    from ray import tune

    from .runner import run_paths, train_agent

    if os.path.isdir(params["cwd"]):  # relative paths of the config (runs_dir, profiles) mean the driver's
        os.chdir(params["cwd"])
    cfg = parse_config(params["config"], "tune trial")
    trial, name = trial_config(cfg, params["point"])
    train_agent(trial, name, params["seed"], resume=params["resume"], force=params["force"], progress=False)
    paths = run_paths(trial, name, params["seed"])
    frame = pd.read_csv(paths.eval_table)
    done = json.loads(paths.done.read_text())
    tune.report({"mean_return": float(frame["return"].mean()),
                 "cost_per_request": float(frame["cost_per_request"].mean()),
                 "episodes": len(frame), "total_steps": int(done.get("total_steps", 0)),
                 "train_wall_s": float(done.get("train_wall_s", float("nan")))})


def _trial_resources(cfg: ExperimentConfig):
    """One bundle for the trial's process and, for an agent that starts Ray workers, one per worker."""
    from ray import tune

    from .registry import agent_kind

    spec = cfg.agents[cfg.tune.agent]
    workers = getattr(agent_kind(spec.algo), "worker_cpus", lambda s: [])(spec)
    return tune.PlacementGroupFactory([{"CPU": cfg.tune.cpus_per_trial}, *({"CPU": c} for c in workers)])


def summarize_trials(rows: list[dict], tune: TuneConfig) -> pd.DataFrame:
    """One row per point: its settings, seeds, the metric's mean over seeds [95% bootstrap CI], best first."""
    frame = pd.DataFrame(rows)
    keys = list(tune.space)
    out = []
    for name, group in frame.groupby("agent", sort=False):
        values = group[tune.metric].to_numpy(float)
        low, high = bootstrap_ci(values) if len(values) > 1 else (float("nan"), float("nan"))
        out.append({"agent": name, **{k: group.iloc[0][k] for k in keys}, "seeds": len(group),
                    tune.metric: float(values.mean()), "ci_low": low, "ci_high": high,
                    "train_wall_s": float(group["train_wall_s"].mean())})
    summary = pd.DataFrame(out)
    return summary.sort_values(tune.metric, ascending=tune.metric == "cost_per_request", kind="stable",
                               ignore_index=True)


def _markdown(summary: pd.DataFrame, tune: TuneConfig, failed: list[str]) -> str:
    keys = list(tune.space)
    lines = [f"| {' | '.join(['agent', *keys, 'seeds', tune.metric + ' [95% CI]', 'train s'])} |",
             "|" + "---|" * (len(keys) + 4)]
    for row in summary.to_dict("records"):
        ci = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
        cells = [row["agent"], *(_shown(row[k]) for k in keys), str(row["seeds"]), f"{row[tune.metric]:.4g}{ci}",
                 f"{row['train_wall_s']:.1f}"]
        lines.append(f"| {' | '.join(cells)} |")
    if failed:
        lines += ["", "Failed trials: " + ", ".join(failed)]
    return "\n".join(lines) + "\n"


def run_sweep(cfg: ExperimentConfig, *, seeds: list[int] | None = None, resume: bool = False, force: bool = False,
              progress: bool = True) -> pd.DataFrame:
    """Run every point of ``cfg.tune`` on every seed as Tune trials; return (and write) the summary."""
    if cfg.tune is None:
        raise ConfigError("tune: the config has no tune section (the search: agent, space, num_samples, metric)")
    try:
        from ray import tune
    except ImportError:
        raise ConfigError("tune: the sweep runs on Ray Tune: pip install 'offload-env[ray]'") from None
    from agents.rllib.cluster import init_ray

    from .runner import RunError

    points = sweep_points(cfg.tune)
    for point in points:  # every trial's config is valid before anything runs
        trial_config(cfg, point)
    init_ray()
    folder = sweep_dir(cfg).resolve()
    param_space = {"point": tune.grid_search(points), "seed": tune.grid_search(list(seeds or cfg.seeds)),
                   "config": to_dict(cfg), "cwd": os.getcwd(), "resume": resume, "force": force}
    tuner = tune.Tuner(
        tune.with_resources(_run_trial, _trial_resources(cfg)), param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode="min" if cfg.tune.metric == "cost_per_request" else "max",
            max_concurrent_trials=cfg.tune.max_concurrent or None,
            trial_dirname_creator=lambda t: f"{trial_name(cfg.tune.agent, t.config['point'])}-seed_{t.config['seed']}"),
        run_config=tune.RunConfig(name="tune", storage_path=str(folder), verbose=1 if progress else 0,
                                  log_to_file=True))
    results = tuner.fit()
    rows, failed = [], []
    for result in results:
        name = trial_name(cfg.tune.agent, result.config["point"])
        if result.error is not None or not result.metrics or cfg.tune.metric not in result.metrics:
            why = (str(result.error).strip().splitlines() or ["no result reported"])[-1]
            failed.append(f"{name} seed {result.config['seed']}: {why}")
            continue
        rows.append({"agent": name, "seed": result.config["seed"], **result.config["point"],
                     **{k: result.metrics[k] for k in ("mean_return", "cost_per_request", "train_wall_s")}})
    if not rows:
        raise RunError("sweep: every trial failed: " + "; ".join(failed))
    summary = summarize_trials(rows, cfg.tune)
    atomic.write_csv(folder / "summary.csv", summary)
    atomic.write_text(folder / "summary.md", _markdown(summary, cfg.tune, failed))
    print(_markdown(summary, cfg.tune, failed), end="")
    print(f"summary: {folder / 'summary.md'}")
    if failed:
        raise RunError(f"sweep: {len(failed)} trial(s) failed: " + "; ".join(failed))
    return summary
