"""Plots (PNG, matplotlib Agg) and a Markdown report of an experiment's finished runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic
from .compare import format_summary, gather, save_tidy, summarize
from .stats import bootstrap_ci

__all__ = ["spread_labels", "gather_curves", "gather_traces", "plot_learning_curves", "plot_cost_vs_oracle",
           "plot_latency_breakdown", "plot_cost_quality", "plot_regret_curve", "plot_per_vehicle",
           "plot_latency_by_target", "env_sections", "write_report"]

_BREAKDOWN = {"mean_edge_queue_s": "edge queue", "mean_edge_compute_s": "edge compute", "mean_uplink_s": "uplink",
              "mean_server_queue_s": "server queue", "mean_server_compute_s": "server compute",
              "mean_downlink_s": "downlink", "mean_round_trip_s": "round trips"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _gather_run_tables(experiment_dir: str | Path, file_name: str) -> pd.DataFrame:
    """The ``file_name`` table of every finished run (``<agent>/seed_<k>/``), with agent and seed columns."""
    frames = []
    for table in sorted(Path(experiment_dir).glob(f"*/seed_*/{file_name}")):
        if not (table.parent / "done.json").exists():
            continue
        frame = pd.read_csv(table)
        frame["agent"] = table.parent.parent.name
        frame["seed"] = int(table.parent.name.split("_", 1)[1])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gather_curves(experiment_dir: str | Path) -> pd.DataFrame:
    """Learning-curve rows (``curve.csv``) of every finished learned run, with agent and seed columns."""
    return _gather_run_tables(experiment_dir, "curve.csv")


def spread_labels(values, gap: float) -> np.ndarray:
    """Label heights as near ``values`` (sorted ascending) as they can be while at least ``gap`` apart."""
    y = np.asarray(values, dtype=float).copy()
    for i in range(1, len(y)):  # push up, then centre each pushed cluster on its values
        y[i] = max(y[i], y[i - 1] + gap)
    shift = np.mean(y - np.asarray(values, dtype=float)) if len(y) else 0.0
    return y - shift


def _save(fig, path: Path) -> Path:
    with atomic.atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_learning_curves(curves: pd.DataFrame, summary: pd.DataFrame, path: Path,
                         metric: str = "cost_ratio_to_oracle", baseline_metric: str | None = None) -> Path | None:
    """Mean over seeds of ``metric`` against training steps, with a 95% bootstrap band; baselines as lines
    at their summary's ``baseline_metric`` (default: the same column)."""
    if curves.empty or metric not in curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent, group in curves.groupby("agent"):
        steps, mean, lo, hi = [], [], [], []
        for step, at in group.groupby("step"):
            values = at[metric].to_numpy(float)
            steps.append(step)
            mean.append(values.mean())
            low, high = bootstrap_ci(values) if len(values) > 1 else (values.mean(), values.mean())
            lo.append(low)
            hi.append(high)
        (line,) = ax.plot(steps, mean, label=f"{agent} ({group['seed'].nunique()} seeds)")
        ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    col = f"{baseline_metric or metric}_mean"
    if col in summary:
        rows = summary[(summary["kind"] == "baseline") & summary[col].notna()].sort_values(col)
        for value in rows[col]:
            ax.axhline(value, linestyle="--", linewidth=0.8, color="grey")
        low, high = ax.get_ylim()
        for name, y in zip(rows["agent"], spread_labels(rows[col].to_numpy(float), 0.045 * (high - low))):
            ax.annotate(name, (1.01, y), xycoords=("axes fraction", "data"), fontsize=7, va="center", ha="left",
                        color="grey", annotation_clip=False)
    ax.set_xlabel("training steps")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize=8)
    ax.set_title("Learning curves (mean, 95% bootstrap CI over seeds)")
    return _save(fig, path)


def plot_cost_vs_oracle(summary: pd.DataFrame, path: Path) -> Path | None:
    """Bars of the mean cost ratio to the oracle per agent, with 95% CI whiskers."""
    col = "cost_ratio_to_oracle"
    if f"{col}_mean" not in summary:
        return None
    plt = _pyplot()
    s = summary.dropna(subset=[f"{col}_mean"])
    labels = [f"{a}\n({sp})" for a, sp in zip(s["agent"], s["action_space"])]
    mean = s[f"{col}_mean"].to_numpy()
    err = np.vstack([mean - s[f"{col}_ci_low"].to_numpy(), s[f"{col}_ci_high"].to_numpy() - mean])
    colours = ["tab:orange" if k == "learned" else "tab:blue" for k in s["kind"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(s)), 4))
    ax.bar(range(len(s)), mean, yerr=np.clip(err, 0, None), color=colours, capsize=3)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(s)), labels, fontsize=8)
    ax.set_ylabel("cost / oracle cost (1 = oracle)")
    ax.set_title("Cost relative to the full-information oracle (orange: learned)")
    return _save(fig, path)


