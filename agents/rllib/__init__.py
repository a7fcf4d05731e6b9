"""RLlib agents (Ray): PPO on the project's Gymnasium and PettingZoo envs, in the experiments harness.

The kind ``rllib`` of ``agents.registry`` (algo ``rllib_ppo``): a config
names it on ``LayerSplit-v0``, ``Routing-v0`` or ``Vehicular-v0`` (every
vehicle sharing one policy) with :class:`~agents.rllib.agent.RLlibPPOConfig`
settings and ``n_envs`` env copies per env runner; runs land in the same
``runs/<exp>/<agent>/seed_<k>/`` layout, TensorBoard keys, checkpoints and
``--resume`` as every other kind. Needs the ``ray`` extra (Ray 2.60 pins
gymnasium 1.2.2). Ray starts on loopback, or joins ``RAY_ADDRESS``
(:mod:`agents.rllib.cluster`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

__all__ = ["RLlibKind", "KIND"]


class RLlibKind:
    """RLlib learners in the experiments harness (``agents.registry`` kind ``rllib``)."""

    saved_as = "agent"
    uses_torch = True
    update_scalars = True  #: learn's callback gets each iteration's losses (the harness logs them to TensorBoard)

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        from .agent import RLlibPPOConfig

        hints = typing.get_type_hints(RLlibPPOConfig)
        return {f.name: hints[f.name] for f in dataclasses.fields(RLlibPPOConfig)}

    def check(self, algo: str, settings: Any) -> None:
        from ..protocol import SettingError
        from .agent import RLlibPPOConfig

        if settings.action_noise is not None:
            raise SettingError("action_noise", f"null ({algo} samples its own policy)")
        if settings.normalize_obs or settings.normalize_reward:
            raise SettingError("normalize_obs" if settings.normalize_obs else "normalize_reward",
                               f"false ({algo} trains on the env's own observations and rewards)")
        if settings.policy != "MlpPolicy":
            raise SettingError("policy", f"'MlpPolicy' ({algo} builds RLlib's default module: see 'hidden')")
        hyper = {k: tuple(v) if k == "hidden" and isinstance(v, list) else v for k, v in settings.hyperparams.items()}
        try:
            RLlibPPOConfig(**hyper).check(settings.n_envs)
        except TypeError as err:
            raise SettingError(next(iter(hyper), "algo"), f"a setting of {algo} ({err})") from None
        except ValueError as err:
            key, _, rest = str(err).partition(": expected ")
            raise SettingError(key, rest) if rest else SettingError("algo", f"valid settings ({err})") from None

    def check_env(self, algo: str, spaces: Any, settings: Any) -> None:
        from ..protocol import SettingError

        if not hasattr(spaces.action_space, "n"):
            raise SettingError("algo", f"an algorithm for this env ({algo} needs discrete actions, got "
                                       f"{spaces.action_space}: continuous: false)")

    def step_unit(self, algo: str, settings: Any) -> tuple[int, str]:
        from .agent import RLlibPPOConfig

        unit = settings.hyperparams.get("train_batch_size", RLlibPPOConfig.train_batch_size)
        return unit, f"train_batch_size = {unit} (env steps per RLlib training iteration)"

    def worker_cpus(self, settings: Any) -> list[float]:
        """CPUs of each Ray worker a run starts besides its own process (env runners, then learners)."""
        from .agent import RLlibPPOConfig

        hyper = settings.hyperparams
        runners = hyper.get("num_env_runners", RLlibPPOConfig.num_env_runners)
        per_runner = hyper.get("cpus_per_env_runner", RLlibPPOConfig.cpus_per_env_runner)
        return [per_runner] * runners + [1.0] * hyper.get("num_learners", RLlibPPOConfig.num_learners)

    def build(self, algo: str, make_env: Callable[[], Any], *, seed: int, name: str, settings: Any):
        from .agent import RLlibAgent

        return RLlibAgent(make_env, seed=seed, name=name, n_envs=settings.n_envs, **settings.hyperparams)

    def load(self, algo: str, path, make_env: Callable[[], Any] | None = None, seed: int | None = None):
        from .agent import RLlibAgent

        return RLlibAgent.load(path, make_env, seed=seed)


KIND = RLlibKind()
