"""Gymnasium and PettingZoo environments (they compose profiles, costs and channel); the ``envs`` extra."""

try:
    import gymnasium as _gymnasium  # noqa: F401
    import numba as _numba  # noqa: F401
    import pettingzoo as _pettingzoo  # noqa: F401
except ImportError as _err:  # the light core only: say what to install
    raise ImportError(f"offload_env.envs needs the 'envs' extra (pip install 'offload-env[envs]'): {_err}") from _err

from .layer_split import PRESETS as LAYER_SPLIT_PRESETS
from .layer_split import LayerSplitEnv, LayerSplitScenario, LayerSplitVectorEnv
from .routing import PRESETS as ROUTING_PRESETS
from .routing import PoolMember, RoutingEnv, RoutingScenario, RoutingVectorEnv

__all__ = ["LayerSplitEnv", "LayerSplitVectorEnv", "LayerSplitScenario", "LAYER_SPLIT_PRESETS", "RoutingEnv",
           "RoutingVectorEnv", "RoutingScenario", "PoolMember", "ROUTING_PRESETS"]
