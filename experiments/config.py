"""Experiment configs: YAML validated against a dataclass schema before any work starts.

A config names the env (id + kwargs), the seeds, the baselines and the learned
agents with their hyper-parameters, zoo-style: an ``agents.default`` block is
merged under every agent. Every other key of an agent block is a constructor
argument of its SB3 algorithm, checked against the algorithm's signature and
type hints. Errors name the offending key (``agents.ddpg.learnin_rate``).
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from agents.imitation import ImitationSettings

__all__ = ["ConfigError", "EnvConfig", "EvalConfig", "AgentConfig", "TuneConfig", "ExperimentConfig", "load_config",
           "parse_config", "apply_overrides", "to_dict", "dump_yaml", "set_setting", "space_values"]


class ConfigError(ValueError):
    """A config key is unknown or its value is invalid; the message names the key, on one line."""

    def __init__(self, message: object = ""):
        # a key or value may hold a newline or another control character: shown escaped, the message stays one line
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


@dataclass
class EnvConfig:
    """Which environment, and how to build it."""

    id: str = "offload_env/LayerSplit-v0"
    """Gymnasium id (the module before '/' is imported first: ``offload_env`` registers its envs) or a
    PettingZoo id of ``offload_env.PARALLEL_ENVS`` (``offload_env/Vehicular-v0``)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env (LayerSplit, Routing: scenario, continuous, any scenario field;
    Vehicular: continuous, any VehicularScenario field)."""


@dataclass
class EvalConfig:
    """How runs are evaluated (the same code path for baselines and learned agents)."""

    episodes: int = 10
    """Episodes of the final evaluation of each run."""
    curve_episodes: int = 3
    """Episodes of each learning-curve evaluation during training."""
    seed: int = 1_000_000
    """Episode i of training seed k is evaluated on env seed ``seed + 1000 * k + i`` (disjoint from training)."""
    function: str = ""
    """``module:function`` with the signature of ``agents.baselines.evaluate`` (one row per episode);
    "" picks the env family's loop (experiments.families)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Merged over the env kwargs of every evaluation (baselines and agents; training keeps its own), e.g.
    Routing-v0's ``table_rows`` for queries that training never saw."""
    breakdown_keys: list[str] | None = None
    """``info`` keys averaged per episode into ``mean_<key>`` columns (the latency breakdown); missing keys
    skipped; null picks the env family's (LayerSplit: its latency parts; none for the others)."""


@dataclass
class NoiseConfig:
    """Exploration noise of DDPG/TD3 (in [-1, 1] action units)."""

    kind: str = "normal"
    """"normal" (Gaussian) or "ornstein-uhlenbeck"."""
    sigma: float = 0.1
    """Standard deviation."""
    theta: float = 0.15
    """Ornstein-Uhlenbeck mean-reversion rate."""
    dt: float = 1e-2
    """Ornstein-Uhlenbeck time step."""


@dataclass
class AgentConfig:
    """One learned agent. Keys not listed here are constructor arguments of its SB3 algorithm."""

    algo: str
    """Algorithm (a key of ``agents.registry.AGENTS``): ddpg, td3, maskable_ppo, ppo, dqn (SB3); linucb, lints,
    epsilon_greedy, cost_aware_linucb (bandits)."""
    budget: int
    """Training environment steps, in all; a finished run has taken exactly this many."""
    checkpoint_every: int = 0
    """Steps between checkpoints (0: a tenth of the budget); a killed run loses at most this many."""
    eval_every: int = 0
    """Steps between learning-curve evaluations, a multiple of checkpoint_every (0: every checkpoint)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Merged over ``env.kwargs`` for this agent (e.g. ``continuous: true`` for DDPG)."""
    n_envs: int = 1
    """Parallel copies of the env (SB3 DummyVecEnv)."""
    policy: str = "MlpPolicy"
    """SB3 policy name."""
    normalize_obs: bool = True
    """SB3: normalise observations with running statistics (saved with the model, frozen at evaluation)."""
    normalize_reward: bool = False
    """Scale rewards by a running estimate of the return's standard deviation (training only)."""
    action_noise: NoiseConfig | None = None
    """DDPG/TD3 exploration noise; null for none."""
    torch_threads: int = 1
    """Torch intra-op threads per run (small networks run fastest on one)."""
    device: str = "cpu"
    """Torch device that trains the agent (MADRL learners): cpu, auto (CUDA when present, else the CPU), cuda or
    cuda:N (refused where torch sees no such device). Evaluation and export read the weights on the CPU."""
    imitation: ImitationSettings | None = None
    """Before training, clone a teacher into the policy (``agents.imitation``): ``teacher`` (a baseline of the
    env's family, e.g. LayerSplit's full-information ``reference``), ``episodes`` (100) of it, then
    ``dagger_rounds`` (2) in which the student acts and the teacher labels, ``epochs`` (30), ``learning_rate``
    (1e-3), ``batch_size`` (256). Its env steps are recorded beside the budget, not in it. PPO and MaskablePPO."""
    eval_mode: str = ""
    """Final evaluation: "frozen" (act only) or "online" (bandits: keep learning through the evaluation
    episodes, judged by cumulative reward and regret); "" picks online for bandits, frozen otherwise."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """The algorithm's constructor arguments (written flat in YAML, beside the keys above)."""


