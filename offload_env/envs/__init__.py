"""Gymnasium and PettingZoo environments (they compose profiles, costs and channel)."""

from .layer_split import PRESETS as LAYER_SPLIT_PRESETS
from .layer_split import LayerSplitEnv, LayerSplitScenario, LayerSplitVectorEnv
from .routing import PRESETS as ROUTING_PRESETS
from .routing import PoolMember, RoutingEnv, RoutingScenario, RoutingVectorEnv

__all__ = ["LayerSplitEnv", "LayerSplitVectorEnv", "LayerSplitScenario", "LAYER_SPLIT_PRESETS", "RoutingEnv",
           "RoutingVectorEnv", "RoutingScenario", "PoolMember", "ROUTING_PRESETS"]
