"""Gather every finished run of an experiment into one tidy table, and summarise it across seeds.

Every run folder (``<agent>/seed_<k>/``) that cannot be compared is skipped
with one ``warning:`` line on stderr saying why: unfinished (no
``done.json``), a corrupt ``done.json``, a missing, unreadable or truncated
``eval.csv``, one lacking the columns every table has, or one whose row count
disagrees with ``done.json`` (an interrupted re-evaluation). ``compare``
(and ``python -m experiments compare``, exit 0) goes on with the runs that
remain; when none remains it fails (FileNotFoundError; the command line exits
2 with one ``error:`` line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic
from .stats import iqm, seed_bootstrap_ci

__all__ = ["gather", "read_run", "REQUIRED_COLUMNS", "metrics_of", "add_routing_metrics", "add_ratio_to",
           "add_gap_closed", "summarize", "format_summary", "save_tidy", "compare"]

#: Columns every tidy table starts with (one row per evaluation episode).
ID_COLUMNS = ["env", "scenario", "action_space", "agent", "kind", "seed", "episode", "episode_seed", "vehicle"]


def metrics_of(tidy: pd.DataFrame, headline: bool = False) -> dict[str, str]:
    """Summarised column -> label: the metrics of the families of the table's envs (experiments.families),
    in their order (``headline``: only their headline ones); an env of no family gets the return and cost
    per request."""
    from .families import family_of_name

    out: dict[str, str] = {}
    for env in pd.unique(tidy["env"]) if "env" in tidy else ():
        family = family_of_name(str(env))
        if family is None:
            out.update({"return": "return", "cost_per_request": "cost / request"})
        elif headline and family.headline:
            out.update({k: family.metrics[k] for k in family.headline})
        else:
            out.update(family.metrics)
    return out or {"return": "return"}


def _sort_key(tidy: pd.DataFrame) -> tuple[str, bool]:
    from .families import family_of_name

    envs = pd.unique(tidy["env"]) if "env" in tidy else []
    family = family_of_name(str(envs[0])) if len(envs) else None
    return family.sort_by if family is not None else ("return", False)


_GROUP = ["env", "scenario", "action_space", "agent", "kind"]


#: Columns every run's eval.csv has; a table without one of them (or with one empty) is not compared.
REQUIRED_COLUMNS = ("env", "scenario", "agent", "seed", "episode", "episode_seed", "return")

_WARNED: set[tuple[str, str]] = set()  # (run folder, reason) already reported in this process


def _warn_skip(folder: Path, why: str) -> None:
    if (str(folder), why) not in _WARNED:
        _WARNED.add((str(folder), why))
        print(f"warning: {folder}: skipped: {why}", file=sys.stderr, flush=True)


def read_run(folder: str | Path) -> tuple[pd.DataFrame | None, str]:
    """(eval.csv of a run folder with its ``kind`` column, "") or (None, why it cannot be compared)."""
    folder = Path(folder)
    done = folder / "done.json"
    if not done.exists():
        return None, "unfinished (no done.json)"
    try:
        meta = json.loads(done.read_text())
    except (OSError, ValueError) as err:
        return None, f"corrupt done.json ({' '.join(str(err).split())})"
    if not isinstance(meta, dict):
        return None, "corrupt done.json (not a mapping)"
    table = folder / "eval.csv"
    if not table.exists():
        return None, "finished (done.json) but eval.csv is missing"
    try:
        frame = pd.read_csv(table)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as err:
        return None, f"corrupt eval.csv ({' '.join(str(err).split())[:200]})"
    missing = [c for c in REQUIRED_COLUMNS if c not in frame]
    if missing:
        return None, f"eval.csv lacks column(s) {', '.join(missing)}"
    if frame.empty:
        return None, "eval.csv has no rows"
    if frame[list(REQUIRED_COLUMNS)].isna().any().any():
        return None, "eval.csv has incomplete rows (truncated?)"
    rows = meta.get("episodes")
    if isinstance(rows, int) and rows != len(frame):
        return None, (f"eval.csv has {len(frame)} rows, done.json says {rows} (an interrupted evaluation? run "
                      "evaluate again)")
    frame["kind"] = meta.get("kind", "learned")
    return frame, ""


def gather(experiment_dir: str | Path) -> pd.DataFrame:
    """Concatenate ``eval.csv`` of every finished run under ``experiment_dir`` (``<agent>/seed_<k>/``); each run
    that cannot be compared is skipped with a warning on stderr (see the module docstring)."""
    root = Path(experiment_dir)
    frames, skipped = [], 0
    for folder in sorted(p for p in root.glob("*/seed_*") if p.is_dir()):
        frame, why = read_run(folder)
        if frame is None:
            _warn_skip(folder, why)
            skipped += 1
            continue
        frames.append(frame)
    if not frames:
        if skipped:
            raise FileNotFoundError(f"{root}: no run can be compared ({skipped} skipped: see the warnings)")
        raise FileNotFoundError(f"{root}: no finished runs (each needs done.json and eval.csv); run training first")
    tidy = pd.concat(frames, ignore_index=True)
    tidy = add_routing_metrics(tidy)
    tidy = add_ratio_to(tidy, "greedy", "cost_ratio_to_greedy")
    for myopic in ("myopic-oracle", "oracle"):  # LayerSplit's myopic oracle, under its name or its old one
        if "cost_ratio_to_oracle_policy" not in tidy:
            tidy = add_ratio_to(tidy, myopic, "cost_ratio_to_oracle_policy")
    tidy = add_gap_closed(tidy)
    front = [c for c in ID_COLUMNS if c in tidy]
    return tidy[front + [c for c in tidy if c not in front]]


def add_routing_metrics(tidy: pd.DataFrame) -> pd.DataFrame:
    """Routing rows: each episode's point on its own cost-quality plane, scored by offload_env.metrics.

    ``norm_cost`` is the episode's mean cost with the cheapest model's at 0 and
    the best model's at 1 (on the same queries); APGR, CPT(50%), CPT(80%) and
    AIQ (over normalised cost [0, 1], the ends being the two fixed routers)
    score the point (cost, accuracy) with the curve closed by those ends.
    NaN where the episode's best model was not better (or not dearer) than
    the cheapest.
    """
    need = {"cost", "accuracy", "cost_weak", "cost_strong", "quality_weak", "quality_strong"}
    if not need <= set(tidy):
        return tidy
    from offload_env import metrics

    out = {k: [] for k in ("norm_cost", "apgr", "cpt_50", "cpt_80", "aiq")}
    for c, q, cw, cs, qw, qs in tidy[["cost", "accuracy", "cost_weak", "cost_strong", "quality_weak",
                                      "quality_strong"]].to_numpy(float):
        if not (cs > cw and qs > qw):
            for v in out.values():
                v.append(np.nan)
            continue
        share = float(np.clip((c - cw) / (cs - cw), 0.0, 1.0))
        out["norm_cost"].append((c - cw) / (cs - cw))
        out["apgr"].append(metrics.apgr([share], [q], qw, qs))
        out["cpt_50"].append(metrics.cpt([share], [q], qw, qs, 0.5))
        out["cpt_80"].append(metrics.cpt([share], [q], qw, qs, 0.8))
        out["aiq"].append(metrics.aiq([0.0, share, 1.0], [qw, q, qs], cost_range=(0.0, 1.0)))
    return tidy.assign(**out)


def add_ratio_to(tidy: pd.DataFrame, reference: str, column: str) -> pd.DataFrame:
    """Add ``column``: cost per request over the ``reference`` agent's on the same evaluation episode.

    Unlike ``cost_ratio_to_oracle`` (each request against the myopic oracle's
    choice in the agent's own state), this compares whole policies: an agent
    that manages queues and energy better than a myopic policy can go below 1.
    """
    ref = tidy[tidy["agent"] == reference]
    if ref.empty or "cost_per_request" not in tidy:
        return tidy
    keys = ["env", "scenario", "seed", "episode_seed"] + (["vehicle"] if "vehicle" in tidy else [])
    ref = ref[keys + ["cost_per_request"]].rename(columns={"cost_per_request": "_ref_cost"})
    merged = tidy.merge(ref, on=keys, how="left")
    merged[column] = merged["cost_per_request"] / merged["_ref_cost"]
    return merged.drop(columns="_ref_cost")


def add_gap_closed(tidy: pd.DataFrame) -> pd.DataFrame:
    """Add ``gap_closed``: how much of the way from the best simple baseline (0) to the reference (1) a row gets.

    Per env and scenario of a family with a ``gap`` (``experiments.families``):
    the best simple baseline is the one of the highest mean return; each
    episode's value is (its return - that baseline's on the same episode) /
    the mean over episodes of (the reference's return - that baseline's),
    so that a policy's mean is the share of the gap it closes on the same
    episodes, and its CI comes from the same bootstrap as every metric. NaN
    where the reference or every simple baseline is missing, or the
    reference is not better than the baseline.
    """
    from .families import family_of_name

    out = pd.Series(np.nan, index=tidy.index)
    keys = ["seed", "episode_seed"]
    for (env, scenario), block in tidy.groupby(["env", "scenario"], sort=False):
        family = family_of_name(str(env))
        if family is None or family.gap is None:
            continue
        reference, simple = family.gap
        present = [b for b in simple if (block["agent"] == b).any()]
        if not (block["agent"] == reference).any() or not present:
            continue
        best = max(present, key=lambda b: block.loc[block["agent"] == b, "return"].mean())
        base = block.loc[block["agent"] == best, keys + ["return"]].rename(columns={"return": "_base"})
        ref = block.loc[block["agent"] == reference, keys + ["return"]].rename(columns={"return": "_ref"})
        span = (ref.merge(base, on=keys)).eval("_ref - _base").mean()
        if not span > 0:
            continue
        merged = block[keys + ["return"]].reset_index().merge(base, on=keys, how="left").set_index("index")
        out.loc[merged.index] = (merged["return"] - merged["_base"]) / span
    return tidy.assign(gap_closed=out)


def summarize(tidy: pd.DataFrame, metrics: dict[str, str] | None = None, confidence: float = 0.95,
              resamples: int = 2000) -> pd.DataFrame:
    """One row per (env, scenario, action space, agent): seeds, episodes and, per metric, the mean,
    its bootstrap CI (seeds, then episodes within seeds) and the IQM over all episodes.

    ``metrics`` defaults to the families' (:func:`metrics_of`). Rows per episode
    and agent of a multi-agent env (a ``vehicle`` column) are averaged over
    the vehicles of each episode first: episodes, not vehicles, are the
    independent samples.
    """
    metrics = metrics_of(tidy) if metrics is None else metrics
    rows = []
    for key, group in tidy.groupby([c for c in _GROUP if c in tidy], sort=False):
        row = dict(zip([c for c in _GROUP if c in tidy], key))
        row["seeds"] = group["seed"].nunique()
        if "vehicle" in group and group["vehicle"].notna().any():
            row["vehicles"] = group["vehicle"].nunique()
            group = group.groupby(["seed", "episode_seed"], sort=False).mean(numeric_only=True).reset_index()
        row["episodes"] = len(group)
        for col in metrics:
            if col not in group:
                continue
            per_seed = [g[col].to_numpy(float) for _, g in group.groupby("seed")]
            lo, hi = seed_bootstrap_ci(per_seed, confidence, resamples)
            row[f"{col}_mean"] = float(np.nanmean(group[col].to_numpy(float)))
            row[f"{col}_ci_low"], row[f"{col}_ci_high"] = lo, hi
            row[f"{col}_iqm"] = iqm(group[col])
        rows.append(row)
    summary = pd.DataFrame(rows)
    column, ascending = _sort_key(tidy)
    if f"{column}_mean" in summary:
        summary = summary.sort_values(f"{column}_mean", ascending=ascending, kind="stable")
    if "scenario" in summary and summary["scenario"].nunique() > 1:
        # returns of different scenarios (e.g. a cost-weight sweep) do not compare: one block per scenario,
        # the baselines' first
        kinds = summary.get("kind", pd.Series("", index=summary.index))
        first = list(pd.unique(pd.concat([summary.loc[kinds == "baseline", "scenario"], summary["scenario"]])))
        summary = summary.assign(_block=summary["scenario"].map(first.index)).sort_values("_block", kind="stable")
        summary = summary.drop(columns="_block")
    return summary.reset_index(drop=True)


def format_summary(summary: pd.DataFrame, metrics: dict[str, str] | None = None) -> str:
    """The summary as a fixed-width text table: mean [95% CI] per metric, IQM of the oracle ratio."""
    if metrics is None:
        metrics = metrics_of(summary)
    out = pd.DataFrame({"agent": summary["agent"], "actions": summary.get("action_space", ""),
                        "seeds": summary["seeds"], "episodes": summary["episodes"]})
    if "vehicles" in summary:
        out["vehicles"] = summary["vehicles"]
    if "scenario" in summary and summary["scenario"].nunique() > 1:
        out.insert(1, "scenario", _differing_parts(summary["scenario"].astype(str)))
    for col, label in metrics.items():
        if f"{col}_mean" not in summary:
            continue
        biggest = summary[f"{col}_mean"].abs().max()
        spec = ".3g" if biggest < 0.01 else ".3f" if biggest < 100 else ".1f"  # USD per query: significant digits
        out[label] = [f"{m:{spec}} [{lo:{spec}}, {hi:{spec}}]" if not np.isnan(m) else "-"
                      for m, lo, hi in zip(summary[f"{col}_mean"], summary[f"{col}_ci_low"],
                                           summary[f"{col}_ci_high"])]
        if col == "cost_ratio_to_oracle":
            out["IQM cost / oracle"] = [f"{v:.3f}" for v in summary[f"{col}_iqm"]]
    return out.to_string(index=False)


def _differing_parts(labels: pd.Series) -> list[str]:
    """Scenario labels ("preset+key=value+...") reduced to the parts not shared by every row."""
    parts = [label.split("+") for label in labels]
    common = set.intersection(*(set(p) for p in parts)) if parts else set()
    return ["+".join(x for x in p if x not in common) or "(common)" for p in parts]


def save_tidy(tidy: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write ``results.csv`` (and ``results.parquet`` when pyarrow is importable), atomically."""
    folder = Path(folder)
    written = [atomic.write_csv(folder / "results.csv", tidy)]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    with atomic.atomic_path(folder / "results.parquet", ".parquet") as tmp:
        tidy.to_parquet(tmp, index=False)
    written.append(folder / "results.parquet")
    return written


def compare(experiment_dir: str | Path, *, echo: bool = True, echo_files: bool = True, short: bool = False
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather, save (``<experiment>/summary/``) and print the table (``short``: its family's headline
    metrics only; with ``echo_files``, the files written); returns (tidy, summary)."""
    experiment_dir = Path(experiment_dir)
    tidy = gather(experiment_dir)
    summary = summarize(tidy)
    out = experiment_dir / "summary"
    files = save_tidy(tidy, out)
    atomic.write_csv(out / "summary.csv", summary)
    if echo:
        envs = ", ".join(str(e) for e in pd.unique(tidy["env"]))
        print(f"\n{experiment_dir.name} ({envs}): mean [95% bootstrap CI] across seeds and episodes")
        print(format_summary(summary, metrics_of(summary, headline=True) if short else None))
        if echo_files:
            print("\nwrote " + ", ".join(str(f) for f in files + [out / "summary.csv"]))
    return tidy, summary