@dataclass
class TuneConfig:
    """A hyper-parameter search of one agent (``python -m experiments sweep``): each trial, one value of every
    ``space`` key on each seed, is a normal run of the agent ``<agent>@<key>=<value>,...``."""

    agent: str = ""
    """The agent (a name of ``agents``) whose settings are searched; "" for the config's only agent."""
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Setting (dotted for nested ones: ``env_kwargs.cost_weight``) -> ``{grid: [values]}`` (every value),
    ``{choice: [values]}``, ``{uniform: [low, high]}``, ``{loguniform: [low, high]}`` or
    ``{randint: [low, high]}`` (inclusive; a random draw per sample)."""
    num_samples: int = 1
    """Random draws of the non-grid keys per point of the grid (the grid is crossed with the draws)."""
    search_seed: int = 0
    """Seed of the random draws: the same config searches the same points."""
    metric: str = "mean_return"
    """What ranks the trials: mean_return (higher is better) or cost_per_request (lower is better), the mean
    over the final evaluation's episodes, then over seeds."""
    max_concurrent: int = 0
    """Trials at once (0: as many as the Ray cluster's CPUs allow)."""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves for each trial's own process (an RLlib agent's env runners get theirs besides)."""


@dataclass
class ExperimentConfig:
    """A whole experiment: env, seeds, baselines and learned agents."""

    name: str
    """Experiment name; runs go to ``<runs_dir>/<name>/<agent>/seed_<k>/``."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment every agent and baseline runs in."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds; every agent and baseline runs once per seed."""
    baselines: list[str] = field(default_factory=list)
    """Baseline names of the env's family (LayerSplit: all-local, all-server, random, best-fixed, greedy, oracle
    (myopic), pacing, reference;
    Routing: always-cheapest, always-best, random, threshold, oracle; Vehicular: all-local, nearest-rsu,
    least-loaded-rsu, all-cloud, random, greedy) or ``module:factory`` paths."""
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    """Learned agents by name; an optional ``default`` block is merged under each; an agent with
    ``sweep: {KEY: [values]}`` is one agent per value, ``<name>@KEY=<value>``, with ``env_kwargs.KEY`` set."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    runs_dir: str = "runs"
    """Root folder of all runs (relative to the working directory unless absolute)."""
    tune: TuneConfig | None = None
    """The hyper-parameter search of ``python -m experiments sweep`` (null: none); ``run`` ignores it."""

    def agent_env_kwargs(self, agent: str | None) -> dict[str, Any]:
        """Env kwargs of ``agent`` (None: the baselines' env)."""
        extra = {} if agent is None else self.agents[agent].env_kwargs
        return {**self.env.kwargs, **extra}


# ---------------------------------------------------------------------------- type checking

_MISSING = object()


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked (and gently converted: int -> float, "1e-3" -> float, list -> tuple) against ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1 and dataclasses.is_dataclass(next(a for a in args if a is not type(None))):
            raise errors[0]  # an optional section: its own error names the bad key inside it
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"{where}: expected a {'finite ' if number is not None else ''}number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        vt = args[1] if args else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is collections.abc.Callable or tp is collections.abc.Callable:
        if callable(value):
            return value
        raise ConfigError(f"{where}: expected a callable, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: expected one of {typing.get_args(tp)}, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value  # a hint we cannot check (callables, schedules, ...): SB3 checks it


def _unknown(key: str, known, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}.{key}: unknown key{hint}; expected one of: {', '.join(sorted(known))}"
                       if where else f"{key}: unknown key{hint}; expected one of: {', '.join(sorted(known))}")


