"""Plots (PNG, matplotlib Agg) and a Markdown report of an experiment's finished runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic
from .compare import format_summary, gather, save_tidy, summarize
from .stats import bootstrap_ci

__all__ = ["spread_labels", "gather_curves", "plot_learning_curves", "plot_cost_vs_oracle", "plot_latency_breakdown",
           "write_report"]

_BREAKDOWN = {"mean_edge_queue_s": "edge queue", "mean_edge_compute_s": "edge compute", "mean_uplink_s": "uplink",
              "mean_server_queue_s": "server queue", "mean_server_compute_s": "server compute",
              "mean_downlink_s": "downlink", "mean_round_trip_s": "round trips"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def gather_curves(experiment_dir: str | Path) -> pd.DataFrame:
    """Learning-curve rows (``curve.csv``) of every finished learned run, with agent and seed columns."""
    frames = []
    for curve in sorted(Path(experiment_dir).glob("*/seed_*/curve.csv")):
        if not (curve.parent / "done.json").exists():
            continue
        frame = pd.read_csv(curve)
        frame["agent"] = curve.parent.parent.name
        frame["seed"] = int(curve.parent.name.split("_", 1)[1])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
                         metric: str = "cost_ratio_to_oracle") -> Path | None:
    """Mean over seeds of ``metric`` against training steps, with a 95% bootstrap band; baselines as lines."""
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
    col = f"{metric}_mean"
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


def write_report(experiment_dir: str | Path) -> Path:
    """Write ``<experiment>/report/report.md`` with its PNG plots; returns its path."""
    experiment_dir = Path(experiment_dir)
    out = experiment_dir / "report"
    tidy = gather(experiment_dir)
    summary = summarize(tidy)
    curves = gather_curves(experiment_dir)
    plots = {
        "Learning curves": plot_learning_curves(curves, summary, out / "learning_curves.png"),
        "Cost relative to the oracle": plot_cost_vs_oracle(summary, out / "cost_vs_oracle.png"),
        "Latency breakdown": plot_latency_breakdown(tidy, out / "latency_breakdown.png"),
    }
    lines = [f"# Experiment `{experiment_dir.name}`", "",
             f"{tidy['agent'].nunique()} agents, {tidy['seed'].nunique()} seeds, {len(tidy)} evaluation episodes "
             f"({', '.join(sorted(tidy['scenario'].astype(str).unique()))}).", "",
             "Mean [95% bootstrap CI over seeds, then episodes]; IQM over all episodes (rliable). Cost / oracle "
             "compares each request with the full-information myopic oracle on the same state; continuous "
             "agents are compared with the continuous oracle (which also picks compression and power).", "",
             "```text", format_summary(summary), "```", ""]
    for title, path in plots.items():
        if path is not None:
            lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    lines += ["Tables: `../summary/results.csv` (one row per episode), `../summary/summary.csv`.", ""]
    report = atomic.write_text(out / "report.md", "\n".join(lines))
    save_tidy(tidy, experiment_dir / "summary")
    atomic.write_csv(experiment_dir / "summary" / "summary.csv", summary)
    return report
