"""offload-env: RL environments for edge-cloud LLM inference offloading.

Importing the package registers its Gymnasium environments (Gymnasium 1.x
loads no entry-point plugins) when the ``envs`` extra is installed; the
light core alone (profiles, costs, the edge router) needs numpy and YAML.
"""

from . import costs, profiles
from .profiles import (
    ProfileError,
    from_hf_config,
    list_devices,
    list_links,
    list_models,
    load_device,
    load_link,
    load_model,
)

__version__ = "0.1.0"

#: Environment ids registered on import, with their entry points.
_ENVS = {
    "offload_env/LayerSplit-v0": dict(
        entry_point="offload_env.envs.layer_split:LayerSplitEnv",
        vector_entry_point="offload_env.envs.layer_split:LayerSplitVectorEnv",
    ),
    "offload_env/Routing-v0": dict(entry_point="offload_env.envs.routing:RoutingEnv",
                                   vector_entry_point="offload_env.envs.routing:RoutingVectorEnv",
                                   max_episode_steps=1000),
}
ENV_IDS = tuple(_ENVS)

#: PettingZoo environments by id -> ``module:factory`` of a ``ParallelEnv`` (PettingZoo has no registry).
PARALLEL_ENVS = {
    "offload_env/Vehicular-v0": "offload_env.vehicular:parallel_env",
}


def make_parallel(env_id: str, **kwargs):
    """Build the PettingZoo ``ParallelEnv`` registered as ``env_id`` (see :data:`PARALLEL_ENVS`)."""
    import importlib

    if not isinstance(env_id, str) or env_id not in PARALLEL_ENVS:
        raise ValueError(f"env_id: expected one of {', '.join(PARALLEL_ENVS)}, got {env_id!r}")
    module, _, factory = PARALLEL_ENVS[env_id].partition(":")
    return getattr(importlib.import_module(module), factory)(**kwargs)


def is_parallel_env(env_id: str) -> bool:
    """Whether ``env_id`` names a PettingZoo (multi-agent) env of this project rather than a Gymnasium one."""
    return env_id in PARALLEL_ENVS


def _register_envs() -> None:
    """Register the environments with Gymnasium (idempotent: ids already there are kept)."""
    try:
        import gymnasium
    except ImportError:  # the light core (pip install offload-env[edge]): no envs to register
        return

    for env_id, kwargs in _ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, **kwargs)


_register_envs()

__all__ = [
    "ENV_IDS",
    "PARALLEL_ENVS",
    "make_parallel",
    "is_parallel_env",
    "costs",
    "profiles",
    "ProfileError",
    "from_hf_config",
    "list_devices",
    "list_links",
    "list_models",
    "load_device",
    "load_link",
    "load_model",
    "__version__",
]