def _build(cls, raw: dict, where: str):
    """Instantiate dataclass ``cls`` from ``raw``, naming the first bad key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in raw:
        if key not in fields:
            raise _unknown(str(key), fields, where)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key missing")
    return cls(**values)


# ---------------------------------------------------------------------------- agents


def _algorithm_signature(algo: str, where: str) -> dict[str, Any]:
    """Settings of algorithm ``algo`` -> type hint, from its kind (agents.registry.KINDS)."""
    from agents.registry import AGENTS

    if algo not in AGENTS:
        raise ConfigError(f"{where}.algo: expected one of {', '.join(AGENTS)}, got {algo!r}")
    try:
        return AGENTS[algo].impl.hyperparameters(algo)
    except ImportError as err:
        raise ConfigError(f"{where}.algo: {err}") from None


_AGENT_FIELDS = {f.name for f in dataclasses.fields(AgentConfig)} - {"hyperparams"}


def _build_agent(raw: dict, where: str) -> AgentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of agent settings, got {raw!r}")
    if "algo" not in raw:
        from agents.registry import AGENTS

        raise ConfigError(f"{where}.algo: required key missing (one of {', '.join(AGENTS)})")
    own = {k: v for k, v in raw.items() if k in _AGENT_FIELDS}
    hyper = {k: v for k, v in raw.items() if k not in _AGENT_FIELDS}
    hyper.update(raw.get("hyperparams") or {})
    own.pop("hyperparams", None)
    algo = _coerce(own["algo"], str, f"{where}.algo")
    signature = _algorithm_signature(algo, where)
    checked = {}
    for key, value in hyper.items():
        if key not in signature:
            raise _unknown(key, signature.keys() | _AGENT_FIELDS, where)
        checked[key] = _coerce(value, signature[key], f"{where}.{key}")
    agent = _build(AgentConfig, {**own, "hyperparams": checked}, where)
    _check_agent(agent, where)
    return agent


def _setting_value(a: AgentConfig, key: str) -> Any:
    """The value of a (dotted: ``policy_kwargs.net_arch``) setting of ``a``; _MISSING if it has none."""
    first, *rest = key.split(".")
    node = getattr(a, first) if first in _AGENT_FIELDS else a.hyperparams.get(first, _MISSING)
    for part in rest:
        node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
    return node


def _setting_error(err, a: AgentConfig, where: str) -> ConfigError:
    """An ``agents.protocol.SettingError`` of agent ``a`` as a ConfigError naming its config path."""
    value = _setting_value(a, err.key)
    got = "" if "got " in err.expected or value is _MISSING else f", got {value!r}"
    return ConfigError(f"{where}.{err.key}: expected {err.expected}{got}")


def _check_agent(a: AgentConfig, where: str) -> None:
    from agents.protocol import SettingError
    from agents.registry import AGENTS

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            value = getattr(a, key) if hasattr(a, key) else a.hyperparams.get(key)
            raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")

    need(a.budget >= 1, "budget", "an integer >= 1")
    need(a.n_envs >= 1, "n_envs", "an integer >= 1")
    need(a.torch_threads >= 1, "torch_threads", "an integer >= 1")
    need(a.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0: a tenth of the budget)")
    need(a.eval_every >= 0, "eval_every", "an integer >= 0 (0: every checkpoint)")
    if a.action_noise is not None:
        noise = a.action_noise
        for key, ok, expected in (("sigma", noise.sigma >= 0, "a number >= 0"),
                                  ("theta", noise.theta >= 0, "a number >= 0"),
                                  ("dt", noise.dt > 0, "a number > 0")):
            if not ok:
                raise ConfigError(f"{where}.action_noise.{key}: expected {expected}, got {getattr(noise, key)!r}")
    family = AGENTS[a.algo]
    if a.imitation is not None:
        im = a.imitation
        if not getattr(family.impl, "imitates", lambda algo: False)(a.algo):
            raise ConfigError(f"{where}.imitation: expected null ({a.algo} cannot clone a teacher; ppo and "
                              f"maskable_ppo can), got {dataclasses.asdict(im)!r}")
        for key, ok, expected in (("episodes", im.episodes >= 1, "an integer >= 1"),
                                  ("dagger_rounds", im.dagger_rounds >= 0, "an integer >= 0"),
                                  ("epochs", im.epochs >= 1, "an integer >= 1"),
                                  ("learning_rate", im.learning_rate > 0 and math.isfinite(im.learning_rate),
                                   "a number > 0"),
                                  ("batch_size", im.batch_size >= 1, "an integer >= 1")):
            if not ok:
                raise ConfigError(f"{where}.imitation.{key}: expected {expected}, got {getattr(im, key)!r}")
    if a.device != "cpu":
        if not getattr(family.impl, "uses_device", False):
            raise ConfigError(f"{where}.device: expected 'cpu' ({a.algo} trains on the CPU), got {a.device!r}")
        from agents.devices import torch_device

        try:
            torch_device(a.device)
        except ValueError as err:
            raise ConfigError(f"{where}.{err}") from None
    if a.eval_mode == "":
        a.eval_mode = "online" if family.online else "frozen"
    need(a.eval_mode in (("frozen", "online") if family.online else ("frozen",)), "eval_mode",
         "'frozen' or 'online'" if family.online else f"'frozen' ({a.algo} does not learn while evaluated)")
    try:
        family.impl.check(a.algo, a)
        unit, why = family.impl.step_unit(a.algo, a)
    except SettingError as err:
        raise _setting_error(err, a, where) from None
    if a.checkpoint_every == 0:
        a.checkpoint_every = max(a.budget // 10, 1)
    a.checkpoint_every = max(unit, a.checkpoint_every // unit * unit)  # training advances in whole units
    need(a.budget % unit == 0, "budget", f"a multiple of {why}")
    if a.eval_every == 0:
        a.eval_every = a.checkpoint_every
    need(a.eval_every % a.checkpoint_every == 0, "eval_every", f"a multiple of checkpoint_every = {a.checkpoint_every}")


# ---------------------------------------------------------------------------- whole configs


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_config(raw: dict, source: str = "config", *, check_envs: bool = True) -> ExperimentConfig:
    """Validate a config mapping (as read from YAML) into an :class:`ExperimentConfig`.

    With ``check_envs`` (the default) every distinct env of the config is built once (per process) and each
    agent's kind checks its spaces; off, only the config's own keys are checked (no env is built)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = dict(raw)
    agents_raw = raw.pop("agents", None) or {}
    if not isinstance(agents_raw, dict):
        raise ConfigError(f"agents: expected a mapping of agent name -> settings, got {agents_raw!r}")
    if not isinstance(raw.get("env"), dict):
        raise ConfigError("env: required key missing (e.g. env: {id: offload_env/LayerSplit-v0, kwargs: {}})"
                          if raw.get("env") is None else
                          f"env: expected a mapping with id and kwargs, got {raw['env']!r}")
    if "id" not in raw["env"]:
        raise ConfigError("env.id: required key missing (e.g. offload_env/LayerSplit-v0)")
    for name, body in agents_raw.items():
        if not isinstance(name, str) or not name or "/" in name or any(c.isspace() or not c.isprintable()
                                                                       for c in name):
            raise ConfigError(f"agents: agent names must be non-empty strings without '/' or spaces, got {name!r}")
        if body is not None and not isinstance(body, dict):
            raise ConfigError(f"agents.{name}: expected a mapping of agent settings, got {body!r}")
    cfg = _build(ExperimentConfig, raw, "")
    _check_env(cfg)
    default = agents_raw.get("default") or {}
    merged = _expand_sweeps({name: _merge(default, body or {}) for name, body in agents_raw.items()
                             if name != "default"})
    for name, body in merged.items():  # an algorithm of the wrong kind for the env: refused before its settings
        _check_algo_for_env(body, cfg.env.id, f"agents.{name}.algo")
    cfg.agents = {name: _build_agent(body, f"agents.{name}") for name, body in merged.items()}
    _check_experiment(cfg)
    if cfg.tune is not None:
        _check_tune(cfg, merged)
    if check_envs:
        _check_envs(cfg)
    return cfg


