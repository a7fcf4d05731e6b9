"""Multi-agent DRL for PettingZoo envs (the vehicular env): MAPPO and IPPO (``mappo.py``), sharing ``common.py``.

In the harness they are the kind ``madrl`` of ``agents.registry`` (algos
``mappo``, ``ippo``, ``fedppo``: federated IPPO; ``multi_agent=True``): a config names them on
``offload_env/Vehicular-v0`` with their :class:`~agents.madrl.mappo.MAPPOConfig`
settings, ``n_envs`` env copies and ``normalize_obs`` (a LayerNorm on the
inputs). Needs torch (the ``rl`` extra).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from .mappo import MAPPOAgent, MAPPOConfig

__all__ = ["MAPPOAgent", "MAPPOConfig", "MADRLKind", "KIND"]


class MADRLKind:
    """The MADRL learners in the experiments harness (``agents.registry`` kind ``madrl``)."""

    saved_as = "agent"
    uses_torch = True

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        hints = typing.get_type_hints(MAPPOConfig)
        return {f.name: hints[f.name] for f in dataclasses.fields(MAPPOConfig)}

    @staticmethod
    def _settings(algo: str, hyperparams: dict) -> dict:
        out = {k: tuple(v) if k == "hidden" else v for k, v in hyperparams.items()}
        if algo == "fedppo":  # per-agent actors and local critics, averaged every few updates
            out.setdefault("share_actor", False)
            out.setdefault("federated_every", 5)
        return out

    def check(self, algo: str, settings: Any) -> None:
        from ..protocol import SettingError

        if settings.action_noise is not None:
            raise SettingError("action_noise", f"null ({algo} samples its masked discrete actions)")
        if settings.normalize_reward:
            raise SettingError("normalize_reward", f"false ({algo} normalises its value targets instead)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' ({algo} builds its own actor and critic: see 'hidden')")
        config = MAPPOConfig(**self._settings(algo, settings.hyperparams))
        if algo == "fedppo" and config.federated_every == 0:
            raise SettingError("federated_every", "an integer >= 1 for fedppo (use ippo for no averaging)")
        if algo != "fedppo" and config.federated_every:
            raise SettingError("federated_every", f"0 for {algo} (federated training is the algo fedppo)")
        try:
            config.check()
        except ValueError as err:
            key, _, rest = str(err).partition(": expected ")
            raise SettingError(key, rest) from None

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        unit = settings.hyperparams.get("n_steps", MAPPOConfig.n_steps) * settings.n_envs
        return unit, f"n_steps x n_envs = {unit} ({algo} rollouts)"

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any) -> MAPPOAgent:
        return MAPPOAgent(make_env, seed=seed, name=name, centralised=algo == "mappo", n_envs=settings.n_envs,
                          normalize_obs=settings.normalize_obs, **self._settings(algo, settings.hyperparams))

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None
             ) -> MAPPOAgent:
        return MAPPOAgent.load(path, make_env, seed=seed)


KIND = MADRLKind()
