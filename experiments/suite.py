"""Suites: several experiment configs (one env each, as a rule) run as one job, with one report.

A suite file names its members, paths relative to it::

    name: demo
    suite: [demo_layer_split.yaml, demo_routing.yaml, demo_vehicular.yaml]

Each member is an ordinary experiment (its runs under
``<runs_dir>/<member>/``); ``--set`` overrides apply to every member (an
``agent.KEY`` override only to members with learned agents). The suite's
report, ``<runs_dir>/<suite>/report.md``, has a section per member and env.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from . import atomic
from .config import ConfigError, ExperimentConfig, apply_overrides, parse_config

__all__ = ["Suite", "is_suite", "load_suite", "write_suite_report"]


@dataclass(frozen=True)
class Suite:
    name: str
    members: tuple[ExperimentConfig, ...]

    @property
    def folder(self) -> Path:
        return Path(self.members[0].runs_dir) / self.name


def _read(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def is_suite(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a suite (it has a ``suite`` key) rather than one experiment."""
    raw = _read(Path(path))
    return isinstance(raw, dict) and "suite" in raw


def load_suite(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_envs: bool = True) -> Suite:
    """Read a suite file and validate every member (with ``overrides``) before anything runs."""
    path = Path(path)
    raw = _read(path)
    unknown = sorted(set(raw) - {"name", "suite"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; a suite has: name, suite")
    name, members = raw.get("name"), raw.get("suite")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{path}: name: expected a non-empty name without '/', got {name!r}")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ConfigError(f"{path}: suite: expected a non-empty list of config paths, got {members!r}")
    agent_overrides = [o for o in overrides if o.split("=", 1)[0].startswith("agent.")]
    configs = []
    for i, member in enumerate(members):
        member_path = path.parent / member
        body = _read(member_path)
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: suite[{i}]: {member_path} is not an experiment config")
        if "suite" in body:
            raise ConfigError(f"{path}: suite[{i}]: {member_path} is itself a suite; list its members instead")
        has_agents = any(n != "default" for n in (body.get("agents") or {}))
        mine = [o for o in overrides if has_agents or o not in agent_overrides]
        try:
            configs.append(parse_config(apply_overrides(body, mine), source=str(member_path),
                                        check_envs=check_envs))
        except ConfigError as err:
            raise ConfigError(f"{member_path}: {err}") from None
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or name in names:
        raise ConfigError(f"{path}: suite: member experiment names must differ from each other and from the "
                          f"suite's ({name!r}); got {names}")
    if agent_overrides and not any(c.agents for c in configs):
        raise ConfigError(f"--set {agent_overrides[0]}: no member of the suite has learned agents")
    return Suite(name, tuple(configs))


def write_suite_report(suite: Suite) -> Path:
    """Write ``<runs_dir>/<suite>/report.md``: for each member, a section per env with its table and plots."""
    import os

    from .report import env_sections
    from .runner import experiment_dir

    out = suite.folder
    lines = [f"# Suite `{suite.name}`", "",
             "Members: " + ", ".join(f"`{c.name}` ({c.env.id})" for c in suite.members) + ".", ""]
    for cfg in suite.members:
        sections, _, _ = env_sections(experiment_dir(cfg), out, heading="###", prefix=f"{cfg.name}_")
        tables = os.path.relpath(experiment_dir(cfg) / "summary", out)
        lines += [f"## `{cfg.name}`", "", *sections,
                  f"Tables: `{tables}/results.csv` (one row per episode), `{tables}/summary.csv`.", ""]
    return atomic.write_text(out / "report.md", "\n".join(lines))