def _expand_sweeps(agents: dict) -> dict:
    """Each agent with ``sweep: {KEY: [v1, v2, ...]}`` becomes one agent per value, ``<name>@KEY=<v>``, whose
    ``env_kwargs`` set KEY to that value (e.g. the cost weight lambda of Routing-v0)."""
    out = {}
    for name, body in agents.items():
        sweep = body.get("sweep") if isinstance(body, dict) else None
        if sweep is None:
            out[name] = body
            continue
        where = f"agents.{name}.sweep"
        if not isinstance(sweep, dict) or len(sweep) != 1:
            raise ConfigError(f"{where}: expected one env kwarg -> a list of values (e.g. "
                              f"{{cost_weight: [100, 300, 1000]}}), got {sweep!r}")
        ((key, values),) = sweep.items()
        if not isinstance(values, list) or not values or len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{where}.{key}: expected a non-empty list of distinct values, got {values!r}")
        base = {k: v for k, v in body.items() if k != "sweep"}
        for value in values:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            out[f"{name}@{key}={shown}"] = {**base, "env_kwargs": {**(base.get("env_kwargs") or {}), key: value}}
    return out


def _check_algo_for_env(body, env_id: str, where: str) -> None:
    from agents.registry import AGENTS, check_algo_for_env

    algo = body.get("algo") if isinstance(body, dict) else None
    if isinstance(algo, str) and algo in AGENTS:
        try:
            check_algo_for_env(algo, env_id, where=where)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_env(cfg: ExperimentConfig) -> None:
    import gymnasium as gym
    import importlib

    module = cfg.env.id.split("/")[0] if "/" in cfg.env.id else None
    if module and module not in ("", "gymnasium"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    from offload_env import ENV_IDS, PARALLEL_ENVS, is_parallel_env

    if not is_parallel_env(cfg.env.id):
        try:
            gym.spec(cfg.env.id)
        except gym.error.Error as err:
            raise ConfigError(f"env.id: {cfg.env.id!r}: {err} Expected a registered Gymnasium id (this project's: "
                              f"{', '.join(ENV_IDS)}) or a PettingZoo id of offload_env.PARALLEL_ENVS "
                              f"({', '.join(PARALLEL_ENVS)})") from None


def _check_experiment(cfg: ExperimentConfig) -> None:
    from .registry import check_baseline_name

    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name: expected a non-empty name without '/', got {cfg.name!r}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) or min(cfg.seeds) < 0:
        raise ConfigError(f"seeds: expected distinct integers >= 0, got {cfg.seeds!r}")
    for i, name in enumerate(cfg.baselines):
        check_baseline_name(name, f"baselines[{i}]", cfg.env.id)
    for name, agent in cfg.agents.items():
        if agent.imitation is not None:
            check_baseline_name(agent.imitation.teacher, f"agents.{name}.imitation.teacher", cfg.env.id)
    clash = set(cfg.baselines) & set(cfg.agents)
    if clash:
        raise ConfigError(f"agents.{sorted(clash)[0]}: the name is also a baseline; rename the agent")
    for name in cfg.agents:
        if not name or "/" in name:
            raise ConfigError(f"agents.{name}: agent names must be non-empty and without '/'")
    ev = cfg.evaluation
    if ev.episodes < 1 or ev.curve_episodes < 1:
        raise ConfigError(f"evaluation.episodes: expected integers >= 1, got {ev.episodes}, {ev.curve_episodes}")
    from .families import family_of

    family = family_of(cfg.env.id)
    if ev.function == "":
        if family is None:
            raise ConfigError(f"evaluation.function: {cfg.env.id} belongs to no env family; name the episode loop "
                              "('module:function')")
        ev.function = family.evaluate
    if ev.breakdown_keys is None:
        ev.breakdown_keys = list(family.breakdown_keys) if family is not None else []
    if ":" not in ev.function:
        raise ConfigError(f"evaluation.function: expected 'module:function', got {ev.function!r}")
    if ev.seed < 0:
        raise ConfigError(f"evaluation.seed: expected an integer >= 0, got {ev.seed!r}")
    from .registry import import_object

    if not callable(import_object(ev.function, "evaluation.function")):
        raise ConfigError(f"evaluation.function: {ev.function!r} is not a function")


_SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


def set_setting(body: dict, key: str, value: Any) -> dict:
    """A copy of the agent mapping ``body`` with the (dotted) setting ``key`` set to ``value``."""
    out = copy.deepcopy(body)
    _set_path(out, key.split("."), value, key)
    return out


def _set_path(root: dict, path: list[str], value: Any, where: str) -> None:
    """Set ``root[path[0]]...[path[-1]] = value``, making missing mappings on the way."""
    node = root
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(path[:-1])} is not a mapping")
        node = child
    node[path[-1]] = value


def space_values(spec: Any, where: str) -> tuple[str, list]:
    """(kind, its list) of one ``tune.space`` entry, checked; the values a config check tries."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _SPACE_KINDS:
        raise ConfigError(f"{where}: expected one of {{grid: [..]}}, {{choice: [..]}}, {{uniform: [low, high]}}, "
                          f"{{loguniform: [low, high]}}, {{randint: [low, high]}}, got {spec!r}")
    ((kind, values),) = spec.items()
    where = f"{where}.{kind}"
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: expected a non-empty list, got {values!r}")
    if kind in ("grid", "choice"):
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{where}: expected distinct values, got {values!r}")
        return kind, values
    number = int if kind == "randint" else float
    bounds = [_coerce(v, number, f"{where}[{i}]") for i, v in enumerate(values)]
    if len(bounds) != 2 or not bounds[0] < bounds[1] or (kind == "loguniform" and bounds[0] <= 0):
        low = "0 < low < high" if kind == "loguniform" else "low < high"
        raise ConfigError(f"{where}: expected [low, high] with {low}, got {values!r}")
    return kind, bounds


def _check_tune(cfg: ExperimentConfig, merged: dict) -> None:
    """The search names one of the config's agents and every value it can try is a valid setting of it."""
    tune = cfg.tune
    names = list(merged)
    if tune.agent == "":
        if len(names) != 1:
            raise ConfigError(f"tune.agent: expected the name of the agent to search (one of: {', '.join(names)})"
                              if names else "tune.agent: the config has no learned agent to search")
        tune.agent = names[0]
    if tune.agent not in merged:
        raise ConfigError(f"tune.agent: expected one of: {', '.join(names) or '(no agents)'}, got {tune.agent!r}")
    if not tune.space:
        raise ConfigError("tune.space: expected at least one setting (e.g. {learning_rate: {loguniform: "
                          "[1.0e-4, 1.0e-3]}})")
    checks = (("num_samples", tune.num_samples >= 1, "an integer >= 1"),
              ("search_seed", tune.search_seed >= 0, "an integer >= 0"),
              ("metric", tune.metric in ("mean_return", "cost_per_request"), "'mean_return' or 'cost_per_request'"),
              ("max_concurrent", tune.max_concurrent >= 0, "an integer >= 0 (0: as the CPUs allow)"),
              ("cpus_per_trial", tune.cpus_per_trial > 0, "a number > 0"))
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"tune.{key}: expected {expected}, got {getattr(tune, key)!r}")
    body = merged[tune.agent]
    for key, spec in tune.space.items():
        where = f"tune.space.{key}"
        if key in ("algo", "budget") or key.split(".")[0] in ("algo", "sweep"):
            raise ConfigError(f"{where}: {key} is not searched (a trial trains the agent's algo to its budget)")
        _, values = space_values(spec, where)
        for value in values:
            try:
                _build_agent(set_setting(body, key, value), f"agents.{tune.agent}")
            except ConfigError as err:
                raise ConfigError(f"{where}: {value!r} is not a valid {key} ({err})") from None


