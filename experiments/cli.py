"""``python -m experiments train|evaluate|compare|report|run|export|sweep CONFIG``: the experiments command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config

__all__ = ["main", "build_parser"]


def _add_run_options(p: argparse.ArgumentParser, *, training: bool) -> None:
    p.add_argument("config", help="experiment or suite YAML (e.g. experiments/configs/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. agent.learning_rate=1e-3 or agents.ddpg.budget=2000")
    p.add_argument("--agent", dest="agents", action="append", metavar="NAME", help="only this agent/baseline")
    p.add_argument("--seed", dest="seeds", action="append", type=int, metavar="K", help="only this seed")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if training:
        p.add_argument("--resume", action="store_true", help="continue partial runs from their last checkpoint")
        _add_address(p)


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="ADDR",
                   help="Ray agents and sweeps join this cluster ('auto', or HOST:PORT of a `ray start --head`); "
                        "default: RAY_ADDRESS, else a Ray of this machine bound to 127.0.0.1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_options(sub.add_parser("train", help="train the learned agents (and evaluate them)"), training=True)
    p = sub.add_parser("evaluate", help="evaluate the baselines; re-evaluate finished learned runs")
    _add_run_options(p, training=False)
    p.add_argument("--episodes", type=int, help="episodes per learned run (default: the config's)")
    for name, text in (("compare", "gather all runs into one table and print the summary (a run that cannot be "
                                   "compared is skipped with a warning; exit 2 when none can)"),
                       ("report", "write plots and a Markdown report")):
        p = sub.add_parser(name, help=text)
        p.add_argument("target", help="experiment or suite YAML, or an experiment folder (runs/<name>)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _add_run_options(sub.add_parser("run", help="evaluate baselines, train agents, compare and report"),
                     training=True)
    p = sub.add_parser("export", help="export finished learned runs to router artifacts (<run>/artifact/)")
    p.add_argument("config", help="experiment or suite YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--agent", dest="agents", action="append", metavar="NAME", help="only this agent")
    p.add_argument("--seed", dest="seeds", action="append", type=int, metavar="K", help="only this seed")
    p.add_argument("--best", action="store_true",
                   help="only the best learned agent of each experiment (first seed), with a sample decision")
    p = sub.add_parser("sweep", help="the config's tune search on Ray Tune, each trial a normal run; a summary table")
    p.add_argument("config", help="experiment YAML with a tune section (agent, space, num_samples, metric)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", dest="seeds", action="append", type=int, metavar="K", help="only this seed")
    p.add_argument("--resume", action="store_true", help="continue partial trials from their last checkpoint")
    p.add_argument("--force", action="store_true", help="redo finished trials")
    p.add_argument("--quiet", action="store_true", help="no Tune progress table")
    _add_address(p)
    return parser


def _experiment_dir(target: str, overrides: list[str]) -> Path:
    path = Path(target)
    if path.is_dir():
        return path
    from .runner import experiment_dir

    return experiment_dir(load_config(path, overrides))


def _configs(path: str, overrides: list[str]):
    """(the suite or None, its member configs); a plain experiment config is a suite of one."""
    from .suite import is_suite, load_suite

    if Path(path).is_file() and is_suite(path):
        suite = load_suite(path, overrides)
        return suite, list(suite.members)
    return None, [load_config(path, overrides)]


def _filters(cfg, names: list[str] | None, many: bool) -> list[str] | None:
    """The ``--agent`` names that belong to ``cfg`` (in a suite each member takes its own)."""
    if names is None or not many:
        return names
    from .registry import baseline_label

    own = set(cfg.agents) | {baseline_label(b) for b in cfg.baselines}
    return [n for n in names if n in own] or []


def _run(args) -> Path | None:
    from .runner import RunError, experiment_dir, is_finished, reevaluate, run_experiment, run_paths

    suite, configs = _configs(args.config, args.overrides)
    many = suite is not None
    if many and args.agents:
        known = {n for c in configs for n in _filters(c, args.agents, True)}
        missing = [a for a in args.agents if a not in known]
        if missing:
            raise RunError(f"--agent {missing[0]}: in no member of the suite")
    progress = not args.quiet
    report = None
    for cfg in configs:
        agents = _filters(cfg, args.agents, many)
        if agents == []:
            continue
        seeds = [s for s in args.seeds if s in cfg.seeds] if (many and args.seeds) else args.seeds
        if args.command == "evaluate":
            run_experiment(cfg, agents=agents, seeds=seeds, learned=False, force=args.force, progress=progress)
            for name in cfg.agents:
                if agents and name not in agents:
                    continue
                for seed in seeds or cfg.seeds:
                    if is_finished(run_paths(cfg, name, seed)):
                        reevaluate(cfg, name, seed, args.episodes, progress=progress)
            continue
        run_experiment(cfg, agents=agents, seeds=seeds, baselines=args.command == "run", resume=args.resume,
                       force=args.force, progress=progress)
        if args.command == "run":
            from .compare import compare
            from .report import write_report

            compare(experiment_dir(cfg), echo_files=not many, short=many)
            report = write_report(experiment_dir(cfg))
    if args.command == "run" and many:
        from .suite import write_suite_report

        report = write_suite_report(suite)
    return report


def _compare_or_report(args) -> None:
    from .compare import compare
    from .report import write_report

    path = Path(args.target)
    if path.is_file():
        suite, configs = _configs(args.target, args.overrides)
        if suite is not None:
            from .runner import experiment_dir
            from .suite import write_suite_report

            for cfg in configs:
                if args.command == "compare":
                    compare(experiment_dir(cfg), echo_files=False, short=True)
                else:
                    write_report(experiment_dir(cfg))
            if args.command == "report":
                print(f"report: {write_suite_report(suite)}")
            return
    if args.command == "compare":
        compare(_experiment_dir(args.target, args.overrides))
    else:
        print(f"report: {write_report(_experiment_dir(args.target, args.overrides))}")


def _export(args) -> None:
    from .export import best_agent, export_runs, sample_decision

    _, configs = _configs(args.config, args.overrides)
    exported = 0
    for cfg in configs:
        if not cfg.agents:
            continue
        if args.best:
            name = best_agent(cfg)
            if name is None:
                print(f"warning: {cfg.name}: no finished learned run to export", file=sys.stderr)
                continue
            for folder in export_runs(cfg, [name], [(args.seeds or cfg.seeds)[0]]):
                print(sample_decision(cfg, folder, name))
                exported += 1
        else:
            exported += len(export_runs(cfg, args.agents, args.seeds))
    if not exported:
        from .runner import RunError

        raise RunError("nothing exported (no finished learned run that exports; see the warnings)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .runner import RunError

    started = time.perf_counter()
    if getattr(args, "address", None):
        import os

        os.environ["RAY_ADDRESS"] = args.address  # read by agents.rllib.cluster.init_ray
    try:
        if args.command == "sweep":
            from .sweep import run_sweep

            cfg = load_config(args.config, args.overrides)
            unknown = sorted(set(args.seeds or []) - set(cfg.seeds))
            if unknown:
                raise ConfigError(f"--seed {unknown[0]}: not a seed of the config ({cfg.seeds})")
            run_sweep(cfg, seeds=args.seeds, resume=args.resume, force=args.force, progress=not args.quiet)
            report = None
        elif args.command in ("train", "evaluate", "run"):
            report = _run(args)
        elif args.command == "export":
            _export(args)
            report = None
        else:
            _compare_or_report(args)
            report = None
    except (ConfigError, RunError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "run":
        print(f"\ndone in {time.perf_counter() - started:.0f} s")
        print(f"report: {report}")
    return 0