def plot_latency_breakdown(tidy: pd.DataFrame, path: Path) -> Path | None:
    """Stacked bars of the mean per-request latency parts per agent."""
    parts = [c for c in _BREAKDOWN if c in tidy]
    if not parts:
        return None
    plt = _pyplot()
    means = tidy.groupby(["agent", "action_space"], sort=False)[parts].mean()
    order = means.sum(axis=1).sort_values().index
    means = means.loc[order]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(means)), 4))
    bottom = np.zeros(len(means))
    for col in parts:
        ax.bar(range(len(means)), means[col].to_numpy(), bottom=bottom, label=_BREAKDOWN[col])
        bottom += means[col].to_numpy()
    ax.set_xticks(range(len(means)), [f"{a}\n({sp})" for a, sp in means.index], fontsize=8)
    ax.set_ylabel("mean latency per request (s)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("Where the latency goes")
    return _save(fig, path)


def plot_cost_quality(summary: pd.DataFrame, path: Path) -> Path | None:
    """Routing: every router's mean (cost, accuracy) with 95% CIs; agents of one algorithm swept over the cost
    weight (``cost_weight`` in their scenario) joined into a curve; the two fixed routers' segment as reference."""
    if "cost_mean" not in summary or "accuracy_mean" not in summary:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    s = summary.dropna(subset=["cost_mean", "accuracy_mean"])
    for _, row in s.iterrows():
        learned = row.get("kind") == "learned"
        x, y = row["cost_mean"], row["accuracy_mean"]
        ax.errorbar(x, y, xerr=[[x - row["cost_ci_low"]], [row["cost_ci_high"] - x]],
                    yerr=[[y - row["accuracy_ci_low"]], [row["accuracy_ci_high"] - y]],
                    fmt="o" if learned else "s", color="tab:orange" if learned else "tab:blue", markersize=4,
                    capsize=2, linewidth=0.8)
    sweeps = s[s["scenario"].astype(str).str.contains(r"\+cost_weight=", regex=True)] if "scenario" in s else s[:0]
    if not sweeps.empty:
        sweeps = sweeps.assign(_algo=sweeps["agent"].str.split("@").str[0])
        for algo, group in sweeps.groupby("_algo"):
            group = group.sort_values("cost_mean")
            ax.plot(group["cost_mean"], group["accuracy_mean"], "-", linewidth=1, label=f"{algo}: cost-weight sweep")
        ax.legend(fontsize=7)
    fixed = s[s["agent"].isin(["always-cheapest", "always-best"])].sort_values("cost_mean")
    if len(fixed) == 2:
        ax.plot(fixed["cost_mean"], fixed["accuracy_mean"], ":", color="grey", linewidth=0.8)
    from matplotlib.transforms import offset_copy

    order = np.argsort(s["accuracy_mean"].to_numpy(float), kind="stable")
    low, high = ax.get_ylim()
    heights = spread_labels(s["accuracy_mean"].to_numpy(float)[order], 0.045 * (high - low))
    beside = offset_copy(ax.transData, fig=fig, x=6, units="points")
    for i, y in zip(order, heights):  # labels at least a line apart, beside their points, a leader line to each
        row = s.iloc[i]
        ax.annotate(row["agent"], xy=(row["cost_mean"], row["accuracy_mean"]), xytext=(row["cost_mean"], y),
                    textcoords=beside, fontsize=7, va="center",
                    arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "grey", "shrinkA": 0, "shrinkB": 2})
    ax.set_xlabel("mean cost per query (the env's cost unit)")
    ax.set_ylabel("mean accuracy")
    ax.set_title("Cost and quality per router (95% CIs; orange: learned)")
    return _save(fig, path)


def gather_traces(experiment_dir: str | Path) -> pd.DataFrame:
    """Per-step training traces (``trace.csv``: cumulative regret of an online learner) of finished runs."""
    return _gather_run_tables(experiment_dir, "trace.csv")