#: Envs (id and kwargs) already built once in this process: their action and observation spaces.
_ENV_SPACES: dict[str, Any] = {}


def _env_spaces(env_id: str, kwargs: dict, sources: list[tuple[str, dict]]):
    """Build the env ``env_id(**kwargs)`` once (per process) and return its spaces; a ValueError or TypeError
    of its constructor becomes a ConfigError naming the config key it blames (``sources``: where each part of
    ``kwargs`` comes from, in merge order)."""
    from types import SimpleNamespace

    from .registry import env_factory

    try:
        key = repr((env_id, sorted(kwargs.items(), key=lambda kv: str(kv[0]))))
    except TypeError:
        key = None
    if key is not None and key in _ENV_SPACES:
        return _ENV_SPACES[key]
    try:
        env = env_factory(env_id, kwargs)()
    except (TypeError, ValueError, AssertionError) as err:  # gymnasium's wrappers assert on their arguments
        raise ConfigError(f"{_blame(err, sources)}: {_one_line(err)}") from None
    try:
        agents = getattr(env, "possible_agents", None)
        if agents is not None:  # a PettingZoo ParallelEnv: the spaces of its first agent
            spaces = SimpleNamespace(action_space=env.action_space(agents[0]),
                                     observation_space=env.observation_space(agents[0]), parallel=True,
                                     env_id=env_id)
        else:
            spaces = SimpleNamespace(action_space=env.action_space, observation_space=env.observation_space,
                                     parallel=False, env_id=env_id)
    finally:
        try:
            env.close()
        except Exception:  # noqa: BLE001 - closing a probe env must not hide the config's verdict
            pass
    if key is not None:
        _ENV_SPACES[key] = spaces
    return spaces


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    cut = text.find(" was raised from the environment creator")  # gymnasium's suffix repeats the kwargs
    return text[:cut] if cut > 0 else text


