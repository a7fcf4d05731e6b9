"""Active-inference agents (``agents.registry`` kind ``aif``): ``deep_aif``, a learned ensemble generative
model with planning by expected free energy (``deep.py``; torch, the ``rl`` extra), and ``pymdp_aif``, a
discrete POMDP over binned observations with pymdp (``discrete.py``; JAX, the ``aif`` extra).

Their settings are :class:`~agents.active_inference.deep.DeepAIFConfig` and
:class:`~agents.active_inference.discrete.PymdpAIFConfig`; the outcomes the
deep agent predicts and prefers, per env, are in ``outcomes.py``, the pymdp
agent's discretisation in ``discrete.MODELS``. Each imports its stack only
when used.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

__all__ = ["DeepAIFAgent", "DeepAIFConfig", "PymdpAIFAgent", "PymdpAIFConfig", "ActiveInferenceKind", "KIND", "PYMDP_KIND"]


def __getattr__(name: str):
    if name in ("DeepAIFConfig", "PymdpAIFConfig"):
        from . import config

        return getattr(config, name)
    if name == "DeepAIFAgent":
        from . import deep

        return getattr(deep, name)
    if name == "PymdpAIFAgent":
        from . import discrete

        return getattr(discrete, name)
    raise AttributeError(name)


class ActiveInferenceKind:
    """The active-inference agents in the experiments harness: they act and learn online from ``learn``. One
    object per stack: ``KIND`` (deep_aif, torch) and ``PYMDP_KIND`` (pymdp_aif, JAX)."""

    saved_as = "agent"

    def __init__(self, deep: bool):
        self.deep = deep
        self.uses_torch = deep  #: the harness sets torch's thread count (pymdp runs without torch)

    def _config(self):
        from .config import DeepAIFConfig, PymdpAIFConfig

        return DeepAIFConfig if self.deep else PymdpAIFConfig

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        config = self._config()
        hints = typing.get_type_hints(config)
        return {f.name: hints[f.name] for f in dataclasses.fields(config)}

    def check(self, algo: str, settings: Any) -> None:
        from ..protocol import SettingError

        if settings.n_envs != 1:
            raise SettingError("n_envs", f"1 ({algo} acts and learns in one env)")
        if settings.action_noise is not None:
            raise SettingError("action_noise", f"null ({algo} explores by its information gain)")
        if settings.normalize_reward:  # (normalize_obs is moot: the agents bin or standardise what they read)
            raise SettingError("normalize_reward", f"false ({algo} never reads the reward)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' (the default: {algo} builds its own model)")
        hyper = {k: tuple(v) if k == "hidden" and isinstance(v, list) else v for k, v in settings.hyperparams.items()}
        try:
            self._config()(**hyper).check()
        except TypeError as err:
            raise SettingError(next(iter(settings.hyperparams), "algo"), f"a setting of {algo} ({err})") from None
        except ValueError as err:
            key, _, rest = str(err).partition(": expected ")
            raise SettingError(key, rest) if rest else SettingError("algo", f"valid settings ({err})") from None

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        """A Gymnasium env this agent has a model of (``outcomes.OUTCOMES`` / ``discrete.MODELS``); pymdp_aif
        needs Discrete actions."""
        from ..protocol import SettingError
        from .outcomes import NAMES, check_preference

        if spaces.parallel:
            raise SettingError("algo", f"an algorithm for this env ({algo} acts for one agent of a Gymnasium env)")
        env_id = getattr(spaces, "env_id", None)
        if env_id is not None and env_id not in NAMES:
            raise SettingError("algo", f"an algorithm for this env ({algo} has a model of {', '.join(NAMES)}, not "
                                       f"of {env_id})")
        if not self.deep:
            import importlib.util

            if importlib.util.find_spec("pymdp") is None:
                raise SettingError("algo", f"an installed algorithm ({algo} needs the 'aif' extra: pip install "
                                           "'offload-env[aif]')")
        if not self.deep and not hasattr(spaces.action_space, "n"):
            raise SettingError("algo", f"an algorithm for this env ({algo} needs Discrete actions, got "
                                       f"{spaces.action_space})")
        if self.deep and env_id in NAMES:
            try:
                check_preference(NAMES[env_id], settings.hyperparams.get("preference"))
            except ValueError as err:
                key, _, rest = str(err).partition(": expected ")
                raise SettingError(key, rest) from None

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        return 1, ""

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any):
        if self.deep:
            from .deep import DeepAIFAgent

            return DeepAIFAgent(make_env, seed=seed, name=name, **settings.hyperparams)
        from .discrete import PymdpAIFAgent

        return PymdpAIFAgent(make_env, seed=seed, name=name, **settings.hyperparams)

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None):
        if self.deep:
            from .deep import DeepAIFAgent

            return DeepAIFAgent.load(path, make_env)
        from .discrete import PymdpAIFAgent

        return PymdpAIFAgent.load(path, make_env)


KIND = ActiveInferenceKind(deep=True)
PYMDP_KIND = ActiveInferenceKind(deep=False)
