"""``python -m experiments export CONFIG``: every finished learned run to a router artifact beside it.

Each finished run ``runs/<exp>/<agent>/seed_<k>/`` gets ``artifact/``
(``agents.export``: params.npz + manifest.json, no pickle), for the env and
kwargs it was trained on. ``--best`` exports only the best learned agent of
each experiment (by its env family's sort column, averaged over seeds; its
first seed) and prints one decision of the router on a sample request: the
env's own state after a reset, as the edge box would send it.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["ARTIFACT", "export_runs", "best_agent", "sample_decision"]

ARTIFACT = "artifact"  #: the artifact folder's name inside a run folder


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def best_agent(cfg) -> str | None:
    """The learned agent of ``cfg`` with the best mean of its family's sort column over finished runs."""
    from .compare import _sort_key, gather
    from .runner import experiment_dir

    try:
        tidy = gather(experiment_dir(cfg))
    except FileNotFoundError:
        return None
    learned = tidy[tidy["agent"].isin(list(cfg.agents))]
    if learned.empty:
        return None
    column, ascending = _sort_key(tidy)
    means = learned.groupby("agent")[column].mean().sort_values(ascending=ascending)
    return str(means.index[0])


def export_runs(cfg, agents: list[str] | None = None, seeds: list[int] | None = None) -> list[Path]:
    """Export every finished run of ``cfg``'s learned agents (filtered by ``agents``, ``seeds``); their folders."""
    from agents.protocol import ExportNotAvailable

    from .registry import agent_file, load_agent
    from .runner import is_finished, run_paths

    out = []
    for name, agent_cfg in cfg.agents.items():
        if agents is not None and name not in agents:
            continue
        for seed in seeds or cfg.seeds:
            paths = run_paths(cfg, name, seed)
            if not is_finished(paths):
                _warn(f"{paths.root}: skipped: not finished (train it first)")
                continue
            try:
                agent = load_agent(agent_cfg.algo, paths.root / agent_file(agent_cfg.algo), None, seed=seed)
                folder = agent.export(paths.root / ARTIFACT, env_id=cfg.env.id,
                                      env_kwargs=cfg.agent_env_kwargs(name))
            except ExportNotAvailable as err:
                _warn(f"{paths.root}: skipped: {err}")
                continue
            print(f"exported: {folder}")
            out.append(folder)
    return out


def sample_decision(cfg, artifact: Path, agent_name: str) -> str:
    """One line: the router's decision on the env's state after a reset (evaluation seed)."""
    import json

    import gymnasium as gym

    import offload_env
    from offload_env.router import Router

    router = Router.from_artifact(artifact)
    kwargs = cfg.agent_env_kwargs(agent_name)
    if offload_env.is_parallel_env(cfg.env.id):
        env = offload_env.make_parallel(cfg.env.id, **kwargs)
        env.reset(seed=cfg.evaluation.seed)
        request = env.router_request(env.agents[0])
    else:
        env = gym.make(cfg.env.id, **kwargs)
        env.reset(seed=cfg.evaluation.seed)
        request = env.unwrapped.router_request()
    env.close()
    decision = router.decide(request)
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in request.items()
             if not isinstance(v, list) or len(v) <= 4}
    return (f"router ({artifact}): request {json.dumps(shown)} -> {decision.label!r}"
            + ("" if decision.ok else f" (safe default: {decision.reason})"))
