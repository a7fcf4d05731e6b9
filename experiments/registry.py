"""Names in configs -> objects: env factories, baseline policies, learned agents, the evaluation function."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import gymnasium as gym

__all__ = ["env_factory", "scenario_label", "action_space_label", "check_baseline_name",
           "make_baseline", "make_agent", "agent_kind", "agent_file", "load_agent", "import_object"]


def import_object(path: str, where: str = "") -> Any:
    """``module:attribute`` -> the object."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        from .config import ConfigError

        raise ConfigError(f"{where or path}: cannot import {path!r}: {err}") from None


def _import_namespace(env_id: str) -> None:
    """Import the module before '/' of a Gymnasium id (it registers its envs), if there is one."""
    if "/" in env_id:
        try:
            importlib.import_module(env_id.split("/")[0])
        except ImportError:
            pass


def env_factory(env_id: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    """A zero-argument factory of ``gymnasium.make(env_id, **kwargs)``, or of the PettingZoo ParallelEnv
    registered as ``env_id`` (``offload_env.make_parallel``); it also works in another process (a Ray worker),
    where the env's module may not be imported yet."""
    _import_namespace(env_id)
    kwargs = dict(kwargs)
    from offload_env import is_parallel_env, make_parallel

    if is_parallel_env(env_id):
        def make_parallel_env():
            return make_parallel(env_id, **kwargs)

        return make_parallel_env

    def make() -> gym.Env:
        _import_namespace(env_id)
        return gym.make(env_id, **kwargs)

    return make


def scenario_label(kwargs: dict[str, Any]) -> str:
    """The scenario name of an env's kwargs: the preset (or 'default') plus overridden fields."""
    base = str(kwargs.get("scenario") or "default")
    extra = sorted(k for k in kwargs if k not in ("scenario", "continuous", "render_mode"))
    return base + "".join(f"+{k}={kwargs[k]}" for k in extra)


def action_space_label(kwargs: dict[str, Any]) -> str:
    return "continuous" if kwargs.get("continuous") else "discrete"


# ---------------------------------------------------------------------------- baselines


def _family_baselines(env_id: str) -> dict[str, str]:
    from .families import family_of

    family = family_of(env_id)
    return {} if family is None else family.baselines


def check_baseline_name(name: str, where: str, env_id: str) -> None:
    """A baseline name of ``env_id``'s family (experiments.families) or an importable ``module:factory``."""
    from .config import ConfigError

    if not isinstance(name, str):
        raise ConfigError(f"{where}: expected a baseline name, got {name!r}")
    known = _family_baselines(env_id)
    if ":" in name:
        import_object(name, where)
    elif name not in known:
        raise ConfigError(f"{where}: unknown baseline {name!r} for {env_id}; expected one of "
                          f"{', '.join(known) or '(none)'} or a 'module:factory' path")


def baseline_label(name: str) -> str:
    return name.rsplit(":", 1)[-1] if ":" in name else name


def make_baseline(name: str, make_env: Callable[[], gym.Env], seed: int, env_id: str):
    """Build baseline ``name``; its factory is called with whichever of make_env, seed it accepts."""
    factory = import_object(name if ":" in name else _family_baselines(env_id)[name])
    params = inspect.signature(factory).parameters
    policy = factory(**{k: v for k, v in (("make_env", make_env), ("seed", seed)) if k in params})
    policy.name = baseline_label(name)
    return policy


# ---------------------------------------------------------------------------- learned agents


def make_agent(name: str, agent_cfg, make_env: Callable[[], gym.Env], seed: int):
    """A fresh agent for an :class:`~experiments.config.AgentConfig`, built by its kind (agents.registry)."""
    from agents.registry import agent_family

    return agent_family(agent_cfg.algo).build(make_env, seed=seed, name=name, settings=agent_cfg)


def agent_kind(algo: str):
    """The :class:`agents.protocol.AgentKind` of ``algo``."""
    from agents.registry import agent_family

    return agent_family(algo).impl


def agent_file(algo: str) -> str:
    """Name of a saved agent inside a run or checkpoint folder (SB3's zip, a folder for the bandits...)."""
    return agent_kind(algo).saved_as


def load_agent(algo: str, path, make_env: Callable[[], gym.Env] | None = None, seed: int | None = None,
               device: str = "cpu"):
    """Load an agent saved by the runner (onto ``device``, for kinds that train on one). SB3 zips unpickle: only
    runs you made or trust; bandits hold no pickle."""
    from agents.registry import agent_family

    return agent_family(algo).load(path, make_env, seed=seed, **({"device": device} if device != "cpu" else {}))
