"""Multi-agent DRL for PettingZoo envs (the vehicular env): MAPPO and IPPO (``mappo.py``), MADDPG
(``maddpg.py``), sharing ``common.py``.

In the harness they are the kind ``madrl`` of ``agents.registry`` (algos
``mappo``, ``ippo``, ``fedppo``: federated IPPO, on discrete actions;
``maddpg`` on the Box actions of ``continuous: true``; ``multi_agent=True``):
a config names them on ``offload_env/Vehicular-v0`` with their
:class:`~agents.madrl.mappo.MAPPOConfig` or
:class:`~agents.madrl.maddpg.MADDPGConfig` settings, ``n_envs`` env copies and
``normalize_obs`` (a LayerNorm on the inputs). Needs torch (the ``rl`` extra).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable

from .maddpg import MADDPGAgent, MADDPGConfig
from .mappo import MAPPOAgent, MAPPOConfig

__all__ = ["MAPPOAgent", "MAPPOConfig", "MADDPGAgent", "MADDPGConfig", "MADRLKind", "KIND"]


class MADRLKind:
    """The MADRL learners in the experiments harness (``agents.registry`` kind ``madrl``)."""

    saved_as = "agent"
    uses_torch = True
    uses_device = True  #: trains on the config's ``device`` (cpu, auto, cuda)
    update_scalars = True  #: learn's callback gets each update's losses (the harness logs them to TensorBoard)

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        config = MADDPGConfig if algo == "maddpg" else MAPPOConfig
        hints = typing.get_type_hints(config)
        return {f.name: hints[f.name] for f in dataclasses.fields(config)}

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
            raise SettingError("action_noise", f"null ({algo} explores by its own rule)")
        if settings.normalize_reward:
            raise SettingError("normalize_reward", f"false ({algo} normalises its value targets instead)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' ({algo} builds its own actor and critic: see 'hidden')")
        if algo == "maddpg":
            try:
                MADDPGConfig(**self._settings(algo, settings.hyperparams)).check()
            except (TypeError, ValueError) as err:
                key, _, rest = str(err).partition(": expected ")
                raise SettingError(key, rest) if rest else SettingError("algo", f"valid settings ({err})") from None
            return
        try:
            config = MAPPOConfig(**self._settings(algo, settings.hyperparams))
        except TypeError as err:
            raise SettingError(next(iter(settings.hyperparams), "algo"), f"a setting of {algo} ({err})") from None
        if algo == "fedppo" and config.federated_every == 0:
            raise SettingError("federated_every", "an integer >= 1 for fedppo (use ippo for no averaging)")
        if algo != "fedppo" and config.federated_every:
            raise SettingError("federated_every", f"0 for {algo} (federated training is the algo fedppo)")
        try:
            config.check()
        except (TypeError, ValueError) as err:
            key, _, rest = str(err).partition(": expected ")
            raise SettingError(key, rest) if rest else SettingError("algo", f"valid settings ({err})") from None
        for key in ("learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef", "vf_coef", "max_grad_norm",
                    "huber_delta"):
            value = getattr(config, key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise SettingError(key, "a finite number")

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        """MADRL agents act for every agent of a PettingZoo env: discrete actions, or Box ones for MADDPG."""
        from ..protocol import SettingError

        if algo == "maddpg":
            if not spaces.parallel or hasattr(spaces.action_space, "n"):
                raise SettingError("algo", f"an algorithm for this env (maddpg needs a PettingZoo env with Box "
                                           f"actions: continuous: true, got {spaces.action_space})")
            return
        if not spaces.parallel or not hasattr(spaces.action_space, "n"):
            raise SettingError("algo", f"an algorithm for this env ({algo} needs a PettingZoo env with discrete "
                                       f"actions, got {spaces.action_space})")

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        if algo == "maddpg":
            unit = settings.hyperparams.get("train_every", MADDPGConfig.train_every) * settings.n_envs
            return unit, f"train_every x n_envs = {unit} (maddpg update rounds)"
        unit = settings.hyperparams.get("n_steps", MAPPOConfig.n_steps) * settings.n_envs
        return unit, f"n_steps x n_envs = {unit} ({algo} rollouts)"

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any):
        if algo == "maddpg":
            return MADDPGAgent(make_env, seed=seed, name=name, n_envs=settings.n_envs,
                               normalize_obs=settings.normalize_obs, device=settings.device,
                               **self._settings(algo, settings.hyperparams))
        return MAPPOAgent(make_env, seed=seed, name=name, centralised=algo == "mappo", n_envs=settings.n_envs,
                          normalize_obs=settings.normalize_obs, device=settings.device,
                          **self._settings(algo, settings.hyperparams))

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None,
             device: str = "cpu"):
        return (MADDPGAgent if algo == "maddpg" else MAPPOAgent).load(path, make_env, seed=seed, device=device)


KIND = MADRLKind()
