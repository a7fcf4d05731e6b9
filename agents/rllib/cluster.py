"""Start Ray on this machine's loopback, or join the cluster at ``RAY_ADDRESS``.

``init_ray()`` is what every RLlib agent, sweep and benchmark of the project
calls: with ``RAY_ADDRESS`` set (``auto``, or ``HOST:PORT`` of a head started
with ``ray start --head``) it connects there, with the cluster's token when
one is on this machine (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``: Ray's token authentication); else it starts a
one-machine Ray whose every process binds to 127.0.0.1, with the dashboard
and usage reporting off.

Given 127.0.0.1, Ray on Linux still takes the machine's own address (it
assumes a node may be joined by others); its switch for one-machine Ray,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (named for the platforms where it is
the default), keeps the node and the processes it starts on loopback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["init_ray", "LOOPBACK_ONLY"]

#: Set in the environment of a one-machine Ray (its node and every process it starts stay on 127.0.0.1).
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _token_on_this_machine() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process (a no-op when it runs already)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        os.environ.update(LOOPBACK_ONLY)  # before Ray reads it at import; its processes inherit it
    import ray
    from ray._private import ray_constants

    if address:
        if "RAY_AUTH_MODE" not in os.environ and _token_on_this_machine():
            os.environ["RAY_AUTH_MODE"] = "token"
        host = address.rsplit(":", 1)[0]
        loopback = {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
        ray.init(address=address, log_to_driver=False, configure_logging=False, **loopback)
    else:
        ray_constants.ENABLE_RAY_CLUSTER = False  # the same switch, where Ray was imported before it was set
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, log_to_driver=False,
                 configure_logging=False)