def plot_regret_curve(traces: pd.DataFrame, tidy: pd.DataFrame, path: Path) -> Path | None:
    """Cumulative regret over the training pass of each online learner (mean, 95% band over seeds); each
    baseline's regret per query (its evaluation mean) drawn as the straight line it would trace."""
    if traces.empty or "cumulative_regret" not in traces:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent, group in traces.groupby("agent"):
        stats = group.groupby("step")["cumulative_regret"]
        mean = stats.mean()
        (line,) = ax.plot(mean.index, mean.to_numpy(), label=f"{agent} ({group['seed'].nunique()} seeds)")
        if group["seed"].nunique() > 1:
            bands = np.array([bootstrap_ci(g.to_numpy(float)) for _, g in stats])
            ax.fill_between(mean.index, bands[:, 0], bands[:, 1], alpha=0.2, color=line.get_color())
    horizon = float(traces["step"].max())
    if "kind" in tidy and "regret" in tidy and "steps" in tidy:
        base = tidy[tidy["kind"] == "baseline"]
        per_query = (base["regret"] / base["steps"].clip(lower=1)).groupby(base["agent"]).mean()
        per_query = per_query[per_query > 0].sort_values()
        for value in per_query:
            ax.plot([0, horizon], [0, value * horizon], "--", linewidth=0.8, color="grey")
        low, high = ax.get_ylim()
        for name, y in zip(per_query.index, spread_labels((per_query * horizon).to_numpy(float),
                                                          0.045 * (high - low))):
            ax.annotate(name, (1.01, y), xycoords=("axes fraction", "data"), fontsize=7, va="center", color="grey",
                        annotation_clip=False)
    ax.set_xlabel("queries (training pass)")
    ax.set_ylabel("cumulative regret (oracle reward - reward)")
    ax.legend(fontsize=8)
    ax.set_title("Regret over time (dashed: baselines at their evaluated rate)")
    return _save(fig, path)


