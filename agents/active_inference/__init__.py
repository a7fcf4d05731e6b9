"""Active-inference agents (``agents.registry`` kind ``aif``): ``deep_aif``, a learned ensemble generative
model with planning by expected free energy (``deep.py``; torch, the ``rl`` extra).

Its settings are :class:`~agents.active_inference.deep.DeepAIFConfig`; the
outcomes it predicts and prefers, per env, are in ``outcomes.py``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from .deep import DeepAIFAgent, DeepAIFConfig

__all__ = ["DeepAIFAgent", "DeepAIFConfig", "ActiveInferenceKind", "KIND"]


class ActiveInferenceKind:
    """The active-inference agents in the experiments harness: they act and learn online from ``learn``."""

    saved_as = "agent"
    uses_torch = True

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        hints = typing.get_type_hints(DeepAIFConfig)
        return {f.name: hints[f.name] for f in dataclasses.fields(DeepAIFConfig)}

    def check(self, algo: str, settings: Any) -> None:
        from ..protocol import SettingError

        if settings.n_envs != 1:
            raise SettingError("n_envs", f"1 ({algo} acts and learns in one env)")
        if settings.action_noise is not None:
            raise SettingError("action_noise", f"null ({algo} explores by its information gain)")
        if settings.normalize_reward:  # (normalize_obs is moot: the model standardises its inputs and targets)
            raise SettingError("normalize_reward", f"false ({algo} never reads the reward)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' (the default: {algo} builds its own ensemble: see 'hidden')")
        try:
            DeepAIFConfig(**settings.hyperparams).check()
        except TypeError as err:
            raise SettingError(next(iter(settings.hyperparams), "algo"), f"a setting of {algo} ({err})") from None
        except ValueError as err:
            key, _, rest = str(err).partition(": expected ")
            raise SettingError(key, rest) if rest else SettingError("algo", f"valid settings ({err})") from None

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        """A Gymnasium env whose outcomes are known (``outcomes.OUTCOMES``), a Discrete or bounded Box action."""
        from ..protocol import SettingError
        from .outcomes import NAMES, OUTCOMES

        if spaces.parallel:
            raise SettingError("algo", f"an algorithm for this env ({algo} acts for one agent of a Gymnasium env)")
        env_id = getattr(spaces, "env_id", None)
        if env_id is not None and env_id not in OUTCOMES:
            raise SettingError("algo", f"an algorithm for this env ({algo} knows the outcomes of "
                                       f"{', '.join(OUTCOMES)}, not of {env_id})")
        unknown = sorted(set(settings.hyperparams.get("preference") or {}) - set(NAMES.get(env_id, ())))
        if env_id in NAMES and unknown:
            raise SettingError(f"preference.{unknown[0]}", f"one of {', '.join(NAMES[env_id])}")

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        return 1, ""

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any):
        return DeepAIFAgent(make_env, seed=seed, name=name, **settings.hyperparams)

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None):
        return DeepAIFAgent.load(path, make_env)


KIND = ActiveInferenceKind()