def _blame(err: BaseException, sources: list[tuple[str, dict]]) -> str:
    """The config key an env constructor's error names (the kwarg mentioned first), else the last source."""
    import re

    text = str(err)
    found = []
    for prefix, part in sources:
        for key in part:
            m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(str(key))}(?![A-Za-z0-9_])", text)
            if m:
                found.append((m.start(), -len(str(key)), prefix, key))
    if found:
        _, _, _, key = min(found)
        prefix = [p for p, part in sources if key in part][-1]  # the source whose value wins the merge
        return f"{prefix}.{key}"
    named = [p for p, part in sources if part]
    return named[-1] if named else sources[0][0]


def _check_envs(cfg: ExperimentConfig) -> None:
    """Build each distinct env of ``cfg`` once (baselines' and every agent's, for training and evaluation) and
    let each agent's kind check the env's spaces: a bad env kwarg or an algorithm that cannot act in its env
    fails here, before any run starts or writes."""
    from agents.protocol import SettingError
    from agents.registry import AGENTS

    base, ev = ("env.kwargs", cfg.env.kwargs), ("evaluation.env_kwargs", cfg.evaluation.env_kwargs)
    plans: list[tuple[str | None, list[tuple[str, dict]]]] = []
    if cfg.baselines or not cfg.agents:
        plans.append((None, [base]))
    for name, agent in cfg.agents.items():
        plans.append((name, [base, (f"agents.{name}.env_kwargs", agent.env_kwargs)]))
    for name, sources in plans + [(None, [*s, ev]) for _, s in plans if cfg.evaluation.env_kwargs]:
        kwargs = {}
        for _, part in sources:
            kwargs.update(part)
        spaces = _env_spaces(cfg.env.id, kwargs, sources)
        if name is None or len(sources) > 2:
            continue
        agent = cfg.agents[name]
        check_env = getattr(AGENTS[agent.algo].impl, "check_env", None)
        if check_env is None:
            continue
        try:
            check_env(agent.algo, spaces, agent)
        except SettingError as err:
            raise _setting_error(err, agent, f"agents.{name}") from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE (e.g. agent.learning_rate=1e-3)")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item}: bad key {key!r}")
    return parts, yaml.safe_load(text) if text.strip() else ""


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides (dotted keys, YAML values) to a raw config mapping.

    ``agent.KEY=V`` sets KEY on every learned agent; ``agents.NAME.KEY=V`` on one.
    Values are type-checked when the result is parsed.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        parts, value = _parse_override(item)
        if parts[0] == "agent":
            if len(parts) < 2:
                raise ConfigError(f"--set {item}: expected agent.KEY=VALUE")
            names = [n for n in (raw.get("agents") or {}) if n != "default"]
            if not names:
                raise ConfigError(f"--set {item}: the config has no learned agents")
            targets = [["agents", n, *parts[1:]] for n in names]
        else:
            targets = [parts]
        for path in targets:
            _set_path(raw, path, value, f"--set {item}")
    return raw


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_envs: bool = True
                ) -> ExperimentConfig:
    """Read, override and validate a YAML config. Raises :class:`ConfigError` naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if isinstance(raw, dict) and "suite" in raw:
        raise ConfigError(f"{path}: a suite of experiments, not one (read it with experiments.suite.load_suite; "
                          "the command line takes either)")
    return parse_config(apply_overrides(raw or {}, list(overrides)), source=str(path), check_envs=check_envs)


def to_dict(cfg: ExperimentConfig) -> dict:
    """The resolved config as plain data (agents flat, zoo-style); ``parse_config`` reads it back."""
    d = dataclasses.asdict(cfg)
    for name, agent in d["agents"].items():
        if agent["imitation"] is None:  # absent unless asked for: runs recorded before the key stay current
            del agent["imitation"]
        hyper = agent.pop("hyperparams")
        agent.update({k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()})
    return d


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