def plot_per_vehicle(tidy: pd.DataFrame, path: Path, column: str = "return",
                     label: str = "episode return per vehicle") -> Path | None:
    """Vehicular: the distribution over vehicles and episodes of ``column`` per agent (box plots)."""
    if "vehicle" not in tidy or column not in tidy:
        return None
    plt = _pyplot()
    groups = [(a, g[column].dropna().to_numpy(float)) for a, g in tidy.groupby("agent", sort=False)]
    groups.sort(key=lambda item: -np.median(item[1]) if item[1].size else 0.0)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups)), 4))
    ax.boxplot([g for _, g in groups], showfliers=True)
    ax.set_xticks(range(1, len(groups) + 1), [a for a, _ in groups], fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(f"Per-vehicle distribution ({tidy['vehicle'].nunique()} vehicles x episodes)")
    return _save(fig, path)


_TARGETS = {"local": "tab:green", "rsu": "tab:blue", "cloud": "tab:purple"}


def plot_latency_by_target(tidy: pd.DataFrame, path: Path) -> Path | None:
    """Vehicular: mean latency of the tasks each agent ran locally, on an RSU and in the cloud, with their shares."""
    cols = [f"latency_{t}_s" for t in _TARGETS]
    if not set(cols) <= set(tidy):
        return None
    plt = _pyplot()
    agents = list(pd.unique(tidy["agent"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(agents)), 4))
    width = 0.8 / len(_TARGETS)
    for k, (target, colour) in enumerate(_TARGETS.items()):
        latency, share = [], []
        for agent in agents:
            rows = tidy[tidy["agent"] == agent]
            w = rows[f"share_{target}"].to_numpy(float) * rows["steps"].to_numpy(float)
            values = rows[f"latency_{target}_s"].to_numpy(float)
            ok = w > 0
            latency.append(float(np.average(values[ok], weights=w[ok])) if ok.any() else 0.0)
            share.append(float(w.sum() / max(rows["steps"].sum(), 1)))
        x = np.arange(len(agents)) + (k - 1) * width
        bars = ax.bar(x, latency, width, color=colour, label=target)
        for bar, sh in zip(bars, share):
            if sh > 0:
                ax.annotate(f"{sh:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                            textcoords="offset points", ha="center", fontsize=6)
    ax.set_xticks(range(len(agents)), agents, fontsize=8)
    ax.set_ylabel("mean latency of the tasks run there (s)")
    ax.legend(fontsize=7, title="target (label: share of tasks)", title_fontsize=7)
    ax.set_title("Latency by where the task ran")
    return _save(fig, path)


_ABOUT = {
    "layer_split": "Cost / oracle compares each request with the full-information myopic oracle on the same state; "
                   "continuous agents are compared with the continuous oracle (which also picks compression and "
                   "power).",
    "routing": "Accuracy and cost are means per query; regret is the oracle's return minus the router's over the "
               "episode. APGR, CPT(50%), CPT(80%) and AIQ score each episode's (cost, accuracy) point on that "
               "episode's own cost-quality plane (offload_env.metrics): the cheapest model at cost 0, the best at 1.",
    "vehicular": "One row per episode and vehicle: return / vehicle, latency, misses and energy are per-vehicle "
                 "means; team return is the sum over the vehicles of an episode. CIs resample seeds, then episodes "
                 "(the vehicles of an episode averaged first: they are not independent).",
}


def _env_plots(family: str, slug: str, tidy, summary, curves, traces, out: Path) -> dict[str, Path | None]:
    def at(name: str) -> Path:
        return out / f"{slug}_{name}.png"

    if family == "layer_split":
        return {"Learning curves": plot_learning_curves(curves, summary, at("learning_curves")),
                "Cost relative to the oracle": plot_cost_vs_oracle(summary, at("cost_vs_oracle")),
                "Latency breakdown": plot_latency_breakdown(tidy, at("latency_breakdown"))}
    plots = {"Learning curves": plot_learning_curves(curves, summary, at("learning_curves"), metric="episodic_return",
                                                     baseline_metric="return")}
    if family == "routing":
        plots["Cost and quality"] = plot_cost_quality(summary, at("cost_quality"))
        plots["Regret over time"] = plot_regret_curve(traces, tidy, at("regret"))
    elif family == "vehicular":
        plots["Per-vehicle returns"] = plot_per_vehicle(tidy, at("per_vehicle_return"))
        plots["Per-vehicle latency"] = plot_per_vehicle(tidy, at("per_vehicle_latency"), "mean_latency_s",
                                                        "mean latency per vehicle (s)")
        plots["Latency by target"] = plot_latency_by_target(tidy, at("latency_by_target"))
    return plots


def env_sections(experiment_dir: str | Path, out: Path, heading: str = "##",
                 prefix: str = "") -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Markdown lines of one section per env of an experiment (its table and its family's plots, written to
    ``out`` as ``<prefix><env>_<plot>.png``); returns (lines, tidy, summary)."""
    from .families import family_of_name

    experiment_dir = Path(experiment_dir)
    tidy = gather(experiment_dir)
    summary = summarize(tidy)
    curves, traces = gather_curves(experiment_dir), gather_traces(experiment_dir)
    lines: list[str] = []
    for env, env_tidy in tidy.groupby("env", sort=False):
        family = family_of_name(str(env))
        name = family.name if family is not None else ""
        env_summary = summary[summary["env"] == env].reset_index(drop=True)
        agents = set(env_tidy["agent"])
        env_curves = curves[curves["agent"].isin(agents)] if not curves.empty else curves
        env_traces = traces[traces["agent"].isin(agents)] if not traces.empty else traces
        slug = prefix + str(env).lower()
        plots = _env_plots(name, slug, env_tidy, env_summary, env_curves, env_traces, out)
        lines += [f"{heading} {env}", "",
                  f"{env_tidy['agent'].nunique()} agents, {env_tidy['seed'].nunique()} seeds, "
                  f"{env_tidy.groupby(['agent', 'seed', 'episode_seed']).ngroups} evaluation episodes "
                  f"({', '.join(sorted(env_tidy['scenario'].astype(str).unique()))}).", "",
                  "Mean [95% bootstrap CI over seeds, then episodes]; IQM over all episodes (rliable). "
                  + _ABOUT.get(name, ""), "", "```text", format_summary(env_summary), "```", ""]
        for title, path in plots.items():
            if path is not None:
                lines += [f"{heading}# {title}", "", f"![{title}]({path.name})", ""]
    return lines, tidy, summary


def write_report(experiment_dir: str | Path) -> Path:
    """Write ``<experiment>/report/report.md`` (a section per env) with its PNG plots; returns its path."""
    experiment_dir = Path(experiment_dir)
    out = experiment_dir / "report"
    sections, tidy, summary = env_sections(experiment_dir, out)
    lines = [f"# Experiment `{experiment_dir.name}`", "", *sections,
             "Tables: `../summary/results.csv` (one row per episode), `../summary/summary.csv`.", ""]
    report = atomic.write_text(out / "report.md", "\n".join(lines))
    save_tidy(tidy, experiment_dir / "summary")
    atomic.write_csv(experiment_dir / "summary" / "summary.csv", summary)
    return report
